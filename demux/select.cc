// Copyright 2026 The Eventide Authors.
//
// select(2) notes:
//  - fd_set is a fixed bitmap of FD_SETSIZE (1024) bits; FD_SET on a larger
//    fd writes past it (undefined behaviour, a classic stack smash). Add
//    refuses such fds with OutOfRange.
//  - Each Wait copies the two master sets (the kernel overwrites its
//    arguments) and scans 0..max fd: O(highest fd) per call.
//  - pselect takes a timespec (ns); with a NULL mask it is select with a
//    finer timeout that the kernel does not write back.
//  - select has no hang-up or error bit: the kernel folds POLLHUP into
//    "readable" and POLLERR into both "readable" and "writable". So the fd is
//    reported with its interest bits, as the contract asks, but never with
//    kError/kHangup (capabilities().reports_error_and_hangup == false).
//  - A registered fd closed without Remove makes the whole call fail with
//    EBADF. Rather than failing every Wait, we find the closed fds (fcntl)
//    and report them as kError, as poll does with POLLNVAL.
//  - Nothing in the kernel outlives a call: fork-safe.

#include "demux/select.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/select.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "demux/internal/backend_util.h"

namespace eventide {
namespace {

namespace di = demux_internal;

constexpr char kName[] = "select";

class SelectBackend final : public Backend {
 public:
  SelectBackend() {
    FD_ZERO(&read_set_);
    FD_ZERO(&write_set_);
  }

  absl::string_view name() const override { return kName; }

  BackendCapabilities capabilities() const override {
    BackendCapabilities caps;
    caps.edge_triggered = false;
    caps.reports_once = false;
    caps.max_fd = FD_SETSIZE - 1;
    caps.needs_reinit_after_fork = false;
    caps.timeout_resolution = absl::Nanoseconds(1);
    caps.scalable = false;
    caps.reports_error_and_hangup = false;
    return caps;
  }

  absl::Status Add(int fd, uint32_t interest) override {
    if (absl::Status s = di::CheckAdd(
            fd, interest, /*edge_supported=*/false,
            /*max_fd=*/FD_SETSIZE - 1, [this](int f) { return Registered(f); },
            kName);
        !s.ok()) {
      return s;
    }
    interest_[fd] = kRegistered;
    Set(fd, interest);
    return absl::OkStatus();
  }

  absl::Status Modify(int fd, uint32_t interest) override {
    if (absl::Status s =
            di::ValidateInterest(interest, false, kName, "Modify", fd);
        !s.ok()) {
      return s;
    }
    if (!Registered(fd)) return di::NotRegistered(kName, "Modify", fd);
    Set(fd, interest);
    return absl::OkStatus();
  }

  absl::Status Remove(int fd) override {
    if (!Registered(fd)) return di::NotRegistered(kName, "Remove", fd);
    Set(fd, 0);
    interest_[fd] = 0;
    return absl::OkStatus();
  }

  absl::Status Wait(absl::Duration timeout,
                    std::vector<ReadyEvent>* out) override {
    out->clear();
    while (max_fd_ >= 0 && !FD_ISSET(max_fd_, &read_set_) &&
           !FD_ISSET(max_fd_, &write_set_)) {
      --max_fd_;  // lowered lazily after Remove/Modify
    }
    fd_set readable = read_set_;
    fd_set writable = write_set_;
    struct timespec ts;
    const bool finite = di::TimeoutTimespec(timeout, &ts);
    int n = pselect(max_fd_ + 1, &readable, &writable, nullptr,
                    finite ? &ts : nullptr, nullptr);
    if (n == -1) {
      if (errno == EINTR) return absl::OkStatus();
      if (errno != EBADF) return di::ErrnoError(errno, kName, "pselect");
      // A registered fd was closed (caller error): report the closed ones
      // as kError and poll the rest without blocking.
      fd_set closed;
      FD_ZERO(&closed);
      FindClosedFds(&closed);
      readable = read_set_;
      writable = write_set_;
      for (int fd = 0; fd <= max_fd_; ++fd) {
        if (FD_ISSET(fd, &closed)) {
          FD_CLR(fd, &readable);
          FD_CLR(fd, &writable);
          out->push_back(
              ReadyEvent{fd, di::ReadWriteBits(interest_[fd]) | kError});
        }
      }
      struct timespec zero = {0, 0};
      n = pselect(max_fd_ + 1, &readable, &writable, nullptr, &zero, nullptr);
      if (n == -1) {
        if (errno == EINTR || errno == EBADF) return absl::OkStatus();
        return di::ErrnoError(errno, kName, "pselect");
      }
    }
    for (int fd = 0; n > 0 && fd <= max_fd_; ++fd) {
      uint32_t events = 0;
      if (FD_ISSET(fd, &readable)) {
        events |= kReadable;
        --n;
      }
      if (FD_ISSET(fd, &writable)) {
        events |= kWritable;
        --n;
      }
      if (events != 0) out->push_back(ReadyEvent{fd, events});
    }
    return absl::OkStatus();
  }

 private:
  // interest_[fd] holds the interest bits plus this marker.
  static constexpr uint32_t kRegistered = 1u << 31;

  bool Registered(int fd) const {
    return fd >= 0 && fd < FD_SETSIZE && (interest_[fd] & kRegistered);
  }

  void Set(int fd, uint32_t interest) {
    interest_[fd] = kRegistered | interest;
    if (interest & kReadable) {
      FD_SET(fd, &read_set_);
    } else {
      FD_CLR(fd, &read_set_);
    }
    if (interest & kWritable) {
      FD_SET(fd, &write_set_);
    } else {
      FD_CLR(fd, &write_set_);
    }
    if (di::ReadWriteBits(interest) != 0) max_fd_ = std::max(max_fd_, fd);
  }

  void FindClosedFds(fd_set* closed) {
    for (int fd = 0; fd <= max_fd_; ++fd) {
      if (di::ReadWriteBits(interest_[fd]) != 0 && fcntl(fd, F_GETFD) == -1 &&
          errno == EBADF) {
        FD_SET(fd, closed);
      }
    }
  }

  fd_set read_set_;
  fd_set write_set_;
  int max_fd_ = -1;  // >= the highest fd in either set
  uint32_t interest_[FD_SETSIZE] = {};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateSelectBackend(
    const BackendOptions& /*options*/) {
  return std::unique_ptr<Backend>(std::make_unique<SelectBackend>());
}

}  // namespace eventide
