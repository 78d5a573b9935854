// FdNotifier: a one-bit "wake up" signal carried by a file descriptor.
//
// A consumer watches fd() for readability with any event loop (ours,
// libevent, a plain poll(2)); producers on any thread call Notify(). The
// signal is level-like: after any number of Notify() calls the fd is readable
// until Clear() empties it. Two implementations:
//   - eventfd(2): one fd, a 64-bit counter; Notify() adds 1, Clear() reads
//     the counter back to zero.
//   - a pipe: Notify() writes one byte into the write end, Clear() reads the
//     read end until it is empty. Used where eventfd is missing, or when a
//     caller (a test, a benchmark) forces it.
// Both fds are O_NONBLOCK | O_CLOEXEC.
//
// FdNotifier carries no payload and does not count wake-ups: it is the
// notification half of NotifyQueue (mtqueue/notify_queue.h), usable alone.
//
// Thread safety: Notify() may be called from any thread, concurrently with
// itself and with Clear(). Clear() is meant for the one consumer thread.
// Construction, moves and destruction must not race with any other call.
//
// Example:
//   absl::StatusOr<FdNotifier> n = FdNotifier::Create();
//   if (!n.ok()) return n.status();
//   // producer thread:  (void)n->Notify();
//   // consumer thread:  poll n->fd() for POLLIN, then n->Clear().
#ifndef MTQUEUE_NOTIFIER_H_
#define MTQUEUE_NOTIFIER_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace eventide {

// Which kernel object carries the wake-up.
enum class NotifierKind {
  kAuto,     // eventfd when the kernel/libc has it, else a pipe
  kEventFd,  // eventfd only; fails with Unimplemented where it is missing
  kPipe,     // always a pipe
};

// "auto", "eventfd" or "pipe", for messages and benchmark labels.
const char* NotifierKindName(NotifierKind kind);

class FdNotifier {
 public:
  // Creates the fd(s). kAuto falls back to a pipe only when eventfd is
  // unsupported (ENOSYS/EINVAL or not compiled in); resource errors such as
  // EMFILE are returned as they are, since a pipe would fail the same way.
  static absl::StatusOr<FdNotifier> Create(
      NotifierKind kind = NotifierKind::kAuto);

  FdNotifier(FdNotifier&& other) noexcept;
  FdNotifier& operator=(FdNotifier&& other) noexcept;
  FdNotifier(const FdNotifier&) = delete;
  FdNotifier& operator=(const FdNotifier&) = delete;
  ~FdNotifier();  // closes the fd(s)

  // The fd to watch for readability. Owned by this object: do not close it.
  int fd() const { return read_fd_; }

  // kEventFd or kPipe: what Create() actually made (never kAuto).
  NotifierKind kind() const { return kind_; }

  // Makes fd() readable: exactly one write(2). EAGAIN (pipe full, eventfd
  // counter saturated) means a wake-up is already pending, so it is success.
  // EINTR is retried. Any other error is returned with errno text and fd.
  absl::Status Notify();

  // Consumes every pending wake-up so fd() is no longer readable (unless a
  // Notify() lands afterwards). Never blocks.
  absl::Status Clear();

 private:
  FdNotifier(NotifierKind kind, int read_fd, int write_fd)
      : kind_(kind), read_fd_(read_fd), write_fd_(write_fd) {}
  void CloseFds();

  NotifierKind kind_ = NotifierKind::kPipe;
  int read_fd_ = -1;
  int write_fd_ = -1;  // == read_fd_ for eventfd
};

}  // namespace eventide

#endif  // MTQUEUE_NOTIFIER_H_
