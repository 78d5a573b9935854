// Copyright 2026 The Eventide Authors.
//
// epoll(7) quirks this file works around or relies on:
//  - A registration belongs to the open file *description*, keyed by (file,
//    fd number). close(fd) drops it only if no dup() of the description is
//    left; otherwise epoll keeps reporting the old fd number. We give the
//    kernel a token (fd + generation) rather than a bare fd and drop events
//    whose generation is stale, so such an event is never attributed to a new
//    fd that reuses the number. Such an entry cannot be deleted any more
//    (its number is closed, or names another file), and level-triggered it
//    would wake every wait for as long as the dup() lives: an event under a
//    stale token makes Wait rebuild the epoll set from the live
//    registrations, as libev does.
//  - EPOLLHUP and EPOLLERR are reported even with events = 0, level-triggered.
//    Interest 0 therefore means "not in the kernel set" (EPOLL_CTL_DEL), or a
//    hung-up parked fd would make every epoll_wait return at once.
//  - epoll_ctl(ADD) fails with EPERM for fds that cannot be polled (regular
//    files, directories). poll(2) reports those as always ready; so do we,
//    like libev's epoll backend, to keep all backends alike.
//  - epoll_wait's timeout is in milliseconds; epoll_pwait2 (Linux 5.11) takes
//    a timespec. We probe for epoll_pwait2 at init (a seccomp filter or an old
//    kernel gives ENOSYS/EPERM) and fall back to epoll_wait with the timeout
//    rounded up. Zero and infinite waits always use epoll_wait: the same
//    meaning, at less cost.
//  - epoll_wait returns at most maxevents; the rest stay ready
//    (level-triggered) or queued (edge-triggered) for the next call. The
//    buffer doubles each time it comes back full.
//  - The epoll fd is shared with a child after fork(): the child must create
//    its own (needs_reinit_after_fork), and must not EPOLL_CTL_DEL anything
//    through the inherited one, which would change the parent's set. The
//    destructor therefore only closes the fd.

#include "demux/epoll.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "demux/internal/backend_util.h"

namespace eventide {
namespace {

namespace di = demux_internal;

constexpr char kName[] = "epoll";

uint64_t MakeToken(int fd, uint32_t generation) {
  return (static_cast<uint64_t>(generation) << 32) | static_cast<uint32_t>(fd);
}
int TokenFd(uint64_t token) { return static_cast<int>(token & 0xffffffffu); }

// One registration of an epoll set as the kernel lists it in
// /proc/self/fdinfo/<epoll fd>: the fd number it was added under, our
// token, and the file it watches.
struct KernelEntry {
  int fd;
  uint64_t token;
  unsigned long inode;  // NOLINT(runtime/int): the kernel prints a long
  unsigned int device;  // the kernel's encoding: major << 20 | minor
};

// False if the list cannot be read (no /proc, an unexpected format).
bool ReadKernelEntries(int epfd, std::vector<KernelEntry>* out) {
  const std::string path = "/proc/self/fdinfo/" + std::to_string(epfd);
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return false;
  char line[256];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    KernelEntry e;
    unsigned int events;
    unsigned long long token;  // NOLINT(runtime/int): matches %llx
    long long pos;             // NOLINT(runtime/int): matches %lli
    if (std::sscanf(line,
                    "tfd: %d events: %x data: %llx pos:%lli ino:%lx sdev:%x",
                    &e.fd, &events, &token, &pos, &e.inode, &e.device) == 6) {
      e.token = token;
      out->push_back(e);
    }
  }
  std::fclose(f);
  return true;
}

// Whether `fd` still names the file of `entry`.
bool SameFile(int fd, const KernelEntry& entry) {
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  return st.st_ino == entry.inode && major(st.st_dev) == (entry.device >> 20) &&
         minor(st.st_dev) == (entry.device & 0xfffff);
}

uint32_t EpollMaskFor(uint32_t interest) {
  uint32_t mask = 0;
  if (interest & kReadable) mask |= EPOLLIN | EPOLLRDHUP;
  if (interest & kWritable) mask |= EPOLLOUT;
  if (mask != 0 && (interest & kEdgeTriggered)) mask |= EPOLLET;
  return mask;
}

uint32_t EventsFromEpoll(uint32_t e) {
  uint32_t events = 0;
  if (e & (EPOLLIN | EPOLLPRI)) events |= kReadable;
  if (e & EPOLLOUT) events |= kWritable;
  if (e & EPOLLERR) events |= kError;
  if (e & (EPOLLHUP | EPOLLRDHUP)) events |= kHangup;
  return events;
}

// Calls epoll_pwait2 through syscall(2) so the build does not depend on the C
// library having the wrapper (glibc 2.35+).
int EpollPwait2(int epfd, struct epoll_event* events, int maxevents,
                const struct timespec* timeout) {
#ifdef SYS_epoll_pwait2
  return static_cast<int>(
      syscall(SYS_epoll_pwait2, epfd, events, maxevents, timeout, nullptr, 0));
#else
  (void)epfd;
  (void)events;
  (void)maxevents;
  (void)timeout;
  errno = ENOSYS;
  return -1;
#endif
}

class EpollBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(
      const BackendOptions& options) {
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd == -1) {
      const int err = errno;
      if (err == ENOSYS) {
        return absl::UnavailableError("epoll: epoll_create1: not supported");
      }
      return di::ErrnoError(err, kName, "epoll_create1");
    }
    bool pwait2 = false;
    if (options.epoll_use_pwait2) {
      // Zero-timeout probe on the empty set: returns 0 if the syscall exists.
      struct epoll_event ev;
      struct timespec zero = {0, 0};
      pwait2 = EpollPwait2(epfd, &ev, 1, &zero) >= 0;
    }
    return std::unique_ptr<Backend>(
        std::make_unique<EpollBackend>(epfd, pwait2, options));
  }

  // Takes ownership of `epfd`. Use Create().
  EpollBackend(int epfd, bool use_pwait2, const BackendOptions& options)
      : epfd_(epfd),
        use_pwait2_(use_pwait2),
        batch_modify_(options.epoll_batch_modify),
        max_events_(std::max(1, options.epoll_max_events)) {
    events_length_ = std::clamp(options.epoll_initial_events, 1, max_events_);
    events_.resize(static_cast<size_t>(events_length_));
  }

  ~EpollBackend() override { close(epfd_); }

  absl::string_view name() const override { return kName; }

  BackendCapabilities capabilities() const override {
    BackendCapabilities caps;
    caps.edge_triggered = true;
    caps.reports_once = false;
    caps.max_fd = -1;
    caps.needs_reinit_after_fork = true;
    caps.timeout_resolution =
        use_pwait2_ ? absl::Nanoseconds(1) : absl::Milliseconds(1);
    caps.scalable = true;
    caps.reports_error_and_hangup = true;
    return caps;
  }

  absl::Status Add(int fd, uint32_t interest) override {
    // Inline only the common case, once per Start of a watcher (pipebench
    // re-registers every watcher per iteration): a known, unregistered fd
    // with valid interest to put in the kernel, and the kernel agrees.
    // Everything else is out of line, so that this path needs few saved
    // registers.
    const uint32_t mask = EpollMaskFor(interest);
    // A negative fd converts to a huge size_t and takes AddSlow too.
    if ((interest & ~kAllInterestBits) != 0 || mask == 0 ||
        static_cast<size_t>(fd) >= slots_.size() || slots_[fd].registered) {
      return AddSlow(fd, interest);
    }
    return AddToKernel(fd, interest, mask, slots_[fd]);
  }

  absl::Status Modify(int fd, uint32_t interest) override {
    if (absl::Status s =
            di::ValidateInterest(interest, true, kName, "Modify", fd);
        !s.ok()) {
      return s;
    }
    Slot* slot = Find(fd);
    if (slot == nullptr) return di::NotRegistered(kName, "Modify", fd);
    const uint32_t old_interest = slot->interest;
    slot->interest = interest;
    slot->edge_pending = true;
    if (slot->not_pollable) return absl::OkStatus();
    const uint32_t mask = EpollMaskFor(interest);
    if (slot->kernel_mask != 0 && mask != 0 && batch_modify_) {
      // MOD only: deferred to Wait, where only the net change is applied.
      if (!slot->dirty) {
        slot->dirty = true;
        dirty_fds_.push_back(fd);
      }
      return absl::OkStatus();
    }
    absl::Status status = Apply(fd, *slot);
    // A refused change leaves the interest the caller still has (the loop
    // keeps its own copy unchanged on error too).
    if (!status.ok()) slot->interest = old_interest;
    return status;
  }

  absl::Status Remove(int fd) override {
    Slot* slot = Find(fd);
    if (slot == nullptr) return di::NotRegistered(kName, "Remove", fd);
    int err = 0;
    if (slot->kernel_mask != 0) {
      struct epoll_event ev = {};  // non-NULL for kernels before 2.6.9
      if (epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev) == -1) err = errno;
    }
    if (slot->not_pollable) ForgetNotPollable(fd);
    const uint32_t generation = slot->generation;
    *slot = Slot();
    slot->generation = generation;  // keeps stale tokens stale
    if (err != 0) return RemoveError(fd, err);
    return absl::OkStatus();
  }

  absl::Status Wait(absl::Duration timeout,
                    std::vector<ReadyEvent>* out) override {
    // The rare work stays out of line, so that a pass with neither (the
    // common case) pays two tests for it.
    if (!dirty_fds_.empty()) FlushModifications();

    // Always-ready fds are reported without asking the kernel; do not block
    // when there is one to report.
    const bool have_not_pollable =
        !not_pollable_fds_.empty() && AnyNotPollableReady();
    if (have_not_pollable) timeout = absl::ZeroDuration();

    int n;
    // epoll_pwait2 only where its nanoseconds matter: a finite wait that
    // may block. A poll (zero) or an infinite wait means the same to
    // epoll_wait, which skips copying in a timespec and the kernel's work
    // of turning it into a deadline: ~80 ns less per call here for a poll
    // (the loop's non-blocking passes), with events ready or not.
    const bool pwait2 = use_pwait2_ && di::IsFiniteBlockingWait(timeout);
    if (pwait2) {
      struct timespec ts;
      di::TimeoutTimespec(timeout, &ts);
      n = EpollPwait2(epfd_, events_.data(), events_length_, &ts);
    } else {
      n = epoll_wait(epfd_, events_.data(), events_length_,
                     di::TimeoutMillisRoundedUp(timeout));
    }
    if (n == -1) {
      if (errno != EINTR) {
        out->clear();
        return di::ErrnoError(errno, kName,
                              pwait2 ? "epoll_pwait2" : "epoll_wait");
      }
      n = 0;  // a signal: report what we have (maybe nothing) and return
    }

    // The hot loop of every pass: size *out once and write through a pointer
    // (no capacity check per event), and take plain EPOLLIN, by far the most
    // common report, without the bit-by-bit translation. *out is not cleared
    // first: it still holds the last batch, so it only grows (zero-filling
    // the new elements) when this batch is the largest yet; every element
    // kept is overwritten or cut off below.
    if (out->size() < static_cast<size_t>(n)) out->resize(n);
    ReadyEvent* dst = out->data();
    bool stale = false;
    const Slot* const slots = slots_.data();
    const size_t num_slots = slots_.size();
    for (int i = 0; i < n; ++i) {
      const uint64_t token = events_[i].data.u64;
      const int fd = TokenFd(token);
      // Remove keeps the generation and Add bumps it, so a registered slot
      // with the token's generation is the registration that made it.
      if (static_cast<size_t>(fd) >= num_slots) {
        stale = true;
        continue;
      }
      const Slot& slot = slots[fd];
      if (slot.live_token != token) {
        // A file closed before Remove while a dup() of it lives on: the
        // only way the kernel keeps an entry we no longer know.
        stale = true;
        continue;
      }
      const uint32_t raw = events_[i].events;
      const uint32_t events =
          raw == EPOLLIN ? (slot.interest & kReadable)
                         : di::Normalize(EventsFromEpoll(raw), slot.interest);
      if (events != 0) *dst++ = ReadyEvent{fd, events};
    }
    out->resize(static_cast<size_t>(dst - out->data()));
    if (stale) RebuildKernelSet();
    if (have_not_pollable) ReportNotPollable(out);
    if (n == events_length_ && n < max_events_) GrowEventArray();
    return absl::OkStatus();
  }

 private:
  struct Slot {
    bool registered = false;
    bool not_pollable = false;  // EPERM from epoll: always ready
    bool dirty = false;         // in dirty_fds_ (deferred MOD)
    bool edge_pending = false;  // not_pollable + edge: report once more
    uint32_t interest = 0;
    uint32_t kernel_mask = 0;  // events registered in the kernel; 0 = none
    uint32_t generation = 0;
    // MakeToken(fd, generation) while registered, else 0 (never a token:
    // generations start at 1): Wait checks both with one compare.
    uint64_t live_token = 0;
  };

  // Records a registration made: a new generation, so that tokens of
  // earlier ones read as stale in Wait.
  static void Register(int fd, uint32_t interest, uint32_t kernel_mask,
                       Slot& slot) {
    slot.generation++;
    slot.live_token = MakeToken(fd, slot.generation);
    slot.registered = true;
    slot.interest = interest;
    slot.kernel_mask = kernel_mask;
    slot.not_pollable = false;
    slot.edge_pending = true;
  }

  // Add's every case: bad arguments, an fd past the table, one already
  // registered, an interest with nothing for the kernel (parked).
  [[gnu::noinline]] absl::Status AddSlow(int fd, uint32_t interest) {
    if ((interest & ~kAllInterestBits) != 0) {
      return di::ValidateInterest(interest, true, kName, "Add", fd);
    }
    if (fd < 0) return di::ErrnoError(EBADF, kName, "Add", fd);
    if (Find(fd) != nullptr) return di::AlreadyRegistered(kName, fd);
    Slot& slot = di::GrowFor(slots_, fd);
    const uint32_t mask = EpollMaskFor(interest);
    if (mask == 0) {
      // Parked: nothing in the kernel, but the fd must still be valid.
      if (absl::Status s = di::CheckFdOpen(fd, kName, "Add"); !s.ok()) {
        return s;
      }
      Register(fd, interest, 0, slot);
      return absl::OkStatus();
    }
    return AddToKernel(fd, interest, mask, slot);
  }

  // The rest of Add for an unregistered slot and a non-zero mask.
  absl::Status AddToKernel(int fd, uint32_t interest, uint32_t mask,
                           Slot& slot) {
    struct epoll_event ev = {};
    ev.events = mask;
    ev.data.u64 = MakeToken(fd, slot.generation + 1);
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return AddRefused(fd, interest, errno);
    }
    Register(fd, interest, mask, slot);
    return absl::OkStatus();
  }

  // EPOLL_CTL_ADD failed with `err` for a slot that exists.
  [[gnu::noinline]] absl::Status AddRefused(int fd, uint32_t interest,
                                            int err) {
    if (err != EPERM) return di::ErrnoError(err, kName, "Add", fd);
    Register(fd, interest, 0, slots_[fd]);
    MarkNotPollable(fd, slots_[fd]);
    return absl::OkStatus();
  }

  // epoll refused `fd` with EPERM: a regular file or directory, always
  // ready, which Wait reports itself. Not in the kernel set.
  void MarkNotPollable(int fd, Slot& slot) {
    slot.not_pollable = true;
    slot.edge_pending = true;
    not_pollable_fds_.push_back(fd);
  }

  [[gnu::noinline]] void ForgetNotPollable(int fd) {
    not_pollable_fds_.erase(
        std::find(not_pollable_fds_.begin(), not_pollable_fds_.end(), fd));
  }

  // EPOLL_CTL_DEL failed with `err`; the bookkeeping is dropped already.
  // EBADF/ENOENT: the caller closed fd first (backend.h) and the kernel
  // forgot it, or, if a dup() keeps the file open, still reports it under
  // our old token, which Wait then drops for good (RebuildKernelSet).
  [[gnu::noinline]] static absl::Status RemoveError(int fd, int err) {
    if (err == EBADF || err == ENOENT) return absl::OkStatus();
    return di::ErrnoError(err, kName, "Remove", fd);
  }

  Slot* Find(int fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
    Slot& slot = slots_[fd];
    return slot.registered ? &slot : nullptr;
  }

  // Brings the kernel registration of `fd` in line with slot.interest.
  absl::Status Apply(int fd, Slot& slot) {
    const uint32_t mask = EpollMaskFor(slot.interest);
    struct epoll_event ev = {};
    ev.events = mask;
    ev.data.u64 = MakeToken(fd, slot.generation);
    int op;
    if (mask == 0) {
      if (slot.kernel_mask == 0) return absl::OkStatus();
      op = EPOLL_CTL_DEL;
    } else if (slot.kernel_mask == 0) {
      op = EPOLL_CTL_ADD;
    } else {
      // An edge-triggered MOD re-arms even with the same mask (reports a
      // still-ready fd again), as Modify promises.
      if (mask == slot.kernel_mask && !(mask & EPOLLET)) {
        return absl::OkStatus();
      }
      op = EPOLL_CTL_MOD;
    }
    if (epoll_ctl(epfd_, op, fd, &ev) == -1) {
      if (op == EPOLL_CTL_ADD && errno == EPERM) {
        // Added with no interest, so epoll was never asked until now: a
        // regular file or directory, always ready from here on, as if Add
        // had been given this interest.
        MarkNotPollable(fd, slot);
        return absl::OkStatus();
      }
      return di::ErrnoError(errno, kName, "Modify", fd);
    }
    slot.kernel_mask = mask;
    return absl::OkStatus();
  }

  // Whether an always-ready (not pollable) fd has something to report.
  [[gnu::noinline]] bool AnyNotPollableReady() const {
    for (int fd : not_pollable_fds_) {
      const Slot& slot = slots_[fd];
      if (di::ReadWriteBits(slot.interest) != 0 &&
          (!(slot.interest & kEdgeTriggered) || slot.edge_pending)) {
        return true;
      }
    }
    return false;
  }

  [[gnu::noinline]] void ReportNotPollable(std::vector<ReadyEvent>* out) {
    for (int fd : not_pollable_fds_) {
      Slot& slot = slots_[fd];
      const uint32_t rw = di::ReadWriteBits(slot.interest);
      if (rw == 0) continue;
      if ((slot.interest & kEdgeTriggered) && !slot.edge_pending) continue;
      slot.edge_pending = false;
      out->push_back(ReadyEvent{fd, rw});
    }
  }

  // The last batch filled the array: double it (up to max_events_), so the
  // next wait can take more of what is ready.
  [[gnu::noinline]] void GrowEventArray() {
    // In 64 bits: max_events_ may be near INT_MAX.
    events_length_ = static_cast<int>(
        std::min<int64_t>(int64_t{events_length_} * 2, max_events_));
    events_.resize(static_cast<size_t>(events_length_));
  }

  [[gnu::noinline]] void FlushModifications() {
    for (int fd : dirty_fds_) {
      Slot* slot = Find(fd);
      if (slot == nullptr || !slot->dirty) continue;  // removed meanwhile
      slot->dirty = false;
      // Only MODs are deferred (Modify applies ADD/DEL at once). They fail
      // only if the caller closed fd without Remove (EBADF/ENOENT), a caller
      // error documented in backend.h: the kernel has already forgotten the
      // fd, so there is nothing left to change.
      (void)Apply(fd, *slot);
    }
    dirty_fds_.clear();
  }

  // An entry that reports under a stale token cannot be deleted (its number
  // is closed or names another file now), so a fresh epoll set takes every
  // live registration and the old set goes with its fd. Only a caller error
  // gets here, so the O(fds) walk is rare. An edge-triggered registration
  // may report once more (ADD reports a ready fd). If anything fails, the
  // old set stays and its stale events keep being dropped.
  //
  // A registration is carried over only if the kernel's list for the old
  // set shows it, under our token, for the file its number names now.
  // Another fd closed without Remove may have had its number reused by a
  // new file: adding that number would report the new file's events as the
  // old registration's. (libev re-adds every number.) Without /proc the
  // check cannot be made and every registration is re-added.
  void RebuildKernelSet() {
    std::vector<KernelEntry> entries;
    const bool checked = ReadKernelEntries(epfd_, &entries);
    std::sort(entries.begin(), entries.end(),
              [](const KernelEntry& a, const KernelEntry& b) {
                return a.token < b.token;
              });
    const int fresh = epoll_create1(EPOLL_CLOEXEC);
    if (fresh == -1) return;
    std::vector<int> dropped;
    for (size_t fd = 0; fd < slots_.size(); ++fd) {
      Slot& slot = slots_[fd];
      if (!slot.registered || slot.kernel_mask == 0) continue;
      if (checked) {
        const auto it = std::lower_bound(
            entries.begin(), entries.end(), slot.live_token,
            [](const KernelEntry& e, uint64_t t) { return e.token < t; });
        if (it == entries.end() || it->token != slot.live_token ||
            !SameFile(static_cast<int>(fd), *it)) {
          // Closed without Remove: the kernel forgot it, or keeps it for a
          // dup() under a number that now names another file.
          dropped.push_back(static_cast<int>(fd));
          continue;
        }
      }
      struct epoll_event ev = {};
      ev.events = slot.kernel_mask;
      ev.data.u64 = slot.live_token;
      if (epoll_ctl(fresh, EPOLL_CTL_ADD, static_cast<int>(fd), &ev) == -1) {
        if (errno == EBADF) {  // closed without Remove
          dropped.push_back(static_cast<int>(fd));
          continue;
        }
        // ENOMEM, ENOSPC (max_user_watches: both sets count until the old
        // one closes): keep the old set rather than lose a live fd.
        close(fresh);
        return;
      }
    }
    // A later Modify adds a dropped registration again if it is wanted.
    for (int fd : dropped) slots_[fd].kernel_mask = 0;
    close(epfd_);
    epfd_ = fresh;
  }

  int epfd_;  // replaced by RebuildKernelSet
  const bool use_pwait2_;
  const bool batch_modify_;
  const int max_events_;
  std::vector<Slot> slots_;  // indexed by fd
  std::vector<int> dirty_fds_;
  std::vector<int> not_pollable_fds_;
  std::vector<struct epoll_event> events_;
  // events_.size(), as epoll_wait takes it. Kept, not derived: working it
  // out from the vector (a division by the 12-byte element) cost about 10
  // instructions a pass (pipebench 100/1: 815 against 825 per callback).
  int events_length_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateEpollBackend(
    const BackendOptions& options) {
  return EpollBackend::Create(options);
}

}  // namespace eventide
