// Kernel interface notes for the wake-up fd.
//
// eventfd(2) (Linux 2.6.22; the flags argument since 2.6.27):
//   - write(2) takes exactly 8 bytes and adds the value to a 64-bit counter;
//     it fails with EAGAIN on a non-blocking fd only when the counter would
//     exceed 0xfffffffffffffffe, which for a wake-up means "already pending".
//   - read(2) of 8 bytes returns the counter and resets it to zero (without
//     EFD_SEMAPHORE), so one read clears any number of notifications.
//   - It is one fd for both ends, and one fd to watch.
// pipe2(2):
//   - A 1-byte write is atomic; EAGAIN means the pipe buffer (64 KiB by
//     default) is full, which again means the reader has wake-ups pending.
//   - read(2) returns at most what was asked, so Clear() loops until EAGAIN;
//     a short read means "probably empty" but another writer may have added
//     bytes meanwhile, and one extra read costs less than a missed byte that
//     would leave the fd readable forever.
//   - A write end whose read end is closed raises SIGPIPE; both ends live and
//     die together in this class, so that cannot happen.
#include "mtqueue/notifier.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

#if defined(__has_include)
#if __has_include(<sys/eventfd.h>)
#include <sys/eventfd.h>
#define EVENTIDE_HAVE_EVENTFD 1
#endif
#endif

namespace eventide {
namespace {

absl::Status FdError(int err, const char* what, int fd) {
  return absl::ErrnoToStatus(err, absl::StrCat(what, " on fd ", fd));
}

}  // namespace

const char* NotifierKindName(NotifierKind kind) {
  switch (kind) {
    case NotifierKind::kAuto:
      return "auto";
    case NotifierKind::kEventFd:
      return "eventfd";
    case NotifierKind::kPipe:
      return "pipe";
  }
  return "unknown";
}

absl::StatusOr<FdNotifier> FdNotifier::Create(NotifierKind kind) {
  if (kind != NotifierKind::kPipe) {
#ifdef EVENTIDE_HAVE_EVENTFD
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd >= 0) return FdNotifier(NotifierKind::kEventFd, fd, fd);
    const int err = errno;
    // ENOSYS: kernel without eventfd; EINVAL: kernel older than the flags
    // argument (2.6.27). Only those justify the pipe fallback.
    if (kind == NotifierKind::kEventFd || (err != ENOSYS && err != EINVAL)) {
      return absl::ErrnoToStatus(err, "eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC)");
    }
#else
    if (kind == NotifierKind::kEventFd) {
      return absl::UnimplementedError("eventfd is not available on this build");
    }
#endif
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "pipe2(O_NONBLOCK|O_CLOEXEC)");
  }
  return FdNotifier(NotifierKind::kPipe, fds[0], fds[1]);
}

FdNotifier::FdNotifier(FdNotifier&& other) noexcept
    : kind_(other.kind_),
      read_fd_(std::exchange(other.read_fd_, -1)),
      write_fd_(std::exchange(other.write_fd_, -1)) {}

FdNotifier& FdNotifier::operator=(FdNotifier&& other) noexcept {
  if (this != &other) {
    CloseFds();
    kind_ = other.kind_;
    read_fd_ = std::exchange(other.read_fd_, -1);
    write_fd_ = std::exchange(other.write_fd_, -1);
  }
  return *this;
}

FdNotifier::~FdNotifier() { CloseFds(); }

void FdNotifier::CloseFds() {
  // close(2) errors are not retried: on Linux the fd is released even when
  // close reports EINTR, and retrying could close an fd another thread just
  // received.
  if (write_fd_ >= 0 && write_fd_ != read_fd_) close(write_fd_);
  if (read_fd_ >= 0) close(read_fd_);
  read_fd_ = -1;
  write_fd_ = -1;
}

absl::Status FdNotifier::Notify() {
  ssize_t n;
  if (kind_ == NotifierKind::kEventFd) {
    const uint64_t one = 1;
    do {
      n = write(write_fd_, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
  } else {
    const char byte = 1;
    do {
      n = write(write_fd_, &byte, 1);
    } while (n < 0 && errno == EINTR);
  }
  if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
    return absl::OkStatus();
  }
  return FdError(errno, "notify write", write_fd_);
}

absl::Status FdNotifier::Clear() {
  if (kind_ == NotifierKind::kEventFd) {
    uint64_t value;
    ssize_t n;
    do {
      n = read(read_fd_, &value, sizeof(value));
    } while (n < 0 && errno == EINTR);
    if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::OkStatus();
    }
    return FdError(errno, "eventfd read", read_fd_);
  }
  // Notifications coalesce upstream, so the pipe rarely holds more than a
  // few bytes; a small buffer empties it in one read in practice.
  char buf[256];
  for (;;) {
    const ssize_t n = read(read_fd_, buf, sizeof(buf));
    if (n > 0) continue;
    if (n == 0) {
      // EOF cannot happen while we own the write end.
      return absl::InternalError(
          absl::StrCat("unexpected EOF on notify pipe fd ", read_fd_));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();
    return FdError(errno, "notify pipe read", read_fd_);
  }
}

}  // namespace eventide
