// Fault and load tests for apps/echo_server (issue 10), each against its own
// server process on 127.0.0.1 port 0 (default backend): 1,000 idle
// connections, running out of file descriptors (EMFILE), 10 MB of random
// bytes, slowloris writers and the idle timeout, 1,000 abortive closes,
// clients that never read, SIGTERM during load. echo_server has no -c and
// no request lines, so the connection-limit and line-limit cases are
// cached's alone (cached_fault_test.cc). Every wait is bounded; every test
// ends with SIGTERM and expects exit 0.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/cached_test_util.h"
#include "tests/fault_test_util.h"

namespace eventide {
namespace fault_test {
namespace {

using cached_test::Client;
using cached_test::Printable;
using cached_test::ServerProcess;

constexpr absl::Duration kShutdownBound = absl::Seconds(5);

std::string EchoPath() {
  absl::StatusOr<std::string> path =
      cached_test::RunfileBinaryPath("apps/echo_server");
  EXPECT_TRUE(path.ok()) << path.status();
  return path.ok() ? *path : "";
}

// Writes `data` without reading anything back, until the kernel stops
// taking bytes for `stall` or all is sent or `deadline`. Returns bytes sent.
size_t WriteWithoutReading(int fd, absl::string_view data, absl::Duration stall,
                           absl::Time deadline) {
  size_t sent = 0;
  while (sent < data.size() && absl::Now() < deadline) {
    const ssize_t n =
        send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p = {fd, POLLOUT, 0};
      if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(stall))) ==
          0) {
        break;  // the peer stopped taking bytes
      }
      continue;
    }
    break;  // closed or another error: the caller looks at the count
  }
  return sent;
}

class EchoFaultTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetChildSanitizerOptions();
    RaiseNofileLimit(8192);
  }

  void StartServer(std::vector<std::string> args = {}) {
    std::vector<std::string> all = {"--port", "0", "--bind", "127.0.0.1"};
    all.insert(all.end(), args.begin(), args.end());
    auto server = ServerProcess::StartListening(EchoPath(), all);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  Client Connect() {
    absl::StatusOr<Client> client =
        Client::Connect(server_->port(), absl::Seconds(10));
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return Client();
    return std::move(*client);
  }

  // One echo round trip of `text`.
  void ExpectEcho(Client& c, absl::string_view text) {
    ASSERT_TRUE(c.Send(text).ok());
    absl::StatusOr<std::string> back = c.ReadExactly(text.size());
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, text);
  }

  int64_t Rss() {
    absl::StatusOr<int64_t> kb = RssKb(server_->pid());
    EXPECT_TRUE(kb.ok()) << kb.status();
    return kb.ok() ? *kb : 0;
  }

  int Fds() {
    absl::StatusOr<int> n = OpenFdCount(server_->pid());
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  // Waits until the server holds `want` fds again (connections forgotten).
  void ExpectFdsBackTo(int want) {
    int fds = -1;
    EXPECT_TRUE(WaitFor(
        [&] {
          absl::StatusOr<int> n = OpenFdCount(server_->pid());
          fds = n.ok() ? *n : -1;
          return fds == want;
        },
        absl::Seconds(10)))
        << "server holds " << fds << " fds, expected " << want;
  }

  void TearDown() override {
    if (server_ == nullptr || server_->HasExited()) return;
    absl::StatusOr<int> status = server_->Stop(SIGTERM, kShutdownBound);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "wait status " << *status;
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_F(EchoFaultTest, ThousandIdleConnectionsThenNewClientIsServed) {
  StartServer();
  const int base_fds = Fds();
  constexpr int kIdle = 1000;
  std::vector<Client> idle;
  idle.reserve(kIdle);
  for (int i = 0; i < kIdle; ++i) {
    idle.push_back(Connect());
    ASSERT_GE(idle.back().fd(), 0) << "idle client " << i;
  }
  EXPECT_TRUE(WaitFor([&] { return Fds() >= base_fds + kIdle; },
                      absl::Seconds(20), absl::Milliseconds(100)))
      << "server holds " << Fds() << " fds";
  Client fresh = Connect();
  ExpectEcho(fresh, "still answering\n");
  for (int i = 0; i < kIdle; i += 97) {
    ExpectEcho(idle[i], absl::StrCat("idle ", i, "\n"));
  }
  idle.clear();
  fresh.Close();
  ExpectFdsBackTo(base_fds);
}

TEST_F(EchoFaultTest, OutOfFileDescriptorsNoBusyLoopAndRecovers) {
  constexpr int kFdLimit = 48;
  auto server = StartWithNofileLimit(kFdLimit, EchoPath(),
                                     {"--port", "0", "--bind", "127.0.0.1"});
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  const int base_fds = Fds();
  ASSERT_LT(base_fds, kFdLimit - 10) << "no room to test in";
  const int kClients = kFdLimit - base_fds + 30;
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect());
    ASSERT_TRUE(clients.back().Send("ping\n").ok());
  }
  std::vector<bool> served(kClients, false);
  auto collect = [&] {
    int n = 0;
    for (int i = 0; i < kClients; ++i) {
      if (!served[i]) {
        absl::StatusOr<std::string> r =
            clients[i].ReadExactly(5, absl::Milliseconds(1));
        if (r.ok()) {
          EXPECT_EQ(*r, "ping\n");
          served[i] = true;
        }
      }
      n += served[i];
    }
    return n;
  };
  int now = WaitUntilStable(collect, absl::Seconds(15));
  ASSERT_GT(now, 0);
  ASSERT_LT(now, kClients) << "the server never ran out of fds";
  EXPECT_GE(Fds(), kFdLimit - 2);
  absl::StatusOr<double> share =
      CpuShareOver(server_->pid(), absl::Milliseconds(1500));
  ASSERT_TRUE(share.ok()) << share.status();
  EXPECT_LT(*share, 0.2) << "CPU share while out of fds";
  std::cerr << "out of fds: " << now << " of " << kClients
            << " served, server CPU " << *share * 100 << "%\n";
  CloseServed(clients, served, 10);
  const int before = now;
  EXPECT_TRUE(WaitFor([&] { return (now = collect()) >= before + 5; },
                      absl::Seconds(10), absl::Milliseconds(100)))
      << "served " << now << " after freeing 10 fds, " << before << " before";
  // Everyone still connected and served echoes.
  for (int i = 0; i < kClients; ++i) {
    if (served[i] && clients[i].fd() >= 0) ExpectEcho(clients[i], "again\n");
  }
  clients.clear();
  ExpectFdsBackTo(base_fds);
}

TEST_F(EchoFaultTest, TenMegabytesOfRandomBytesEchoedWhileOthersServed) {
  StartServer();
  const std::string garbage = RandomBytes(10 << 20, 20240610);
  std::atomic<bool> done{false};
  std::atomic<int> other_ok{0}, other_bad{0};
  const int port = server_->port();
  std::thread other([&] {
    absl::StatusOr<Client> c = Client::Connect(port);
    if (!c.ok()) {
      other_bad.fetch_add(1);
      return;
    }
    for (int i = 0; i < 100000 && !done.load(); ++i) {
      const std::string text = RandomBytes(1 + i % 3000, i);
      absl::Status sent = c->Send(text);
      absl::StatusOr<std::string> back =
          sent.ok() ? c->ReadExactly(text.size()) : sent;
      if (back.ok() && *back == text) {
        other_ok.fetch_add(1);
      } else {
        other_bad.fetch_add(1);
        return;
      }
    }
  });
  Client bulk = Connect();
  PumpResult pumped = Pump(bulk.fd(), garbage, 0, garbage.size(),
                           absl::Now() + absl::Seconds(40), garbage.size());
  done.store(true);
  other.join();
  EXPECT_FALSE(pumped.timed_out);
  EXPECT_FALSE(pumped.closed_by_peer);
  EXPECT_TRUE(pumped.error.empty()) << pumped.error;
  EXPECT_EQ(pumped.sent, garbage.size());
  EXPECT_TRUE(pumped.received == garbage)
      << "echo of 10 MB differs (" << pumped.received.size() << " bytes back)";
  EXPECT_EQ(other_bad.load(), 0);
  EXPECT_GT(other_ok.load(), 0);
  ExpectEcho(bulk, "after\n");
}

TEST_F(EchoFaultTest, SlowlorisCutByIdleTimeout) {
  StartServer({"--idle-timeout", "2s"});
  const int base_fds = Fds();
  const int64_t rss_before = Rss();
  constexpr int kSlow = 200;
  constexpr int kBytesEach = 300;
  std::vector<Client> slow;
  for (int i = 0; i < kSlow; ++i) slow.push_back(Connect());
  std::vector<size_t> sent(kSlow, 0);
  for (int b = 0; b < kBytesEach; ++b) {
    for (int i = 0; i < kSlow; ++i) {
      if (sent[i] == static_cast<size_t>(b) &&
          slow[i].Send(absl::string_view("s", 1)).ok()) {
        ++sent[i];
      }
    }
  }
  const int64_t rss_held = Rss();
  // Stalled now: each is closed by the idle timeout after its echo.
  for (int i = 0; i < kSlow; ++i) {
    absl::StatusOr<std::string> rest =
        slow[i].ReadUntilClosed(absl::Seconds(10));
    ASSERT_TRUE(rest.ok()) << "slow client " << i << ": " << rest.status();
    EXPECT_EQ(rest->size(), sent[i]) << i;
  }
  const int64_t bound_kb = ScaledKb(kSlow * 64 + 16 * 1024);
  EXPECT_LT(rss_held - rss_before, bound_kb)
      << "RSS " << rss_before << " -> " << rss_held << " KiB";
  std::cerr << "slowloris: RSS " << rss_before << " -> " << rss_held
            << " KiB\n";
  slow.clear();
  ExpectFdsBackTo(base_fds);
  Client fresh = Connect();
  ExpectEcho(fresh, "fresh\n");
}

TEST_F(EchoFaultTest, ThousandAbortiveCloses) {
  StartServer();
  const int base_fds = Fds();
  Client steady = Connect();
  ExpectEcho(steady, "steady\n");
  const std::string chunk = RandomBytes(256 << 10, 5);
  constexpr int kCloses = 1000;
  for (int i = 0; i < kCloses; ++i) {
    Client c = Connect();
    if (i % 2 == 0) {
      // Mid-request: bytes on their way in, none read back.
      ASSERT_TRUE(c.Send(absl::string_view(chunk).substr(0, 4096)).ok());
    } else {
      // Mid-reply: 256 KiB sent, the echo has started coming back.
      PumpResult p =
          Pump(c.fd(), chunk, 0, 1, absl::Now() + absl::Seconds(10), 1);
      ASSERT_GE(p.received_total, 1u) << "no echo started, iteration " << i;
    }
    AbortiveClose(c);
  }
  ExpectEcho(steady, "still here\n");
  ExpectFdsBackTo(base_fds + 1);  // + steady
}

TEST_F(EchoFaultTest, NonReadingClientsDoNotGrowServerMemory) {
  StartServer();
  Client steady = Connect();
  ExpectEcho(steady, "warm\n");
  const int64_t rss_before = Rss();
  constexpr int kStuck = 8;
  const std::string data = RandomBytes(64 << 20, 9);
  std::vector<Client> stuck;
  size_t total = 0;
  for (int i = 0; i < kStuck; ++i) {
    stuck.push_back(Connect());
    total +=
        WriteWithoutReading(stuck.back().fd(), data, absl::Milliseconds(300),
                            absl::Now() + absl::Seconds(5));
  }
  const int64_t rss_held = Rss();
  // Each connection may hold the output high watermark (4 MiB) plus one
  // read; the rest waits in kernel buffers.
  const int64_t bound_kb = ScaledKb(kStuck * 5 * 1024 + 16 * 1024);
  EXPECT_LT(rss_held - rss_before, bound_kb)
      << "server RSS " << rss_before << " -> " << rss_held << " KiB after "
      << total << " bytes from clients that do not read";
  EXPECT_LT(total, kStuck * data.size()) << "nobody was held back";
  std::cerr << "non-reading clients: " << total << " bytes pushed, RSS "
            << rss_before << " -> " << rss_held << " KiB\n";
  ExpectEcho(steady, "others are served\n");
  for (Client& c : stuck) AbortiveClose(c);
  ExpectEcho(steady, "and after\n");
}

// SIGTERM while clients stream: exit 0 within the bound; whatever each
// client got back is a prefix of what it sent (nothing corrupted,
// reordered or mixed between connections).
TEST_F(EchoFaultTest, SigtermDuringLoadExitsZero) {
  StartServer();
  const int port = server_->port();
  constexpr int kLoaders = 4;
  std::atomic<int64_t> round_trips{0};
  std::atomic<int> bad{0};
  std::vector<std::thread> loaders;
  for (int id = 0; id < kLoaders; ++id) {
    loaders.emplace_back([&, id] {
      absl::StatusOr<Client> c = Client::Connect(port);
      if (!c.ok()) return;
      std::string sent, received;
      for (int i = 0; i < 100000; ++i) {
        const std::string text =
            RandomBytes(100 + (i * 37) % 8000, id * 1000003 + i);
        if (!c->Send(text).ok()) break;
        sent += text;
        absl::StatusOr<std::string> back =
            c->ReadExactly(text.size(), absl::Seconds(10));
        if (!back.ok()) {
          received += c->pending();
          break;
        }
        received += *back;
        round_trips.fetch_add(1);
      }
      if (received.size() > sent.size() ||
          sent.compare(0, received.size(), received) != 0) {
        bad.fetch_add(1);
      }
    });
  }
  EXPECT_TRUE(
      WaitFor([&] { return round_trips.load() >= 500; }, absl::Seconds(10)));
  absl::StatusOr<int> status = server_->Stop(SIGTERM, kShutdownBound);
  for (std::thread& t : loaders) t.join();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "wait status " << *status;
  EXPECT_EQ(bad.load(), 0) << "a client got bytes it did not send";
}

}  // namespace
}  // namespace fault_test
}  // namespace eventide
