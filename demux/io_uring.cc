// Copyright 2026 The Eventide Authors.
//
// io_uring notes (liburing 2.3; kernel features probed at init):
//  - One multishot IORING_OP_POLL_ADD per registered fd (Linux 5.13): one
//    submission posts a completion (CQE) on every wake-up of the fd's wait
//    queue that matches the mask, with IORING_CQE_F_MORE while it stays armed.
//    Arming checks the current state, so an fd that is already ready posts a
//    CQE at once.
//  - Multishot poll is wake-up driven, i.e. edge-triggered: unread data that
//    gets no new wake-up posts nothing more. We give level-triggered
//    semantics (the default of every backend) by re-checking, with one
//    zero-timeout poll(2), the level-triggered fds reported by the previous
//    Wait: those still ready are reported again. An fd that went quiet needs
//    no check: the armed multishot reports its next wake-up. kEdgeTriggered
//    fds skip the re-check.
//  - The kernel may end a multishot poll (a CQE without IORING_CQE_F_MORE):
//    when the CQ ring overflows, or at once for files without a wait queue
//    (regular files). We re-arm such fds at the next Wait; re-arming reports a
//    still-ready fd, which also makes regular files "always ready" as on
//    poll(2).
//  - Add/Modify only queue SQEs: they reach the kernel with the next Wait's
//    single io_uring_enter (batching for free). So Add checks the fd itself
//    (fcntl) to fail at once on a closed fd. Remove submits its cancel at
//    once: a poll request holds a reference to the file, and a caller's
//    close() right after Remove must really close it (e.g. send the FIN).
//  - user_data is a token (fd + generation), not a pointer. Cancelling
//    (Remove/Modify) bumps the generation, so the -ECANCELED completion and
//    any CQE already in the ring for the old registration are dropped, even
//    if the fd number is reused at once.
//  - Timeouts go to the kernel as a timespec through IORING_ENTER_EXT_ARG
//    (Linux 5.11), so no timeout SQE is needed and resolution is 1ns.
//  - IORING_FEAT_NODROP (5.5) is required: without it an overflowing CQ ring
//    drops completions, i.e. events.
//  - The rings are shared memory: after fork() the child must not touch the
//    parent's ring (needs_reinit_after_fork). The destructor only unmaps and
//    closes (io_uring_queue_exit), which is safe in the child.
//  - Closing a ring makes the kernel's exit work queue task work on the
//    owning thread with TWA_SIGNAL (io_ring_exit_work, seen on 6.18): the
//    thread's next blocking call, whatever it is (epoll_wait, poll, ...),
//    may return EINTR once. Here about 1 time in 3 for a wait started right
//    after the close, even for a ring that never had a request, so
//    cancelling our polls first would not help. Harmless under the contract
//    (EINTR = early return with zero events); callers of other blocking
//    calls on that thread must already retry on EINTR.
//  - io_uring_setup can be refused: ENOSYS (old kernel, seccomp), EPERM
//    (kernel.io_uring_disabled, containers), ENOMEM (RLIMIT_MEMLOCK before
//    5.12). Init then returns Unavailable and the registry falls back.

#include "demux/io_uring.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "demux/internal/backend_util.h"

namespace eventide {
namespace {

namespace di = demux_internal;

constexpr char kName[] = "io_uring";

// user_data of our own requests (cancels, the init probe). Registration
// tokens never equal it: their generation is at least 1.
constexpr uint64_t kInternalToken = 0;
// Completion queue size: CQEs from multishot polls can outnumber SQEs by
// far. Overflow is survivable (NODROP, re-arm) but slower.
constexpr unsigned kCqEntries = 8192;

uint64_t MakeToken(int fd, uint32_t generation) {
  return (static_cast<uint64_t>(generation) << 32) | static_cast<uint32_t>(fd);
}
int TokenFd(uint64_t token) { return static_cast<int>(token & 0xffffffffu); }
uint32_t TokenGeneration(uint64_t token) {
  return static_cast<uint32_t>(token >> 32);
}

absl::Status Unavailable(absl::string_view what, int err = 0) {
  if (err != 0) {
    return absl::UnavailableError(
        absl::StrCat("io_uring: ", what, ": ", strerror(err)));
  }
  return absl::UnavailableError(absl::StrCat("io_uring: ", what));
}

// Arms a multishot poll on a ready eventfd and checks that the kernel keeps
// it armed (IORING_CQE_F_MORE). Kernels before 5.13 reject the flag.
absl::Status ProbeMultishotPoll(struct io_uring* ring) {
  const int efd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd == -1) return di::ErrnoError(errno, kName, "eventfd (probe)");
  constexpr uint64_t kProbeToken = 1;
  struct io_uring_sqe* sqe = io_uring_get_sqe(ring);
  io_uring_prep_poll_multishot(sqe, efd, POLLIN);
  io_uring_sqe_set_data64(sqe, kProbeToken);
  int ret = io_uring_submit_and_wait(ring, 1);
  bool multishot = false;
  int probe_res = 0;
  struct io_uring_cqe* cqe;
  if (ret >= 0 && io_uring_peek_cqe(ring, &cqe) == 0) {
    probe_res = cqe->res;
    multishot = cqe->res > 0 && (cqe->flags & IORING_CQE_F_MORE);
    io_uring_cqe_seen(ring, cqe);
  }
  if (multishot) {
    // Cancel it and collect both completions before the fd goes away.
    sqe = io_uring_get_sqe(ring);
    io_uring_prep_poll_remove(sqe, kProbeToken);
    io_uring_sqe_set_data64(sqe, kInternalToken);
    io_uring_submit_and_wait(ring, 2);
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) { ++seen; }
    io_uring_cq_advance(ring, seen);
  }
  close(efd);
  if (ret < 0) return Unavailable("multishot poll probe", -ret);
  if (!multishot) {
    return Unavailable(
        absl::StrCat("multishot poll (Linux 5.13) not supported (probe res ",
                     probe_res, ")"));
  }
  return absl::OkStatus();
}

class IoUringBackend final : public Backend {
 public:
  // Use Create(); the ring is set up there.
  IoUringBackend() = default;

  static absl::StatusOr<std::unique_ptr<Backend>> Create(
      const BackendOptions& options) {
    auto backend = std::make_unique<IoUringBackend>();
    struct io_uring_params params = {};
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
    params.cq_entries = std::max(kCqEntries, options.io_uring_entries * 2);
    const int ret = io_uring_queue_init_params(
        std::max(1u, options.io_uring_entries), &backend->ring_, &params);
    if (ret < 0) {
      const int err = -ret;
      if (err == ENOSYS || err == EPERM || err == EACCES || err == EINVAL ||
          err == ENOMEM) {
        return Unavailable("io_uring_setup refused", err);
      }
      return di::ErrnoError(err, kName, "io_uring_setup");
    }
    backend->ring_initialized_ = true;
    const unsigned features = backend->ring_.features;
    if (!(features & IORING_FEAT_NODROP)) {
      return Unavailable("kernel lacks IORING_FEAT_NODROP (Linux 5.5)");
    }
    if (!(features & IORING_FEAT_EXT_ARG)) {
      return Unavailable("kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11)");
    }
    struct io_uring_probe* probe = io_uring_get_probe_ring(&backend->ring_);
    if (probe == nullptr) {
      return Unavailable("IORING_REGISTER_PROBE not supported (Linux 5.6)");
    }
    const bool ops = io_uring_opcode_supported(probe, IORING_OP_POLL_ADD) &&
                     io_uring_opcode_supported(probe, IORING_OP_POLL_REMOVE) &&
                     io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL);
    io_uring_free_probe(probe);
    if (!ops)
      return Unavailable("POLL_ADD/POLL_REMOVE/ASYNC_CANCEL not supported");
    if (absl::Status s = ProbeMultishotPoll(&backend->ring_); !s.ok()) return s;
    return std::unique_ptr<Backend>(std::move(backend));
  }

  // Closing the ring cancels every poll (in the kernel). Also right in a
  // forked child: it only drops the child's mapping and fd.
  ~IoUringBackend() override {
    if (ring_initialized_) io_uring_queue_exit(&ring_);
  }

  absl::string_view name() const override { return kName; }

  BackendCapabilities capabilities() const override {
    BackendCapabilities caps;
    caps.edge_triggered = true;
    caps.reports_once = false;
    caps.max_fd = -1;
    caps.needs_reinit_after_fork = true;
    caps.timeout_resolution = absl::Nanoseconds(1);
    caps.scalable = true;
    caps.reports_error_and_hangup = true;
    return caps;
  }

  absl::Status Add(int fd, uint32_t interest) override {
    // CheckAdd's open-fd check matters here: the POLL_ADD would only fail
    // at the next Wait.
    if (absl::Status s = di::CheckAdd(
            fd, interest, /*edge_supported=*/true, /*max_fd=*/-1,
            [this](int f) { return Find(f) != nullptr; }, kName);
        !s.ok()) {
      return s;
    }
    Slot& slot = di::GrowFor(slots_, fd);
    slot.registered = true;
    slot.interest = interest;
    BumpGeneration(slot);
    if (di::ReadWriteBits(interest) != 0) Arm(fd, slot);
    return absl::OkStatus();
  }

  absl::Status Modify(int fd, uint32_t interest) override {
    if (absl::Status s =
            di::ValidateInterest(interest, true, kName, "Modify", fd);
        !s.ok()) {
      return s;
    }
    Slot* slot = Find(fd);
    if (slot == nullptr) return di::NotRegistered(kName, "Modify", fd);
    const uint32_t old_mask = di::PollMaskFor(slot->interest);
    const uint32_t new_mask = di::PollMaskFor(interest);
    // Same mask, level-triggered: nothing to tell the kernel. Edge-triggered
    // Modify re-arms, so a still-ready fd is reported again (as epoll does).
    // Switching between edge and level re-arms too: the level re-check only
    // covers fds that were level-triggered when last reported.
    const bool rearm =
        old_mask != new_mask || ((interest | slot->interest) & kEdgeTriggered);
    slot->interest = interest;
    if (!rearm && slot->armed) return absl::OkStatus();
    if (slot->armed) Disarm(fd, *slot);
    if (new_mask != 0) Arm(fd, *slot);
    return absl::OkStatus();
  }

  absl::Status Remove(int fd) override {
    Slot* slot = Find(fd);
    if (slot == nullptr) return di::NotRegistered(kName, "Remove", fd);
    const bool was_armed = slot->armed;
    if (was_armed) Disarm(fd, *slot);
    const uint32_t generation = slot->generation;
    *slot = Slot();
    slot->generation = generation;
    if (was_armed) {
      // Release the kernel's file reference before the caller closes fd.
      const int ret = io_uring_submit(&ring_);
      if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        return di::ErrnoError(-ret, kName, "Remove (io_uring_submit)", fd);
      }
    }
    return absl::OkStatus();
  }

  absl::Status Wait(absl::Duration timeout,
                    std::vector<ReadyEvent>* out) override {
    out->clear();
    ++round_;
    RearmEnded();

    // Level-triggering: the fds reported last time that are still ready.
    if (RecheckLevelTriggered(out) > 0) timeout = absl::ZeroDuration();

    const auto start = std::chrono::steady_clock::now();
    absl::Duration left = timeout;
    for (;;) {
      const int ret = SubmitAndWait(left);
      if (ret == -EINTR) {  // CQEs stay in the ring for next time
        RememberLevelTriggered(*out);
        return absl::OkStatus();
      }
      // ETIME: timed out. EBUSY/EAGAIN: the kernel could not take more SQEs
      // right now (CQ overflow backlog); they are retried at the next Wait.
      if (ret < 0 && ret != -ETIME && ret != -EBUSY && ret != -EAGAIN) {
        return di::ErrnoError(-ret, kName, "io_uring_enter");
      }

      // Reap; an overflowed CQ ring is flushed by io_uring_get_events.
      // Bounded: each pass empties the ring.
      for (int pass = 0; pass < 8; ++pass) {
        Reap(out);
        if (!io_uring_cq_has_overflow(&ring_)) break;
        io_uring_get_events(&ring_);
      }
      VerifyLevelTriggered(out);

      if (!out->empty() || ret < 0 || left <= absl::ZeroDuration()) break;
      // Woken only by completions with nothing to report: our own cancels,
      // stale registrations, bits outside the interest (io_uring adds RDHUP
      // to every poll), readiness gone before we looked. The caller asked
      // to wait: wait out the rest instead of returning empty-handed.
      if (left != absl::InfiniteDuration()) {
        left = timeout -
               absl::FromChrono(std::chrono::steady_clock::now() - start);
        if (left <= absl::ZeroDuration()) break;
      }
      RearmEnded();
    }

    RememberLevelTriggered(*out);
    return absl::OkStatus();
  }

 private:
  struct Slot {
    bool registered = false;
    bool armed = false;  // a multishot poll with the current token is queued
                         // or active
    uint32_t interest = 0;
    uint32_t generation = 0;
    uint64_t round = 0;      // last Wait round that reported this fd
    uint32_t out_index = 0;  // its index in that round's output
  };

  Slot* Find(int fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
    Slot& slot = slots_[fd];
    return slot.registered ? &slot : nullptr;
  }

  struct io_uring_sqe* GetSqe() {
    struct io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      // SQ ring full: hand what is queued to the kernel (no waiting).
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void Arm(int fd, Slot& slot) {
    struct io_uring_sqe* sqe = GetSqe();
    io_uring_prep_poll_multishot(sqe, fd, di::PollMaskFor(slot.interest));
    io_uring_sqe_set_data64(sqe, MakeToken(fd, slot.generation));
    slot.armed = true;
  }

  // Generation 0 is never used: token (fd 0, generation 0) would equal
  // kInternalToken.
  static void BumpGeneration(Slot& slot) {
    if (++slot.generation == 0) slot.generation = 1;
  }

  void Disarm(int fd, Slot& slot) {
    struct io_uring_sqe* sqe = GetSqe();
    // ASYNC_CANCEL, not POLL_REMOVE: POLL_REMOVE fails with -EALREADY while
    // a wake-up of that poll is being handled, and the multishot poll then
    // lives on, holding a reference to the file, so close() never sends the
    // FIN (seen on 6.18 with a writer racing 20,000 Modify calls). Cancel
    // marks the request cancelled even with a wake-up in flight.
    io_uring_prep_cancel64(sqe, MakeToken(fd, slot.generation), 0);
    io_uring_sqe_set_data64(sqe, kInternalToken);
    slot.armed = false;
    BumpGeneration(slot);  // the old registration's CQEs are stale now
  }

  // Adds `events` for fd to this round's output, merging with an entry the
  // fd already has (one ReadyEvent per fd per Wait).
  void Emit(int fd, Slot& slot, uint32_t events, std::vector<ReadyEvent>* out) {
    if (events == 0) return;
    if (slot.round == round_) {
      (*out)[slot.out_index].events |= events;
      return;
    }
    slot.round = round_;
    slot.out_index = static_cast<uint32_t>(out->size());
    out->push_back(ReadyEvent{fd, events});
  }

  // Multishot polls that ended on their own (CQ overflow, regular files).
  void RearmEnded() {
    for (int fd : rearm_) {
      Slot* slot = Find(fd);
      if (slot != nullptr && !slot->armed &&
          di::ReadWriteBits(slot->interest) != 0) {
        Arm(fd, *slot);
      }
    }
    rearm_.clear();
  }

  // Submits what is queued and waits up to `timeout` for one completion
  // (none for a zero timeout). Returns io_uring_enter's result.
  int SubmitAndWait(absl::Duration timeout) {
    if (timeout <= absl::ZeroDuration()) {
      return io_uring_submit_and_get_events(&ring_);
    }
    if (timeout == absl::InfiniteDuration()) {
      return io_uring_submit_and_wait(&ring_, 1);
    }
    struct timespec ts;
    di::TimeoutTimespec(timeout, &ts);
    struct __kernel_timespec kts = {};
    kts.tv_sec = ts.tv_sec;
    kts.tv_nsec = ts.tv_nsec;
    struct io_uring_cqe* cqe;
    return io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &kts, nullptr);
  }

  // Regular files, directories and block devices: the kernel cannot poll
  // them and reports them always ready, ending a multishot poll at once.
  static bool AlwaysReady(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return false;
    return S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode);
  }

  // Emits what poll(2) says of `pollfds` now; the number of fds emitted, or
  // -1 if poll failed (with a zero timeout never EINTR: only ENOMEM-like
  // failures).
  int PollAndEmit(std::vector<struct pollfd>* pollfds,
                  std::vector<ReadyEvent>* out) {
    const int n = poll(pollfds->data(), pollfds->size(), 0);
    if (n <= 0) return n;
    int reported = 0;
    for (const struct pollfd& p : *pollfds) {
      if (p.revents == 0) continue;
      Slot& slot = slots_[p.fd];
      const uint32_t events = di::Normalize(
          di::EventsFromPollMask(static_cast<uint16_t>(p.revents)),
          slot.interest);
      if (events != 0) {
        Emit(p.fd, slot, events, out);
        ++reported;
      }
    }
    return reported;
  }

  // A completion tells what the fd was when the kernel woke the poll; a
  // level-triggered fd may have been drained since (the handler read on
  // until EAGAIN, past data that had already posted this completion).
  // Report only what is still true, as epoll, poll and select do.
  void VerifyLevelTriggered(std::vector<ReadyEvent>* out) {
    if (verify_.empty()) return;
    if (PollAndEmit(&verify_, out) < 0) {
      // Cannot look: report each fd for its interest rather than lose a
      // readiness no later completion would repeat (a spurious report
      // costs the handler an EAGAIN).
      for (const struct pollfd& p : verify_) {
        Slot& slot = slots_[p.fd];
        Emit(p.fd, slot, di::ReadWriteBits(slot.interest), out);
      }
    }
    verify_.clear();
  }

  // The level-triggered fds just reported, for the next Wait's re-check.
  void RememberLevelTriggered(const std::vector<ReadyEvent>& out) {
    recheck_fds_.clear();
    for (const ReadyEvent& e : out) {
      if (!(slots_[e.fd].interest & kEdgeTriggered)) {
        recheck_fds_.push_back(e.fd);
      }
    }
  }

  int RecheckLevelTriggered(std::vector<ReadyEvent>* out) {
    pollfds_.clear();
    for (int fd : recheck_fds_) {
      const Slot* slot = Find(fd);
      if (slot == nullptr || !slot->armed ||
          (slot->interest & kEdgeTriggered)) {
        continue;
      }
      pollfds_.push_back(
          pollfd{fd, static_cast<short>(di::PollMaskFor(slot->interest)), 0});
    }
    recheck_fds_.clear();
    if (pollfds_.empty()) return 0;
    // EINTR or nothing: the CQEs will tell.
    return std::max(0, PollAndEmit(&pollfds_, out));
  }

  void Reap(std::vector<ReadyEvent>* out) {
    struct io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      const uint64_t token = cqe->user_data;
      if (token == kInternalToken || token == LIBURING_UDATA_TIMEOUT) continue;
      const int fd = TokenFd(token);
      Slot* slot = Find(fd);
      if (slot == nullptr || slot->generation != TokenGeneration(token)) {
        continue;  // cancelled or removed: stale
      }
      const bool ended = !(cqe->flags & IORING_CQE_F_MORE);
      if (ended) slot->armed = false;
      if (cqe->res >= 0) {
        // io_uring adds EPOLLRDHUP to every poll (IO_POLL_UNMASK, since
        // 5.x): keep it only when asked for, as poll(2) and epoll do.
        const uint32_t wanted = di::PollMaskFor(slot->interest);
        const uint32_t mask = static_cast<uint32_t>(cqe->res) &
                              (wanted | POLLERR | POLLHUP | POLLNVAL);
        const bool edge = (slot->interest & kEdgeTriggered) != 0;
        if (edge) {
          Emit(fd, *slot,
               di::Normalize(di::EventsFromPollMask(mask), slot->interest),
               out);
        } else if (mask != 0) {
          verify_.push_back(pollfd{fd, static_cast<short>(wanted), 0});
        }
        // An always-ready file ends its poll at once: re-armed, it would be
        // reported again at every Wait. Edge-triggered, it is reported once
        // more only after Modify (which re-arms), as epoll's emulation does.
        if (ended && !(edge && AlwaysReady(fd))) rearm_.push_back(fd);
      } else if (cqe->res == -EBADF) {
        // Closed without Remove (a caller error, see backend.h): say so once
        // and stop polling it.
        Emit(fd, *slot, di::Normalize(kError, slot->interest), out);
      } else if (ended) {
        rearm_.push_back(fd);  // e.g. -ECANCELED by the kernel, -ENOMEM
      }
    }
    io_uring_cq_advance(&ring_, seen);
  }

  struct io_uring ring_ = {};
  bool ring_initialized_ = false;
  uint64_t round_ = 0;
  std::vector<Slot> slots_;       // indexed by fd
  std::vector<int> rearm_;        // multishot ended, re-arm at next Wait
  std::vector<int> recheck_fds_;  // level-triggered fds reported last Wait
  std::vector<struct pollfd> pollfds_;  // scratch for the re-check
  // Level-triggered completions of this Wait, to confirm with poll(2).
  std::vector<struct pollfd> verify_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateIoUringBackend(
    const BackendOptions& options) {
  return IoUringBackend::Create(options);
}

}  // namespace eventide
