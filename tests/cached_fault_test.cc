// Fault and load tests for the cached binary (issue 10), each against its
// own server process on 127.0.0.1 port 0: 1,000 idle connections, a burst
// over -c, running out of file descriptors (EMFILE), 10 MB of random bytes,
// slowloris writers, 1,000 abortive closes, clients that never read their
// replies. Every test stores a data set first and checks it byte for byte
// after the fault, and the server must still exit 0 on SIGTERM at the end.
// (SIGTERM during load and in-flight replies: cached_e2e_test.cc.)
//
// Counts are the same under sanitizers; the memory bounds are looser there
// (ASan redzones and shadow memory), and the ASan server's quarantine is
// capped (fault_test_util.h). Every wait is bounded.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
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
using cached_test::ParseStats;
using cached_test::Printable;
using cached_test::ServerProcess;

constexpr absl::Duration kShutdownBound = absl::Seconds(5);
constexpr char kVersion[] = "VERSION 1.6.18-eventide\r\n";

std::string Set(absl::string_view key, absl::string_view value) {
  return absl::StrCat("set ", key, " 0 0 ", value.size(), "\r\n", value,
                      "\r\n");
}

std::string Value(absl::string_view key, absl::string_view value) {
  return absl::StrCat("VALUE ", key, " 0 ", value.size(), "\r\n", value,
                      "\r\nEND\r\n");
}

// Binary value of `size` bytes depending on `seed`.
std::string MakeValue(size_t size, uint32_t seed) {
  return RandomBytes(size, 0x5eed0000u + seed);
}

class CachedFaultTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetChildSanitizerOptions();
    // 1,000 clients here plus 1,000 connections in the server (which
    // inherits the limit).
    RaiseNofileLimit(8192);
  }

  void StartServer(std::vector<std::string> args) {
    std::vector<std::string> all = {"-l", "127.0.0.1", "-p", "0"};
    all.insert(all.end(), args.begin(), args.end());
    auto server = ServerProcess::StartCached(all);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  Client Connect() {
    absl::StatusOr<Client> client = Client::Connect(server_->port());
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return Client();
    return std::move(*client);
  }

  void ExpectCall(Client& client, absl::string_view request,
                  absl::string_view expected) {
    absl::StatusOr<std::string> reply = client.Call(request);
    ASSERT_TRUE(reply.ok()) << reply.status() << " for " << Printable(request);
    EXPECT_EQ(*reply, expected) << "request: " << Printable(request);
  }

  // The data set every test checks after its fault: `n` keys with values
  // of 1..2000 bytes, every byte value included.
  static std::string DataKey(int i) { return absl::StrCat("data:", i); }
  static std::string DataValue(int i) {
    return MakeValue(1 + static_cast<size_t>(i * 37) % 2000,
                     static_cast<uint32_t>(i));
  }
  void StoreDataSet(Client& c, int n) {
    std::string requests, expected;
    for (int i = 0; i < n; ++i) {
      requests += Set(DataKey(i), DataValue(i));
      expected += "STORED\r\n";
    }
    ASSERT_TRUE(c.Send(requests, 0, absl::Seconds(20)).ok());
    absl::StatusOr<std::string> got =
        c.ReadExactly(expected.size(), absl::Seconds(20));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, expected);
  }
  // Reads every key back on a fresh connection, byte for byte.
  void VerifyDataSet(int n) {
    Client c = Connect();
    VerifyDataSetOn(c, n);
  }
  void VerifyDataSetOn(Client& c, int n) {
    int wrong = 0;
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<std::string> got =
          c.Call(absl::StrCat("get ", DataKey(i), "\r\n"));
      ASSERT_TRUE(got.ok()) << "key " << i << ": " << got.status();
      if (*got != Value(DataKey(i), DataValue(i))) {
        if (++wrong <= 3) {
          ADD_FAILURE() << "key " << i << " differs: " << Printable(*got, 80);
        }
      }
    }
    EXPECT_EQ(wrong, 0) << "of " << n << " keys";
  }

  std::map<std::string, std::string> Stats(Client& c) {
    absl::StatusOr<std::string> reply = c.Call("stats\r\n");
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? ParseStats(*reply)
                      : std::map<std::string, std::string>();
  }
  int64_t StatInt(Client& c, const std::string& name) {
    auto stats = Stats(c);
    int64_t v = -1;
    if (!absl::SimpleAtoi(stats[name], &v)) ADD_FAILURE() << "no stat " << name;
    return v;
  }

  int64_t Rss() {
    absl::StatusOr<int64_t> kb = RssKb(server_->pid());
    EXPECT_TRUE(kb.ok()) << kb.status();
    return kb.ok() ? *kb : 0;
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

TEST_F(CachedFaultTest, ThousandIdleConnectionsThenNewClientIsServed) {
  StartServer({"-t", "2", "-c", "2000"});
  Client data = Connect();
  StoreDataSet(data, 200);
  constexpr int kIdle = 1000;
  std::vector<Client> idle;
  idle.reserve(kIdle);
  for (int i = 0; i < kIdle; ++i) {
    absl::StatusOr<Client> c =
        Client::Connect(server_->port(), absl::Seconds(10));
    ASSERT_TRUE(c.ok()) << "idle client " << i << ": " << c.status();
    idle.push_back(std::move(*c));
  }
  // Every idle connection is accepted and counted (bounded wait: the
  // accept thread hands them to the workers asynchronously).
  int64_t curr = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        curr = StatInt(data, "curr_connections");
        return curr >= kIdle + 1;
      },
      absl::Seconds(20), absl::Milliseconds(100)))
      << "curr_connections " << curr;
  Client fresh = Connect();
  ExpectCall(fresh, Set("fresh", "yes"), "STORED\r\n");
  ExpectCall(fresh, "get fresh\r\n", Value("fresh", "yes"));
  // The idle ones are still served too (a sample, spread over both workers).
  for (int i = 0; i < kIdle; i += 97) {
    ExpectCall(idle[i], "version\r\n", kVersion);
  }
  VerifyDataSet(200);
}

TEST_F(CachedFaultTest, BurstOverConnectionLimitIsRefusedOthersServed) {
  constexpr int kLimit = 20;
  StartServer({"-t", "2", "-c", absl::StrCat(kLimit)});
  Client data = Connect();
  StoreDataSet(data, 300);
  std::vector<Client> held;
  for (int i = 1; i < kLimit; ++i) {
    held.push_back(Connect());
    ExpectCall(held.back(), "version\r\n", kVersion);
  }
  // 50 more at once: each is told and closed, none is served.
  std::vector<Client> extra;
  for (int i = 0; i < 50; ++i) extra.push_back(Connect());
  for (Client& c : extra) {
    // A request the refused client sends anyway must not be executed.
    (void)c.Send(Set("data:0", "overwritten"));
  }
  int refused = 0;
  for (Client& c : extra) {
    absl::StatusOr<std::string> got = c.ReadUntilClosed(absl::Seconds(10));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, "ERROR Too many open connections\r\n");
    ++refused;
  }
  EXPECT_EQ(refused, 50);
  for (Client& c : held) ExpectCall(c, "version\r\n", kVersion);
  EXPECT_GE(StatInt(data, "rejected_connections"), 50);
  EXPECT_EQ(StatInt(data, "curr_connections"), kLimit);
  // At the limit a fresh connection would be refused: read back on one
  // that was served all along.
  VerifyDataSetOn(data, 300);
}

TEST_F(CachedFaultTest, OutOfFileDescriptorsNoBusyLoopAndRecovers) {
  absl::StatusOr<std::string> path = cached_test::CachedBinaryPath();
  ASSERT_TRUE(path.ok()) << path.status();
  constexpr int kFdLimit = 64;
  auto server = StartWithNofileLimit(
      kFdLimit, *path, {"-l", "127.0.0.1", "-p", "0", "-t", "2", "-c", "1000"});
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  Client data = Connect();
  StoreDataSet(data, 200);
  absl::StatusOr<int> base_fds = OpenFdCount(server_->pid());
  ASSERT_TRUE(base_fds.ok()) << base_fds.status();
  ASSERT_LT(*base_fds, kFdLimit - 10) << "no room to test in";
  // More clients than the server has fds left: the rest wait in the
  // backlog (their connect succeeds; nobody accepts them yet).
  const int kClients = kFdLimit - *base_fds + 30;
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect());
    ASSERT_TRUE(clients.back().Send("version\r\n").ok());
  }
  std::vector<bool> served(kClients, false);
  auto collect = [&] {
    int n = 0;
    for (int i = 0; i < kClients; ++i) {
      if (!served[i]) {
        absl::StatusOr<std::string> r =
            clients[i].ReadReply(absl::Milliseconds(1));
        if (r.ok()) {
          EXPECT_EQ(*r, kVersion);
          served[i] = true;
        }
      }
      n += served[i];
    }
    return n;
  };
  // Wait until the server is out of fds: the count of served clients
  // stops growing (bounded).
  int now = WaitUntilStable(collect, absl::Seconds(15));
  ASSERT_GT(now, 0);
  ASSERT_LT(now, kClients) << "the server never ran out of fds";
  absl::StatusOr<int> fds = OpenFdCount(server_->pid());
  ASSERT_TRUE(fds.ok());
  EXPECT_GE(*fds, kFdLimit - 2) << "not at the limit";
  // Out of fds with connections pending: the server must not spin.
  absl::StatusOr<double> share =
      CpuShareOver(server_->pid(), absl::Milliseconds(1500));
  ASSERT_TRUE(share.ok()) << share.status();
  EXPECT_LT(*share, 0.2) << "CPU share while out of fds";
  std::cerr << "out of fds: " << now << " of " << kClients
            << " served, server CPU " << *share * 100 << "%\n";
  // Free 10 fds: pending clients are served again.
  CloseServed(clients, served, 10);
  const int before = now;
  EXPECT_TRUE(WaitFor([&] { return (now = collect()) >= before + 5; },
                      absl::Seconds(10), absl::Milliseconds(100)))
      << "served " << now << " after freeing 10 fds, " << before << " before";
  ExpectCall(data, "version\r\n", kVersion);
  // Release everything; then every client left could be served, and the
  // data set is intact.
  clients.clear();
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<int> n = OpenFdCount(server_->pid());
        return n.ok() && *n <= *base_fds + 2;
      },
      absl::Seconds(10)));
  VerifyDataSet(200);
}

TEST_F(CachedFaultTest, TenMegabytesOfRandomBytesHurtOnlyThatConnection) {
  StartServer({"-t", "2"});
  {
    Client data = Connect();
    StoreDataSet(data, 1000);
  }
  const std::string garbage = RandomBytes(10 << 20, 20240610);
  std::atomic<bool> done{false};
  std::atomic<int> other_ok{0}, other_bad{0};
  std::string first_bad;
  std::mutex mu;
  const int port = server_->port();
  // Another connection keeps working meanwhile (bounded in count).
  std::thread other([&] {
    absl::StatusOr<Client> c = Client::Connect(port);
    if (!c.ok()) {
      other_bad.fetch_add(1);
      return;
    }
    // At least 200 round trips, then until the garbage is through.
    for (int i = 0; i < 100000 && (i < 200 || !done.load()); ++i) {
      const std::string key = absl::StrCat("other", i % 50);
      const std::string value = MakeValue(100 + i % 300, i);
      absl::StatusOr<std::string> r = c->Call(Set(key, value));
      absl::StatusOr<std::string> g =
          r.ok() ? c->Call(absl::StrCat("get ", key, "\r\n")) : r;
      if (r.ok() && *r == "STORED\r\n" && g.ok() && *g == Value(key, value)) {
        other_ok.fetch_add(1);
      } else {
        if (other_bad.fetch_add(1) == 0) {
          std::lock_guard<std::mutex> lock(mu);
          first_bad = g.ok() ? Printable(*g, 200) : g.status().ToString();
        }
        return;
      }
    }
  });
  Client victim = Connect();
  PumpResult pumped = Pump(victim.fd(), garbage, 0, 0,
                           absl::Now() + absl::Seconds(30), 256 << 10);
  // Whatever came back must be error lines only (or nothing, if the
  // connection was closed first).
  if (!pumped.closed_by_peer) {
    // Sent everything: collect the remaining replies for a moment.
    PumpResult tail = Pump(victim.fd(), "", 0, size_t{1} << 40,
                           absl::Now() + absl::Seconds(2), 256 << 10);
    pumped.received += tail.received;
    pumped.closed_by_peer = tail.closed_by_peer;
  }
  done.store(true);
  other.join();
  EXPECT_TRUE(pumped.error.empty()) << pumped.error;
  EXPECT_FALSE(pumped.timed_out) << "sent " << pumped.sent;
  int error_lines = 0;
  absl::string_view rest = pumped.received;
  while (!rest.empty()) {
    const size_t nl = rest.find("\r\n");
    if (nl == absl::string_view::npos) break;  // cut by `keep`
    absl::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl + 2);
    EXPECT_TRUE(line == "ERROR" || absl::StartsWith(line, "CLIENT_ERROR") ||
                absl::StartsWith(line, "SERVER_ERROR"))
        << "unexpected reply to garbage: " << Printable(line, 200);
    ++error_lines;
  }
  EXPECT_TRUE(pumped.closed_by_peer || error_lines > 0)
      << "neither errors nor a close for 10 MB of garbage";
  std::cerr << "garbage: " << pumped.sent << " bytes taken, " << error_lines
            << " error lines, "
            << (pumped.closed_by_peer ? "closed" : "left open") << "; other "
            << other_ok.load() << " round trips\n";
  EXPECT_EQ(other_bad.load(), 0) << first_bad;
  EXPECT_GE(other_ok.load(), 200);
  VerifyDataSet(1000);
}

// 1-byte-at-a-time writers that then stall are cut by --idle-timeout, and
// do not make the server hold memory.
TEST_F(CachedFaultTest, SlowlorisCutByIdleTimeout) {
  StartServer({"-t", "2", "--idle-timeout", "2"});
  Client data = Connect();
  StoreDataSet(data, 200);
  const int64_t rss_before = Rss();
  constexpr int kSlow = 200;
  constexpr int kBytesEach = 300;
  std::vector<Client> slow;
  for (int i = 0; i < kSlow; ++i) slow.push_back(Connect());
  // A partial line (no '\n') growing one byte per send, round-robin.
  const std::string line = "get " + std::string(kBytesEach - 4, 'k');
  int cut_early = 0;
  std::vector<bool> alive(kSlow, true);
  for (int b = 0; b < kBytesEach; ++b) {
    for (int i = 0; i < kSlow; ++i) {
      if (!alive[i]) continue;
      if (!slow[i].Send(absl::string_view(&line[b], 1)).ok()) {
        alive[i] = false;  // cut already: acceptable, the server decides
        ++cut_early;
      }
    }
  }
  const int64_t rss_held = Rss();
  // Every one is closed by the server once idle, with no reply.
  for (int i = 0; i < kSlow; ++i) {
    if (!alive[i]) continue;
    absl::StatusOr<std::string> rest =
        slow[i].ReadUntilClosed(absl::Seconds(10));
    ASSERT_TRUE(rest.ok()) << "slow client " << i << ": " << rest.status();
    EXPECT_EQ(*rest, "");
  }
  // The data connection was idle too and is gone; a fresh one works.
  const int64_t rss_after = Rss();
  const int64_t bound_kb = ScaledKb(kSlow * 64 + 16 * 1024);
  EXPECT_LT(rss_held - rss_before, bound_kb)
      << "RSS " << rss_before << " -> " << rss_held << " KiB with " << kSlow
      << " slow clients";
  EXPECT_LT(rss_after - rss_before, bound_kb);
  std::cerr << "slowloris: RSS " << rss_before << " -> " << rss_held << " -> "
            << rss_after << " KiB; " << cut_early << " cut while sending\n";
  VerifyDataSet(200);
}

// Lines that never end are cut by the request-line limit: 2048 bytes for
// commands, 1 MiB for get lines (apps/cached/limits.h), also when they
// arrive one byte at a time.
TEST_F(CachedFaultTest, SlowlorisCutByLineLimit) {
  StartServer({"-t", "2"});
  Client data = Connect();
  StoreDataSet(data, 200);
  constexpr int kSlow = 20;
  constexpr int kBytesEach = 2100;  // past the 2048-byte limit
  std::vector<Client> slow;
  for (int i = 0; i < kSlow; ++i) slow.push_back(Connect());
  const std::string line = "set " + std::string(kBytesEach - 4, 'x');
  std::vector<bool> alive(kSlow, true);
  for (int b = 0; b < kBytesEach; ++b) {
    for (int i = 0; i < kSlow; ++i) {
      if (alive[i] && !slow[i].Send(absl::string_view(&line[b], 1)).ok()) {
        alive[i] = false;
      }
    }
  }
  for (int i = 0; i < kSlow; ++i) {
    absl::StatusOr<std::string> rest =
        slow[i].ReadUntilClosed(absl::Seconds(10));
    ASSERT_TRUE(rest.ok()) << "slow client " << i << ": " << rest.status();
    EXPECT_EQ(*rest, "") << i;
  }
  // A get line past 1 MiB, in bulk: cut too.
  Client wide = Connect();
  const std::string get_line = "get " + std::string((1 << 20) + 100, 'k');
  PumpResult pumped = Pump(wide.fd(), get_line, 0, size_t{1} << 40,
                           absl::Now() + absl::Seconds(20));
  EXPECT_TRUE(pumped.closed_by_peer) << "sent " << pumped.sent << ", received "
                                     << Printable(pumped.received, 100);
  ExpectCall(data, "version\r\n", kVersion);
  VerifyDataSet(200);
}

// RST instead of FIN, in the middle of a request and in the middle of a
// large reply, 1,000 times: no connection, fd or item may be lost or
// corrupted.
TEST_F(CachedFaultTest, ThousandAbortiveCloses) {
  StartServer({"-t", "2"});
  Client data = Connect();
  StoreDataSet(data, 500);
  const std::string big = MakeValue(256 << 10, 77);
  ExpectCall(data, Set("big", big), "STORED\r\n");
  absl::StatusOr<int> base_fds = OpenFdCount(server_->pid());
  ASSERT_TRUE(base_fds.ok()) << base_fds.status();
  constexpr int kCloses = 1000;
  int mid_reply = 0;
  for (int i = 0; i < kCloses; ++i) {
    Client c = Connect();
    if (i % 2 == 0) {
      // Half a data block of a set for a data-set key.
      ASSERT_TRUE(c.Send(absl::StrCat("set ", DataKey(i % 500), " 0 0 1000\r\n",
                                      std::string(500, 'r')))
                      .ok());
    } else {
      ASSERT_TRUE(c.Send("get big\r\n").ok());
      // Wait for the reply to start, so the RST lands mid-reply.
      absl::StatusOr<std::string> first = c.ReadExactly(1, absl::Seconds(5));
      ASSERT_TRUE(first.ok()) << first.status();
      ++mid_reply;
    }
    AbortiveClose(c);
  }
  ExpectCall(data, "version\r\n", kVersion);
  // Every aborted connection is closed and forgotten by the server.
  int64_t curr = -1;
  EXPECT_TRUE(WaitFor(
      [&] {
        curr = StatInt(data, "curr_connections");
        return curr == 1;
      },
      absl::Seconds(10), absl::Milliseconds(50)))
      << "curr_connections " << curr;
  int fds = -1;
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<int> n = OpenFdCount(server_->pid());
        fds = n.ok() ? *n : -1;
        return fds == *base_fds;
      },
      absl::Seconds(10)))
      << "server fds " << fds << ", " << *base_fds << " before";
  EXPECT_EQ(mid_reply, kCloses / 2);
  ExpectCall(data, "get big\r\n", Value("big", big));
  VerifyDataSet(500);
}

// Clients that pipeline many large gets and never read: back-pressure must
// bound what the server holds for them, and others are still served.
TEST_F(CachedFaultTest, NonReadingClientsDoNotGrowServerMemory) {
  StartServer({"-t", "2"});
  Client data = Connect();
  StoreDataSet(data, 300);
  const std::string big = MakeValue(512 << 10, 99);
  ExpectCall(data, Set("big", big), "STORED\r\n");
  // Warm up the reply path once.
  ExpectCall(data, "get big\r\n", Value("big", big));
  const int64_t rss_before = Rss();
  // 4 clients x 100 gets x 512 KiB would be 200 MiB of replies if the server
  // produced them all.
  constexpr int kReaders = 4;
  constexpr int kGets = 100;
  std::string requests;
  for (int i = 0; i < kGets; ++i) requests += "get big\r\n";
  std::vector<Client> stuck;
  for (int i = 0; i < kReaders; ++i) {
    stuck.push_back(Connect());
    ASSERT_TRUE(stuck.back().Send(requests).ok());
  }
  // Watch the server's memory for 2 s while someone else is served.
  int64_t rss_max = rss_before;
  const absl::Time until = absl::Now() + absl::Seconds(2);
  int round_trips = 0;
  while (absl::Now() < until) {
    ExpectCall(data, "get data:7\r\n", Value(DataKey(7), DataValue(7)));
    ++round_trips;
    rss_max = std::max(rss_max, Rss());
    absl::SleepFor(absl::Milliseconds(50));
  }
  // Per connection: the output high watermark (4 MiB) plus one reply
  // being added, plus the socket buffers' worth; 64 MiB for all four is
  // generous and far below 200 MiB.
  const int64_t bound_kb = ScaledKb(64 * 1024);
  EXPECT_LT(rss_max - rss_before, bound_kb)
      << "server RSS " << rss_before << " -> " << rss_max << " KiB with "
      << kReaders << " clients not reading " << kGets << " x 512 KiB gets";
  std::cerr << "non-reading clients: RSS " << rss_before << " -> " << rss_max
            << " KiB; " << round_trips << " round trips meanwhile\n";
  for (Client& c : stuck) AbortiveClose(c);
  ExpectCall(data, "get big\r\n", Value("big", big));
  VerifyDataSet(300);
}

}  // namespace
}  // namespace fault_test
}  // namespace eventide
