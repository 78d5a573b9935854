// Listener: accepts connections on a listening socket from an EventLoop and
// hands each accepted fd (a UniqueFd, non-blocking, close-on-exec) to a
// callback. What happens next is the caller's choice: Connection::Adopt() on
// the same loop, or Post() the fd to a worker loop and adopt it there (the
// accept-thread model).
//
//  - IPv4 and IPv6, SO_REUSEADDR, optional SO_REUSEPORT: with reuse_port
//    several loops (threads) can each own a Listener on the same port and the
//    kernel spreads connections among them.
//  - A bounded batch of accepts per readiness event (max_accepts_per_event),
//    so a flood of connections does not starve the loop's other work.
//  - Out of file descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM): accept()
//    fails without taking the connection off the queue, so a level-triggered
//    loop would wake at once, forever, at 100% CPU. The listener instead
//      kPause (default): stops watching the socket for out_of_fds_pause (a
//        loop timer) and tries again; pending clients wait in the backlog
//        and are served as soon as fds are free again;
//      kRejectWithReserveFd: holds one spare fd (/dev/null); when out of fds
//        it closes the spare, accepts and at once closes pending connections
//        (the clients see the connection closed instead of hanging), and
//        takes the spare back. If the spare cannot be taken back (another
//        thread or process took it) it falls back to pausing.
//  - Other transient accept errors (ECONNABORTED, EPROTO, EPERM and the
//    network errors accept(2) passes through) are skipped; an unexpected
//    error pauses accepting like EMFILE, so it cannot spin either.
//
// Threads: loop thread only, like the loop's watchers. The accept callback
// may destroy the Listener (nothing is touched after it returns).
//
// Example:
//   auto listener = eventide::Listener::Create(
//       loop, eventide::SocketAddress::Loopback4(0),
//       [&](eventide::UniqueFd fd, const eventide::SocketAddress& peer) {
//         (void)eventide::Connection::Adopt(loop, std::move(fd), {}, cbs);
//       });
//   if (!listener.ok()) return listener.status();
//   printf("listening on %s\n", (*listener)->address().ToString().c_str());
#ifndef EVENTIDE_LOOP_LISTENER_H_
#define EVENTIDE_LOOP_LISTENER_H_

#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loop/event_loop.h"
#include "loop/socket.h"

namespace eventide {

enum class OutOfFdsPolicy { kPause, kRejectWithReserveFd };

struct ListenerOptions {
  ListenSocketOptions socket;
  // accept() calls per readiness event at most.
  int max_accepts_per_event = 64;
  OutOfFdsPolicy out_of_fds = OutOfFdsPolicy::kPause;
  // How long accepting pauses when out of fds (or after an unexpected error).
  absl::Duration out_of_fds_pause = absl::Milliseconds(100);
  Priority priority = Priority::kNormal;
};

struct ListenerStats {
  uint64_t accept_calls = 0;      // accept4 system calls, successful or not
  uint64_t accepted = 0;          // fds handed to the callback
  uint64_t rejected = 0;          // accepted and closed by the reserve-fd trick
  uint64_t out_of_fds = 0;        // EMFILE/ENFILE/ENOBUFS/ENOMEM seen
  uint64_t pauses = 0;            // times accepting paused for a while
  uint64_t transient_errors = 0;  // skipped per-connection errors
};

class Listener {
 public:
  using AcceptCallback =
      absl::AnyInvocable<void(UniqueFd fd, const SocketAddress& peer)>;
  // Told about accept errors that made the listener pause or reject (for
  // logging); optional. It must not destroy the listener.
  using ErrorCallback = absl::AnyInvocable<void(const absl::Status& error)>;

  // Binds `address` (port 0: the kernel picks; see address()) and starts
  // accepting on `loop`.
  static absl::StatusOr<std::unique_ptr<Listener>> Create(
      EventLoop* loop, const SocketAddress& address, AcceptCallback on_accept,
      ListenerOptions options = {});
  // Takes an already listening socket (made non-blocking here).
  static absl::StatusOr<std::unique_ptr<Listener>> Adopt(
      EventLoop* loop, UniqueFd listening, AcceptCallback on_accept,
      ListenerOptions options = {});

  // Stops accepting and closes the socket (pending clients are refused).
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The bound address, with the port the kernel picked.
  const SocketAddress& address() const { return address_; }
  uint16_t port() const { return address_.port(); }
  int fd() const { return fd_.get(); }
  const ListenerStats& stats() const { return stats_; }
  // Accepting is stopped for a while (out of fds) or by Pause().
  bool accepting() const { return watcher_.active(); }

  // Stops accepting until Resume(); clients queue in the backlog.
  void Pause();
  absl::Status Resume();
  void set_error_callback(ErrorCallback cb) { on_error_ = std::move(cb); }

 private:
  Listener(EventLoop* loop, UniqueFd fd, SocketAddress address,
           AcceptCallback on_accept, ListenerOptions options);
  absl::Status Start();
  void OnReadable();
  void HandleOutOfFds(int error);
  void PauseFor(absl::Duration pause);
  void Report(int error);

  EventLoop* const loop_;
  UniqueFd fd_;
  SocketAddress address_;
  AcceptCallback on_accept_;
  ErrorCallback on_error_;
  ListenerOptions options_;
  UniqueFd reserve_;
  IoWatcher watcher_;
  Timer resume_timer_;
  bool user_paused_ = false;
  ListenerStats stats_;
  // Cleared by the destructor; a callback that destroys the listener leaves
  // the accept loop a way to notice.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace eventide

#endif  // EVENTIDE_LOOP_LISTENER_H_
