// Copyright 2026 The Eventide Authors.
//
// One suite, run against every backend compiled in (and the epoll variants
// that take other code paths): the contract of demux/backend.h. A backend
// that behaves differently from the others fails here. Backends the running
// kernel refuses (init returns Unavailable) are skipped with the reason.
//
// Expectations that depend on a declared capability (edge-triggered, max fd,
// error/hang-up bits) read capabilities() first, so a backend cannot pass by
// declaring less than it does: each capability is also checked to hold.

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "demux/backend.h"
#include "demux/registry.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

// ---------------------------------------------------------------------------
// Helpers

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Pipe() {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
      r.reset(fds[0]);
      w.reset(fds[1]);
    }
  }
  UniqueFd r, w;
};

struct SocketPair {
  SocketPair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   fds) == 0) {
      a.reset(fds[0]);
      b.reset(fds[1]);
    }
  }
  UniqueFd a, b;
};

UniqueFd TcpSocket() {
  return UniqueFd(
      socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

// Binds 127.0.0.1 port 0; listens when `listen_backlog` > 0.
UniqueFd BoundTcpSocket(sockaddr_in* addr, int listen_backlog) {
  UniqueFd s = TcpSocket();
  *addr = {};
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr->sin_port = 0;
  if (bind(s.get(), reinterpret_cast<sockaddr*>(addr), sizeof(*addr)) != 0) {
    return UniqueFd();
  }
  socklen_t len = sizeof(*addr);
  getsockname(s.get(), reinterpret_cast<sockaddr*>(addr), &len);
  if (listen_backlog > 0 && listen(s.get(), listen_backlog) != 0) {
    return UniqueFd();
  }
  return s;
}

// A connected TCP pair over loopback; `listener` is kept so a test can watch
// it too.
// An open, already unlinked regular file in the test's temporary directory
// (-1 if it cannot be made).
UniqueFd TempRegularFile() {
  const char* dir = getenv("TEST_TMPDIR");
  std::string path = absl::StrCat(dir ? dir : "/tmp", "/demux_regular_XXXXXX");
  UniqueFd file(mkstemp(path.data()));
  if (file.get() >= 0) unlink(path.c_str());
  return file;
}

struct TcpPair {
  UniqueFd listener, client, server;
  sockaddr_in addr;
};

TcpPair MakeTcpPair() {
  TcpPair p;
  p.listener = BoundTcpSocket(&p.addr, 16);
  p.client = TcpSocket();
  if (connect(p.client.get(), reinterpret_cast<sockaddr*>(&p.addr),
              sizeof(p.addr)) != 0 &&
      errno != EINPROGRESS) {
    return TcpPair();
  }
  // Bounded wait for the connection to be accepted.
  for (int i = 0; i < 200 && p.server.get() < 0; ++i) {
    int fd = accept4(p.listener.get(), nullptr, nullptr,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      p.server.reset(fd);
    } else {
      struct pollfd pfd = {p.listener.get(), POLLIN, 0};
      poll(&pfd, 1, 10);
    }
  }
  return p;
}

bool WriteByte(int fd) { return write(fd, "x", 1) == 1; }

// Reads everything available; returns bytes read, or -errno.
ssize_t Drain(int fd) {
  char buf[4096];
  ssize_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      total += n;
      continue;
    }
    if (n == 0 || errno == EAGAIN) return total;
    return -errno;
  }
}

std::string EventsToString(uint32_t e) {
  std::string s;
  if (e & kReadable) s += "R";
  if (e & kWritable) s += "W";
  if (e & kError) s += "E";
  if (e & kHangup) s += "H";
  return s.empty() ? "-" : s;
}

// Compares event masks and prints them as "RWEH" letters.
#define EXPECT_EVENTS(actual, expected) \
  EXPECT_EQ(EventsToString(actual), EventsToString(expected))

struct Config {
  std::string label;
  BackendOptions options;
};

std::vector<Config> AllConfigs() {
  std::vector<Config> configs;
  for (const std::string& name : AvailableBackendNames()) {
    Config c;
    c.label = name;
    c.options.name = name;
    configs.push_back(c);
    if (name == "epoll") {
      // The other code paths of epoll: ms timeouts, unbatched Modify.
      c.label = "epoll_wait";
      c.options.epoll_use_pwait2 = false;
      configs.push_back(c);
      c.label = "epoll_unbatched";
      c.options.epoll_use_pwait2 = true;
      c.options.epoll_batch_modify = false;
      configs.push_back(c);
    }
  }
  return configs;
}

absl::StatusOr<std::unique_ptr<Backend>> Create(const BackendOptions& options) {
  // The suite pins each backend; the real environment must not interfere.
  absl::StatusOr<BackendSelection> s =
      CreateBackend(options, SelectionEnvironment{});
  if (!s.ok()) return s.status();
  return std::move(s->backend);
}

class DemuxConformanceTest : public testing::TestWithParam<Config> {
 protected:
  void SetUp() override {
    // Tearing down an io_uring ring interrupts this thread's next blocking
    // calls with EINTR (demux/README.md, "io_uring details"); after an
    // io_uring test, sit that out in plain poll(2) calls so that the next
    // test's first waits are its own.
    if (after_io_uring_) {
      for (int i = 0; i < 5; ++i) poll(nullptr, 0, 10);
      after_io_uring_ = false;
    }
    absl::StatusOr<std::unique_ptr<Backend>> b = Create(GetParam().options);
    if (absl::IsUnavailable(b.status())) {
      GTEST_SKIP() << "backend unavailable on this kernel: " << b.status();
    }
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = *std::move(b);
    caps_ = backend_->capabilities();
  }

  // One Wait; checks the output shape (one entry per fd, no empty events)
  // and returns fd -> events.
  std::map<int, uint32_t> WaitOnce(absl::Duration timeout) {
    std::vector<ReadyEvent> out = {{-42, 0xdead}};  // must be cleared
    absl::Status s = backend_->Wait(timeout, &out);
    EXPECT_TRUE(s.ok()) << s;
    std::map<int, uint32_t> events;
    for (const ReadyEvent& e : out) {
      EXPECT_NE(e.events, 0u) << "fd " << e.fd;
      EXPECT_EQ(e.events & ~(kReadable | kWritable | kError | kHangup), 0u)
          << "fd " << e.fd;
      EXPECT_TRUE(events.emplace(e.fd, e.events).second)
          << "fd " << e.fd << " reported twice in one Wait";
    }
    return events;
  }

  // Events for `fd` from one Wait that may block up to `timeout` (0 if none).
  uint32_t EventsFor(int fd, absl::Duration timeout = absl::Seconds(2)) {
    std::map<int, uint32_t> events = WaitOnce(timeout);
    auto it = events.find(fd);
    return it == events.end() ? 0 : it->second;
  }

  // Waits (bounded) until `fd` is reported; returns its events or 0.
  uint32_t WaitForFd(int fd) {
    for (int i = 0; i < 20; ++i) {
      uint32_t e = EventsFor(fd, absl::Milliseconds(100));
      if (e != 0) return e;
    }
    return 0;
  }

  // The longest of up to six Waits of `timeout` that report nothing, each
  // after a fresh `before()`: a Wait may legitimately end early on EINTR
  // (see FiniteTimeoutIsNeverCutShort); one that returns early for another
  // reason does so every time. The thread first sits out, in plain poll(2)
  // calls, the interruptions that tearing down an earlier test's io_uring
  // ring can still send it (seen: three early returns in a row on epoll).
  absl::Duration LongestEmptyWait(absl::Duration timeout,
                                  const std::function<void()>& before) {
    for (int i = 0; i < 5; ++i) poll(nullptr, 0, 10);
    absl::Duration longest;
    for (int attempt = 0; attempt < 6 && longest < timeout; ++attempt) {
      before();
      const auto start = std::chrono::steady_clock::now();
      EXPECT_TRUE(WaitOnce(timeout).empty());
      longest = std::max(
          longest, absl::FromChrono(std::chrono::steady_clock::now() - start));
    }
    return longest;
  }

  // The bits expected along with readiness on error/hang-up.
  uint32_t IfReported(uint32_t bits) const {
    return caps_.reports_error_and_hangup ? bits : 0;
  }

  void TearDown() override {
    after_io_uring_ = backend_ != nullptr &&
                      backend_->name() == absl::string_view("io_uring");
  }

  static inline bool after_io_uring_ = false;
  std::unique_ptr<Backend> backend_;
  BackendCapabilities caps_;
};

// ---------------------------------------------------------------------------
// Identity and capabilities

TEST_P(DemuxConformanceTest, NameAndCapabilities) {
  EXPECT_EQ(backend_->name(), GetParam().options.name);
  EXPECT_TRUE(caps_.max_fd == -1 || caps_.max_fd > 2) << caps_.max_fd;
  EXPECT_GT(caps_.timeout_resolution, absl::ZeroDuration());
  EXPECT_LE(caps_.timeout_resolution, absl::Milliseconds(1));
  EXPECT_FALSE(caps_.reports_once) << "every backend is level-triggered";
  if (GetParam().label == "epoll_wait") {
    EXPECT_EQ(caps_.timeout_resolution, absl::Milliseconds(1));
  }
}

// ---------------------------------------------------------------------------
// Readiness on pipes, socketpairs and TCP

TEST_P(DemuxConformanceTest, PipeReadableOnlyWhenDataArrives) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  EXPECT_EQ(WaitOnce(absl::ZeroDuration()).count(p.r.get()), 0u);
  ASSERT_TRUE(WriteByte(p.w.get()));
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable);
}

TEST_P(DemuxConformanceTest, PipeWriteEndWritable) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.w.get(), kWritable).ok());
  EXPECT_EVENTS(EventsFor(p.w.get()), kWritable);
}

TEST_P(DemuxConformanceTest, SocketpairReadableAndWritable) {
  SocketPair s;
  ASSERT_TRUE(backend_->Add(s.a.get(), kReadable | kWritable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get()), kWritable);
  ASSERT_TRUE(WriteByte(s.b.get()));
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable | kWritable);
}

TEST_P(DemuxConformanceTest, TcpListenerConnectAndData) {
  sockaddr_in addr;
  UniqueFd listener = BoundTcpSocket(&addr, 16);
  ASSERT_GE(listener.get(), 0);
  ASSERT_TRUE(backend_->Add(listener.get(), kReadable).ok());
  EXPECT_EQ(WaitOnce(absl::ZeroDuration()).count(listener.get()), 0u);

  UniqueFd client = TcpSocket();
  int rc =
      connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << strerror(errno);
  ASSERT_TRUE(backend_->Add(client.get(), kWritable).ok());
  // A pending connection makes the listener readable; the connected client
  // becomes writable.
  EXPECT_EVENTS(WaitForFd(listener.get()), kReadable);
  EXPECT_EVENTS(WaitForFd(client.get()), kWritable);
  int err = -1;
  socklen_t len = sizeof(err);
  ASSERT_EQ(getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, 0);

  UniqueFd server(
      accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_GE(server.get(), 0);
  ASSERT_TRUE(backend_->Add(server.get(), kReadable).ok());
  EXPECT_EQ(WaitOnce(absl::ZeroDuration()).count(server.get()), 0u);
  ASSERT_TRUE(WriteByte(client.get()));
  EXPECT_EVENTS(WaitForFd(server.get()), kReadable);
  EXPECT_EQ(Drain(server.get()), 1);
  EXPECT_EQ(WaitOnce(absl::ZeroDuration()).count(server.get()), 0u);
}

// ---------------------------------------------------------------------------
// Level- and edge-triggering

TEST_P(DemuxConformanceTest, LevelTriggeredReportsUntilDrained) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  ASSERT_TRUE(WriteByte(p.w.get()));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EVENTS(EventsFor(p.r.get()), kReadable) << "wait #" << i;
  }
  ASSERT_EQ(Drain(p.r.get()), 1);
  EXPECT_EVENTS(EventsFor(p.r.get(), absl::Milliseconds(20)), 0u);
  ASSERT_TRUE(WriteByte(p.w.get()));
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable);
}

TEST_P(DemuxConformanceTest, LevelTriggeredWritableKeepsReporting) {
  SocketPair s;
  ASSERT_TRUE(backend_->Add(s.a.get(), kWritable).ok());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EVENTS(EventsFor(s.a.get()), kWritable) << "wait #" << i;
  }
}

TEST_P(DemuxConformanceTest, EdgeTriggeredReportsOncePerChange) {
  SocketPair s;
  const absl::Status add = backend_->Add(s.a.get(), kReadable | kEdgeTriggered);
  if (!caps_.edge_triggered) {
    EXPECT_TRUE(absl::IsInvalidArgument(add)) << add;
    EXPECT_TRUE(
        absl::IsInvalidArgument(backend_->Add(s.a.get(), kEdgeTriggered)));
    ASSERT_TRUE(backend_->Add(s.a.get(), kReadable).ok());
    EXPECT_TRUE(absl::IsInvalidArgument(
        backend_->Modify(s.a.get(), kReadable | kEdgeTriggered)));
    return;
  }
  ASSERT_TRUE(add.ok()) << add;
  ASSERT_TRUE(WriteByte(s.b.get()));
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable);
  // Not drained, but no new data: not reported again.
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::Milliseconds(20)), 0u);
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::ZeroDuration()), 0u);
  // New data: a new edge.
  ASSERT_TRUE(WriteByte(s.b.get()));
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable);
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::Milliseconds(20)), 0u);
  // Modify re-arms: still-ready data is reported once more.
  ASSERT_TRUE(backend_->Modify(s.a.get(), kReadable | kEdgeTriggered).ok());
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable);
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::Milliseconds(20)), 0u);
  // Back to level-triggered.
  ASSERT_TRUE(backend_->Modify(s.a.get(), kReadable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable);
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable);
}

// ---------------------------------------------------------------------------
// Interest changes

TEST_P(DemuxConformanceTest, InterestChangesReadWriteRead) {
  SocketPair s;
  ASSERT_TRUE(backend_->Add(s.a.get(), kReadable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::ZeroDuration()), 0u);
  ASSERT_TRUE(backend_->Modify(s.a.get(), kWritable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get()), kWritable);
  ASSERT_TRUE(backend_->Modify(s.a.get(), kReadable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::Milliseconds(20)), 0u);
  ASSERT_TRUE(WriteByte(s.b.get()));
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable);
  ASSERT_TRUE(backend_->Modify(s.a.get(), kReadable | kWritable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable | kWritable);
  ASSERT_TRUE(backend_->Modify(s.a.get(), kWritable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get()), kWritable);
  // Toggled away and back between two waits: the net change is nothing.
  ASSERT_TRUE(backend_->Modify(s.a.get(), kReadable).ok());
  ASSERT_TRUE(backend_->Modify(s.a.get(), kWritable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get()), kWritable);
}

TEST_P(DemuxConformanceTest, InterestZeroIsSilentEvenOnHangup) {
  SocketPair s;
  ASSERT_TRUE(WriteByte(s.b.get()));
  s.b.reset();  // data pending and peer gone: readable, hang-up
  ASSERT_TRUE(backend_->Add(s.a.get(), 0).ok());
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::Milliseconds(20)), 0u);
  EXPECT_TRUE(absl::IsAlreadyExists(backend_->Add(s.a.get(), kReadable)));
  ASSERT_TRUE(backend_->Modify(s.a.get(), kReadable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable | IfReported(kHangup));
  ASSERT_TRUE(backend_->Modify(s.a.get(), 0).ok());
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::Milliseconds(20)), 0u);
  EXPECT_TRUE(backend_->Remove(s.a.get()).ok());
}

// ---------------------------------------------------------------------------
// Peer close, hang-up and errors

TEST_P(DemuxConformanceTest, PipeWriterClosedReportsHangup) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  ASSERT_TRUE(WriteByte(p.w.get()));
  p.w.reset();
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable | IfReported(kHangup));
  EXPECT_EQ(Drain(p.r.get()), 1);  // the data, then EOF
  // Still EOF: keeps being reported (level), read returns 0.
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable | IfReported(kHangup));
  EXPECT_EQ(read(p.r.get(), nullptr, 0), 0);
}

TEST_P(DemuxConformanceTest, PipeReaderClosedReportsErrorToWriter) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.w.get(), kWritable).ok());
  p.r.reset();
  EXPECT_EVENTS(EventsFor(p.w.get()), kWritable | IfReported(kError));
}

TEST_P(DemuxConformanceTest, SocketPeerShutdownReportsHangup) {
  SocketPair s;
  ASSERT_TRUE(backend_->Add(s.a.get(), kReadable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::ZeroDuration()), 0u);
  ASSERT_EQ(shutdown(s.b.get(), SHUT_WR), 0);
  EXPECT_EVENTS(EventsFor(s.a.get()), kReadable | IfReported(kHangup));
  EXPECT_EQ(Drain(s.a.get()), 0);
}

TEST_P(DemuxConformanceTest, WriteOnlyWatcherIsNotWokenByHalfClose) {
  SocketPair s;
  // Fill a -> b so that a is not writable.
  std::string chunk(65536, 'x');
  for (int i = 0; i < 1000 && write(s.a.get(), chunk.data(), chunk.size()) > 0;
       ++i) {
  }
  ASSERT_TRUE(backend_->Add(s.a.get(), kWritable).ok());
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::Milliseconds(20)), 0u);
  ASSERT_EQ(shutdown(s.b.get(), SHUT_WR), 0);  // a's read side sees EOF
  EXPECT_EVENTS(EventsFor(s.a.get(), absl::Milliseconds(20)), 0u);
  // Once b reads, a becomes writable again.
  Drain(s.b.get());
  EXPECT_EVENTS(WaitForFd(s.a.get()), kWritable);
}

// Nor does the half-close end its Wait early with nothing to report (io_uring
// adds RDHUP to every poll; the completion woke the wait and was then
// masked out).
TEST_P(DemuxConformanceTest, HalfCloseDoesNotEndAWriteOnlyWait) {
  std::vector<std::unique_ptr<SocketPair>> pairs;
  const absl::Duration took = LongestEmptyWait(absl::Milliseconds(100), [&] {
    pairs.push_back(std::make_unique<SocketPair>());
    SocketPair& s = *pairs.back();
    std::string chunk(65536, 'x');
    for (int i = 0;
         i < 1000 && write(s.a.get(), chunk.data(), chunk.size()) > 0; ++i) {
    }
    ASSERT_TRUE(backend_->Add(s.a.get(), kWritable).ok());
    EXPECT_TRUE(WaitOnce(absl::Milliseconds(20)).empty());
    ASSERT_EQ(shutdown(s.b.get(), SHUT_WR), 0);
  });
  EXPECT_GE(took, absl::Milliseconds(100));
  for (auto& s : pairs) ASSERT_TRUE(backend_->Remove(s->a.get()).ok());
}

TEST_P(DemuxConformanceTest, TcpResetReportsError) {
  TcpPair t = MakeTcpPair();
  ASSERT_GE(t.server.get(), 0);
  ASSERT_TRUE(backend_->Add(t.client.get(), kReadable).ok());
  EXPECT_EVENTS(EventsFor(t.client.get(), absl::ZeroDuration()), 0u);
  struct linger lg = {1, 0};  // close() sends RST
  ASSERT_EQ(setsockopt(t.server.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
            0);
  t.server.reset();
  EXPECT_EVENTS(WaitForFd(t.client.get()),
                kReadable | IfReported(kError | kHangup));
  int err = 0;
  socklen_t len = sizeof(err);
  ASSERT_EQ(getsockopt(t.client.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, ECONNRESET);
}

TEST_P(DemuxConformanceTest, RefusedConnectReportsError) {
  sockaddr_in addr;
  // Bound but not listening: a connect to it is refused, and the port stays
  // ours so nobody else can listen there meanwhile.
  UniqueFd closed_port = BoundTcpSocket(&addr, 0);
  ASSERT_GE(closed_port.get(), 0);
  // Loopback usually refuses asynchronously (EINPROGRESS, then RST); retry
  // a few times if the kernel answers at once.
  UniqueFd client;
  int rc = -1;
  for (int attempt = 0; attempt < 5; ++attempt) {
    client = TcpSocket();
    rc =
        connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    if (rc == 0 || errno != ECONNREFUSED) break;
  }
  if (rc != 0 && errno == ECONNREFUSED) {
    GTEST_SKIP() << "connect was refused synchronously 5 times";
  }
  ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << strerror(errno);
  ASSERT_TRUE(backend_->Add(client.get(), kWritable).ok());
  EXPECT_EVENTS(WaitForFd(client.get()),
                kWritable | IfReported(kError | kHangup));
  int err = 0;
  socklen_t len = sizeof(err);
  ASSERT_EQ(getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, ECONNREFUSED);
}

TEST_P(DemuxConformanceTest, RegularFileIsAlwaysReady) {
  UniqueFd file = TempRegularFile();
  ASSERT_GE(file.get(), 0);
  ASSERT_TRUE(backend_->Add(file.get(), kReadable | kWritable).ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EVENTS(EventsFor(file.get()), kReadable | kWritable)
        << "wait #" << i;
  }
  ASSERT_TRUE(backend_->Modify(file.get(), kWritable).ok());
  EXPECT_EVENTS(EventsFor(file.get()), kWritable);
  ASSERT_TRUE(backend_->Modify(file.get(), 0).ok());
  EXPECT_EVENTS(EventsFor(file.get(), absl::Milliseconds(20)), 0u);
  ASSERT_TRUE(backend_->Remove(file.get()).ok());
  EXPECT_EVENTS(EventsFor(file.get(), absl::Milliseconds(20)), 0u);
}

// Edge-triggered, an always-ready file is reported once, and once more after
// each Modify; not at every Wait (which makes a loop spin).
TEST_P(DemuxConformanceTest, EdgeTriggeredRegularFileIsReportedOncePerModify) {
  if (!caps_.edge_triggered) GTEST_SKIP() << "no edge-triggered mode";
  UniqueFd file = TempRegularFile();
  ASSERT_GE(file.get(), 0);
  ASSERT_TRUE(backend_->Add(file.get(), kReadable | kEdgeTriggered).ok());
  EXPECT_EVENTS(EventsFor(file.get()), kReadable);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EVENTS(EventsFor(file.get(), absl::Milliseconds(20)), 0u)
        << "wait #" << i;
  }
  ASSERT_TRUE(backend_->Modify(file.get(), kReadable | kEdgeTriggered).ok());
  EXPECT_EVENTS(EventsFor(file.get()), kReadable);
  EXPECT_EVENTS(EventsFor(file.get(), absl::Milliseconds(20)), 0u);
  ASSERT_TRUE(backend_->Remove(file.get()).ok());
}

// Added with no interest, a regular file has not been shown to the kernel
// yet (epoll refuses it only when asked); given interest later, it must be
// always ready all the same, not an error.
TEST_P(DemuxConformanceTest, ParkedRegularFileGivenInterestIsAlwaysReady) {
  UniqueFd file = TempRegularFile();
  ASSERT_GE(file.get(), 0);
  ASSERT_TRUE(backend_->Add(file.get(), 0).ok());
  EXPECT_EVENTS(EventsFor(file.get(), absl::Milliseconds(20)), 0u);
  absl::Status status = backend_->Modify(file.get(), kReadable);
  ASSERT_TRUE(status.ok()) << status;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EVENTS(EventsFor(file.get()), kReadable) << "wait #" << i;
  }
  ASSERT_TRUE(backend_->Modify(file.get(), 0).ok());
  EXPECT_EVENTS(EventsFor(file.get(), absl::Milliseconds(20)), 0u);
  ASSERT_TRUE(backend_->Remove(file.get()).ok());
  // The number can be registered afresh: nothing of the old entry is left.
  ASSERT_TRUE(backend_->Add(file.get(), kWritable).ok());
  EXPECT_EVENTS(EventsFor(file.get()), kWritable);
  ASSERT_TRUE(backend_->Remove(file.get()).ok());
}

// ---------------------------------------------------------------------------
// One entry per fd, Remove inside a batch, stale events

TEST_P(DemuxConformanceTest, OneEntryPerFdPerWait) {
  SocketPair s;
  ASSERT_TRUE(backend_->Add(s.a.get(), kReadable | kWritable).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(WriteByte(s.b.get()));
  s.b.reset();
  // WaitOnce fails if the fd shows up twice.
  EXPECT_EVENTS(EventsFor(s.a.get()),
                kReadable | kWritable | IfReported(kHangup));
}

TEST_P(DemuxConformanceTest, RemoveDuringBatchAndReuseTheNumber) {
  Pipe p1, p2;
  ASSERT_TRUE(backend_->Add(p1.r.get(), kReadable).ok());
  ASSERT_TRUE(backend_->Add(p2.r.get(), kReadable).ok());
  ASSERT_TRUE(WriteByte(p1.w.get()));
  ASSERT_TRUE(WriteByte(p2.w.get()));
  std::map<int, uint32_t> batch;
  for (int i = 0; i < 20 && batch.size() < 2; ++i) {
    std::map<int, uint32_t> more = WaitOnce(absl::Milliseconds(100));
    batch.insert(more.begin(), more.end());
  }
  ASSERT_EQ(batch.size(), 2u);
  // While "dispatching" p1's event, its handler removes and closes p2; then
  // the same number comes back as a fresh, idle pipe.
  const int reused = p2.r.get();
  ASSERT_TRUE(backend_->Remove(reused).ok());
  p2.r.reset();
  Pipe fresh;
  ASSERT_EQ(dup2(fresh.r.get(), reused), reused);
  UniqueFd reused_fd(reused);
  ASSERT_TRUE(backend_->Add(reused, kReadable).ok());
  for (int i = 0; i < 3; ++i) {
    std::map<int, uint32_t> events = WaitOnce(absl::Milliseconds(20));
    EXPECT_EQ(events.count(reused), 0u) << "stale event for reused fd";
    EXPECT_EVENTS(events[p1.r.get()], kReadable);
  }
  ASSERT_TRUE(WriteByte(fresh.w.get()));
  EXPECT_EVENTS(EventsFor(reused), kReadable);
  ASSERT_TRUE(backend_->Remove(reused).ok());
}

TEST_P(DemuxConformanceTest, RemoveDropsEventsNotYetCollected) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  EXPECT_EVENTS(EventsFor(p.r.get(), absl::ZeroDuration()), 0u);  // armed
  ASSERT_TRUE(WriteByte(p.w.get()));  // readiness the kernel may queue now
  const int number = p.r.get();
  ASSERT_TRUE(backend_->Remove(number).ok());
  EXPECT_EVENTS(EventsFor(number, absl::Milliseconds(20)), 0u);
  p.r.reset();
  Pipe fresh;
  ASSERT_EQ(dup2(fresh.r.get(), number), number);
  UniqueFd reused(number);
  ASSERT_TRUE(backend_->Add(number, kReadable).ok());
  EXPECT_EVENTS(EventsFor(number, absl::Milliseconds(20)), 0u);
  // And a Modify drops what the old interest had queued.
  ASSERT_TRUE(WriteByte(fresh.w.get()));
  ASSERT_TRUE(backend_->Modify(number, kWritable).ok());
  EXPECT_EVENTS(EventsFor(number, absl::Milliseconds(20)), 0u);
}

TEST_P(DemuxConformanceTest, ClosedWithoutRemoveIsSurvivable) {
  Pipe p, other;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  ASSERT_TRUE(backend_->Add(other.r.get(), kReadable).ok());
  ASSERT_TRUE(WriteByte(other.w.get()));
  const int number = p.r.get();
  p.r.reset();  // the caller error documented in backend.h
  for (int i = 0; i < 3; ++i) {
    // Whatever is said about the closed fd, Wait succeeds and the others
    // are still reported.
    EXPECT_EVENTS(EventsFor(other.r.get()), kReadable);
  }
  EXPECT_TRUE(backend_->Remove(number).ok());
  EXPECT_EQ(WaitOnce(absl::Milliseconds(20)).count(number), 0u);
}

// ---------------------------------------------------------------------------
// Many fds

TEST_P(DemuxConformanceTest, ManyFds) {
  // 10,000 on backends without an fd limit; as many as fit below max_fd on
  // select.
  int wanted = 10000;
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  const rlim_t need = static_cast<rlim_t>(wanted) + 64;
  if (rl.rlim_cur < need && rl.rlim_max >= need) {
    rl.rlim_cur = need;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  if (rl.rlim_cur < need) {
    GTEST_SKIP() << "RLIMIT_NOFILE " << rl.rlim_cur << " < " << need;
  }
  std::vector<UniqueFd> fds;
  fds.reserve(wanted);
  for (int i = 0; i < wanted; ++i) {
    UniqueFd fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    ASSERT_GE(fd.get(), 0) << strerror(errno);
    if (caps_.max_fd != -1 && fd.get() > caps_.max_fd) break;
    fds.push_back(std::move(fd));
  }
  if (caps_.max_fd == -1) {
    ASSERT_EQ(fds.size(), static_cast<size_t>(wanted));
  } else {
    ASSERT_GT(fds.size(), 500u);
  }
  for (const UniqueFd& fd : fds) {
    ASSERT_TRUE(backend_->Add(fd.get(), kReadable).ok()) << fd.get();
  }
  std::set<int> expected;
  const uint64_t one = 1;
  for (size_t i = 0; i < fds.size(); i += 7) {
    ASSERT_EQ(write(fds[i].get(), &one, sizeof(one)), 8);
    expected.insert(fds[i].get());
  }
  // Level-triggered: every ready fd is reported, at most one entry each per
  // Wait; a backend may take several Waits (bounded buffer).
  std::set<int> seen;
  for (int i = 0; i < 100 && seen.size() < expected.size(); ++i) {
    for (const auto& [fd, events] : WaitOnce(absl::Seconds(1))) {
      EXPECT_EQ(expected.count(fd), 1u) << "fd " << fd << " not ready";
      EXPECT_EVENTS(events, kReadable);
      seen.insert(fd);
    }
  }
  EXPECT_EQ(seen, expected);
  for (const UniqueFd& fd : fds) {
    ASSERT_TRUE(backend_->Remove(fd.get()).ok()) << fd.get();
  }
  EXPECT_TRUE(WaitOnce(absl::Milliseconds(20)).empty());
}

// ---------------------------------------------------------------------------
// Timeouts and EINTR

TEST_P(DemuxConformanceTest, ZeroTimeoutPolls) {
  // Nothing registered, nothing ready, something registered but idle: all
  // return at once with no events. (Hanging here is the failure.)
  EXPECT_TRUE(WaitOnce(absl::ZeroDuration()).empty());
  EXPECT_TRUE(WaitOnce(-absl::Seconds(1)).empty());
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(WaitOnce(absl::ZeroDuration()).empty());
  }
}

TEST_P(DemuxConformanceTest, FiniteTimeoutIsNeverCutShort) {
  // Lower bounds only (the machine may be slow, never early): a timeout is
  // rounded up, so 0.4ms must not become a 0ms poll. A wait may legitimately
  // end early on EINTR (io_uring's task work can interrupt a blocking call
  // of this thread after another ring is torn down), so each length gets
  // three tries; an implementation that rounds down fails all of them.
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  for (absl::Duration d : {absl::Microseconds(400), absl::Milliseconds(3)}) {
    std::chrono::nanoseconds longest{0};
    for (int attempt = 0; attempt < 3; ++attempt) {
      const auto start = std::chrono::steady_clock::now();
      EXPECT_TRUE(WaitOnce(d).empty());
      longest = std::max(longest,
                         std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now() - start));
      if (longest >= absl::ToChronoNanoseconds(d)) break;
    }
    EXPECT_GE(longest, absl::ToChronoNanoseconds(d)) << d;
  }
}

// A wait woken only by work of the backend's own (the cancellation a Remove
// or Modify makes, on io_uring) keeps waiting: only EINTR may end it early.
TEST_P(DemuxConformanceTest, RemoveAndModifyDoNotCutTheNextWaitShort) {
  Pipe idle;
  ASSERT_TRUE(backend_->Add(idle.r.get(), kReadable).ok());
  std::vector<std::unique_ptr<Pipe>> removed;
  absl::Duration took = LongestEmptyWait(absl::Milliseconds(100), [&] {
    removed.push_back(std::make_unique<Pipe>());
    ASSERT_TRUE(backend_->Add(removed.back()->r.get(), kReadable).ok());
    EXPECT_TRUE(WaitOnce(absl::ZeroDuration()).empty());
    ASSERT_TRUE(backend_->Remove(removed.back()->r.get()).ok());
  });
  EXPECT_GE(took, absl::Milliseconds(100)) << "after Remove";
  bool writable = false;
  took = LongestEmptyWait(absl::Milliseconds(100), [&] {
    // The read end of an empty pipe is neither readable nor writable.
    writable = !writable;
    ASSERT_TRUE(
        backend_->Modify(idle.r.get(), writable ? kWritable : kReadable).ok());
  });
  EXPECT_GE(took, absl::Milliseconds(100)) << "after Modify";
}

// Level-triggered readiness is what holds when Wait looks: data that arrived
// and was read before the Wait is not reported (a read would then fail with
// EAGAIN, or block on a blocking fd).
TEST_P(DemuxConformanceTest, ReadinessGoneBeforeTheWaitIsNotReported) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  EXPECT_TRUE(WaitOnce(absl::ZeroDuration()).empty());
  ASSERT_TRUE(WriteByte(p.w.get()));
  char byte;
  ASSERT_EQ(read(p.r.get(), &byte, 1), 1);
  EXPECT_EVENTS(EventsFor(p.r.get(), absl::Milliseconds(20)), 0u);
  // Still reported when it holds.
  ASSERT_TRUE(WriteByte(p.w.get()));
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable);
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable);
}

TEST_P(DemuxConformanceTest, InfiniteTimeoutBlocksUntilReady) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  std::atomic<bool> written{false};
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    written.store(true);
    WriteByte(p.w.get());
  });
  // Blocks until the write. Returns with zero events are allowed (EINTR),
  // but only a handful: a Wait that did not block would spin many times in
  // 30ms.
  int waits = 0;
  uint32_t events = 0;
  while (events == 0 && waits < 5) {
    ++waits;
    events = EventsFor(p.r.get(), absl::InfiniteDuration());
    if (events != 0) {
      EXPECT_TRUE(written.load()) << "reported before the write";
    }
  }
  EXPECT_EVENTS(events, kReadable);
  writer.join();
}

std::atomic<int> g_signals{0};
void CountSignal(int) { g_signals.fetch_add(1); }

TEST_P(DemuxConformanceTest, InterruptedWaitReturnsOkWithNoEvents) {
  struct sigaction sa = {};
  sa.sa_handler = &CountSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART (which the backends must not rely on)
  struct sigaction old;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);

  Pipe backstop;
  ASSERT_TRUE(backend_->Add(backstop.r.get(), kReadable).ok());
  const pthread_t waiter = pthread_self();
  std::atomic<bool> returned{false};
  const int signals_before = g_signals.load();
  std::thread killer([&] {
    // Repeat until one lands inside the wait; bounded, then a backstop
    // readiness ends the wait so a broken backend fails instead of hanging.
    for (int i = 0; i < 300 && !returned.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!returned.load()) pthread_kill(waiter, SIGUSR1);
    }
    WriteByte(backstop.w.get());
  });
  // A wait may also end early for no signal of ours (io_uring task work
  // after another ring's teardown interrupts this thread); such returns look
  // the same (OK, no events) and are allowed. Wait again, a bounded number
  // of times, until one of our signals has landed.
  absl::Status s;
  std::vector<ReadyEvent> out;
  for (int i = 0;
       i < 10 && s.ok() && out.empty() && g_signals.load() == signals_before;
       ++i) {
    out = {{-1, kReadable}};  // must be cleared
    s = backend_->Wait(absl::InfiniteDuration(), &out);
  }
  returned.store(true);
  killer.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(out.empty()) << "woken by the backstop, not by EINTR";
  EXPECT_GT(g_signals.load(), signals_before);
  ASSERT_EQ(sigaction(SIGUSR1, &old, nullptr), 0);
}

// ---------------------------------------------------------------------------
// fork()

// Child side: no gtest assertions, only exit codes the parent checks.
enum ChildExit : int {
  kChildOk = 0,
  kChildCreateFailed = 10,
  kChildAddFailed = 11,
  kChildWriteFailed = 12,
  kChildNotReported = 13,
  kChildWaitFailed = 14,
};

int ForkChild(std::unique_ptr<Backend>& inherited,
              const BackendOptions& options, const Pipe& p) {
  std::unique_ptr<Backend> mine;
  Backend* backend = inherited.get();
  if (inherited->capabilities().needs_reinit_after_fork) {
    inherited.reset();  // releases only the child's references
    absl::StatusOr<std::unique_ptr<Backend>> b = Create(options);
    if (!b.ok()) return kChildCreateFailed;
    mine = *std::move(b);
    backend = mine.get();
    if (!backend->Add(p.r.get(), kReadable).ok()) return kChildAddFailed;
  }
  if (!WriteByte(p.w.get())) return kChildWriteFailed;
  std::vector<ReadyEvent> out;
  for (int i = 0; i < 20; ++i) {
    if (!backend->Wait(absl::Milliseconds(100), &out).ok()) {
      return kChildWaitFailed;
    }
    for (const ReadyEvent& e : out) {
      if (e.fd == p.r.get() && e.events == kReadable) return kChildOk;
    }
  }
  return kChildNotReported;
}

TEST_P(DemuxConformanceTest, ForkChildRecreatesOrReuses) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  EXPECT_EVENTS(EventsFor(p.r.get(), absl::ZeroDuration()), 0u);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << strerror(errno);
  if (pid == 0) {
    _exit(ForkChild(backend_, GetParam().options, p));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), kChildOk);
  // The parent's backend is intact: it sees the byte the child wrote.
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable);
  EXPECT_EQ(Drain(p.r.get()), 1);
  EXPECT_EVENTS(EventsFor(p.r.get(), absl::Milliseconds(20)), 0u);
}

// ---------------------------------------------------------------------------
// Errors: each a clear status, never UB or a silent drop

TEST_P(DemuxConformanceTest, AddNegativeFdIsInvalidArgument) {
  absl::Status s = backend_->Add(-1, kReadable);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("fd=-1"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find(backend_->name()), absl::string_view::npos) << s;
}

TEST_P(DemuxConformanceTest, AddClosedFdIsInvalidArgument) {
  int number;
  {
    Pipe p;
    number = p.r.get();
  }
  for (uint32_t interest : {uint32_t{kReadable}, uint32_t{0}}) {
    absl::Status s = backend_->Add(number, interest);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_NE(s.message().find(absl::StrCat("fd=", number)),
              absl::string_view::npos)
        << s;
    EXPECT_NE(s.message().find(strerror(EBADF)), absl::string_view::npos) << s;
  }
  EXPECT_TRUE(absl::IsNotFound(backend_->Remove(number)));
}

TEST_P(DemuxConformanceTest, AddTwiceIsAlreadyExists) {
  Pipe p;
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  absl::Status s = backend_->Add(p.r.get(), kReadable);
  EXPECT_TRUE(absl::IsAlreadyExists(s)) << s;
  EXPECT_NE(s.message().find(absl::StrCat("fd=", p.r.get())),
            absl::string_view::npos)
      << s;
  // The first registration is intact.
  ASSERT_TRUE(WriteByte(p.w.get()));
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable);
}

TEST_P(DemuxConformanceTest, RemoveOrModifyUnknownFdIsNotFound) {
  Pipe p;
  absl::Status s = backend_->Remove(p.r.get());
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_NE(s.message().find(absl::StrCat("fd=", p.r.get())),
            absl::string_view::npos)
      << s;
  EXPECT_TRUE(absl::IsNotFound(backend_->Modify(p.r.get(), kReadable)));
  EXPECT_TRUE(absl::IsNotFound(backend_->Remove(-1)));
  EXPECT_TRUE(absl::IsNotFound(backend_->Remove(1 << 20)));
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
  ASSERT_TRUE(backend_->Remove(p.r.get()).ok());
  EXPECT_TRUE(absl::IsNotFound(backend_->Remove(p.r.get())));
  EXPECT_TRUE(absl::IsNotFound(backend_->Modify(p.r.get(), kWritable)));
  // Removed means forgotten: it can be added again.
  EXPECT_TRUE(backend_->Add(p.r.get(), kReadable).ok());
}

TEST_P(DemuxConformanceTest, UnknownInterestBitsAreInvalidArgument) {
  Pipe p;
  EXPECT_TRUE(absl::IsInvalidArgument(backend_->Add(p.r.get(), 1u << 20)));
  EXPECT_TRUE(absl::IsNotFound(backend_->Remove(p.r.get())))
      << "a rejected Add must not register";
  // Error/hang-up bits are accepted in an interest, and change nothing.
  ASSERT_TRUE(backend_->Add(p.r.get(), kReadable | kError | kHangup).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(
      backend_->Modify(p.r.get(), kReadable | (1u << 9))));
  ASSERT_TRUE(WriteByte(p.w.get()));
  EXPECT_EVENTS(EventsFor(p.r.get()), kReadable);
}

TEST_P(DemuxConformanceTest, FdLimitIsEnforcedOrAbsent) {
  // select: max_fd is FD_SETSIZE - 1 and one more is OutOfRange (never a
  // write past the fd_set). Others: no limit, so an fd far above
  // FD_SETSIZE works like any other.
  const int high = caps_.max_fd == -1 ? 4 * FD_SETSIZE : caps_.max_fd + 1;
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur <= static_cast<rlim_t>(high) &&
      rl.rlim_max > static_cast<rlim_t>(high)) {
    rl.rlim_cur = high + 1;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  ASSERT_GT(rl.rlim_cur, static_cast<rlim_t>(high))
      << "RLIMIT_NOFILE too low to open fd " << high;
  Pipe p;
  ASSERT_EQ(dup2(p.r.get(), high), high) << strerror(errno);
  UniqueFd high_fd(high);
  absl::Status s = backend_->Add(high, kReadable);
  if (caps_.max_fd == -1) {
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(WriteByte(p.w.get()));
    EXPECT_EVENTS(EventsFor(high), kReadable);
    return;
  }
  EXPECT_TRUE(absl::IsOutOfRange(s)) << s;
  EXPECT_NE(s.message().find(absl::StrCat("fd=", high)),
            absl::string_view::npos)
      << s;
  EXPECT_TRUE(absl::IsNotFound(backend_->Remove(high)));
  // And the largest allowed one works.
  const int top = caps_.max_fd;
  ASSERT_EQ(dup2(p.r.get(), top), top) << strerror(errno);
  UniqueFd top_fd(top);
  ASSERT_TRUE(backend_->Add(top, kReadable).ok());
  ASSERT_TRUE(WriteByte(p.w.get()));
  EXPECT_EVENTS(EventsFor(top), kReadable);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, DemuxConformanceTest,
                         testing::ValuesIn(AllConfigs()),
                         [](const testing::TestParamInfo<Config>& info) {
                           return info.param.label;
                         });

// The list itself: every backend the registry knows is in the suite.
TEST(DemuxConformanceSuite, CoversEveryRegisteredBackend) {
  std::set<std::string> labels;
  for (const Config& c : AllConfigs()) labels.insert(c.options.name);
  for (const std::string& name : AvailableBackendNames()) {
    EXPECT_EQ(labels.count(name), 1u) << name;
  }
  EXPECT_GE(labels.size(), 4u);
}

}  // namespace
}  // namespace eventide
