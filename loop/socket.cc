#include "loop/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace eventide {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    // close() may fail with EINTR after the fd is already released (Linux
    // always frees it), so it is never retried.
    ::close(fd_);
  }
  fd_ = fd;
}

absl::Status ErrnoStatus(int error_number, absl::string_view what, int fd) {
  // The same code and "what: strerror" message as absl::ErrnoToStatus, but
  // the text comes from glibc's strerror_r. absl::ErrnoToStatus reads a
  // lazily built static table; the system Abseil is not TSan-instrumented,
  // so the first calls from two connection threads at once (e.g. two peers
  // resetting in the same instant) were reported as a data race in every
  // TSan build of a threaded server (seen in tests/cached_fault_test).
  char text[128];
  const char* message = strerror_r(error_number, text, sizeof(text));
  if (fd >= 0) {
    return absl::Status(absl::ErrnoToStatusCode(error_number),
                        absl::StrCat(what, " (fd ", fd, "): ", message));
  }
  return absl::Status(absl::ErrnoToStatusCode(error_number),
                      absl::StrCat(what, ": ", message));
}

// ---------------------------------------------------------- SocketAddress --

absl::StatusOr<SocketAddress> SocketAddress::Parse(absl::string_view host,
                                                   uint16_t port) {
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string text(host);
  SocketAddress address;
  sockaddr_in v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&address.storage_, &v4, sizeof(v4));
    address.length_ = sizeof(v4);
    return address;
  }
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&address.storage_, &v6, sizeof(v6));
    address.length_ = sizeof(v6);
    return address;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a numeric IPv4 or IPv6 address: '", host, "'"));
}

absl::StatusOr<SocketAddress> SocketAddress::ParseHostPort(
    absl::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected host:port, got '", text, "'"));
  }
  absl::string_view host = text.substr(0, colon);
  // A bare IPv6 address has more colons; it needs brackets to carry a port.
  if (host.find(':') != absl::string_view::npos &&
      !(host.size() >= 2 && host.front() == '[' && host.back() == ']')) {
    return absl::InvalidArgumentError(
        absl::StrCat("an IPv6 host needs brackets: '", text, "'"));
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", text, "'"));
  }
  return Parse(host, static_cast<uint16_t>(port));
}

SocketAddress SocketAddress::Loopback4(uint16_t port) {
  return *Parse("127.0.0.1", port);
}

SocketAddress SocketAddress::Loopback6(uint16_t port) {
  return *Parse("::1", port);
}

SocketAddress SocketAddress::FromSockaddr(const sockaddr* sa, socklen_t len) {
  SocketAddress address;
  if (sa == nullptr) return address;
  if ((sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) ||
      (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6))) {
    const socklen_t n =
        sa->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    std::memcpy(&address.storage_, sa, n);
    address.length_ = n;
  }
  return address;
}

absl::StatusOr<SocketAddress> SocketAddress::LocalOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return ErrnoStatus(errno, "getsockname", fd);
  }
  return FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

absl::StatusOr<SocketAddress> SocketAddress::PeerOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return ErrnoStatus(errno, "getpeername", fd);
  }
  return FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  }
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

SocketAddress SocketAddress::WithPort(uint16_t port) const {
  SocketAddress copy = *this;
  if (family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&copy.storage_)->sin_port = htons(port);
  } else if (family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&copy.storage_)->sin6_port = htons(port);
  }
  return copy;
}

std::string SocketAddress::HostString() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET,
              &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
              sizeof(text));
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6,
              &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr,
              text, sizeof(text));
  } else {
    return "(invalid)";
  }
  return text;
}

std::string SocketAddress::ToString() const {
  if (family() == AF_INET) return absl::StrCat(HostString(), ":", port());
  if (family() == AF_INET6)
    return absl::StrCat("[", HostString(), "]:", port());
  return "(invalid)";
}

// ---------------------------------------------------------------- sockets --

namespace {

absl::Status SetIntOption(int fd, int level, int name, int value,
                          absl::string_view what) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setsockopt(", what, ")"), fd);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SetNonBlocking(int fd, bool nonblocking) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, "fcntl(F_GETFL)", fd);
  const int wanted = nonblocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && fcntl(fd, F_SETFL, wanted) != 0) {
    return ErrnoStatus(errno, "fcntl(F_SETFL)", fd);
  }
  return absl::OkStatus();
}

absl::Status SetNoDelay(int fd, bool no_delay) {
  const int value = no_delay ? 1 : 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, sizeof(value)) != 0) {
    // AF_UNIX stream sockets (socketpairs in tests) have no Nagle to turn off.
    if (errno == EOPNOTSUPP || errno == ENOPROTOOPT) return absl::OkStatus();
    return ErrnoStatus(errno, "setsockopt(TCP_NODELAY)", fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenListeningSocket(
    const SocketAddress& address, const ListenSocketOptions& options) {
  if (!address.valid()) {
    return absl::InvalidArgumentError("listen: invalid address");
  }
  UniqueFd fd(
      socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "socket");
  absl::Status status;
  if (options.reuse_address) {
    status =
        SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    if (!status.ok()) return status;
  }
  if (options.reuse_port) {
    status =
        SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    if (!status.ok()) return status;
  }
  if (address.family() == AF_INET6 && options.v6_only.has_value()) {
    status = SetIntOption(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY,
                          *options.v6_only ? 1 : 0, "IPV6_V6ONLY");
    if (!status.ok()) return status;
  }
  if (bind(fd.get(), address.sockaddr_ptr(), address.length()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("bind ", address.ToString()),
                       fd.get());
  }
  if (listen(fd.get(), options.backlog) != 0) {
    return ErrnoStatus(errno, absl::StrCat("listen ", address.ToString()),
                       fd.get());
  }
  return fd;
}

absl::Status TakeSocketError(int fd) {
  int error = 0;
  socklen_t len = sizeof(error);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) {
    return ErrnoStatus(errno, "getsockopt(SO_ERROR)", fd);
  }
  if (error != 0) return ErrnoStatus(error, "connect", fd);
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> StartConnect(const SocketAddress& address,
                                      bool no_delay) {
  if (!address.valid()) {
    return absl::InvalidArgumentError("connect: invalid address");
  }
  UniqueFd fd(
      socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "socket");
  if (no_delay) {
    absl::Status status = SetNoDelay(fd.get(), true);
    if (!status.ok()) return status;
  }
  int rc;
  do {
    rc = connect(fd.get(), address.sockaddr_ptr(), address.length());
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EINPROGRESS) {
    return ErrnoStatus(errno, absl::StrCat("connect ", address.ToString()),
                       fd.get());
  }
  return fd;
}

absl::StatusOr<UniqueFd> ConnectWithTimeout(const SocketAddress& address,
                                            absl::Duration timeout,
                                            bool nonblocking, bool no_delay) {
  absl::StatusOr<UniqueFd> fd = StartConnect(address, no_delay);
  if (!fd.ok()) return fd.status();
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    pollfd p{fd->get(), POLLOUT, 0};
    const absl::Duration left = deadline - absl::Now();
    int ms = 0;
    if (left > absl::ZeroDuration()) {
      // Round up: a 0.4 ms remainder must not become a 0 ms busy poll.
      ms = static_cast<int>(absl::ToInt64Milliseconds(
          left + absl::Milliseconds(1) - absl::Nanoseconds(1)));
    }
    if (timeout == absl::InfiniteDuration()) ms = -1;
    const int n = poll(&p, 1, ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "poll", fd->get());
    }
    if (n == 0) {
      if (absl::Now() < deadline) continue;
      return absl::DeadlineExceededError(
          absl::StrCat("connect ", address.ToString(), ": no answer within ",
                       absl::FormatDuration(timeout)));
    }
    break;
  }
  absl::Status status = TakeSocketError(fd->get());
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat(status.message(), " to ",
                                                    address.ToString()));
  }
  if (!nonblocking) {
    status = SetNonBlocking(fd->get(), false);
    if (!status.ok()) return status;
  }
  return fd;
}

}  // namespace eventide
