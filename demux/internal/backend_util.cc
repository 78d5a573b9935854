// Copyright 2026 The Eventide Authors.

#include "demux/internal/backend_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace eventide {
namespace demux_internal {

absl::Status ErrnoError(int err, absl::string_view backend,
                        absl::string_view op, int fd) {
  absl::Status status = absl::ErrnoToStatus(
      err, absl::StrFormat("%s: %s(fd=%d)", backend, op, fd));
  // Abseil maps EBADF to FailedPrecondition; for an fd argument it is the
  // caller passing a bad value (backend.h promises InvalidArgument).
  if (err == EBADF) {
    return absl::InvalidArgumentError(status.message());
  }
  return status;
}

absl::Status ErrnoError(int err, absl::string_view backend,
                        absl::string_view op) {
  return absl::ErrnoToStatus(err, absl::StrCat(backend, ": ", op));
}

absl::Status CheckFdOpen(int fd, absl::string_view backend,
                         absl::string_view op) {
  if (fd < 0) return ErrnoError(EBADF, backend, op, fd);
  if (fcntl(fd, F_GETFD) == -1) return ErrnoError(errno, backend, op, fd);
  return absl::OkStatus();
}

absl::Status ValidateInterest(uint32_t interest, bool edge_supported,
                              absl::string_view backend, absl::string_view op,
                              int fd) {
  if (interest & ~kAllInterestBits) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s(fd=%d): unknown interest bits 0x%x", backend,
                        op, fd, interest & ~kAllInterestBits));
  }
  if ((interest & kEdgeTriggered) && !edge_supported) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s(fd=%d): kEdgeTriggered is not supported by this backend",
        backend, op, fd));
  }
  return absl::OkStatus();
}

absl::Status AlreadyRegistered(absl::string_view backend, int fd) {
  return absl::AlreadyExistsError(
      absl::StrFormat("%s: Add(fd=%d): fd is already registered", backend, fd));
}

absl::Status CheckAdd(int fd, uint32_t interest, bool edge_supported,
                      int max_fd, absl::FunctionRef<bool(int)> is_registered,
                      absl::string_view backend) {
  if (absl::Status s =
          ValidateInterest(interest, edge_supported, backend, "Add", fd);
      !s.ok()) {
    return s;
  }
  if (fd < 0) return ErrnoError(EBADF, backend, "Add", fd);
  if (max_fd >= 0 && fd > max_fd) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: Add(fd=%d): fd above %d, the highest this backend can watch; "
        "use poll or epoll",
        backend, fd, max_fd));
  }
  if (is_registered(fd)) return AlreadyRegistered(backend, fd);
  return CheckFdOpen(fd, backend, "Add");
}

absl::Status NotRegistered(absl::string_view backend, absl::string_view op,
                           int fd) {
  return absl::NotFoundError(
      absl::StrFormat("%s: %s(fd=%d): fd is not registered", backend, op, fd));
}

uint32_t PollMaskFor(uint32_t interest) {
  uint32_t mask = 0;
  if (interest & kReadable) mask |= POLLIN | POLLRDHUP;
  if (interest & kWritable) mask |= POLLOUT;
  return mask;
}

uint32_t EventsFromPollMask(uint32_t revents) {
  uint32_t events = 0;
  if (revents & (POLLIN | POLLPRI)) events |= kReadable;
  if (revents & POLLOUT) events |= kWritable;
  if (revents & (POLLERR | POLLNVAL)) events |= kError;
  if (revents & (POLLHUP | POLLRDHUP)) events |= kHangup;
  return events;
}

int TimeoutMillisRoundedUpSlow(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return -1;
  if (timeout <= absl::ZeroDuration()) return 0;
  if (timeout >= kMaxWait) return INT_MAX;
  return static_cast<int>(absl::Ceil(timeout, absl::Milliseconds(1)) /
                          absl::Milliseconds(1));
}

bool TimeoutTimespec(absl::Duration timeout, struct timespec* ts) {
  if (timeout == absl::InfiniteDuration()) return false;
  if (timeout < absl::ZeroDuration()) timeout = absl::ZeroDuration();
  if (timeout > kMaxWait) timeout = kMaxWait;
  *ts = absl::ToTimespec(timeout);
  return true;
}

}  // namespace demux_internal
}  // namespace eventide
