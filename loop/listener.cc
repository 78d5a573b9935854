#include "loop/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace eventide {
namespace {

UniqueFd OpenReserveFd() {
  return UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
}

bool IsOutOfFds(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS ||
         error == ENOMEM;
}

// Errors that concern one pending connection only (accept(2): "Linux
// accept() passes already-pending network errors on the new socket as an
// error code"); the next accept may well succeed.
bool IsTransient(int error) {
  switch (error) {
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case ETIMEDOUT:
      return true;
    default:
      return false;
  }
}

int Accept(int listen_fd, sockaddr_storage* peer, socklen_t* len) {
  *len = sizeof(*peer);
  return accept4(listen_fd, reinterpret_cast<sockaddr*>(peer), len,
                 SOCK_NONBLOCK | SOCK_CLOEXEC);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Listener>> Listener::Create(
    EventLoop* loop, const SocketAddress& address, AcceptCallback on_accept,
    ListenerOptions options) {
  absl::StatusOr<UniqueFd> fd = OpenListeningSocket(address, options.socket);
  if (!fd.ok()) return fd.status();
  return Adopt(loop, std::move(*fd), std::move(on_accept), std::move(options));
}

absl::StatusOr<std::unique_ptr<Listener>> Listener::Adopt(
    EventLoop* loop, UniqueFd listening, AcceptCallback on_accept,
    ListenerOptions options) {
  if (loop == nullptr) return absl::InvalidArgumentError("Listener: null loop");
  if (!listening.valid()) {
    return absl::InvalidArgumentError("Listener: invalid fd");
  }
  if (options.max_accepts_per_event < 1) options.max_accepts_per_event = 1;
  absl::Status status = SetNonBlocking(listening.get(), true);
  if (!status.ok()) return status;
  absl::StatusOr<SocketAddress> address =
      SocketAddress::LocalOf(listening.get());
  if (!address.ok()) return address.status();
  std::unique_ptr<Listener> listener(
      new Listener(loop, std::move(listening), *address, std::move(on_accept),
                   std::move(options)));
  status = listener->Start();
  if (!status.ok()) return status;
  return listener;
}

Listener::Listener(EventLoop* loop, UniqueFd fd, SocketAddress address,
                   AcceptCallback on_accept, ListenerOptions options)
    : loop_(loop),
      fd_(std::move(fd)),
      address_(address),
      on_accept_(std::move(on_accept)),
      options_(std::move(options)) {}

absl::Status Listener::Start() {
  if (options_.out_of_fds == OutOfFdsPolicy::kRejectWithReserveFd) {
    reserve_ = OpenReserveFd();
    if (!reserve_) return ErrnoStatus(errno, "open(/dev/null) for reserve fd");
  }
  absl::StatusOr<IoWatcher> watcher = loop_->WatchIo(
      fd_.get(), kReadable, [this](const IoEvent&) { OnReadable(); },
      IoOptions{/*persistent=*/true, absl::InfiniteDuration(),
                options_.priority});
  if (!watcher.ok()) return watcher.status();
  watcher_ = std::move(*watcher);
  return absl::OkStatus();
}

Listener::~Listener() {
  *alive_ = false;
  // Out of the backend before the socket closes.
  watcher_.Release();
  resume_timer_.Release();
  fd_.reset();
}

void Listener::Pause() {
  user_paused_ = true;
  resume_timer_.Release();
  watcher_.Stop();
}

absl::Status Listener::Resume() {
  user_paused_ = false;
  resume_timer_.Release();
  return watcher_.Start();
}

void Listener::Report(int error) {
  if (!on_error_) return;
  on_error_(ErrnoStatus(error, absl::StrCat("accept on ", address_.ToString()),
                        fd_.get()));
}

void Listener::OnReadable() {
  const std::shared_ptr<bool> alive = alive_;
  for (int i = 0; i < options_.max_accepts_per_event; ++i) {
    sockaddr_storage peer;
    socklen_t len;
    ++stats_.accept_calls;
    const int fd = Accept(fd_.get(), &peer, &len);
    if (fd >= 0) {
      ++stats_.accepted;
      on_accept_(UniqueFd(fd),
                 SocketAddress::FromSockaddr(
                     reinterpret_cast<const sockaddr*>(&peer), len));
      if (!*alive || user_paused_) return;
      continue;
    }
    const int error = errno;
    if (error == EAGAIN || error == EWOULDBLOCK) return;
    if (error == EINTR) continue;
    if (IsTransient(error)) {
      ++stats_.transient_errors;
      continue;
    }
    if (IsOutOfFds(error)) {
      HandleOutOfFds(error);
      return;
    }
    // Unknown: do not retry at once (it would likely fail the same way in a
    // tight loop); try again after the pause.
    Report(error);
    PauseFor(options_.out_of_fds_pause);
    return;
  }
  // Batch used up; level-triggered readiness brings us back next iteration.
}

void Listener::HandleOutOfFds(int error) {
  ++stats_.out_of_fds;
  Report(error);
  if (options_.out_of_fds == OutOfFdsPolicy::kRejectWithReserveFd &&
      reserve_.valid()) {
    // Free one fd, take one pending connection with it and close that at
    // once, take the fd back; repeat for the rest of the batch. The clients
    // see their connection closed rather than waiting for a slot.
    for (int i = 0; i < options_.max_accepts_per_event; ++i) {
      reserve_.reset();
      sockaddr_storage peer;
      socklen_t len;
      ++stats_.accept_calls;
      const int fd = Accept(fd_.get(), &peer, &len);
      const int accept_error = errno;
      if (fd >= 0) {
        ::close(fd);
        ++stats_.rejected;
      }
      reserve_ = OpenReserveFd();
      if (!reserve_.valid()) break;  // someone took the fd: pause instead
      if (fd < 0) {
        if (accept_error == EAGAIN || accept_error == EWOULDBLOCK) return;
        if (accept_error == EINTR || IsTransient(accept_error)) continue;
        break;  // still out of fds (ENFILE: system-wide), or worse: pause
      }
    }
    if (reserve_.valid()) return;  // batch used up; more next iteration
  }
  PauseFor(options_.out_of_fds_pause);
}

void Listener::PauseFor(absl::Duration pause) {
  ++stats_.pauses;
  watcher_.Stop();
  resume_timer_ = loop_->AddTimer(pause, [this] {
    if (!reserve_.valid() &&
        options_.out_of_fds == OutOfFdsPolicy::kRejectWithReserveFd) {
      reserve_ = OpenReserveFd();
    }
    if (user_paused_) return;
    absl::Status status = watcher_.Start();
    if (!status.ok() && on_error_) on_error_(status);
  });
}

}  // namespace eventide
