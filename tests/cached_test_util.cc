#include "tests/cached_test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace eventide {
namespace cached_test {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, what);
}

// Milliseconds left until `deadline`, rounded up, for poll(); 0 if past.
int MillisLeft(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Reaps `pid` if it has exited; waits at most until `deadline` (polling,
// since waitpid has no timeout). True and *status set when reaped.
bool WaitUntil(pid_t pid, absl::Time deadline, int* status) {
  for (;;) {
    const pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;  // nothing to wait for
    if (absl::Now() >= deadline) return false;
    usleep(5000);
  }
}

// Spawns `path` with `args`. The child's stdin is /dev/null, its stdout goes
// to `stdout_fd` and its stderr to `stderr_fd` (-1: inherit the test's).
// fork + exec rather than posix_spawn because the child must arm
// PR_SET_PDEATHSIG before exec, so that it is killed if the test dies
// without running its destructors (a crash, a Bazel timeout).
absl::StatusOr<pid_t> Spawn(const std::string& path,
                            const std::vector<std::string>& args, int stdout_fd,
                            int stderr_fd) {
  // Everything the child touches is prepared before fork(): between fork
  // and exec only async-signal-safe calls are allowed.
  std::vector<std::string> argv_storage;
  argv_storage.push_back(path);
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return ErrnoStatus(errno, "open(/dev/null)");
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(devnull);
    return ErrnoStatus(err, "fork");
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP}) {
      sigaction(sig, &dfl, nullptr);
    }
    dup2(devnull, STDIN_FILENO);
    if (stdout_fd >= 0) dup2(stdout_fd, STDOUT_FILENO);
    if (stderr_fd >= 0) dup2(stderr_fd, STDERR_FILENO);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  close(devnull);
  return pid;
}

// Sends "stats\r\n" on a fresh connection and returns the value of
// "STAT pid", to make sure the process listening on a port is ours.
absl::StatusOr<int64_t> StatsPid(int port) {
  absl::StatusOr<Client> client = Client::Connect(port, absl::Seconds(2));
  if (!client.ok()) return client.status();
  absl::StatusOr<std::string> reply =
      client->Call("stats\r\n", absl::Seconds(5));
  if (!reply.ok()) return reply.status();
  for (absl::string_view line : absl::StrSplit(*reply, "\r\n")) {
    int64_t pid = 0;
    if (absl::ConsumePrefix(&line, "STAT pid ") && absl::SimpleAtoi(line, &pid))
      return pid;
  }
  return absl::InternalError(
      absl::StrCat("no STAT pid in: ", Printable(*reply)));
}

}  // namespace

absl::StatusOr<std::string> RunfileBinaryPath(absl::string_view relative) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const std::string base = srcdir != nullptr ? srcdir : ".";
  for (const std::string& candidate :
       {absl::StrCat(base, "/eventide/", relative),
        absl::StrCat(base, "/", relative)}) {
    if (FileExists(candidate)) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat(relative, " not found under TEST_SRCDIR=", base,
                   " (add the binary to the test's data)"));
}

absl::StatusOr<std::string> CachedBinaryPath() {
  return RunfileBinaryPath("apps/cached/cached");
}

absl::StatusOr<std::string> MemcachedBinaryPath() {
  const std::string path = "/usr/bin/memcached";
  if (FileExists(path)) return path;
  return absl::NotFoundError("/usr/bin/memcached is not installed");
}

absl::StatusOr<int> PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoStatus(err, "bind/getsockname 127.0.0.1:0");
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

absl::StatusOr<RunResult> RunToCompletion(const std::string& path,
                                          const std::vector<std::string>& args,
                                          absl::Duration timeout) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  if (pipe2(err, O_CLOEXEC) != 0) {
    const int e = errno;
    close(out[0]);
    close(out[1]);
    return ErrnoStatus(e, "pipe2");
  }
  absl::StatusOr<pid_t> pid = Spawn(path, args, out[1], err[1]);
  close(out[1]);
  close(err[1]);
  if (!pid.ok()) {
    close(out[0]);
    close(err[0]);
    return pid.status();
  }
  RunResult result;
  const absl::Time deadline = absl::Now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.stdout_text, &result.stderr_text};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    const int n = poll(fds, 2, MillisLeft(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      timed_out = true;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        sinks[i]->append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  if (timed_out || !WaitUntil(*pid, deadline, &result.wait_status)) {
    kill(*pid, SIGKILL);
    waitpid(*pid, &result.wait_status, 0);
    return absl::DeadlineExceededError(absl::StrCat(
        path, " did not exit within ", absl::FormatDuration(timeout),
        "; stderr: ", Printable(result.stderr_text)));
  }
  return result;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartCached(
    const std::vector<std::string>& args, absl::Duration timeout) {
  absl::StatusOr<std::string> path = CachedBinaryPath();
  if (!path.ok()) return path.status();
  return StartListening(*path, args, timeout);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartListening(
    const std::string& path, const std::vector<std::string>& args,
    absl::Duration timeout) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  absl::StatusOr<pid_t> pid = Spawn(path, args, out[1], -1);
  close(out[1]);
  if (!pid.ok()) {
    close(out[0]);
    return pid.status();
  }
  std::unique_ptr<ServerProcess> server(new ServerProcess(*pid, out[0]));

  // Read up to the first '\n'. The server flushes the line on start; with
  // a sanitizer build start-up may take a few seconds.
  const absl::Time deadline = absl::Now() + timeout;
  std::string line;
  while (line.find('\n') == std::string::npos) {
    pollfd p = {server->stdout_fd_, POLLIN, 0};
    const int n = poll(&p, 1, MillisLeft(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          path, " printed no listening line within ",
          absl::FormatDuration(timeout), "; got: ", Printable(line)));
    }
    char c;
    const ssize_t r = read(server->stdout_fd_, &c, 1);
    if (r == 1) {
      line.push_back(c);
    } else if (r == 0) {
      int status = 0;
      server->HasExited(&status);
      return absl::FailedPreconditionError(
          absl::StrCat(path, " closed stdout before its listening line (",
                       "wait status ", status, "); got: ", Printable(line)));
    } else if (errno != EINTR) {
      return ErrnoStatus(errno, "read(cached stdout)");
    }
  }
  line.pop_back();  // '\n'
  server->banner_ = line;
  // "cached: listening on 127.0.0.1:PORT (N worker threads, B backend)",
  // "echo_server listening on 127.0.0.1:PORT (backend B)"
  absl::string_view rest = line;
  int port = 0;
  const size_t at = rest.find("listening on ");
  if (at != absl::string_view::npos) rest.remove_prefix(at + 13);
  if (at == absl::string_view::npos ||
      rest.find(' ') == absl::string_view::npos) {
    return absl::InternalError(
        absl::StrCat("unexpected listening line: ", Printable(line)));
  }
  absl::string_view addr = rest.substr(0, rest.find(' '));
  const size_t colon = addr.rfind(':');
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(addr.substr(colon + 1), &port) || port <= 0 ||
      port > 65535) {
    return absl::InternalError(
        absl::StrCat("no port in listening line: ", Printable(line)));
  }
  server->port_ = port;
  return server;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartMemcached(
    const std::vector<std::string>& extra_args, absl::Duration timeout) {
  absl::StatusOr<std::string> path = MemcachedBinaryPath();
  if (!path.ok()) return path.status();
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("memcached never started");
  for (int attempt = 0; attempt < 5 && absl::Now() < deadline; ++attempt) {
    absl::StatusOr<int> port = PickFreePort();
    if (!port.ok()) return port.status();
    std::vector<std::string> args = {"-U",        "0",  "-l",
                                     "127.0.0.1", "-p", absl::StrCat(*port)};
    if (getuid() == 0) {
      args.push_back("-u");
      args.push_back("root");
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
    absl::StatusOr<pid_t> pid = Spawn(*path, args, out[1], -1);
    close(out[1]);
    if (!pid.ok()) {
      close(out[0]);
      return pid.status();
    }
    std::unique_ptr<ServerProcess> server(new ServerProcess(*pid, out[0]));
    server->port_ = *port;
    // Wait until the port answers, and make sure it is this memcached that
    // answers: between PickFreePort() and memcached's bind another program
    // may have taken the port, and then memcached exits.
    bool up = false;
    while (absl::Now() < deadline) {
      int status = 0;
      if (server->HasExited(&status)) {
        last = absl::UnavailableError(
            absl::StrCat("memcached on port ", *port,
                         " exited during start-up (status ", status, ")"));
        break;
      }
      absl::StatusOr<int64_t> pid_seen = StatsPid(*port);
      if (pid_seen.ok()) {
        if (*pid_seen == *pid) {
          up = true;
        } else {
          last = absl::UnavailableError(
              absl::StrCat("port ", *port, " is served by pid ", *pid_seen));
        }
        break;
      }
      usleep(20000);
    }
    if (up) return server;
    // `server` goes out of scope: killed and reaped. Try another port.
  }
  return last;
}

ServerProcess::~ServerProcess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

bool ServerProcess::HasExited(int* wait_status) {
  if (!reaped_) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      wait_status_ = status;
    }
  }
  if (reaped_ && wait_status != nullptr) *wait_status = wait_status_;
  return reaped_;
}

absl::StatusOr<int> ServerProcess::Stop(int signal, absl::Duration timeout) {
  absl::Status sent = Signal(signal);
  if (!sent.ok()) return sent;
  return Wait(timeout);
}

absl::Status ServerProcess::Signal(int signal) {
  if (reaped_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", pid_, " already exited, status ", wait_status_));
  }
  if (kill(pid_, signal) != 0) return ErrnoStatus(errno, "kill");
  return absl::OkStatus();
}

absl::StatusOr<int> ServerProcess::Wait(absl::Duration timeout) {
  if (reaped_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", pid_, " already exited, status ", wait_status_));
  }
  int status = 0;
  if (WaitUntil(pid_, absl::Now() + timeout, &status)) {
    reaped_ = true;
    wait_status_ = status;
    return status;
  }
  kill(pid_, SIGKILL);
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  wait_status_ = status;
  return absl::DeadlineExceededError(
      absl::StrCat("process ", pid_, " did not exit within ",
                   absl::FormatDuration(timeout), "; killed"));
}

absl::StatusOr<Client> Client::Connect(int port, absl::Duration timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  Client client(fd);
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    return client;
  }
  if (errno != EINPROGRESS) {
    return ErrnoStatus(errno, absl::StrCat("connect 127.0.0.1:", port));
  }
  pollfd p = {fd, POLLOUT, 0};
  const absl::Time deadline = absl::Now() + timeout;
  int n;
  do {
    n = poll(&p, 1, MillisLeft(deadline));
  } while (n < 0 && errno == EINTR);
  if (n == 0) {
    return absl::DeadlineExceededError(
        absl::StrCat("connect 127.0.0.1:", port, " timed out"));
  }
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    return ErrnoStatus(err, absl::StrCat("connect 127.0.0.1:", port));
  }
  return client;
}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      eof_(other.eof_),
      buffer_(std::move(other.buffer_)) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = std::exchange(other.fd_, -1);
    eof_ = other.eof_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

Client::~Client() { Close(); }

void Client::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

absl::Status Client::Send(absl::string_view data, size_t piece,
                          absl::Duration timeout) {
  if (fd_ < 0) return absl::FailedPreconditionError("client is closed");
  const absl::Time deadline = absl::Now() + timeout;
  while (!data.empty()) {
    const size_t want = piece == 0 ? data.size() : std::min(piece, data.size());
    const ssize_t n = send(fd_, data.data(), want, MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p = {fd_, POLLOUT, 0};
      if (poll(&p, 1, MillisLeft(deadline)) == 0) {
        return absl::DeadlineExceededError(absl::StrCat(
            "send: ", data.size(), " bytes still unsent at the deadline"));
      }
      continue;
    }
    return ErrnoStatus(errno, "send");
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Client::Fill(absl::Time deadline) {
  if (fd_ < 0) return absl::FailedPreconditionError("client is closed");
  if (eof_) return false;
  for (;;) {
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
      return true;
    }
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
      eof_ = true;
      return false;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return ErrnoStatus(errno, "recv");
    pollfd p = {fd_, POLLIN, 0};
    const int r = poll(&p, 1, MillisLeft(deadline));
    if (r == 0)
      return absl::DeadlineExceededError("no data before the deadline");
  }
}

size_t CompleteReplyLength(absl::string_view data) {
  size_t pos = 0;
  for (;;) {
    const size_t nl = data.find('\n', pos);
    if (nl == absl::string_view::npos) return 0;
    absl::string_view line = data.substr(pos, nl + 1 - pos);
    const size_t next = nl + 1;
    if (absl::StartsWith(line, "VALUE ")) {
      // VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n
      std::vector<absl::string_view> tokens = absl::StrSplit(
          absl::StripSuffix(absl::StripSuffix(line, "\n"), "\r"), ' ');
      uint64_t bytes = 0;
      if (tokens.size() >= 4 && absl::SimpleAtoi(tokens[3], &bytes)) {
        const uint64_t end = next + bytes + 2;
        if (end > data.size()) return 0;
        pos = static_cast<size_t>(end);
        continue;
      }
      return next;  // malformed: treat as a one-line reply
    }
    if (absl::StartsWith(line, "STAT ")) {
      pos = next;
      continue;
    }
    // Any other line ends the reply ("END" after VALUE/STAT lines, or a
    // one-line reply on its own).
    return next;
  }
}

absl::StatusOr<std::string> Client::ReadReply(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const size_t len = CompleteReplyLength(buffer_);
    if (len > 0) {
      std::string reply = buffer_.substr(0, len);
      buffer_.erase(0, len);
      return reply;
    }
    absl::StatusOr<bool> more = Fill(deadline);
    if (!more.ok()) {
      return absl::Status(
          more.status().code(),
          absl::StrCat("reading a reply: ", more.status().message(),
                       "; have: ", Printable(buffer_)));
    }
    if (!*more) {
      return absl::UnavailableError(
          absl::StrCat("connection closed before a complete reply; have: ",
                       Printable(buffer_)));
    }
  }
}

absl::StatusOr<std::string> Client::ReadExactly(size_t n,
                                                absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (buffer_.size() < n) {
    absl::StatusOr<bool> more = Fill(deadline);
    if (!more.ok()) return more.status();
    if (!*more) {
      return absl::UnavailableError(absl::StrCat(
          "connection closed after ", buffer_.size(), " of ", n, " bytes"));
    }
  }
  std::string out = buffer_.substr(0, n);
  buffer_.erase(0, n);
  return out;
}

absl::StatusOr<std::string> Client::Call(absl::string_view request,
                                         absl::Duration timeout) {
  absl::Status sent = Send(request, 0, timeout);
  if (!sent.ok()) return sent;
  return ReadReply(timeout);
}

absl::StatusOr<std::string> Client::ReadUntilClosed(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    absl::StatusOr<bool> more = Fill(deadline);
    if (!more.ok()) {
      return absl::Status(more.status().code(),
                          absl::StrCat("waiting for the server to close: ",
                                       more.status().message(),
                                       "; have: ", Printable(buffer_)));
    }
    if (!*more) {
      std::string out = std::move(buffer_);
      buffer_.clear();
      return out;
    }
  }
}

bool Client::IsClosedByPeer(absl::Duration timeout) {
  absl::StatusOr<bool> more = Fill(absl::Now() + timeout);
  // Closed: EOF with nothing unread. Data or a deadline: not (only) closed.
  return more.ok() && !*more && buffer_.empty();
}

std::string Printable(absl::string_view data, size_t max_len) {
  std::string out;
  for (char c : data) {
    if (out.size() >= max_len) {
      absl::StrAppend(&out, "...(", data.size(), " bytes)");
      break;
    }
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (u < 0x20 || u >= 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

std::map<std::string, std::string> ParseStats(absl::string_view reply) {
  std::map<std::string, std::string> stats;
  for (absl::string_view line : absl::StrSplit(reply, "\r\n")) {
    if (!absl::ConsumePrefix(&line, "STAT ")) continue;
    const size_t space = line.find(' ');
    if (space == absl::string_view::npos) continue;
    stats[std::string(line.substr(0, space))] =
        std::string(line.substr(space + 1));
  }
  return stats;
}

}  // namespace cached_test
}  // namespace eventide
