// Socket plumbing for the stream layer: an owning fd, an IPv4/IPv6 address,
// listening sockets and a blocking connect with a timeout. No dependency on
// the loop: usable by tools and tests on their own.
//
// Every socket made here is O_CLOEXEC; listening sockets and the sockets
// handed to the loop are O_NONBLOCK.
//
// Threads: free functions are thread-safe; a UniqueFd or SocketAddress is a
// value type (one thread at a time per object).
//
// Example:
//   absl::StatusOr<eventide::SocketAddress> addr =
//       eventide::SocketAddress::Parse("127.0.0.1", 0);
//   absl::StatusOr<eventide::UniqueFd> listening =
//       eventide::OpenListeningSocket(*addr, {});
//   absl::StatusOr<eventide::SocketAddress> bound =
//       eventide::SocketAddress::LocalOf(listening->get());
//   absl::StatusOr<eventide::UniqueFd> client =
//       eventide::ConnectWithTimeout(*bound, absl::Seconds(1));
#ifndef EVENTIDE_LOOP_SOCKET_H_
#define EVENTIDE_LOOP_SOCKET_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace eventide {

// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Gives up ownership without closing.
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the current fd (if any) and takes `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// An IPv4 or IPv6 socket address (numeric host and port).
class SocketAddress {
 public:
  // AF_UNSPEC, port 0: what a failed lookup leaves; valid() is false.
  SocketAddress() = default;

  // Numeric hosts only: "127.0.0.1", "0.0.0.0", "::1", "[::1]", "::";
  // "localhost" is taken as 127.0.0.1. No DNS.
  static absl::StatusOr<SocketAddress> Parse(absl::string_view host,
                                             uint16_t port);
  // "host:port" or "[v6]:port".
  static absl::StatusOr<SocketAddress> ParseHostPort(absl::string_view text);
  static SocketAddress Loopback4(uint16_t port);
  static SocketAddress Loopback6(uint16_t port);
  // The address a socket is bound to (getsockname) or connected to
  // (getpeername).
  static absl::StatusOr<SocketAddress> LocalOf(int fd);
  static absl::StatusOr<SocketAddress> PeerOf(int fd);
  // From a sockaddr the kernel filled (accept); AF_INET/AF_INET6 only.
  static SocketAddress FromSockaddr(const sockaddr* sa, socklen_t len);

  bool valid() const { return family() == AF_INET || family() == AF_INET6; }
  int family() const { return storage_.ss_family; }
  uint16_t port() const;
  SocketAddress WithPort(uint16_t port) const;
  // "127.0.0.1:8080", "[::1]:8080"; "(invalid)" when !valid().
  std::string ToString() const;
  // Only the host part: "127.0.0.1", "::1".
  std::string HostString() const;

  const sockaddr* sockaddr_ptr() const {
    return reinterpret_cast<const sockaddr*>(&storage_);
  }
  socklen_t length() const { return length_; }

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

struct ListenSocketOptions {
  // listen(2)'s backlog; the kernel caps it at net.core.somaxconn.
  int backlog = 4096;
  // SO_REUSEADDR: rebind at once after a restart (TIME_WAIT sockets).
  bool reuse_address = true;
  // SO_REUSEPORT: several sockets (e.g. one per loop/thread) bound to the same
  // port; the kernel spreads new connections among them.
  bool reuse_port = false;
  // IPV6_V6ONLY for an IPv6 address; unset = the system default
  // (net.ipv6.bindv6only). Ignored for IPv4.
  std::optional<bool> v6_only;
};

// socket + options + bind + listen. The socket is non-blocking and
// close-on-exec. Port 0 lets the kernel pick one (read it with LocalOf).
absl::StatusOr<UniqueFd> OpenListeningSocket(
    const SocketAddress& address, const ListenSocketOptions& options = {});

// A TCP connection to `address`, established within `timeout` (blocking the
// calling thread at most that long). DeadlineExceeded on timeout, the errno
// status (e.g. ECONNREFUSED -> Unavailable) otherwise. The returned socket
// is blocking unless `nonblocking`, and has TCP_NODELAY when `no_delay`.
absl::StatusOr<UniqueFd> ConnectWithTimeout(const SocketAddress& address,
                                            absl::Duration timeout,
                                            bool nonblocking = false,
                                            bool no_delay = true);

// Starts a non-blocking connect: returns the socket with the connect in
// progress (or already done). Completion shows as writability; then
// TakeSocketError() tells the outcome. Used by ConnectAsync (connection.h).
absl::StatusOr<UniqueFd> StartConnect(const SocketAddress& address,
                                      bool no_delay = true);
// Reads and clears SO_ERROR: OkStatus when the socket has no pending error.
absl::Status TakeSocketError(int fd);

absl::Status SetNonBlocking(int fd, bool nonblocking);
// TCP_NODELAY. OkStatus (doing nothing) on a non-TCP socket such as AF_UNIX.
absl::Status SetNoDelay(int fd, bool no_delay);

// errno -> absl::Status with "<what> (fd N): <strerror>".
absl::Status ErrnoStatus(int error_number, absl::string_view what, int fd = -1);

}  // namespace eventide

#endif  // EVENTIDE_LOOP_SOCKET_H_
