#include "loop/connection.h"

#include <errno.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"

namespace eventide {

absl::string_view CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kLocal:
      return "local";
    case CloseReason::kPeerClosed:
      return "peer-closed";
    case CloseReason::kReset:
      return "reset";
    case CloseReason::kError:
      return "error";
    case CloseReason::kIdleTimeout:
      return "idle-timeout";
  }
  return "unknown";
}

namespace {

// Debug builds check the threading contract (every call on the loop's
// thread), like muduo's assertInLoopThread.
void CheckLoopThread(const EventLoop* loop, const char* what) {
#ifndef NDEBUG
  if (!loop->IsInLoopThread()) {
    std::fprintf(stderr,
                 "eventide::Connection::%s called off the loop's thread\n",
                 what);
    std::abort();
  }
#else
  (void)loop;
  (void)what;
#endif
}

CloseReason ReasonForErrno(int error) {
  return (error == ECONNRESET || error == EPIPE) ? CloseReason::kReset
                                                 : CloseReason::kError;
}

// Rounds of "on_drained wrote more and the socket took it all" before the
// rest waits for the next writable event: a producer refilling from
// on_drained must not keep one connection in the loop forever.
constexpr int kMaxFlushRounds = 16;

}  // namespace

struct Connection::KeepAlive {
  std::shared_ptr<Connection> connection;

  explicit KeepAlive(std::shared_ptr<Connection> c)
      : connection(std::move(c)) {}
  KeepAlive(KeepAlive&&) noexcept = default;
  KeepAlive& operator=(KeepAlive&&) noexcept = default;
  ~KeepAlive() {
    // Whether the loop ran this task or drops it unrun (destroyed loop), the
    // user's callbacks go now: they may capture things that capture us.
    if (connection) {
      connection->callbacks_ = Callbacks();
      connection->next_callbacks_.reset();
    }
  }
  void operator()() {}
};

// ----------------------------------------------------------- construction --

void Connection::set_callbacks(Callbacks callbacks) {
  if (callback_depth_ > 0) {
    next_callbacks_ = std::move(callbacks);
    return;
  }
  callbacks_ = std::move(callbacks);
}

void Connection::AdoptNextCallbacks() {
  callbacks_ = std::move(*next_callbacks_);
  next_callbacks_.reset();
}

absl::StatusOr<std::shared_ptr<Connection>> Connection::Adopt(
    EventLoop* loop, UniqueFd fd, ConnectionOptions options,
    Callbacks callbacks) {
  if (loop == nullptr) return absl::InvalidArgumentError("Adopt: null loop");
  if (!fd.valid()) return absl::InvalidArgumentError("Adopt: invalid fd");
  CheckLoopThread(loop, "Adopt");
  absl::Status status = SetNonBlocking(fd.get(), true);
  if (!status.ok()) return status;
  if (options.tcp_no_delay) {
    status = SetNoDelay(fd.get(), true);
    if (!status.ok()) return status;
  }
  if (options.read_low_watermark == 0) options.read_low_watermark = 1;
  auto connection = std::make_shared<Connection>(PassKey(), loop, std::move(fd),
                                                 options, std::move(callbacks));
  const int raw_fd = connection->fd_.get();
  // The watcher's callback holds the loop's reference to the connection;
  // Teardown releases the watcher, which breaks the cycle.
  absl::StatusOr<IoWatcher> watcher = loop->WatchIo(
      raw_fd, connection->WantedInterest(),
      [c = connection](const IoEvent& event) { c->OnIo(event); },
      IoOptions{/*persistent=*/true, absl::InfiniteDuration(),
                options.priority});
  if (!watcher.ok()) {
    return absl::Status(
        watcher.status().code(),
        absl::StrCat("Connection::Adopt: ", watcher.status().message()));
  }
  connection->watcher_ = std::move(*watcher);
  connection->NoteActivity();
  connection->ArmIdleTimer();
  return connection;
}

Connection::Connection(PassKey, EventLoop* loop, UniqueFd fd,
                       ConnectionOptions options, Callbacks callbacks)
    : loop_(loop),
      fd_(std::move(fd)),
      options_(options),
      callbacks_(std::move(callbacks)) {
  output_.set_max_size(options_.max_output_size);
}

Connection::~Connection() {
  // Normally closed already (Teardown). When the loop was destroyed first the
  // handles are inert; otherwise (Adopt failing half-way) they stop here.
  // The watcher must leave the backend before the fd is closed.
  watcher_.Release();
  idle_timer_.Release();
  fd_.reset();
}

absl::StatusOr<SocketAddress> Connection::peer_address() const {
  if (closed_) return absl::FailedPreconditionError("connection closed");
  return SocketAddress::PeerOf(fd_.get());
}

absl::StatusOr<SocketAddress> Connection::local_address() const {
  if (closed_) return absl::FailedPreconditionError("connection closed");
  return SocketAddress::LocalOf(fd_.get());
}

// --------------------------------------------------------------- interest --

bool Connection::ShouldRead() const {
  if (closed_ || peer_eof_ || user_paused_ || close_after_flush_ ||
      backpressure_) {
    return false;
  }
  return options_.read_high_watermark == 0 ||
         input_.size() < options_.read_high_watermark;
}

uint32_t Connection::WantedInterest() const {
  uint32_t interest = 0;
  if (ShouldRead()) interest |= kReadable;
  if (want_writable_ && !output_.empty() && !write_shut_) {
    interest |= kWritable;
  }
  return interest;
}

void Connection::UpdateInterest() {
  if (closed_ || !watcher_.valid()) return;
  const uint32_t wanted = WantedInterest();
  if (wanted == watcher_.interest()) return;
  absl::Status status = watcher_.SetInterest(wanted);
  if (!status.ok()) Teardown(CloseReason::kError, std::move(status));
}

void Connection::UpdateBackpressure() {
  const size_t high = options_.output_high_watermark;
  if (high == 0) return;
  if (!backpressure_ && output_.size() > high) {
    backpressure_ = true;
    ++stats_.backpressure_pauses;
  } else if (backpressure_ && output_.size() <= high / 2) {
    backpressure_ = false;
  }
}

// ----------------------------------------------------------------- events --

void Connection::OnIo(const IoEvent& event) {
  if (closed_) return;
  in_handler_ = true;
  // The backend reports an error or hang-up with the interest bits too, so
  // the read or send below sees it.
  if ((event.events & kWritable) != 0 && want_writable_) {
    want_writable_ = false;
    FlushNow();
  }
  if (!closed_ && (event.events & kReadable) != 0 && ShouldRead()) {
    HandleRead();
  }
  Settle();
  in_handler_ = false;
}

void Connection::HandleRead() {
  size_t budget = options_.max_read_per_event;
  size_t total = 0;
  bool eof = false;
  int error = 0;
  while (budget > 0) {
    size_t want = budget;
    if (options_.read_high_watermark != 0) {
      if (input_.size() >= options_.read_high_watermark) break;
      want = std::min(want, options_.read_high_watermark - input_.size());
    }
    const IoResult r = input_.ReadFrom(fd_.get(), want);
    ++stats_.read_calls;
    total += r.bytes;
    budget -= std::min(budget, r.bytes);
    if (r.eof) {
      eof = true;
      break;
    }
    if (r.error != 0) {
      // ENOBUFS: the user capped input(); treat as full.
      if (!r.would_block() && r.error != ENOBUFS) error = r.error;
      break;
    }
    // A read that did not fill its offer emptied the socket: skip the
    // read that would only say EAGAIN.
    if (!r.filled) break;
  }
  if (total > 0) {
    stats_.bytes_read += total;
    stats_.peak_input = std::max(stats_.peak_input, input_.size());
    NoteActivity();
    if (input_.size() >= options_.read_low_watermark && callbacks_.on_read) {
      RunUser([&] { callbacks_.on_read(*this, input_); });
      if (closed_) return;
    }
  }
  if (error != 0) {
    Teardown(ReasonForErrno(error), ErrnoStatus(error, "read", fd_.get()));
    return;
  }
  if (eof) HandlePeerEof();
}

void Connection::HandlePeerEof() {
  peer_eof_ = true;
  if (!input_.empty() && input_.size() < options_.read_low_watermark &&
      callbacks_.on_read) {
    RunUser([&] { callbacks_.on_read(*this, input_); });
    if (closed_) return;
  }
  if (write_shut_) {
    // Both directions are finished.
    Teardown(CloseReason::kPeerClosed, absl::OkStatus());
    return;
  }
  if (callbacks_.on_peer_eof) {
    RunUser([&] { callbacks_.on_peer_eof(*this); });
    return;
  }
  // Default: answer what is queued, then close.
  if (!close_after_flush_) {
    close_after_flush_ = true;
    close_after_flush_reason_ = CloseReason::kPeerClosed;
  }
  RequestFlush();
}

void Connection::OnIdleTimer() {
  if (closed_) return;
  const MonoTime due = last_activity_ + options_.idle_timeout;
  if (loop_->Now() < due) {
    // Activity since the timer was set: it only recorded the time; move the
    // timer now (one heap operation per timeout period, not per read).
    idle_timer_.RescheduleAt(due);
    return;
  }
  Teardown(CloseReason::kIdleTimeout,
           absl::DeadlineExceededError(absl::StrCat(
               "idle for ", absl::FormatDuration(options_.idle_timeout))));
}

void Connection::ArmIdleTimer() {
  if (options_.idle_timeout == absl::InfiniteDuration()) {
    idle_timer_.Release();
    return;
  }
  if (idle_timer_.valid()) {
    idle_timer_.RescheduleAt(last_activity_ + options_.idle_timeout);
  } else {
    idle_timer_ = loop_->AddTimerAt(last_activity_ + options_.idle_timeout,
                                    [this] { OnIdleTimer(); });
  }
}

void Connection::set_idle_timeout(absl::Duration timeout) {
  CheckLoopThread(loop_, "set_idle_timeout");
  if (closed_) return;
  options_.idle_timeout = timeout;
  NoteActivity();
  ArmIdleTimer();
}

// Runs after one of our entry points (I/O event, deferred flush) has called
// user code: finish what the callbacks asked for.
void Connection::Settle() {
  if (closed_) {
    RunCloseCallback();
    return;
  }
  if (options_.send_after_batch && !in_deferred_flush_ && !output_.empty() &&
      !shutdown_requested_ && !close_after_flush_ && !want_writable_) {
    // Sent by the deferred flush, after the rest of the batch.
    ScheduleDeferredFlush();
    UpdateInterest();
    if (closed_) RunCloseCallback();
    return;
  }
  if (!output_.empty() || shutdown_requested_ || close_after_flush_) {
    if (!want_writable_) FlushNow();
    if (closed_) {
      RunCloseCallback();
      return;
    }
  }
  UpdateInterest();
  if (closed_) RunCloseCallback();
}

// ----------------------------------------------------------------- writing --

absl::Status Connection::Write(absl::string_view data) {
  CheckLoopThread(loop_, "Write");
  if (closed_ || shutdown_requested_ || close_after_flush_) {
    return absl::FailedPreconditionError(
        "write on a closed or closing connection");
  }
  absl::Status status = output_.Append(data);
  if (!status.ok()) return status;
  Flush();
  return absl::OkStatus();
}

absl::Status Connection::Write(std::string&& data) {
  CheckLoopThread(loop_, "Write");
  if (closed_ || shutdown_requested_ || close_after_flush_) {
    return absl::FailedPreconditionError(
        "write on a closed or closing connection");
  }
  absl::Status status = output_.Append(std::move(data));
  if (!status.ok()) return status;
  Flush();
  return absl::OkStatus();
}

absl::Status Connection::Write(Buffer&& data) {
  CheckLoopThread(loop_, "Write");
  if (closed_ || shutdown_requested_ || close_after_flush_) {
    return absl::FailedPreconditionError(
        "write on a closed or closing connection");
  }
  absl::Status status = output_.Append(std::move(data));
  if (!status.ok()) return status;
  Flush();
  return absl::OkStatus();
}

void Connection::Flush() {
  CheckLoopThread(loop_, "Flush");
  if (closed_) return;
  stats_.peak_output = std::max(stats_.peak_output, output_.size());
  const bool was_backpressured = backpressure_;
  UpdateBackpressure();
  if (backpressure_ != was_backpressured) UpdateInterest();
  RequestFlush();
}

void Connection::RequestFlush() {
  // Inside one of our callbacks (or a flush) the entry point settles when
  // the user code returns; a pending writable event will flush by itself.
  if (closed_ || callback_depth_ > 0 || in_handler_ || flushing_ ||
      want_writable_) {
    return;
  }
  ScheduleDeferredFlush();
}

void Connection::ScheduleDeferredFlush() {
  if (flush_deferred_) return;
  flush_deferred_ = true;
  loop_->Defer([self = shared_from_this()] {
    self->flush_deferred_ = false;
    if (self->closed_) return;
    self->in_handler_ = true;
    self->in_deferred_flush_ = true;
    self->Settle();
    self->in_deferred_flush_ = false;
    self->in_handler_ = false;
  });
}

void Connection::FlushNow() {
  if (closed_ || write_shut_ || flushing_) return;
  flushing_ = true;
  for (int round = 0; round < kMaxFlushRounds; ++round) {
    const size_t before = output_.size();
    while (!output_.empty()) {
      const IoResult r = output_.SendTo(fd_.get());
      ++stats_.write_calls;
      if (r.bytes > 0) {
        stats_.bytes_written += r.bytes;
        NoteActivity();
      }
      if (r.error != 0 && !r.would_block()) {
        flushing_ = false;
        Teardown(ReasonForErrno(r.error),
                 ErrnoStatus(r.error, "send", fd_.get()));
        return;
      }
      // A short write means the socket buffer is full: wait for kWritable
      // instead of making the call that would say EAGAIN.
      if (r.error != 0 || !r.filled) {
        want_writable_ = true;
        break;
      }
    }
    UpdateBackpressure();
    const size_t low = options_.write_low_watermark;
    if (before > low && output_.size() <= low && callbacks_.on_drained) {
      RunUser([&] { callbacks_.on_drained(*this); });
      if (closed_) {
        flushing_ = false;
        return;
      }
      if (!output_.empty() && !want_writable_) continue;  // it wrote more
    }
    break;
  }
  if (!output_.empty() && !want_writable_) {
    // Out of rounds with more queued: continue on the next writable event.
    want_writable_ = true;
  }
  flushing_ = false;
  if (output_.empty()) {
    want_writable_ = false;
    FinishWriteSide();
    if (closed_) return;
  }
  UpdateInterest();
}

// Output is empty: carry out a pending half-close or flush-and-close.
void Connection::FinishWriteSide() {
  if (close_after_flush_) {
    Teardown(close_after_flush_reason_, absl::OkStatus());
    return;
  }
  if (shutdown_requested_ && !write_shut_) {
    write_shut_ = true;
    if (shutdown(fd_.get(), SHUT_WR) != 0 && errno != ENOTCONN) {
      Teardown(ReasonForErrno(errno),
               ErrnoStatus(errno, "shutdown(SHUT_WR)", fd_.get()));
      return;
    }
    if (peer_eof_) Teardown(CloseReason::kPeerClosed, absl::OkStatus());
  }
}

// ------------------------------------------------------- reading controls --

void Connection::PauseReading() {
  CheckLoopThread(loop_, "PauseReading");
  user_paused_ = true;
  UpdateInterest();
}

void Connection::ResumeReading() {
  CheckLoopThread(loop_, "ResumeReading");
  user_paused_ = false;
  UpdateInterest();
}

// ----------------------------------------------------------------- closing --

void Connection::Shutdown() {
  CheckLoopThread(loop_, "Shutdown");
  if (closed_ || shutdown_requested_) return;
  shutdown_requested_ = true;
  RequestFlush();
}

void Connection::CloseAfterFlush() {
  CheckLoopThread(loop_, "CloseAfterFlush");
  if (closed_ || close_after_flush_) return;
  close_after_flush_ = true;
  close_after_flush_reason_ = CloseReason::kLocal;
  UpdateInterest();
  RequestFlush();
}

void Connection::Close() {
  CheckLoopThread(loop_, "Close");
  Teardown(CloseReason::kLocal, absl::OkStatus());
}

void Connection::Teardown(CloseReason reason, absl::Status error) {
  if (closed_) return;
  closed_ = true;
  close_reason_ = reason;
  close_error_ = std::move(error);
  want_writable_ = false;
  // Releasing the watcher drops the loop's reference (its callback); keep
  // the object alive until the current batch of callbacks is over, since
  // the caller (and maybe an entry point of ours) is still using it.
  loop_->Defer(KeepAlive(shared_from_this()));
  watcher_.Release();  // leaves the backend before close(2)
  idle_timer_.Release();
  fd_.reset();
  if (callback_depth_ == 0) {
    RunCloseCallback();
  } else {
    // Never re-enter the user: run it when their callback returns.
    close_callback_pending_ = true;
  }
}

void Connection::RunCloseCallback() {
  if (!closed_ || close_callback_ran_ || callback_depth_ > 0) return;
  close_callback_ran_ = true;
  close_callback_pending_ = false;
  if (callbacks_.on_close) {
    const absl::Status error = close_error_;
    RunUser([&] { callbacks_.on_close(*this, close_reason_, error); });
  }
}

// ------------------------------------------------------------ ConnectAsync --

struct PendingConnect::State {
  EventLoop* loop = nullptr;
  SocketAddress address;
  UniqueFd fd;
  IoWatcher watcher;
  Timer timer;
  ConnectCallback cb;
  bool done = false;

  // Runs the callback once. The user may destroy the PendingConnect (and so
  // this State) inside it: nothing here is touched after the call.
  void Finish(absl::Status status) {
    if (done) return;
    done = true;
    watcher.Release();
    timer.Release();
    ConnectCallback callback = std::move(cb);
    if (status.ok()) {
      callback(std::move(fd));
    } else {
      fd.reset();
      callback(std::move(status));
    }
  }
};

PendingConnect::PendingConnect(std::shared_ptr<State> state)
    : state_(std::move(state)) {}

PendingConnect::~PendingConnect() = default;

bool PendingConnect::done() const { return state_->done; }

std::unique_ptr<PendingConnect> ConnectAsync(EventLoop* loop,
                                             const SocketAddress& address,
                                             absl::Duration timeout,
                                             ConnectCallback cb) {
  CheckLoopThread(loop, "ConnectAsync");
  auto state = std::make_shared<PendingConnect::State>();
  state->loop = loop;
  state->address = address;
  state->cb = std::move(cb);
  auto handle = std::make_unique<PendingConnect>(state);
  // Errors found now are still reported through the callback, after this
  // call returns, so the caller sees one path for every outcome.
  auto fail_later = [loop, weak = std::weak_ptr<PendingConnect::State>(state)](
                        absl::Status status) {
    loop->Defer([weak, status = std::move(status)]() mutable {
      if (std::shared_ptr<PendingConnect::State> s = weak.lock()) {
        s->Finish(std::move(status));
      }
    });
  };
  absl::StatusOr<UniqueFd> fd = StartConnect(address);
  if (!fd.ok()) {
    fail_later(fd.status());
    return handle;
  }
  state->fd = std::move(*fd);
  PendingConnect::State* raw = state.get();
  absl::StatusOr<IoWatcher> watcher =
      loop->WatchIo(raw->fd.get(), kWritable, [raw](const IoEvent&) {
        absl::Status status = TakeSocketError(raw->fd.get());
        if (!status.ok()) {
          status = absl::Status(
              status.code(),
              absl::StrCat(status.message(), " to ", raw->address.ToString()));
        }
        raw->Finish(std::move(status));
      });
  if (!watcher.ok()) {
    fail_later(watcher.status());
    return handle;
  }
  raw->watcher = std::move(*watcher);
  if (timeout != absl::InfiniteDuration()) {
    raw->timer = loop->AddTimer(timeout, [raw, timeout] {
      raw->Finish(absl::DeadlineExceededError(
          absl::StrCat("connect ", raw->address.ToString(),
                       ": no answer within ", absl::FormatDuration(timeout))));
    });
  }
  return handle;
}

}  // namespace eventide
