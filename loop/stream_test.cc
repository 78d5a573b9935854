// The stream layer over real loopback sockets, on every backend the running
// kernel supports: echo of 1 byte and of 64 MiB, 1,000 concurrent clients,
// peer resets, half-close both ways, idle timeouts, watermarks,
// back-pressure, EMFILE survival (in forked children with a low
// RLIMIT_NOFILE), SO_REUSEPORT across loops and the accept-thread hand-off.
// Every socket binds 127.0.0.1 port 0; every loop run is bounded by a
// watchdog; no test asserts a timing.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "demux/registry.h"
#include "gtest/gtest.h"
#include "loop/buffer.h"
#include "loop/connection.h"
#include "loop/event_loop.h"
#include "loop/listener.h"
#include "loop/socket.h"

namespace eventide {
namespace {

// Bytes i of every stream below is kPattern[i % 251]; the string is long
// enough that any 64 KiB chunk can be compared in place.
constexpr size_t kPeriod = 251;
constexpr size_t kChunk = 64 * 1024;
const std::string& Pattern() {
  static const std::string* pattern = [] {
    auto* s = new std::string(kChunk + 2 * kPeriod, '\0');
    for (size_t i = 0; i < s->size(); ++i) {
      (*s)[i] = static_cast<char>((i % kPeriod) * 7 + 1);
    }
    return s;
  }();
  return *pattern;
}

int HighestOpenFd() {
  int highest = -1;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 1024;
  while (dirent* e = readdir(dir)) {
    highest = std::max(highest, atoi(e->d_name));
  }
  closedir(dir);
  return highest;
}

// Runs `loop` until done() or `limit` passes (a watchdog timer bounds every
// wait); fails the test in the second case.
void RunUntil(EventLoop& loop, const std::function<bool()>& done,
              absl::Duration limit = absl::Seconds(20)) {
  Timer watchdog = loop.AddTimer(limit, [] {});
  const absl::Time give_up = absl::Now() + limit;
  while (!done() && absl::Now() < give_up) {
    ASSERT_TRUE(loop.RunOnce(true).ok());
  }
  ASSERT_TRUE(done()) << "not done within " << limit;
}

// A server on a loop: a Listener on 127.0.0.1:0 that adopts every fd into a
// Connection with `options`, answers with `on_read` (echo by default) and
// records every close.
struct Server {
  explicit Server(EventLoop* l) : loop(l) {}

  absl::Status Listen(ListenerOptions listener_options = {}) {
    absl::StatusOr<std::unique_ptr<Listener>> l = Listener::Create(
        loop, SocketAddress::Loopback4(0),
        [this](UniqueFd fd, const SocketAddress&) { Accept(std::move(fd)); },
        listener_options);
    if (!l.ok()) return l.status();
    listener = std::move(*l);
    return absl::OkStatus();
  }

  void Accept(UniqueFd fd) {
    Connection::Callbacks cb;
    cb.on_read = [this](Connection& c, Buffer& in) { on_read(c, in); };
    if (on_peer_eof) {
      cb.on_peer_eof = [this](Connection& c) { on_peer_eof(c); };
    }
    if (on_drained) cb.on_drained = [this](Connection& c) { on_drained(c); };
    cb.on_close = [this](Connection& c, CloseReason why,
                         const absl::Status& error) {
      ++close_calls[&c];
      reasons.push_back(why);
      errors.push_back(error);
      --open;
      if (on_close) on_close(c, why);
    };
    absl::StatusOr<std::shared_ptr<Connection>> c =
        Connection::Adopt(loop, std::move(fd), options, std::move(cb));
    if (!c.ok()) {
      adopt_errors.push_back(c.status());
      return;
    }
    conns.push_back(*c);
    ++open;
    peak_open = std::max(peak_open, open);
    if (on_accept) on_accept(**c);
  }

  SocketAddress address() const { return listener->address(); }
  int closed() const { return static_cast<int>(reasons.size()); }
  // on_close ran exactly once for every connection that closed.
  void ExpectEachClosedOnce() const {
    for (const auto& [conn, calls] : close_calls) EXPECT_EQ(calls, 1);
    for (const auto& c : conns) {
      if (!c->open()) {
        EXPECT_EQ(close_calls.count(c.get()), 1u);
      }
    }
  }

  EventLoop* loop;
  ConnectionOptions options;
  std::function<void(Connection&, Buffer&)> on_read =
      [](Connection& c, Buffer& in) { (void)c.Write(std::move(in)); };
  std::function<void(Connection&)> on_accept;
  std::function<void(Connection&)> on_peer_eof;
  std::function<void(Connection&)> on_drained;
  std::function<void(Connection&, CloseReason)> on_close;
  std::unique_ptr<Listener> listener;
  std::vector<std::shared_ptr<Connection>> conns;
  std::map<Connection*, int> close_calls;
  std::vector<CloseReason> reasons;
  std::vector<absl::Status> errors;
  std::vector<absl::Status> adopt_errors;
  int open = 0;
  int peak_open = 0;
};

// A raw non-blocking client on the loop that streams `total` pattern bytes,
// reads the echo back and checks every byte; optionally half-closes after
// sending and waits for EOF.
class EchoPump {
 public:
  EchoPump(EventLoop* loop, UniqueFd fd, size_t total, bool half_close)
      : fd_(std::move(fd)), total_(total), half_close_(half_close) {
    absl::StatusOr<IoWatcher> w =
        loop->WatchIo(fd_.get(), kReadable | kWritable,
                      [this](const IoEvent& ev) { OnEvent(ev); });
    EXPECT_TRUE(w.ok()) << w.status();
    if (w.ok()) watcher_ = std::move(*w);
  }

  bool done() const {
    return failed_ || (received_ == total_ && (!half_close_ || eof_));
  }
  bool failed() const { return failed_; }
  bool eof() const { return eof_; }
  size_t received() const { return received_; }
  // Stop reading (the test plays a peer that does not read).
  void set_reading(bool on) {
    reading_ = on;
    Update();
  }
  bool write_blocked() const { return write_blocked_; }

  size_t sent() const { return sent_; }

 private:
  void OnEvent(const IoEvent& ev) {
    if ((ev.events & kWritable) != 0) Send();
    if ((ev.events & kReadable) != 0 && reading_) Receive();
    Update();
  }

  void Send() {
    write_blocked_ = false;
    while (sent_ < total_) {
      const size_t n = std::min(kChunk, total_ - sent_);
      const ssize_t w =
          send(fd_.get(), Pattern().data() + sent_ % kPeriod, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN)
          write_blocked_ = true;
        else
          failed_ = true;
        return;
      }
      sent_ += static_cast<size_t>(w);
    }
    if (half_close_ && !shut_) {
      shut_ = true;
      if (shutdown(fd_.get(), SHUT_WR) != 0) failed_ = true;
    }
  }

  void Receive() {
    char buf[kChunk];
    for (;;) {
      const ssize_t r = recv(fd_.get(), buf, sizeof(buf), 0);
      if (r > 0) {
        // total_ == 0: a sink that only counts.
        if (total_ > 0 &&
            (received_ + static_cast<size_t>(r) > total_ ||
             std::memcmp(buf, Pattern().data() + received_ % kPeriod,
                         static_cast<size_t>(r)) != 0)) {
          ADD_FAILURE() << "echo corrupted near byte " << received_;
          failed_ = true;
          return;
        }
        received_ += static_cast<size_t>(r);
        continue;
      }
      if (r == 0)
        eof_ = true;
      else if (errno != EAGAIN)
        failed_ = true;
      return;
    }
  }

  void Update() {
    if (!watcher_.valid()) return;
    if (eof_ || failed_) {
      watcher_.Release();
      return;
    }
    uint32_t interest = reading_ ? uint32_t{kReadable} : 0u;
    if (sent_ < total_ || (half_close_ && !shut_)) interest |= kWritable;
    (void)watcher_.SetInterest(interest);
  }

  UniqueFd fd_;
  IoWatcher watcher_;
  size_t total_;
  bool half_close_;
  size_t sent_ = 0;
  size_t received_ = 0;
  bool shut_ = false;
  bool eof_ = false;
  bool failed_ = false;
  bool reading_ = true;
  bool write_blocked_ = false;
};

UniqueFd Connect(const SocketAddress& address) {
  absl::StatusOr<UniqueFd> fd =
      ConnectWithTimeout(address, absl::Seconds(5), /*nonblocking=*/true);
  EXPECT_TRUE(fd.ok()) << fd.status();
  return fd.ok() ? std::move(*fd) : UniqueFd();
}

// Blocking-socket helpers for clients outside the loop.
bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string ReadExactly(int fd, size_t n) {
  std::string out;
  char buf[4096];
  while (out.size() < n) {
    const ssize_t r = recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

class StreamTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<EventLoop> MakeLoop() {
    LoopOptions options;
    options.backend.name = GetParam();
    options.backend.ignore_environment = true;
    absl::StatusOr<std::unique_ptr<EventLoop>> loop =
        EventLoop::Create(options);
    EXPECT_TRUE(loop.ok()) << loop.status();
    return loop.ok() ? std::move(*loop) : nullptr;
  }
};

// ------------------------------------------------------------------- echo --

TEST_P(StreamTest, EchoOneByteBetweenTwoConnections) {
  auto loop = MakeLoop();
  Server server(loop.get());
  ASSERT_TRUE(server.Listen().ok());

  std::string client_got;
  int client_closes = 0;
  CloseReason client_reason = CloseReason::kError;
  std::shared_ptr<Connection> client;
  absl::Status connect_status = absl::UnknownError("not yet");
  std::unique_ptr<PendingConnect> pending = ConnectAsync(
      loop.get(), server.address(), absl::Seconds(5),
      [&](absl::StatusOr<UniqueFd> fd) {
        connect_status = fd.status();
        if (!fd.ok()) return;
        Connection::Callbacks cb;
        cb.on_read = [&](Connection& c, Buffer& in) {
          client_got += in.Take(in.size());
          c.Close();  // closing from its own read callback
        };
        cb.on_close = [&](Connection&, CloseReason why, const absl::Status&) {
          ++client_closes;
          client_reason = why;
        };
        auto c =
            Connection::Adopt(loop.get(), std::move(*fd), {}, std::move(cb));
        ASSERT_TRUE(c.ok()) << c.status();
        client = *c;
        ASSERT_TRUE(client->Write("x").ok());
      });
  RunUntil(*loop, [&] { return client_closes == 1 && server.closed() == 1; });
  EXPECT_TRUE(connect_status.ok()) << connect_status;
  EXPECT_TRUE(pending->done());
  EXPECT_EQ(client_got, "x");
  EXPECT_EQ(client_reason, CloseReason::kLocal);
  EXPECT_FALSE(client->open());
  EXPECT_EQ(client->fd(), -1);
  EXPECT_EQ(client->Write("late").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(server.reasons[0], CloseReason::kPeerClosed);
  EXPECT_EQ(server.conns[0]->stats().bytes_read, 1u);
  EXPECT_EQ(server.conns[0]->stats().bytes_written, 1u);
  server.ExpectEachClosedOnce();
}

TEST_P(StreamTest, Echo64MiBWithHalfClose) {
  auto loop = MakeLoop();
  Server server(loop.get());
  ASSERT_TRUE(server.Listen().ok());
  const size_t kTotal = 64u << 20;
  EchoPump pump(loop.get(), Connect(server.address()), kTotal,
                /*half_close=*/true);
  RunUntil(
      *loop, [&] { return pump.done() && server.closed() == 1; },
      absl::Seconds(40));
  EXPECT_FALSE(pump.failed());
  EXPECT_EQ(pump.received(), kTotal);
  EXPECT_TRUE(pump.eof());  // the server closed after answering everything
  ASSERT_EQ(server.conns.size(), 1u);
  const Connection& c = *server.conns[0];
  EXPECT_EQ(server.reasons[0], CloseReason::kPeerClosed);
  EXPECT_TRUE(server.errors[0].ok()) << server.errors[0];
  EXPECT_EQ(c.stats().bytes_read, kTotal);
  EXPECT_EQ(c.stats().bytes_written, kTotal);
  // Reads move blocks into output, so nothing grows past the back-pressure
  // bound even while 64 MiB pass through.
  EXPECT_LE(c.stats().peak_output,
            c.options().output_high_watermark + c.options().max_read_per_event);
  server.ExpectEachClosedOnce();
}

// 1,000 clients, all connected at once, from a forked child (so the server's
// fds stay below FD_SETSIZE for select). Each sends a line, checks the echo,
// and closes only when every client has its answer.
TEST_P(StreamTest, ThousandConcurrentClients) {
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 2100 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 4096);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  ASSERT_GE(rl.rlim_cur, 1100u) << "RLIMIT_NOFILE hard limit too low";

  auto loop = MakeLoop();
  Server server(loop.get());
  ASSERT_TRUE(server.Listen().ok());
  int clients = 1000;
  {
    BackendOptions probe;
    probe.name = GetParam();
    probe.ignore_environment = true;
    const int max_fd = (*CreateBackend(probe)).backend->capabilities().max_fd;
    if (max_fd >= 0) {
      clients = std::min(clients, max_fd - HighestOpenFd() - 8);
      RecordProperty("clients", clients);
    }
  }
  ASSERT_GE(clients, 900);
  const SocketAddress address = server.address();

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: plain sockets and poll(2); the exit code is the verdict.
    alarm(30);
    std::vector<pollfd> fds(clients);
    for (int i = 0; i < clients; ++i) {
      absl::StatusOr<UniqueFd> fd = StartConnect(address);
      if (!fd.ok()) _exit(2);
      fds[i] = {fd->release(), POLLOUT, 0};
    }
    int connected = 0;
    while (connected < clients) {
      if (poll(fds.data(), fds.size(), 10000) <= 0) _exit(3);
      for (pollfd& p : fds) {
        if (p.events == POLLOUT && p.revents != 0) {
          if (!TakeSocketError(p.fd).ok()) _exit(4);
          const std::string line =
              absl::StrCat("client-", 10000 + (&p - fds.data()), "\n");
          if (send(p.fd, line.data(), line.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(line.size())) {
            _exit(5);
          }
          p.events = POLLIN;
          ++connected;
        }
      }
    }
    std::vector<std::string> got(clients);
    int answered = 0;
    while (answered < clients) {
      for (pollfd& p : fds) p.revents = 0;
      if (poll(fds.data(), fds.size(), 10000) <= 0) _exit(6);
      for (pollfd& p : fds) {
        if (p.events != POLLIN || p.revents == 0) continue;
        const size_t i = static_cast<size_t>(&p - fds.data());
        char buf[64];
        const ssize_t r = recv(p.fd, buf, sizeof(buf), 0);
        if (r <= 0) _exit(7);
        got[i].append(buf, static_cast<size_t>(r));
        const std::string want = absl::StrCat("client-", 10000 + i, "\n");
        if (got[i].size() == want.size()) {
          if (got[i] != want) _exit(8);
          p.events = 0;
          ++answered;
        }
      }
    }
    for (pollfd& p : fds) close(p.fd);
    _exit(0);
  }

  int status = -1;
  bool child_done = false;
  Timer reaper = loop->AddTimer(
      absl::Milliseconds(20),
      [&] {
        if (!child_done && waitpid(pid, &status, WNOHANG) == pid) {
          child_done = true;
        }
      },
      {absl::Milliseconds(20)});
  RunUntil(
      *loop,
      [&] { return child_done && (server.closed() == clients || status != 0); },
      absl::Seconds(40));
  if (!child_done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "child failed at step " << WEXITSTATUS(status);
  EXPECT_TRUE(server.adopt_errors.empty());
  EXPECT_EQ(server.peak_open, clients);
  EXPECT_EQ(server.closed(), clients);
  for (CloseReason r : server.reasons) EXPECT_EQ(r, CloseReason::kPeerClosed);
  server.ExpectEachClosedOnce();
}

// ----------------------------------------------------------------- resets --

void ResetSocket(UniqueFd fd) {
  linger lg{1, 0};
  ASSERT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  fd.reset();  // close with linger 0: RST
}

TEST_P(StreamTest, PeerResetIsReportedOnce) {
  auto loop = MakeLoop();
  Server server(loop.get());
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  ASSERT_TRUE(SetNonBlocking(client.get(), false).ok());
  ASSERT_TRUE(WriteAll(client.get(), "ping"));
  RunUntil(*loop, [&] {
    return !server.conns.empty() && server.conns[0]->stats().bytes_written == 4;
  });
  EXPECT_EQ(ReadExactly(client.get(), 4), "ping");
  ResetSocket(std::move(client));
  RunUntil(*loop, [&] { return server.closed() == 1; });
  EXPECT_EQ(server.reasons[0], CloseReason::kReset);
  EXPECT_FALSE(server.errors[0].ok());
  EXPECT_NE(server.errors[0].message().find("read"), std::string::npos)
      << server.errors[0];
  server.ExpectEachClosedOnce();
}

TEST_P(StreamTest, ResetWhileServerIsSendingGivesNoSigpipe) {
  auto loop = MakeLoop();
  Server server(loop.get());
  server.options.output_high_watermark = 0;
  server.on_accept = [](Connection& c) {
    // More than the socket buffers hold: the server is mid-send.
    ASSERT_TRUE(c.Write(std::string(16u << 20, 'z')).ok());
  };
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  RunUntil(*loop, [&] {
    return !server.conns.empty() &&
           server.conns[0]->stats().bytes_written > 0 &&
           !server.conns[0]->output().empty();
  });
  ResetSocket(std::move(client));
  RunUntil(*loop, [&] { return server.closed() == 1; });
  EXPECT_EQ(server.reasons[0], CloseReason::kReset) << server.errors[0];
  server.ExpectEachClosedOnce();
}

// -------------------------------------------------------------- half-close --

TEST_P(StreamTest, PeerHalfCloseThenServerAnswersAndShutsDown) {
  auto loop = MakeLoop();
  Server server(loop.get());
  std::string request;
  server.on_read = [&](Connection&, Buffer& in) {
    request += in.Take(in.size());
  };
  int eofs = 0;
  server.on_peer_eof = [&](Connection& c) {
    ++eofs;
    EXPECT_TRUE(c.peer_eof());
    ASSERT_TRUE(c.Write(absl::StrCat("got ", request.size(), " bytes")).ok());
    c.Shutdown();
    // Writes after Shutdown() are refused.
    EXPECT_EQ(c.Write("x").code(), absl::StatusCode::kFailedPrecondition);
  };
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  ASSERT_TRUE(SetNonBlocking(client.get(), false).ok());
  ASSERT_TRUE(WriteAll(client.get(), std::string(100000, 'q')));
  ASSERT_EQ(shutdown(client.get(), SHUT_WR), 0);
  RunUntil(*loop, [&] { return server.closed() == 1; });
  EXPECT_EQ(eofs, 1);
  EXPECT_EQ(request.size(), 100000u);
  EXPECT_EQ(server.reasons[0], CloseReason::kPeerClosed);
  EXPECT_TRUE(server.conns[0]->write_shut());
  EXPECT_EQ(ReadExactly(client.get(), 100), "got 100000 bytes");  // then EOF
  server.ExpectEachClosedOnce();
}

TEST_P(StreamTest, LocalShutdownSendsEofButKeepsReading) {
  auto loop = MakeLoop();
  Server server(loop.get());
  std::string heard;
  server.on_accept = [](Connection& c) {
    ASSERT_TRUE(c.Write("hello").ok());
    c.Shutdown();
  };
  server.on_read = [&](Connection&, Buffer& in) {
    heard += in.Take(in.size());
  };
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  ASSERT_TRUE(SetNonBlocking(client.get(), false).ok());
  RunUntil(*loop, [&] {
    return !server.conns.empty() && server.conns[0]->write_shut();
  });
  EXPECT_EQ(ReadExactly(client.get(), 100), "hello");  // "hello", then EOF
  // The server still reads after its half-close.
  ASSERT_TRUE(WriteAll(client.get(), "still talking"));
  RunUntil(*loop, [&] { return heard == "still talking"; });
  EXPECT_TRUE(server.conns[0]->open());
  client.reset();
  RunUntil(*loop, [&] { return server.closed() == 1; });
  EXPECT_EQ(server.reasons[0], CloseReason::kPeerClosed);
  server.ExpectEachClosedOnce();
}

// ----------------------------------------------------------- idle timeout --

TEST_P(StreamTest, IdleTimeoutClosesASilentConnection) {
  auto loop = MakeLoop();
  Server server(loop.get());
  server.options.idle_timeout = absl::Milliseconds(100);
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  RunUntil(*loop, [&] { return server.closed() == 1; });
  EXPECT_EQ(server.reasons[0], CloseReason::kIdleTimeout);
  EXPECT_EQ(server.errors[0].code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(SetNonBlocking(client.get(), false).ok());
  char c;
  EXPECT_EQ(recv(client.get(), &c, 1, 0), 0);  // the client sees EOF
  server.ExpectEachClosedOnce();
}

TEST_P(StreamTest, ActivityPostponesTheIdleTimeout) {
  auto loop = MakeLoop();
  Server server(loop.get());
  server.options.idle_timeout = absl::Milliseconds(500);
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  // Eight pings 25 ms apart: 200 ms of activity, each well inside the
  // timeout, together not.
  int pings = 0;
  Timer pinger = loop->AddTimer(
      absl::Milliseconds(25),
      [&] {
        if (pings < 8 && send(client.get(), "p", 1, MSG_NOSIGNAL) == 1) ++pings;
      },
      {absl::Milliseconds(25)});
  RunUntil(*loop, [&] { return server.closed() == 1; });
  pinger.Cancel();
  EXPECT_EQ(pings, 8);
  EXPECT_EQ(server.reasons[0], CloseReason::kIdleTimeout);
  // Every ping was read (and echoed) before the timeout closed it.
  EXPECT_EQ(server.conns[0]->stats().bytes_read, 8u);
  server.ExpectEachClosedOnce();
}

// -------------------------------------------------------------- watermarks --

TEST_P(StreamTest, ReadLowWatermarkWaitsForEnoughBytes) {
  auto loop = MakeLoop();
  Server server(loop.get());
  server.options.read_low_watermark = 10;
  std::vector<size_t> seen;
  server.on_read = [&](Connection&, Buffer& in) {
    seen.push_back(in.size());
    in.Consume(in.size());
  };
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  ASSERT_TRUE(WriteAll(client.get(), "12345"));
  RunUntil(*loop, [&] {
    return !server.conns.empty() && server.conns[0]->stats().bytes_read == 5;
  });
  EXPECT_TRUE(seen.empty());  // 5 < 10: not yet
  ASSERT_TRUE(WriteAll(client.get(), "67890"));
  RunUntil(*loop, [&] { return !seen.empty(); });
  EXPECT_EQ(seen, std::vector<size_t>({10}));
  // At EOF, fewer leftover bytes are still delivered once.
  ASSERT_TRUE(WriteAll(client.get(), "abc"));
  ASSERT_EQ(shutdown(client.get(), SHUT_WR), 0);
  RunUntil(*loop, [&] { return server.closed() == 1; });
  EXPECT_EQ(seen, std::vector<size_t>({10, 3}));
}

// A read callback that switches the connection to new callbacks (a protocol
// upgrade) keeps running with everything it captured; the switch takes
// effect when it returns. Before, the closure was destroyed while it ran
// (AddressSanitizer: heap-use-after-free on the captured string).
TEST_P(StreamTest, SetCallbacksFromInsideACallbackTakesEffectAfterIt) {
  auto loop = MakeLoop();
  Server server(loop.get());
  std::string log;
  std::string switched_from;
  server.on_accept = [&](Connection& accepted) {
    Connection::Callbacks first;
    const std::string name(64, 'f');  // on the heap, inside the closure
    first.on_read = [&log, &switched_from, name](Connection& c, Buffer& in) {
      log += "first:" + in.Take(in.size()) + ";";
      Connection::Callbacks second;
      second.on_read = [&log](Connection&, Buffer& in2) {
        log += "second:" + in2.Take(in2.size()) + ";";
      };
      c.set_callbacks(std::move(second));
      switched_from = name;  // still ours to read
    };
    accepted.set_callbacks(std::move(first));
  };
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  ASSERT_TRUE(WriteAll(client.get(), "a"));
  RunUntil(*loop, [&] { return !log.empty(); });
  ASSERT_TRUE(WriteAll(client.get(), "b"));
  RunUntil(*loop, [&] { return log.size() > 8; });
  EXPECT_EQ(log, "first:a;second:b;");
  EXPECT_EQ(switched_from, std::string(64, 'f'));
}

TEST_P(StreamTest, ReadHighWatermarkStopsReadingUntilConsumed) {
  auto loop = MakeLoop();
  Server server(loop.get());
  server.options.read_high_watermark = 1000;
  server.on_read = [](Connection&, Buffer&) {};  // does not consume
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  ASSERT_TRUE(SetNonBlocking(client.get(), false).ok());
  ASSERT_TRUE(WriteAll(client.get(), std::string(5000, 'h')));
  RunUntil(*loop, [&] {
    return !server.conns.empty() && !server.conns[0]->reading();
  });
  Connection& c = *server.conns[0];
  EXPECT_EQ(c.input().size(), 1000u);  // reads stop exactly at the mark
  // A few more iterations do not read more.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_EQ(c.input().size(), 1000u);
  EXPECT_LE(c.stats().peak_input, 1000u);
  // Consuming outside on_read and resuming lets the rest in.
  size_t consumed = 0;
  RunUntil(*loop, [&] {
    consumed += c.input().size();
    c.input().Consume(c.input().size());
    c.ResumeReading();
    return consumed == 5000;
  });
  EXPECT_LE(c.stats().peak_input, 1000u);
}

TEST_P(StreamTest, DrainedRunsWhenOutputEmpties) {
  auto loop = MakeLoop();
  Server server(loop.get());
  int drained = 0;
  size_t output_at_drain = 1;
  server.on_drained = [&](Connection& c) {
    ++drained;
    output_at_drain = c.output().size();
  };
  server.on_accept = [](Connection& c) {
    ASSERT_TRUE(c.Write(std::string(8u << 20, 'd')).ok());
  };
  ASSERT_TRUE(server.Listen().ok());
  EchoPump reader(loop.get(), Connect(server.address()), 0, false);
  RunUntil(*loop, [&] { return drained > 0; });
  EXPECT_EQ(drained, 1);
  EXPECT_EQ(output_at_drain, 0u);
  EXPECT_EQ(server.conns[0]->stats().bytes_written, 8u << 20);
}

// A client that never reads must not make the server's memory grow: the
// server stops reading once its output passes the high watermark, so its
// buffers stay bounded while the client's writes block. When the client
// finally reads, everything flows again.
TEST_P(StreamTest, BackPressureBoundsServerMemory) {
  auto loop = MakeLoop();
  Server server(loop.get());
  server.options.output_high_watermark = 256 * 1024;
  server.options.read_high_watermark = 64 * 1024;
  server.options.max_read_per_event = 64 * 1024;
  ASSERT_TRUE(server.Listen().ok());
  // Small kernel buffers on both ends so user-space buffers are what fills.
  const int small = 32 * 1024;
  ASSERT_EQ(setsockopt(server.listener->fd(), SOL_SOCKET, SO_RCVBUF, &small,
                       sizeof(small)),
            0);
  ASSERT_EQ(setsockopt(server.listener->fd(), SOL_SOCKET, SO_SNDBUF, &small,
                       sizeof(small)),
            0);
  UniqueFd fd = Connect(server.address());
  ASSERT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)),
            0);
  ASSERT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)),
            0);
  const size_t kTotal = 32u << 20;
  EchoPump client(loop.get(), std::move(fd), kTotal, /*half_close=*/true);
  client.set_reading(false);
  RunUntil(*loop, [&] {
    return !server.conns.empty() && server.conns[0]->backpressured() &&
           client.write_blocked();
  });
  Connection& c = *server.conns[0];
  // Stuck: more iterations move nothing.
  const uint64_t read_before = c.stats().bytes_read;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_EQ(c.stats().bytes_read, read_before);
  EXPECT_LT(client.sent(), kTotal);
  EXPECT_FALSE(c.reading());
  EXPECT_GE(c.stats().backpressure_pauses, 1u);
  const size_t bound =
      c.options().output_high_watermark + c.options().max_read_per_event;
  EXPECT_LE(c.stats().peak_output, bound);
  EXPECT_LE(c.stats().peak_input, c.options().read_high_watermark);

  client.set_reading(true);
  RunUntil(
      *loop, [&] { return client.done() && server.closed() == 1; },
      absl::Seconds(40));
  EXPECT_FALSE(client.failed());
  EXPECT_EQ(client.received(), kTotal);
  EXPECT_LE(c.stats().peak_output, bound);
  EXPECT_LE(c.stats().peak_input, c.options().read_high_watermark);
  EXPECT_EQ(server.reasons[0], CloseReason::kPeerClosed);
}

// ------------------------------------------------------------------ safety --

TEST_P(StreamTest, CallbacksMayCloseTheirOwnAndOtherConnections) {
  auto loop = MakeLoop();
  Server server(loop.get());
  bool in_read = false;
  bool close_ran_inside_read = false;
  server.on_close = [&](Connection&, CloseReason) {
    if (in_read) close_ran_inside_read = true;
  };
  server.on_read = [&](Connection& c, Buffer& in) {
    in_read = true;
    const std::string cmd = in.Take(in.size());
    if (cmd == "close-all") {
      for (auto& other : server.conns) other->Close();
    }
    c.Close();
    c.Close();  // twice is harmless
    // Still usable until the callback returns.
    EXPECT_FALSE(c.open());
    EXPECT_EQ(c.Write("x").code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(c.input().size(), 0u);
    in_read = false;
  };
  ASSERT_TRUE(server.Listen().ok());
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(Connect(server.address()));
  RunUntil(*loop, [&] { return server.conns.size() == 3; });
  ASSERT_TRUE(WriteAll(clients[1].get(), "close-all"));
  RunUntil(*loop, [&] { return server.closed() == 3; });
  for (CloseReason r : server.reasons) EXPECT_EQ(r, CloseReason::kLocal);
  // The closing connection's own on_close waited for on_read to return
  // (the others, closed from a foreign callback, ran at once).
  EXPECT_EQ(server.close_calls.size(), 3u);
  EXPECT_TRUE(close_ran_inside_read);  // the two others
  server.ExpectEachClosedOnce();
  // Connections are freed after the batch once nothing else holds them.
  std::weak_ptr<Connection> weak = server.conns[0];
  server.conns.clear();
  ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_TRUE(weak.expired());
}

TEST_P(StreamTest, ConnectionFreesItselfAfterCloseWithoutUserReferences) {
  auto loop = MakeLoop();
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  UniqueFd peer(fds[1]);
  std::weak_ptr<Connection> weak;
  int closes = 0;
  {
    Connection::Callbacks cb;
    cb.on_read = [](Connection& c, Buffer&) { c.Close(); };
    cb.on_close = [&](Connection&, CloseReason, const absl::Status&) {
      ++closes;
    };
    auto c = Connection::Adopt(loop.get(), UniqueFd(fds[0]), {}, std::move(cb));
    ASSERT_TRUE(c.ok());
    weak = *c;
  }
  EXPECT_FALSE(weak.expired());  // the loop holds it while open
  ASSERT_TRUE(WriteAll(peer.get(), "bye"));
  RunUntil(*loop, [&] { return weak.expired(); });
  EXPECT_EQ(closes, 1);
}

TEST_P(StreamTest, DestroyingTheLoopWithOpenConnectionsLeaksNothing) {
  auto loop = MakeLoop();
  Server server(loop.get());
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  RunUntil(*loop, [&] { return server.conns.size() == 1; });
  std::weak_ptr<Connection> weak = server.conns[0];
  server.conns.clear();
  server.listener.reset();
  loop.reset();
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(server.closed(), 0);  // no callbacks from a dying loop
  ASSERT_TRUE(SetNonBlocking(client.get(), false).ok());
  char c;
  EXPECT_EQ(recv(client.get(), &c, 1, 0), 0);  // but the fd was closed
}

TEST_P(StreamTest, WritesFromOutsideCallbacksAreBatchedIntoOneSend) {
  auto loop = MakeLoop();
  Server server(loop.get());
  server.on_read = [](Connection&, Buffer&) {};
  ASSERT_TRUE(server.Listen().ok());
  UniqueFd client = Connect(server.address());
  RunUntil(*loop, [&] { return server.conns.size() == 1; });
  Connection& c = *server.conns[0];
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(c.Write(absl::StrCat(i, ";")).ok());
  EXPECT_EQ(c.stats().write_calls, 0u);  // nothing sent inside Write()
  RunUntil(*loop, [&] { return c.output().empty(); });
  EXPECT_EQ(c.stats().write_calls, 1u);
  std::string expected;
  for (int i = 0; i < 100; ++i) expected += absl::StrCat(i, ";");
  ASSERT_TRUE(SetNonBlocking(client.get(), false).ok());
  EXPECT_EQ(ReadExactly(client.get(), expected.size()), expected);
}

TEST_P(StreamTest, SendAfterBatchHoldsRepliesUntilEveryCallbackHasRun) {
  // Two connections readable in one iteration; each callback writes a reply
  // and notes how many sends the other connection has made so far. Without
  // the option the first reply is sent before the second callback runs;
  // with it, both go out after the batch.
  for (const bool after_batch : {false, true}) {
    SCOPED_TRACE(after_batch ? "send_after_batch" : "default");
    auto loop = MakeLoop();
    Server server(loop.get());
    server.options.send_after_batch = after_batch;
    std::vector<uint64_t> others_sends;
    std::vector<uint64_t> iterations;
    server.on_read = [&](Connection& c, Buffer& in) {
      uint64_t sends = 0;
      for (const auto& other : server.conns) {
        if (other.get() != &c) sends += other->stats().write_calls;
      }
      others_sends.push_back(sends);
      iterations.push_back(loop->stats().iterations);
      (void)c.Write(absl::StrCat("re:", in.Take(in.size())));
    };
    ASSERT_TRUE(server.Listen().ok());
    UniqueFd a = Connect(server.address());
    UniqueFd b = Connect(server.address());
    RunUntil(*loop, [&] { return server.conns.size() == 2; });
    ASSERT_EQ(send(a.get(), "a", 1, 0), 1);
    ASSERT_EQ(send(b.get(), "b", 1, 0), 1);
    RunUntil(*loop, [&] { return others_sends.size() == 2; });
    ASSERT_EQ(iterations[0], iterations[1]) << "not one batch";
    EXPECT_EQ(others_sends[0], 0u);
    EXPECT_EQ(others_sends[1], after_batch ? 0u : 1u);
    // Either way every reply goes out, in one send each.
    RunUntil(*loop, [&] {
      return server.conns[0]->output().empty() &&
             server.conns[1]->output().empty();
    });
    EXPECT_EQ(server.conns[0]->stats().write_calls, 1u);
    EXPECT_EQ(server.conns[1]->stats().write_calls, 1u);
    ASSERT_TRUE(SetNonBlocking(a.get(), false).ok());
    ASSERT_TRUE(SetNonBlocking(b.get(), false).ok());
    EXPECT_EQ(ReadExactly(a.get(), 4), "re:a");
    EXPECT_EQ(ReadExactly(b.get(), 4), "re:b");
  }
}

// ---------------------------------------------------------------- connect --

TEST_P(StreamTest, ConnectAsyncReportsRefusedAndTimeoutAndCancels) {
  auto loop = MakeLoop();
  // A port with nothing listening: bind one, note it, close it.
  uint16_t dead_port;
  {
    absl::StatusOr<UniqueFd> s =
        OpenListeningSocket(SocketAddress::Loopback4(0));
    ASSERT_TRUE(s.ok());
    dead_port = SocketAddress::LocalOf(s->get())->port();
  }
  absl::Status refused = absl::UnknownError("not yet");
  bool refused_done = false;
  auto p1 = ConnectAsync(loop.get(), SocketAddress::Loopback4(dead_port),
                         absl::Seconds(5), [&](absl::StatusOr<UniqueFd> fd) {
                           refused = fd.status();
                           refused_done = true;
                         });
  EXPECT_FALSE(refused_done);  // never inside the call
  RunUntil(*loop, [&] { return refused_done; });
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("onnection refused"), std::string::npos)
      << refused;

  // A listener whose accept queue is full drops SYNs: connects hang.
  ListenSocketOptions tiny;
  tiny.backlog = 0;
  absl::StatusOr<UniqueFd> full =
      OpenListeningSocket(SocketAddress::Loopback4(0), tiny);
  ASSERT_TRUE(full.ok());
  const SocketAddress full_address = *SocketAddress::LocalOf(full->get());
  std::vector<UniqueFd> fillers;
  bool saw_timeout = false;
  for (int i = 0; i < 8 && !saw_timeout; ++i) {
    absl::StatusOr<UniqueFd> f =
        ConnectWithTimeout(full_address, absl::Milliseconds(200));
    if (f.ok()) {
      fillers.push_back(std::move(*f));
    } else {
      EXPECT_EQ(f.status().code(), absl::StatusCode::kDeadlineExceeded)
          << f.status();
      saw_timeout = true;
    }
  }
  ASSERT_TRUE(saw_timeout) << "the accept queue never filled";
  absl::Status timed_out = absl::UnknownError("not yet");
  bool timeout_done = false;
  auto p2 = ConnectAsync(loop.get(), full_address, absl::Milliseconds(100),
                         [&](absl::StatusOr<UniqueFd> fd) {
                           timed_out = fd.status();
                           timeout_done = true;
                         });
  // Cancelled before completion: its callback never runs.
  bool cancelled_ran = false;
  auto p3 =
      ConnectAsync(loop.get(), full_address, absl::Milliseconds(50),
                   [&](absl::StatusOr<UniqueFd>) { cancelled_ran = true; });
  p3.reset();
  RunUntil(*loop, [&] { return timeout_done; });
  EXPECT_EQ(timed_out.code(), absl::StatusCode::kDeadlineExceeded) << timed_out;
  // Give the cancelled one's deadline time to pass.
  Timer wait = loop->AddTimer(absl::Milliseconds(100), [] {});
  RunUntil(*loop, [&] { return !wait.pending(); });
  EXPECT_FALSE(cancelled_ran);
}

// ---------------------------------------------------------------- listener --

TEST_P(StreamTest, ListenerAcceptsABoundedBatchPerEventAndCanPause) {
  auto loop = MakeLoop();
  std::vector<UniqueFd> accepted;
  ListenerOptions lo;
  lo.max_accepts_per_event = 2;
  auto l = Listener::Create(
      loop.get(), SocketAddress::Loopback4(0),
      [&](UniqueFd fd, const SocketAddress& peer) {
        EXPECT_EQ(peer.HostString(), "127.0.0.1");
        accepted.push_back(std::move(fd));
      },
      lo);
  ASSERT_TRUE(l.ok()) << l.status();
  Listener& listener = **l;
  EXPECT_TRUE(listener.accepting());
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 7; ++i) clients.push_back(Connect(listener.address()));
  // All 7 wait in the kernel's queue; one iteration takes only 2.
  ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_EQ(accepted.size(), 2u);
  ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_EQ(accepted.size(), 4u);
  listener.Pause();
  EXPECT_FALSE(listener.accepting());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_EQ(accepted.size(), 4u);
  ASSERT_TRUE(listener.Resume().ok());
  RunUntil(*loop, [&] { return accepted.size() == 7; });
  EXPECT_EQ(listener.stats().accepted, 7u);
  EXPECT_EQ(listener.stats().out_of_fds, 0u);
}

TEST_P(StreamTest, AcceptCallbackMayDestroyTheListener) {
  auto loop = MakeLoop();
  std::unique_ptr<Listener> listener;
  int calls = 0;
  auto l = Listener::Create(loop.get(), SocketAddress::Loopback4(0),
                            [&](UniqueFd, const SocketAddress&) {
                              ++calls;
                              listener.reset();  // mid-batch
                            });
  ASSERT_TRUE(l.ok());
  listener = std::move(*l);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(Connect(listener->address()));
  RunUntil(*loop, [&] { return listener == nullptr; });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_EQ(calls, 1);
}

// ------------------------------------------------------------------ EMFILE --

// What the child of the EMFILE test reports through a pipe.
struct EmfileReport {
  int step = 0;  // 0 = success, else where it failed
  uint64_t out_of_fds = 0;
  uint64_t accepted = 0;
  uint64_t rejected = 0;
  uint64_t pauses = 0;
  // During a 300 ms window right after the first EMFILE, while the fds are
  // still exhausted and clients are still queued:
  uint64_t window_iterations = 0;
  uint64_t window_accept_calls = 0;
};

// Runs in a forked child: a listener whose process has almost no fds left.
// The parent connects kClients clients; the child holds every accepted fd
// until a 300 ms window after the first EMFILE has passed, then lets go, and
// the listener must serve the rest.
constexpr int kEmfileClients = 20;

[[noreturn]] void EmfileChild(const std::string& backend, OutOfFdsPolicy policy,
                              int report_fd, int port_fd) {
  EmfileReport report;
  auto finish = [&](int step) {
    report.step = step;
    (void)!write(report_fd, &report, sizeof(report));
    _exit(0);
  };
  alarm(30);
  LoopOptions options;
  options.backend.name = backend;
  options.backend.ignore_environment = true;
  auto loop = EventLoop::Create(options);
  if (!loop.ok()) finish(1);
  std::vector<UniqueFd> held;
  bool window_done = false;
  ListenerOptions lo;
  lo.out_of_fds = policy;
  lo.out_of_fds_pause = absl::Milliseconds(50);
  auto listener = Listener::Create(
      loop->get(), SocketAddress::Loopback4(0),
      [&](UniqueFd fd, const SocketAddress&) {
        // Hold every fd until the window has passed; after it, let go at once.
        if (!window_done) held.push_back(std::move(fd));
      },
      lo);
  if (!listener.ok()) finish(2);
  Listener& l = **listener;
  // Leave room for only a few more fds.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = static_cast<rlim_t>(HighestOpenFd() + 1 + 3);
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) finish(3);
  const uint16_t port = l.port();
  if (write(port_fd, &port, sizeof(port)) != sizeof(port)) finish(4);

  bool window_open = false;
  uint64_t iterations0 = 0;
  uint64_t calls0 = 0;
  Timer window;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (absl::Now() < give_up) {
    if (!(*loop)->RunOnce(true).ok()) finish(5);
    if (!window_open && l.stats().out_of_fds > 0) {
      window_open = true;
      iterations0 = (*loop)->stats().iterations;
      calls0 = l.stats().accept_calls;
      window = (*loop)->AddTimer(absl::Milliseconds(300), [&] {
        window_done = true;
        report.window_iterations = (*loop)->stats().iterations - iterations0;
        report.window_accept_calls = l.stats().accept_calls - calls0;
        held.clear();  // fds are free again
      });
    }
    if (window_done &&
        l.stats().accepted + l.stats().rejected == kEmfileClients) {
      break;
    }
  }
  report.out_of_fds = l.stats().out_of_fds;
  report.accepted = l.stats().accepted;
  report.rejected = l.stats().rejected;
  report.pauses = l.stats().pauses;
  finish(window_done ? 0 : 6);
  _exit(0);
}

void RunEmfileTest(const std::string& backend, OutOfFdsPolicy policy,
                   EmfileReport* report) {
  int report_pipe[2];
  int port_pipe[2];
  ASSERT_EQ(pipe2(report_pipe, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(port_pipe, O_CLOEXEC), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(report_pipe[0]);
    close(port_pipe[0]);
    EmfileChild(backend, policy, report_pipe[1], port_pipe[1]);
  }
  close(report_pipe[1]);
  close(port_pipe[1]);
  UniqueFd report_in(report_pipe[0]);
  UniqueFd port_in(port_pipe[0]);
  uint16_t port = 0;
  pollfd p{port_in.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 20000), 1);
  ASSERT_EQ(read(port_in.get(), &port, sizeof(port)),
            static_cast<ssize_t>(sizeof(port)));
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kEmfileClients; ++i) {
    // Connected by the kernel (backlog) whether or not the child accepts.
    absl::StatusOr<UniqueFd> c =
        ConnectWithTimeout(SocketAddress::Loopback4(port), absl::Seconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    clients.push_back(std::move(*c));
  }
  p = {report_in.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 30000), 1) << "child did not report";
  ASSERT_EQ(read(report_in.get(), report, sizeof(*report)),
            static_cast<ssize_t>(sizeof(*report)));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
}

TEST_P(StreamTest, ListenerSurvivesEmfileByPausing) {
  EmfileReport r;
  RunEmfileTest(GetParam(), OutOfFdsPolicy::kPause, &r);
  EXPECT_EQ(r.step, 0);
  EXPECT_GE(r.out_of_fds, 1u);
  EXPECT_GE(r.pauses, 1u);
  // No spinning while out of fds: a 300 ms window with 50 ms pauses takes a
  // handful of iterations and accept calls (a busy loop would make
  // hundreds of thousands).
  EXPECT_LE(r.window_iterations, 100u);
  EXPECT_LE(r.window_accept_calls, 100u);
  // Once fds are free, every queued client is served.
  EXPECT_EQ(r.accepted, static_cast<uint64_t>(kEmfileClients));
  EXPECT_EQ(r.rejected, 0u);
}

TEST_P(StreamTest, ListenerSurvivesEmfileWithReserveFd) {
  EmfileReport r;
  RunEmfileTest(GetParam(), OutOfFdsPolicy::kRejectWithReserveFd, &r);
  EXPECT_EQ(r.step, 0);
  EXPECT_GE(r.out_of_fds, 1u);
  EXPECT_GE(r.rejected, 1u);  // turned away rather than left hanging
  EXPECT_EQ(r.accepted + r.rejected, static_cast<uint64_t>(kEmfileClients));
  EXPECT_LE(r.window_iterations, 100u);
  EXPECT_LE(r.window_accept_calls, 100u);
}

// ----------------------------------------------------------- multi-thread --

// Two loops on two threads, each with its own listener on the same port
// (SO_REUSEPORT): the kernel spreads 64 clients over both.
TEST_P(StreamTest, ReusePortSpreadsConnectionsOverLoops) {
  std::unique_ptr<EventLoop> loops[2] = {MakeLoop(), MakeLoop()};
  std::atomic<int> served[2] = {{0}, {0}};
  std::unique_ptr<Listener> listeners[2];
  ListenerOptions lo;
  lo.socket.reuse_port = true;
  uint16_t port = 0;
  for (int i = 0; i < 2; ++i) {
    EventLoop* loop = loops[i].get();
    std::atomic<int>* count = &served[i];
    auto l = Listener::Create(
        loop, SocketAddress::Loopback4(port),
        [loop, count](UniqueFd fd, const SocketAddress&) {
          Connection::Callbacks cb;
          cb.on_read = [](Connection& c, Buffer& in) {
            (void)c.Write(std::move(in));
          };
          if (Connection::Adopt(loop, std::move(fd), {}, std::move(cb)).ok()) {
            count->fetch_add(1);
          }
        },
        lo);
    ASSERT_TRUE(l.ok()) << l.status();
    listeners[i] = std::move(*l);
    port = listeners[i]->port();
  }
  std::thread threads[2];
  for (int i = 0; i < 2; ++i) {
    threads[i] = std::thread([loop = loops[i].get()] {
      Timer watchdog =
          loop->AddTimer(absl::Seconds(20), [loop] { loop->Stop(); });
      (void)loop->Run(EventLoop::RunMode::kUntilStopped);
    });
  }
  int echoed = 0;
  for (int i = 0; i < 64; ++i) {
    absl::StatusOr<UniqueFd> c =
        ConnectWithTimeout(SocketAddress::Loopback4(port), absl::Seconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    const std::string msg = absl::StrCat("m", i);
    ASSERT_TRUE(WriteAll(c->get(), msg));
    if (ReadExactly(c->get(), msg.size()) == msg) ++echoed;
  }
  for (int i = 0; i < 2; ++i) loops[i]->Stop();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(echoed, 64);
  EXPECT_EQ(served[0] + served[1], 64);
  EXPECT_GE(served[0].load(), 1);
  EXPECT_GE(served[1].load(), 1);
  listeners[0].reset();
  listeners[1].reset();
}

// The accept-thread model: a listener on one loop hands raw fds to a worker
// loop on another thread, which adopts them.
TEST_P(StreamTest, AcceptLoopHandsFdsToAWorkerLoop) {
  auto acceptor = MakeLoop();
  auto worker = MakeLoop();
  std::atomic<int> adopted{0};
  std::atomic<bool> wrong_thread{false};
  EventLoop* w = worker.get();
  auto l = Listener::Create(
      acceptor.get(), SocketAddress::Loopback4(0),
      [w, &adopted, &wrong_thread](UniqueFd fd, const SocketAddress&) {
        ASSERT_TRUE(
            w->Post([w, &adopted, &wrong_thread, fd = std::move(fd)]() mutable {
               if (!w->IsInLoopThread()) wrong_thread = true;
               Connection::Callbacks cb;
               cb.on_read = [](Connection& c, Buffer& in) {
                 (void)c.Write(absl::StrCat("[", in.Take(in.size()), "]"));
               };
               if (Connection::Adopt(w, std::move(fd), {}, std::move(cb))
                       .ok()) {
                 adopted.fetch_add(1);
               }
             }).ok());
      });
  ASSERT_TRUE(l.ok());
  const SocketAddress address = (*l)->address();
  std::thread worker_thread([w] {
    Timer watchdog = w->AddTimer(absl::Seconds(20), [w] { w->Stop(); });
    (void)w->Run(EventLoop::RunMode::kUntilStopped);
  });
  std::thread acceptor_thread([a = acceptor.get()] {
    Timer watchdog = a->AddTimer(absl::Seconds(20), [a] { a->Stop(); });
    (void)a->Run(EventLoop::RunMode::kUntilStopped);
  });
  int ok = 0;
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<UniqueFd> c = ConnectWithTimeout(address, absl::Seconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(WriteAll(c->get(), "hi"));
    if (ReadExactly(c->get(), 4) == "[hi]") ++ok;
  }
  acceptor->Stop();
  worker->Stop();
  acceptor_thread.join();
  worker_thread.join();
  EXPECT_EQ(ok, 20);
  EXPECT_EQ(adopted.load(), 20);
  EXPECT_FALSE(wrong_thread.load());
  l->reset();
}

INSTANTIATE_TEST_SUITE_P(AllBackends, StreamTest,
                         ::testing::ValuesIn(UsableBackendNames()),
                         [](const auto& info) { return info.param; });

// ------------------------------------------------------------ addresses --

TEST(SocketAddressTest, ParsesAndFormatsIpv4AndIpv6) {
  auto v4 = SocketAddress::Parse("127.0.0.1", 8080);
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->family(), AF_INET);
  EXPECT_EQ(v4->ToString(), "127.0.0.1:8080");
  EXPECT_EQ(v4->port(), 8080);
  EXPECT_EQ(v4->WithPort(1).ToString(), "127.0.0.1:1");
  auto v6 = SocketAddress::Parse("[::1]", 443);
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->family(), AF_INET6);
  EXPECT_EQ(v6->ToString(), "[::1]:443");
  EXPECT_EQ(v6->HostString(), "::1");
  EXPECT_EQ(SocketAddress::Parse("localhost", 1)->ToString(), "127.0.0.1:1");
  EXPECT_EQ(SocketAddress::ParseHostPort("[::]:80")->ToString(), "[::]:80");
  EXPECT_EQ(SocketAddress::ParseHostPort("0.0.0.0:0")->port(), 0);
  EXPECT_FALSE(SocketAddress::Parse("example.com", 1).ok());
  EXPECT_FALSE(SocketAddress::ParseHostPort("::1:80").ok());
  EXPECT_FALSE(SocketAddress::ParseHostPort("1.2.3.4:99999").ok());
  EXPECT_FALSE(SocketAddress::ParseHostPort("1.2.3.4").ok());
  EXPECT_FALSE(SocketAddress().valid());
  EXPECT_EQ(SocketAddress().ToString(), "(invalid)");
}

TEST(SocketTest, ListeningSocketReportsBindErrors) {
  absl::StatusOr<UniqueFd> a = OpenListeningSocket(SocketAddress::Loopback4(0));
  ASSERT_TRUE(a.ok());
  const SocketAddress bound = *SocketAddress::LocalOf(a->get());
  // Same port again without SO_REUSEPORT: EADDRINUSE, with the address.
  absl::StatusOr<UniqueFd> b = OpenListeningSocket(bound);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find(bound.ToString()), std::string::npos)
      << b.status();
}

}  // namespace
}  // namespace eventide
