// Connection: a buffered, non-blocking stream socket on an EventLoop (the
// bufferevent of the stream layer), and ConnectAsync, a client-side connect
// with a timeout.
//
// A Connection owns its fd and two Buffers (buffer.h). The loop reads into
// input() and calls on_read; the user appends to output() (Write) and the
// loop sends it when the socket can take it.
//
//  - Read watermarks: on_read runs once input holds read_low_watermark
//    bytes; reading stops while input holds read_high_watermark bytes (the
//    user has not consumed them) and resumes when it falls below.
//  - Back-pressure: while output holds more than output_high_watermark bytes
//    (the peer does not read what we send) the connection stops reading, so
//    a peer that only writes cannot make our buffers grow; reading resumes
//    when output falls to half of it.
//  - on_drained runs when a flush brings output down to write_low_watermark
//    (0: empty) from above it.
//  - Half-close: Shutdown() sends everything queued, then shutdown(SHUT_WR);
//    reading goes on until the peer closes. When the peer closes its side
//    first (EOF), on_peer_eof runs; without one, the connection flushes its
//    output and closes (CloseReason::kPeerClosed).
//  - Idle timeout: closed with kIdleTimeout when no byte was read or written
//    for idle_timeout (one loop timer, rescheduled lazily: activity only
//    records the time).
//  - on_close runs exactly once, whatever the cause: Close(), a flush-and-
//    close finishing, the peer closing, a reset or other socket error, or the
//    idle timeout. It is not run when the loop is destroyed with the
//    connection still open (the fd is just closed).
//
// When writes go out: Write() (or Flush() after appending to output()
// directly) from inside one of this connection's callbacks sends once that
// callback returns; from anywhere else, after the loop's current batch of
// callbacks (EventLoop::Defer). Either way many writes make one sendmsg.
// With ConnectionOptions::send_after_batch, writes from this connection's
// callbacks wait for the end of the batch too.
//
// Lifetime: create with Adopt(); the result is a std::shared_ptr. While open,
// the loop holds a reference (in the fd watcher), so the user need not keep
// one; after the close the last loop reference is dropped once the current
// batch of callbacks has run, so a callback may close its own (or any)
// connection and go on using it until it returns. After on_close the
// callbacks are destroyed (breaking cycles through captures). Do not capture
// a connection's own shared_ptr in its callbacks: they receive Connection&.
// Destroying the loop with connections open closes their fds without
// callbacks.
//
// Threads: every method must be called on the loop's thread. To hand a
// socket accepted elsewhere to a loop, Post() the UniqueFd and Adopt() it
// there (see Listener in listener.h).
//
// Example (an echo server's connection):
//   eventide::Connection::Callbacks cb;
//   cb.on_read = [](eventide::Connection& c, eventide::Buffer& in) {
//     (void)c.Write(std::move(in));           // moves the blocks, no copy
//   };
//   cb.on_close = [](eventide::Connection& c, eventide::CloseReason why,
//                    const absl::Status& error) { /* forget c */ };
//   absl::StatusOr<std::shared_ptr<eventide::Connection>> conn =
//       eventide::Connection::Adopt(loop, std::move(fd), {}, std::move(cb));
#ifndef EVENTIDE_LOOP_CONNECTION_H_
#define EVENTIDE_LOOP_CONNECTION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clock/mono_time.h"
#include "loop/buffer.h"
#include "loop/event_loop.h"
#include "loop/socket.h"

namespace eventide {

enum class CloseReason {
  kLocal,        // Close(), or CloseAfterFlush() completed
  kPeerClosed,   // the peer closed (EOF) and our side was done too
  kReset,        // ECONNRESET / EPIPE: the peer is gone abruptly
  kError,        // any other socket error (status says which)
  kIdleTimeout,  // nothing read or written for idle_timeout
};
absl::string_view CloseReasonName(CloseReason reason);

struct ConnectionOptions {
  // on_read runs when input holds at least this many bytes (at least 1).
  // When the peer finishes sending, any fewer leftover bytes are delivered
  // to on_read once anyway.
  size_t read_low_watermark = 1;
  // Stop reading from the socket while input holds this many bytes; reads
  // are sized not to go past it. 0: no limit.
  size_t read_high_watermark = 4 << 20;
  // Back-pressure: stop reading while output holds more than this; resume at
  // half. 0: never.
  size_t output_high_watermark = 4 << 20;
  // on_drained runs when a flush brings output down to this (from above).
  size_t write_low_watermark = 0;
  // Hard cap on output: Write() past it fails with ResourceExhausted.
  size_t max_output_size = Buffer::kUnlimited;
  // Most bytes read per readiness event, so one busy connection cannot
  // starve the others of a loop.
  size_t max_read_per_event = 256 * 1024;
  // Close with kIdleTimeout after this long without a byte read or written.
  absl::Duration idle_timeout = absl::InfiniteDuration();
  // TCP_NODELAY (no effect on non-TCP sockets). Writes are already batched
  // per callback, so Nagle's delay only adds latency.
  bool tcp_no_delay = true;
  // Send what a readiness callback queued after the loop's whole batch of
  // callbacks (EventLoop::Defer) instead of as soon as this connection's
  // callback returns. A server with many busy connections per loop then
  // answers all of one wake-up's requests in one burst, at the end, so each
  // peer's own loop finds several replies ready per wait instead of being
  // woken for each (Redis sends its replies before sleeping for the same
  // reason). Costs one deferred task per busy connection per iteration and
  // adds the rest of the batch to each reply's latency. Shutdown,
  // CloseAfterFlush and a blocked socket (waiting for writable) behave as
  // without it. Measure before turning it on: apps/cached saw its clients'
  // waits per request drop by a third and its throughput stay the same
  // (apps/cached/README.md).
  bool send_after_batch = false;
  Priority priority = Priority::kNormal;
};

struct ConnectionStats {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t read_calls = 0;   // readv system calls
  uint64_t write_calls = 0;  // sendmsg system calls
  // Largest sizes the buffers reached.
  size_t peak_input = 0;
  size_t peak_output = 0;
  // Times reading stopped because of back-pressure (output_high_watermark).
  uint64_t backpressure_pauses = 0;
};

class Connection : public std::enable_shared_from_this<Connection> {
  // Only Adopt() can make one (see the public constructor).
  struct PassKey {
    explicit PassKey() = default;
  };

 public:
  using ReadCallback = absl::AnyInvocable<void(Connection&, Buffer& input)>;
  using EventCallback = absl::AnyInvocable<void(Connection&)>;
  using CloseCallback = absl::AnyInvocable<void(Connection&, CloseReason reason,
                                                const absl::Status& error)>;

  struct Callbacks {
    ReadCallback on_read;       // input holds >= read_low_watermark bytes
    EventCallback on_drained;   // output fell to write_low_watermark
    EventCallback on_peer_eof;  // the peer will send nothing more
    CloseCallback on_close;     // exactly once; error is OK for kLocal and
                                // kPeerClosed
  };

  // Takes a connected stream socket (TCP or AF_UNIX) and starts reading.
  // Loop thread only. The fd is made non-blocking. On failure (e.g. the
  // backend refuses the fd) the fd is closed and the error returned.
  static absl::StatusOr<std::shared_ptr<Connection>> Adopt(
      EventLoop* loop, UniqueFd fd, ConnectionOptions options = {},
      Callbacks callbacks = {});

  // Use Adopt(); public only so that std::make_shared can call it.
  Connection(PassKey, EventLoop* loop, UniqueFd fd, ConnectionOptions options,
             Callbacks callbacks);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  EventLoop* loop() const { return loop_; }
  // -1 once closed.
  int fd() const { return fd_.get(); }
  // Not yet closed (a Shutdown() or CloseAfterFlush() in progress is open).
  bool open() const { return !closed_; }
  // The peer has closed its sending side.
  bool peer_eof() const { return peer_eof_; }
  // Our sending side is shut down (Shutdown() completed).
  bool write_shut() const { return write_shut_; }
  // Reading is on: not paused by the user, a watermark or back-pressure.
  bool reading() const { return ShouldRead(); }
  // Reading is stopped because output is over output_high_watermark.
  bool backpressured() const { return backpressure_; }
  const ConnectionOptions& options() const { return options_; }
  const ConnectionStats& stats() const { return stats_; }
  absl::StatusOr<SocketAddress> peer_address() const;
  absl::StatusOr<SocketAddress> local_address() const;

  // Bytes received and not yet consumed. Consuming outside on_read: call
  // ResumeReading() afterwards if a high watermark may have stopped reading.
  Buffer& input() { return input_; }
  // Bytes queued for sending. Appending directly: call Flush() afterwards.
  Buffer& output() { return output_; }

  // Queue bytes for sending (see "When writes go out" above).
  // FailedPrecondition once closed or after Shutdown()/CloseAfterFlush();
  // ResourceExhausted past max_output_size.
  absl::Status Write(absl::string_view data);
  absl::Status Write(const char* data) {
    return Write(absl::string_view(data));
  }
  absl::Status Write(std::string&& data);  // adopts large strings
  absl::Status Write(Buffer&& data);       // moves the blocks
  void Flush();

  // User pause of reading (independent of watermarks and back-pressure).
  void PauseReading();
  void ResumeReading();

  // Half-close: no more writes; once output is sent, shutdown(SHUT_WR).
  // Reading goes on; on_close runs when the peer closes too (kPeerClosed).
  void Shutdown();
  // Stop reading, send output, then close (kLocal). A peer that never reads
  // keeps it open until the idle timeout, if any.
  void CloseAfterFlush();
  // Close now, discarding output (kLocal). No-op once closed.
  void Close();

  // Changes the idle timeout; the idle period restarts now.
  void set_idle_timeout(absl::Duration timeout);
  // Replaces the callbacks (a protocol switch, say). From inside one of this
  // connection's own callbacks the change takes effect when that callback
  // returns: replacing the running closure would destroy it, and what it
  // captured, while it still runs.
  void set_callbacks(Callbacks callbacks);

 private:
  // Holds the last loop reference to a closed connection until the batch is
  // over; clears the callbacks when it goes (run or destroyed with the loop).
  struct KeepAlive;

  bool ShouldRead() const;
  uint32_t WantedInterest() const;
  void UpdateInterest();
  void UpdateBackpressure();
  void RequestFlush();
  void ScheduleDeferredFlush();
  void OnIo(const IoEvent& event);
  void OnIdleTimer();
  void HandleRead();
  void HandlePeerEof();
  void FlushNow();
  void FinishWriteSide();
  void Settle();
  void Teardown(CloseReason reason, absl::Status error);
  void RunCloseCallback();
  void NoteActivity() { last_activity_ = loop_->Now(); }
  void ArmIdleTimer();
  template <typename Fn>
  void RunUser(Fn&& fn) {
    ++callback_depth_;
    fn();
    if (--callback_depth_ == 0 && next_callbacks_) AdoptNextCallbacks();
  }
  void AdoptNextCallbacks();

  EventLoop* const loop_;
  UniqueFd fd_;
  ConnectionOptions options_;
  Callbacks callbacks_;
  // set_callbacks from inside a callback: adopted when it returns.
  std::optional<Callbacks> next_callbacks_;
  Buffer input_;
  Buffer output_;
  IoWatcher watcher_;
  Timer idle_timer_;
  MonoTime last_activity_;
  ConnectionStats stats_;

  int callback_depth_ = 0;
  bool closed_ = false;
  bool close_callback_pending_ = false;
  bool close_callback_ran_ = false;
  CloseReason close_reason_ = CloseReason::kLocal;
  absl::Status close_error_;
  bool peer_eof_ = false;
  bool user_paused_ = false;
  bool backpressure_ = false;
  bool want_writable_ = false;  // a send could not finish: wait for kWritable
  bool flushing_ = false;
  bool in_handler_ = false;  // in OnIo or the deferred flush: it settles
  bool flush_deferred_ = false;
  bool in_deferred_flush_ = false;  // Settle() may send now (send_after_batch)
  bool shutdown_requested_ = false;
  bool write_shut_ = false;
  bool close_after_flush_ = false;
  CloseReason close_after_flush_reason_ = CloseReason::kLocal;
};

// ------------------------------------------------------------ ConnectAsync --

using ConnectCallback = absl::AnyInvocable<void(absl::StatusOr<UniqueFd>)>;

// A connect in progress. Destroying it cancels the connect: the callback
// never runs and the socket is closed. Loop thread only.
class PendingConnect {
 public:
  struct State;
  explicit PendingConnect(std::shared_ptr<State> state);
  ~PendingConnect();
  PendingConnect(const PendingConnect&) = delete;
  PendingConnect& operator=(const PendingConnect&) = delete;
  // The callback has run (or is running).
  bool done() const;

 private:
  std::shared_ptr<State> state_;
};

// Starts a non-blocking TCP connect to `address` on `loop`. `cb` runs once on
// the loop thread, never inside this call: with the connected socket
// (non-blocking, TCP_NODELAY), or DeadlineExceeded after `timeout`, or the
// connect error (e.g. Unavailable for ECONNREFUSED). Then Adopt() the fd.
std::unique_ptr<PendingConnect> ConnectAsync(EventLoop* loop,
                                             const SocketAddress& address,
                                             absl::Duration timeout,
                                             ConnectCallback cb);

}  // namespace eventide

#endif  // EVENTIDE_LOOP_CONNECTION_H_
