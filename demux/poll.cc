// Copyright 2026 The Eventide Authors.
//
// poll(2) notes:
//  - Every Wait hands the whole pollfd array to the kernel, which polls each
//    fd: O(registered) per call, fine up to a few thousand fds.
//  - We call ppoll for its timespec timeout (ns instead of ms); with a NULL
//    signal mask it is poll with a finer timeout. Zero and infinite waits
//    use poll itself: the same meaning, without the timespec.
//  - POLLERR, POLLHUP and POLLNVAL are reported even when not requested.
//    POLLNVAL means the fd was closed while registered (a caller error); it is
//    reported as kError until Remove.
//  - POLLRDHUP (Linux 2.6.17) is requested with POLLIN so a peer's half-close
//    shows as kHangup like on epoll.
//  - An fd with interest 0 is left out of the array: the kernel would still
//    report POLLHUP/POLLERR for it, level-triggered.
//  - Nothing in the kernel outlives a call, so a forked child may keep using
//    the backend it inherited.

#include "demux/poll.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "demux/internal/backend_util.h"

namespace eventide {
namespace {

namespace di = demux_internal;

constexpr char kName[] = "poll";

class PollBackend final : public Backend {
 public:
  PollBackend() = default;

  absl::string_view name() const override { return kName; }

  BackendCapabilities capabilities() const override {
    BackendCapabilities caps;
    caps.edge_triggered = false;
    caps.reports_once = false;
    caps.max_fd = -1;
    caps.needs_reinit_after_fork = false;
    caps.timeout_resolution = absl::Nanoseconds(1);
    caps.scalable = false;
    caps.reports_error_and_hangup = true;
    return caps;
  }

  absl::Status Add(int fd, uint32_t interest) override {
    if (absl::Status s = di::CheckAdd(
            fd, interest, /*edge_supported=*/false, /*max_fd=*/-1,
            [this](int f) { return Find(f) != nullptr; }, kName);
        !s.ok()) {
      return s;
    }
    Slot& slot = di::GrowFor(slots_, fd);
    slot.registered = true;
    slot.interest = interest;
    slot.index = -1;
    Sync(fd, slot);
    return absl::OkStatus();
  }

  absl::Status Modify(int fd, uint32_t interest) override {
    if (absl::Status s =
            di::ValidateInterest(interest, false, kName, "Modify", fd);
        !s.ok()) {
      return s;
    }
    Slot* slot = Find(fd);
    if (slot == nullptr) return di::NotRegistered(kName, "Modify", fd);
    slot->interest = interest;
    Sync(fd, *slot);
    return absl::OkStatus();
  }

  absl::Status Remove(int fd) override {
    Slot* slot = Find(fd);
    if (slot == nullptr) return di::NotRegistered(kName, "Remove", fd);
    slot->interest = 0;
    Sync(fd, *slot);
    slot->registered = false;
    return absl::OkStatus();
  }

  absl::Status Wait(absl::Duration timeout,
                    std::vector<ReadyEvent>* out) override {
    out->clear();
    int n;
    // ppoll only for a finite wait that may block, where its nanoseconds
    // matter: for a poll (zero) or an infinite wait, poll(2) means the same
    // and skips copying in a timespec (~60 ns less per call here).
    const bool finite = di::IsFiniteBlockingWait(timeout);
    if (finite) {
      struct timespec ts;
      di::TimeoutTimespec(timeout, &ts);
      n = ppoll(pollfds_.data(), pollfds_.size(), &ts, nullptr);
    } else {
      n = poll(pollfds_.data(), pollfds_.size(),
               di::TimeoutMillisRoundedUp(timeout));
    }
    if (n == -1) {
      if (errno == EINTR) return absl::OkStatus();
      return di::ErrnoError(errno, kName, finite ? "ppoll" : "poll");
    }
    for (size_t i = 0; n > 0 && i < pollfds_.size(); ++i) {
      const struct pollfd& p = pollfds_[i];
      if (p.revents == 0) continue;
      --n;
      const uint32_t events = di::Normalize(
          di::EventsFromPollMask(static_cast<uint16_t>(p.revents)),
          slots_[p.fd].interest);
      if (events != 0) out->push_back(ReadyEvent{p.fd, events});
    }
    return absl::OkStatus();
  }

 private:
  struct Slot {
    bool registered = false;
    uint32_t interest = 0;
    int index = -1;  // position in pollfds_, -1 = not in it (interest 0)
  };

  Slot* Find(int fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
    Slot& slot = slots_[fd];
    return slot.registered ? &slot : nullptr;
  }

  // Makes pollfds_ reflect slot.interest: in the array with the right mask,
  // or out of it (swap with the last entry) for interest 0.
  void Sync(int fd, Slot& slot) {
    const short mask = static_cast<short>(di::PollMaskFor(slot.interest));
    if (mask != 0) {
      if (slot.index == -1) {
        slot.index = static_cast<int>(pollfds_.size());
        pollfds_.push_back(pollfd{fd, mask, 0});
      } else {
        pollfds_[slot.index].events = mask;
      }
    } else if (slot.index != -1) {
      const int last_fd = pollfds_.back().fd;
      pollfds_[slot.index] = pollfds_.back();
      slots_[last_fd].index = slot.index;
      pollfds_.pop_back();
      slot.index = -1;
    }
  }

  std::vector<Slot> slots_;  // indexed by fd
  std::vector<struct pollfd> pollfds_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreatePollBackend(
    const BackendOptions& /*options*/) {
  return std::unique_ptr<Backend>(std::make_unique<PollBackend>());
}

}  // namespace eventide
