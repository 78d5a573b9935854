// End to end: the //apps/cached:cached binary as a child process, driven
// over raw loopback sockets (no client library). Covers the CLI contract
// (listening line, bad flags, port in use, signals, -c, -I,
// --idle-timeout) and the protocol through the real transport: round trips,
// pipelining, 1-byte writes, size limits, long lines, 50 concurrent clients,
// stats, expiry.
//
// Every test starts its own server on 127.0.0.1 port 0 and, in TearDown,
// stops it with SIGTERM and expects exit status 0 within 5 s: every test is
// also a clean-shutdown test (and, under --config=asan, a leak check of the
// server). Every wait is bounded; no timing is asserted beyond the
// contract's shutdown bound.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/cached_test_util.h"

namespace eventide {
namespace cached_test {
namespace {

constexpr absl::Duration kShutdownBound = absl::Seconds(5);

std::string Set(absl::string_view key, absl::string_view value,
                absl::string_view flags = "0",
                absl::string_view exptime = "0") {
  return absl::StrCat("set ", key, " ", flags, " ", exptime, " ", value.size(),
                      "\r\n", value, "\r\n");
}

std::string Value(absl::string_view key, absl::string_view value,
                  absl::string_view flags = "0") {
  return absl::StrCat("VALUE ", key, " ", flags, " ", value.size(), "\r\n",
                      value, "\r\nEND\r\n");
}

// A value of `size` bytes that depends on `seed`, binary bytes included
// (but never a "\r\n" that could be mistaken for framing by a broken
// server: framing is by length anyway).
std::string MakeValue(size_t size, uint32_t seed) {
  std::string v(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    v[i] = static_cast<char>(x >> 24);
  }
  return v;
}

int64_t StatInt(const std::map<std::string, std::string>& stats,
                const std::string& name) {
  auto it = stats.find(name);
  int64_t v = -1;
  if (it == stats.end() || !absl::SimpleAtoi(it->second, &v)) {
    ADD_FAILURE() << "no integer stat " << name;
    return -1;
  }
  return v;
}

class CachedE2eTest : public ::testing::Test {
 protected:
  // Starts cached on 127.0.0.1 port 0 with `args` added.
  void StartServer(std::vector<std::string> args = {"-t", "2"}) {
    std::vector<std::string> all = {"-l", "127.0.0.1", "-p", "0"};
    all.insert(all.end(), args.begin(), args.end());
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::StartCached(all);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  Client Connect() {
    absl::StatusOr<Client> client = Client::Connect(server_->port());
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return Client();  // closed: every later call fails
    return std::move(*client);
  }

  // Expects `request` to be answered with exactly `expected`.
  void ExpectCall(Client& client, absl::string_view request,
                  absl::string_view expected) {
    absl::StatusOr<std::string> reply = client.Call(request);
    ASSERT_TRUE(reply.ok()) << reply.status() << " for " << Printable(request);
    EXPECT_EQ(*reply, expected) << "request: " << Printable(request);
  }

  // Stops the server with SIGTERM and expects exit 0 within the bound.
  void StopServerCleanly() {
    absl::StatusOr<int> status = server_->Stop(SIGTERM, kShutdownBound);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "wait status " << *status
        << (WIFSIGNALED(*status)
                ? absl::StrCat(" (signal ", WTERMSIG(*status), ")")
                : absl::StrCat(" (exit ", WEXITSTATUS(*status), ")"));
  }

  void TearDown() override {
    if (server_ != nullptr && !server_->HasExited()) StopServerCleanly();
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CachedE2eTest, PrintsListeningLineAndAnswersVersion) {
  StartServer({"-t", "3"});
  EXPECT_TRUE(absl::StartsWith(
      server_->banner(), absl::StrCat("cached: listening on 127.0.0.1:",
                                      server_->port(), " (3 worker threads, ")))
      << server_->banner();
  EXPECT_TRUE(absl::EndsWith(server_->banner(), " backend)"))
      << server_->banner();
  Client client = Connect();
  ExpectCall(client, "version\r\n", "VERSION 1.6.18-eventide\r\n");
}

TEST_F(CachedE2eTest, StorageCommandsRoundTrip) {
  StartServer();
  Client c = Connect();
  ExpectCall(c, Set("foo", "bar", "5"), "STORED\r\n");
  ExpectCall(c, "get foo\r\n", Value("foo", "bar", "5"));
  ExpectCall(c, Set("foo", "baz", "0"), "STORED\r\n");
  ExpectCall(c, "get foo\r\n", Value("foo", "baz"));
  ExpectCall(c, "add foo 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
  ExpectCall(c, "add new 0 0 1\r\nn\r\n", "STORED\r\n");
  ExpectCall(c, "replace missing 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
  ExpectCall(c, "replace foo 7 0 4\r\nquux\r\n", "STORED\r\n");
  ExpectCall(c, "append foo 0 0 2\r\n!!\r\n", "STORED\r\n");
  ExpectCall(c, "prepend foo 0 0 2\r\n<<\r\n", "STORED\r\n");
  ExpectCall(c, "append missing 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
  // append/prepend keep the flags of the stored item.
  ExpectCall(c, "get foo\r\n", Value("foo", "<<quux!!", "7"));
  // Multi-get answers the hits in request order and skips misses.
  ExpectCall(c, "get new nothing foo\r\n",
             "VALUE new 0 1\r\nn\r\nVALUE foo 7 8\r\n<<quux!!\r\nEND\r\n");
  ExpectCall(c, "delete foo\r\n", "DELETED\r\n");
  ExpectCall(c, "delete foo\r\n", "NOT_FOUND\r\n");
  ExpectCall(c, "get foo\r\n", "END\r\n");
  // Binary-safe values: every byte value, "\r\n" inside included.
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  binary += "\r\nEND\r\n";
  ExpectCall(c, Set("bin", binary), "STORED\r\n");
  ExpectCall(c, "get bin\r\n", Value("bin", binary));
  // noreply: no answer at all; the next request's answer comes first.
  ASSERT_TRUE(c.Send("set quiet 0 0 1 noreply\r\nq\r\n").ok());
  ExpectCall(c, "get quiet\r\n", Value("quiet", "q"));
  ExpectCall(c, "touch quiet 100\r\n", "TOUCHED\r\n");
  ExpectCall(c, "touch nothing 100\r\n", "NOT_FOUND\r\n");
  ExpectCall(c, "gat 100 quiet\r\n", Value("quiet", "q"));
  ExpectCall(c, "bogus\r\n", "ERROR\r\n");
}

TEST_F(CachedE2eTest, IncrDecrRoundTrip) {
  StartServer();
  Client c = Connect();
  ExpectCall(c, Set("n", "10"), "STORED\r\n");
  ExpectCall(c, "incr n 5\r\n", "15\r\n");
  ExpectCall(c, "decr n 20\r\n", "0\r\n");  // floor at 0
  ExpectCall(c, "incr n 18446744073709551615\r\n", "18446744073709551615\r\n");
  ExpectCall(c, "incr n 2\r\n", "1\r\n");  // wraps at 2^64
  ExpectCall(c, "incr missing 1\r\n", "NOT_FOUND\r\n");
  ExpectCall(c, Set("s", "abc"), "STORED\r\n");
  ExpectCall(
      c, "incr s 1\r\n",
      "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
  ExpectCall(c, "incr n x\r\n",
             "CLIENT_ERROR invalid numeric delta argument\r\n");
  // decr keeps the length, space-padded, as memcached does.
  ExpectCall(c, Set("p", "100"), "STORED\r\n");
  ExpectCall(c, "decr p 95\r\n", "5\r\n");
  ExpectCall(c, "get p\r\n", Value("p", "5  "));
}

TEST_F(CachedE2eTest, CasRoundTrip) {
  StartServer();
  Client c = Connect();
  ExpectCall(c, Set("k", "v1"), "STORED\r\n");
  absl::StatusOr<std::string> reply = c.Call("gets k\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  // VALUE k 0 2 <cas>\r\nv1\r\nEND\r\n
  std::vector<std::string> head =
      absl::StrSplit(reply->substr(0, reply->find("\r\n")), ' ');
  ASSERT_EQ(head.size(), 5u) << Printable(*reply);
  EXPECT_EQ(reply->substr(reply->find("\r\n")), "\r\nv1\r\nEND\r\n");
  uint64_t cas = 0;
  ASSERT_TRUE(absl::SimpleAtoi(head[4], &cas)) << Printable(*reply);
  EXPECT_GT(cas, 0u);
  ExpectCall(c, absl::StrCat("cas k 0 0 2 ", cas + 1000, "\r\nv2\r\n"),
             "EXISTS\r\n");
  ExpectCall(c, absl::StrCat("cas k 3 0 2 ", cas, "\r\nv2\r\n"), "STORED\r\n");
  ExpectCall(c, "get k\r\n", Value("k", "v2", "3"));
  // The unique changed: the old one is stale now.
  ExpectCall(c, absl::StrCat("cas k 0 0 2 ", cas, "\r\nv3\r\n"), "EXISTS\r\n");
  ExpectCall(c, absl::StrCat("cas nothing 0 0 2 ", cas, "\r\nv3\r\n"),
             "NOT_FOUND\r\n");
  reply = c.Call("gets k\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  std::vector<std::string> head2 =
      absl::StrSplit(reply->substr(0, reply->find("\r\n")), ' ');
  ASSERT_EQ(head2.size(), 5u) << Printable(*reply);
  EXPECT_NE(head2[4], head[4]);
}

// The request/reply pairs shared by the pipelining tests.
std::vector<std::pair<std::string, std::string>> PipelineScript() {
  std::vector<std::pair<std::string, std::string>> script;
  script.emplace_back(Set("counter", "0"), "STORED\r\n");
  for (int i = 0; i < 60; ++i) {
    const std::string key = absl::StrCat("pipe", i);
    const std::string value = MakeValue(static_cast<size_t>(i * 7), i);
    script.emplace_back(Set(key, value, absl::StrCat(i)), "STORED\r\n");
    script.emplace_back(absl::StrCat("get ", key, "\r\n"),
                        Value(key, value, absl::StrCat(i)));
    script.emplace_back("incr counter 1\r\n", absl::StrCat(i + 1, "\r\n"));
    if (i % 3 == 0) {
      script.emplace_back(absl::StrCat("delete ", key, "\r\n"), "DELETED\r\n");
      script.emplace_back(absl::StrCat("get ", key, "\r\n"), "END\r\n");
    }
    if (i % 10 == 0) {
      script.emplace_back("set bad 0 0 2\r\nabcd\r\n",
                          "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
      script.emplace_back("version\r\n", "VERSION 1.6.18-eventide\r\n");
      script.emplace_back(absl::StrCat("set q", i, " 0 0 1 noreply\r\nq\r\n"),
                          "");
    }
  }
  return script;
}

// The connection is still in sync after a sequence: one more round trip.
void ExpectCallOnOpenConnection(Client& c);

void RunPipeline(Client& c, size_t piece) {
  std::string requests, expected;
  for (const auto& [request, reply] : PipelineScript()) {
    requests += request;
    expected += reply;
  }
  ASSERT_TRUE(c.Send(requests, piece, absl::Seconds(30)).ok());
  absl::StatusOr<std::string> replies =
      c.ReadExactly(expected.size(), absl::Seconds(20));
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_EQ(Printable(*replies, 1 << 20), Printable(expected, 1 << 20));
  // Nothing more than expected.
  ExpectCallOnOpenConnection(c);
}

TEST_F(CachedE2eTest, PipelinedRequestsInOneWrite) {
  StartServer();
  Client c = Connect();
  RunPipeline(c, 0);
}

TEST_F(CachedE2eTest, PipelinedRequestsOneByteAtATime) {
  StartServer();
  Client c = Connect();
  RunPipeline(c, 1);
}

void ExpectCallOnOpenConnection(Client& c) {
  absl::StatusOr<std::string> reply = c.Call("version\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "VERSION 1.6.18-eventide\r\n");
  EXPECT_EQ(c.pending(), "");
}

// The same traffic on every I/O backend, chosen with --backend, with the
// other flags given too. io_uring may be refused by the kernel (or a
// sandbox); then cached exits at start-up and that backend is skipped.
TEST_F(CachedE2eTest, EveryBackendServes) {
  int served = 0;
  for (const char* backend : {"epoll", "poll", "select", "io_uring"}) {
    SCOPED_TRACE(backend);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::StartCached(
            {"-l", "127.0.0.1", "-p", "0", "-t", "2", "-c", "100", "-m", "16",
             "-I", "1m", "-v", "--idle-timeout", "0", "--backend", backend});
    if (!server.ok() && std::string(backend) == "io_uring") {
      std::cerr << "io_uring backend not available here: " << server.status()
                << "\n";
      continue;
    }
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    EXPECT_TRUE(absl::EndsWith(
        server_->banner(),
        absl::StrCat("(2 worker threads, ", backend, " backend)")))
        << server_->banner();
    Client c = Connect();
    RunPipeline(c, 0);
    Client d = Connect();
    RunPipeline(d, 7);  // odd pieces
    const std::string value = MakeValue(700000, 11);
    ExpectCall(c, Set("big", value), "STORED\r\n");
    absl::StatusOr<std::string> reply = d.Call("get big\r\n");
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_TRUE(*reply == Value("big", value));
    StopServerCleanly();
    server_.reset();
    ++served;
  }
  EXPECT_GE(served, 3);
}

// Small requests whose replies are large: 100 gets of a 200 KB value in
// one write ask for 20 MB the client only starts reading afterwards. The
// server must keep the replies in order through a full socket buffer.
TEST_F(CachedE2eTest, LargePipelinedRepliesUnderBackPressure) {
  StartServer();
  Client c = Connect();
  const std::string value = MakeValue(200 * 1000, 5);
  ExpectCall(c, Set("wide", value), "STORED\r\n");
  ExpectCall(c, Set("tag", "t"), "STORED\r\n");
  std::string requests;
  for (int i = 0; i < 100; ++i) requests += "get wide\r\nget tag\r\n";
  ASSERT_TRUE(c.Send(requests).ok());
  const std::string wide = Value("wide", value);
  const std::string tag = Value("tag", "t");
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::string> reply = c.ReadExactly(wide.size());
    ASSERT_TRUE(reply.ok()) << "reply " << i << ": " << reply.status();
    ASSERT_TRUE(*reply == wide) << "reply " << i << " differs";
    reply = c.ReadExactly(tag.size());
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(*reply, tag) << "reply " << i;
  }
  ExpectCallOnOpenConnection(c);
}

// A client that sends its whole batch and then half-closes (printf | nc, a
// replay tool) gets every reply, including those of requests held back at
// the output budget when the EOF arrived; then the server closes. Until
// this was fixed, the EOF made the server close after what was queued and
// the held-back requests ran with their replies dropped (about half of
// the 1000 gets below).
TEST_F(CachedE2eTest, HalfClosedClientGetsEveryReply) {
  StartServer();
  Client c = Connect();
  const std::string value = MakeValue(10000, 7);
  std::string requests = Set("k", value);
  for (int i = 0; i < 1000; ++i) requests += "get k\r\n";
  requests += "version\r\n";
  // Sent on a thread: the server stops reading at its budget until we read,
  // and the kernel buffers cannot hold all of it. Send only reads the
  // client's fd; the reads here own its buffer.
  absl::Status sent;
  std::thread sender([&] {
    sent = c.Send(requests, 0, absl::Seconds(20));
    if (sent.ok()) shutdown(c.fd(), SHUT_WR);
  });
  absl::StatusOr<std::string> got = c.ReadUntilClosed(absl::Seconds(20));
  sender.join();
  ASSERT_TRUE(sent.ok()) << sent;
  ASSERT_TRUE(got.ok()) << got.status();
  std::string expected = "STORED\r\n";
  for (int i = 0; i < 1000; ++i) expected += Value("k", value);
  ASSERT_TRUE(absl::StartsWith(*got, expected))
      << got->size() << " bytes received, " << expected.size()
      << " expected before VERSION";
  EXPECT_TRUE(absl::StartsWith(got->substr(expected.size()), "VERSION "));
  EXPECT_TRUE(absl::EndsWith(*got, "\r\n"));
}

TEST_F(CachedE2eTest, TooLargeValueIsRefusedAndConnectionStaysInSync) {
  StartServer();
  Client c = Connect();
  const size_t kOneMiB = size_t{1} << 20;
  ExpectCall(c, Set("big", "old"), "STORED\r\n");
  // 1 MiB + 1 bytes: refused after the data block has been swallowed. The
  // next request is in the same write, so the swallowing must stop exactly
  // at the end of the block.
  const std::string too_big(kOneMiB + 1, 'x');
  ASSERT_TRUE(c.Send(Set("big", too_big) + Set("after", "ok")).ok());
  absl::StatusOr<std::string> reply = c.ReadReply();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "SERVER_ERROR object too large for cache\r\n");
  reply = c.ReadReply();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "STORED\r\n");
  // memcached also drops the old value when a set is refused as too large.
  ExpectCall(c, "get big\r\n", "END\r\n");
  ExpectCall(c, "get after\r\n", Value("after", "ok"));

  // The exact boundary under the default -I 1m (memcached's item_size_ok:
  // 48-byte header + key + 1 + value + 2 + 8-byte cas; flags 0 take no
  // room): 1048516 value bytes fit with a 1-byte key, 1048517 do not.
  const std::string largest = MakeValue(1048516, 7);
  ExpectCall(c, Set("k", largest), "STORED\r\n");
  reply = c.Call("get k\r\n", absl::Seconds(20));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(*reply == Value("k", largest)) << "1048516-byte value differs";
  ExpectCall(c, Set("k", std::string(1048517, 'y')),
             "SERVER_ERROR object too large for cache\r\n");
  ExpectCallOnOpenConnection(c);
}

TEST_F(CachedE2eTest, ItemSizeFlagRaisesTheLimit) {
  StartServer({"-t", "1", "-I", "2m"});
  Client c = Connect();
  const std::string value = MakeValue(1500000, 3);
  ExpectCall(c, Set("large", value), "STORED\r\n");
  absl::StatusOr<std::string> reply = c.Call("get large\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(*reply == Value("large", value));
  ExpectCall(c, Set("huge", std::string(2100000, 'h')),
             "SERVER_ERROR object too large for cache\r\n");
  ExpectCallOnOpenConnection(c);
}

TEST_F(CachedE2eTest, LongLines) {
  StartServer();
  // A 2000-byte line is still a line: an unknown command.
  Client c = Connect();
  ExpectCall(c, std::string(2000, 'z') + "\r\n", "ERROR\r\n");
  // A key over 250 bytes is refused; the data line is then read as a
  // command (memcached's behaviour).
  ExpectCall(c, Set(std::string(251, 'k'), "v"),
             "CLIENT_ERROR bad command line format\r\n");
  absl::StatusOr<std::string> reply = c.ReadReply();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "ERROR\r\n");
  ExpectCall(c, Set(std::string(250, 'k'), "v"), "STORED\r\n");
  // get lines may be longer than 2048 bytes: 400 keys, one of them stored.
  ExpectCall(c, Set("hit", "h"), "STORED\r\n");
  std::string get = "get";
  std::string expected;
  for (int i = 0; i < 400; ++i) {
    const bool hit = i % 100 == 0;
    absl::StrAppend(&get, hit ? " hit" : absl::StrCat(" miss", i));
    if (hit) expected += "VALUE hit 0 1\r\nh\r\n";
  }
  ASSERT_GT(get.size(), 3000u);
  ExpectCall(c, get + "\r\n", expected + "END\r\n");
  ExpectCallOnOpenConnection(c);

  // Any other line over the limit (2048 bytes) closes the connection
  // without a reply; the server keeps serving other clients.
  Client d = Connect();
  ASSERT_TRUE(d.Send("set " + std::string(4000, 'a') + " 0 0 1\r\nx\r\n").ok());
  absl::StatusOr<std::string> rest = d.ReadUntilClosed();
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "");
  // Without any newline at all, too.
  Client e = Connect();
  ASSERT_TRUE(e.Send(std::string(3000, 'a')).ok());
  rest = e.ReadUntilClosed();
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "");
  ExpectCallOnOpenConnection(c);
}

TEST_F(CachedE2eTest, FiftyConcurrentClientsEachWithOwnKeys) {
  StartServer({"-t", "4"});
  constexpr int kClients = 50;
  constexpr int kPairs = 200;
  std::atomic<int> failures{0};
  std::mutex mu;
  std::string first_failure;
  auto fail = [&](const std::string& what) {
    if (failures.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> lock(mu);
      first_failure = what;
    }
  };
  const int port = server_->port();
  std::vector<std::thread> threads;
  for (int id = 0; id < kClients; ++id) {
    threads.emplace_back([&, id] {
      absl::StatusOr<Client> c = Client::Connect(port);
      if (!c.ok()) return fail(c.status().ToString());
      for (int j = 0; j < kPairs; ++j) {
        const std::string key = absl::StrCat("c", id, "_k", j);
        const std::string value =
            MakeValue(static_cast<size_t>((id * 31 + j * 17) % 3000),
                      static_cast<uint32_t>(id * 1000 + j));
        const std::string flags = absl::StrCat(j);
        absl::StatusOr<std::string> r = c->Call(Set(key, value, flags));
        if (!r.ok() || *r != "STORED\r\n") {
          return fail(absl::StrCat(
              key, " set: ", r.ok() ? Printable(*r) : r.status().ToString()));
        }
        r = c->Call(absl::StrCat("get ", key, "\r\n"));
        if (!r.ok() || *r != Value(key, value, flags)) {
          return fail(absl::StrCat(
              key, " get: ", r.ok() ? Printable(*r) : r.status().ToString()));
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0) << "first failure: " << first_failure;

  // Everything is visible from a fresh connection afterwards.
  Client c = Connect();
  for (int id = 0; id < kClients; id += 7) {
    const int j = (id * 13) % kPairs;
    const std::string key = absl::StrCat("c", id, "_k", j);
    ExpectCall(c, absl::StrCat("get ", key, "\r\n"),
               Value(key,
                     MakeValue(static_cast<size_t>((id * 31 + j * 17) % 3000),
                               static_cast<uint32_t>(id * 1000 + j)),
                     absl::StrCat(j)));
  }
  absl::StatusOr<std::string> stats = c.Call("stats\r\n");
  ASSERT_TRUE(stats.ok()) << stats.status();
  const auto parsed = ParseStats(*stats);
  EXPECT_EQ(StatInt(parsed, "curr_items"), kClients * kPairs);
  EXPECT_EQ(StatInt(parsed, "cmd_set"), kClients * kPairs);
  EXPECT_GE(StatInt(parsed, "total_connections"), kClients + 1);
}

TEST_F(CachedE2eTest, ConnectionLimit) {
  StartServer({"-t", "2", "-c", "10"});
  std::vector<Client> clients;
  for (int i = 0; i < 10; ++i) {
    clients.push_back(Connect());
    // A round trip makes sure this connection is accepted and counted
    // before the next one arrives.
    ExpectCall(clients.back(), "version\r\n", "VERSION 1.6.18-eventide\r\n");
  }
  // The 11th is told and closed.
  Client extra = Connect();
  absl::StatusOr<std::string> got = extra.ReadUntilClosed();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "ERROR Too many open connections\r\n");
  // The others are still served.
  for (Client& c : clients) {
    ExpectCall(c, Set("still", "here"), "STORED\r\n");
  }
  // Once one closes, a new client is served. The server learns about the
  // close asynchronously, so a refusal in between is retried (bounded).
  clients.front().Close();
  bool served = false;
  std::string last;
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!served && absl::Now() < deadline) {
    Client c = Connect();
    absl::StatusOr<std::string> reply = c.Call("get still\r\n");
    if (reply.ok() && *reply == Value("still", "here")) {
      served = true;
    } else {
      last = reply.ok() ? Printable(*reply) : reply.status().ToString();
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  EXPECT_TRUE(served) << "last answer: " << last;
  for (size_t i = 1; i < clients.size(); ++i) {
    ExpectCall(clients[i], "version\r\n", "VERSION 1.6.18-eventide\r\n");
  }
  absl::StatusOr<std::string> stats = clients[1].Call("stats\r\n");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(StatInt(ParseStats(*stats), "rejected_connections"), 1);
}

TEST_F(CachedE2eTest, SigtermDuringLoadExitsZero) {
  StartServer({"-t", "2"});
  const int port = server_->port();
  // An idle client must not hold the shutdown up.
  Client idle = Connect();
  ExpectCall(idle, "version\r\n", "VERSION 1.6.18-eventide\r\n");

  constexpr int kLoaders = 8;
  std::atomic<int64_t> ops{0};
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::mutex mu;
  std::string first_bad;
  std::vector<std::thread> loaders;
  for (int id = 0; id < kLoaders; ++id) {
    loaders.emplace_back([&, id] {
      absl::StatusOr<Client> c = Client::Connect(port);
      if (!c.ok()) return;  // the server may already be stopping
      const std::string key = absl::StrCat("load", id);
      const std::string value = MakeValue(100, id);
      // Bounded in count; ends earlier when the server closes.
      for (int i = 0; i < 200000 && !stop.load(); ++i) {
        if (!c->Send(Set(key, value) + "get " + key + "\r\n").ok()) return;
        for (const std::string& expected :
             {std::string("STORED\r\n"), Value(key, value)}) {
          absl::StatusOr<std::string> r = c->ReadReply(absl::Seconds(10));
          if (!r.ok()) {
            // Closed between replies is fine; closed in the middle of a
            // reply (bytes of it already received) is not.
            if (!c->pending().empty() ||
                r.status().code() != absl::StatusCode::kUnavailable) {
              if (bad.fetch_add(1) == 0) {
                std::lock_guard<std::mutex> lock(mu);
                first_bad = r.status().ToString();
              }
            }
            return;
          }
          if (*r != expected) {
            if (bad.fetch_add(1) == 0) {
              std::lock_guard<std::mutex> lock(mu);
              first_bad = Printable(*r);
            }
            return;
          }
        }
        ops.fetch_add(1);
      }
    });
  }
  // Let the load build up (bounded), then signal.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (ops.load() < 500 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(ops.load(), 500) << "load did not start";
  const absl::Time signalled = absl::Now();
  absl::StatusOr<int> status = server_->Stop(SIGTERM, kShutdownBound);
  const absl::Duration took = absl::Now() - signalled;
  stop.store(true);
  for (std::thread& t : loaders) t.join();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "wait status " << *status;
  EXPECT_EQ(bad.load(), 0) << "first bad reply: " << first_bad;
  // The idle client was closed by the server.
  EXPECT_TRUE(idle.IsClosedByPeer(absl::Seconds(1)));
  std::cerr << "SIGTERM to exit: " << absl::FormatDuration(took) << " after "
            << ops.load() << " set+get pairs\n";
}

// SIGTERM while large replies are still on their way: every reply the
// client receives must be complete (the server may stop before handling
// requests it has not started, but must not cut a reply short), and the
// server exits 0 within the bound.
TEST_F(CachedE2eTest, SigtermFinishesInFlightReplies) {
  StartServer({"-t", "2"});
  Client c = Connect();
  const std::string value = MakeValue(900 * 1000, 9);
  ExpectCall(c, Set("wide", value), "STORED\r\n");
  std::string requests;
  for (int i = 0; i < 20; ++i) requests += "get wide\r\n";
  ASSERT_TRUE(c.Send(requests).ok());
  const std::string wide = Value("wide", value);
  // The first reply is complete before the signal: the server is busy
  // with the others (18 MB in all) when it arrives.
  absl::StatusOr<std::string> reply = c.ReadExactly(wide.size());
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(*reply == wide);
  ASSERT_TRUE(server_->Signal(SIGTERM).ok());
  int complete = 1;
  for (int i = 1; i < 20; ++i) {
    reply = c.ReadReply(absl::Seconds(10));
    if (!reply.ok()) {
      EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable)
          << reply.status();
      EXPECT_EQ(c.pending(), "") << "reply " << i << " was cut short after "
                                 << c.pending().size() << " bytes";
      break;
    }
    ASSERT_TRUE(*reply == wide) << "reply " << i << " differs";
    ++complete;
  }
  absl::StatusOr<int> status = server_->Wait(kShutdownBound);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "wait status " << *status;
  std::cerr << complete << " of 20 replies complete before the close\n";
}

TEST_F(CachedE2eTest, SigintExitsZero) {
  StartServer({"-t", "1"});
  Client c = Connect();
  ExpectCall(c, Set("k", "v"), "STORED\r\n");
  absl::StatusOr<int> status = server_->Stop(SIGINT, kShutdownBound);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "wait status " << *status;
}

TEST_F(CachedE2eTest, StatsCountWhatHappened) {
  StartServer({"-t", "3", "-m", "32", "-c", "77"});
  // Every byte of the requests and replies before `stats`, on both
  // connections. The two connections land on different workers, which count
  // their own bytes; `stats` must sum them. Bytes are counted once a request
  // has been answered, so `stats` leaves out its own request line (memcached
  // counts it as soon as it is read).
  size_t requests = 0;
  size_t replies = 0;
  auto call = [&](Client& client, const std::string& request,
                  const std::string& reply) {
    ExpectCall(client, request, reply);
    requests += request.size();
    replies += reply.size();
  };
  Client c = Connect();
  call(c, Set("a", "1"), "STORED\r\n");
  call(c, Set("b", "22"), "STORED\r\n");
  call(c, "get a\r\n", Value("a", "1"));
  call(c, "get b\r\n", Value("b", "22"));
  call(c, "get zz\r\n", "END\r\n");
  call(c, "delete a\r\n", "DELETED\r\n");
  call(c, "incr b 1\r\n", "23\r\n");
  call(c, "incr b 100\r\n", "123\r\n");
  Client other = Connect();
  call(other, "version\r\n", "VERSION 1.6.18-eventide\r\n");
  absl::StatusOr<std::string> reply = c.Call("stats\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(absl::EndsWith(*reply, "END\r\n"));
  const auto stats = ParseStats(*reply);
  EXPECT_EQ(StatInt(stats, "pid"), server_->pid());
  EXPECT_GE(StatInt(stats, "uptime"), 0);
  EXPECT_NEAR(static_cast<double>(StatInt(stats, "time")),
              static_cast<double>(absl::ToUnixSeconds(absl::Now())), 5.0);
  EXPECT_EQ(stats.count("version") ? stats.at("version") : "",
            "1.6.18-eventide");
  EXPECT_EQ(StatInt(stats, "threads"), 3);
  EXPECT_EQ(StatInt(stats, "curr_connections"), 2);
  EXPECT_GE(StatInt(stats, "total_connections"), 2);
  EXPECT_EQ(StatInt(stats, "max_connections"), 77);
  EXPECT_EQ(StatInt(stats, "limit_maxbytes"), int64_t{32} << 20);
  EXPECT_EQ(StatInt(stats, "cmd_get"), 3);
  EXPECT_EQ(StatInt(stats, "get_hits"), 2);
  EXPECT_EQ(StatInt(stats, "get_misses"), 1);
  EXPECT_EQ(StatInt(stats, "cmd_set"), 2);
  EXPECT_EQ(StatInt(stats, "delete_hits"), 1);
  EXPECT_EQ(StatInt(stats, "incr_hits"), 2);
  EXPECT_EQ(StatInt(stats, "curr_items"), 1);
  // As in memcached (checked against 1.6.18): "22" -> "23" is updated in
  // place, "23" -> "123" needs a longer item, which counts as stored.
  EXPECT_EQ(StatInt(stats, "total_items"), 3);
  EXPECT_EQ(StatInt(stats, "bytes_read"), static_cast<int64_t>(requests));
  EXPECT_EQ(StatInt(stats, "bytes_written"), static_cast<int64_t>(replies));
  EXPECT_GT(StatInt(stats, "bytes"), 0);
  // Closing the other client shows up in curr_connections (bounded wait:
  // the server sees the close asynchronously).
  other.Close();
  int64_t curr = -1;
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  do {
    reply = c.Call("stats\r\n");
    ASSERT_TRUE(reply.ok()) << reply.status();
    curr = StatInt(ParseStats(*reply), "curr_connections");
    if (curr != 1) absl::SleepFor(absl::Milliseconds(20));
  } while (curr != 1 && absl::Now() < deadline);
  EXPECT_EQ(curr, 1);
}

// -m is a real limit: writing three times the limit evicts old items (LRU,
// counted in `evictions`), keeps `bytes` under the limit and keeps the
// newest items readable.
TEST_F(CachedE2eTest, MemoryLimitEvictsOldestAndCountsEvictions) {
  StartServer({"-t", "2", "-m", "1"});
  Client c = Connect();
  constexpr int kItems = 300;  // 300 x 10 KiB = 3 MiB against a 1 MiB limit
  for (int i = 0; i < kItems; ++i) {
    ExpectCall(c, Set(absl::StrCat("big", i), MakeValue(10 << 10, i)),
               "STORED\r\n");
  }
  absl::StatusOr<std::string> reply = c.Call("stats\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  const auto stats = ParseStats(*reply);
  const int64_t limit = StatInt(stats, "limit_maxbytes");
  EXPECT_EQ(limit, int64_t{1} << 20);
  EXPECT_LE(StatInt(stats, "bytes"), limit);
  EXPECT_GT(StatInt(stats, "evictions"), 0);
  // Nothing expired or was deleted: every item is either stored or evicted.
  EXPECT_EQ(StatInt(stats, "curr_items") + StatInt(stats, "evictions"), kItems);
  // LRU order is exact within each of the store's shards, not across them
  // (apps/cached/README.md): which shard a key lands in follows a hash seeded
  // per process, so a given old key survives when no later key landed in its
  // shard after the store filled (for big0 about 4% of runs with 64 shards).
  // So: every key is either gone or intact, the survivors are the ones
  // `curr_items` counts, the newest key is intact (it is never its own
  // insert's victim), and the oldest keys went first: few of the first 50
  // survive, most of the last 50 do. Measured over 25 runs: 0-8 of the first
  // and 32-45 of the last 50 survive; random eviction would keep about 17 of
  // each.
  int survivors = 0, oldest_kept = 0, newest_kept = 0;
  for (int i = 0; i < kItems; ++i) {
    const std::string key = absl::StrCat("big", i);
    absl::StatusOr<std::string> got = c.Call(absl::StrCat("get ", key, "\r\n"));
    ASSERT_TRUE(got.ok()) << got.status();
    if (*got == "END\r\n") continue;
    ASSERT_EQ(*got, Value(key, MakeValue(10 << 10, i))) << key << " corrupted";
    ++survivors;
    if (i < 50) ++oldest_kept;
    if (i >= kItems - 50) ++newest_kept;
  }
  EXPECT_EQ(survivors, StatInt(stats, "curr_items"));
  EXPECT_LE(oldest_kept, 12) << "the first 50 keys should be evicted first";
  EXPECT_GE(newest_kept, 25) << "the last 50 keys should mostly survive";
  ExpectCall(
      c, absl::StrCat("get big", kItems - 1, "\r\n"),
      Value(absl::StrCat("big", kItems - 1), MakeValue(10 << 10, kItems - 1)));
}

TEST_F(CachedE2eTest, DataSurvivesAcrossConnections) {
  StartServer({"-t", "4"});
  {
    Client writer = Connect();
    for (int i = 0; i < 20; ++i) {
      ExpectCall(writer, Set(absl::StrCat("persist", i), MakeValue(50, i)),
                 "STORED\r\n");
    }
  }  // closed
  // New connections land on other workers (round-robin); all see the data.
  for (int round = 0; round < 8; ++round) {
    Client reader = Connect();
    const int i = round * 2;
    ExpectCall(reader, absl::StrCat("get persist", i, "\r\n"),
               Value(absl::StrCat("persist", i), MakeValue(50, i)));
    ExpectCall(reader, absl::StrCat("incr ctr_missing 1\r\n"), "NOT_FOUND\r\n");
  }
}

TEST_F(CachedE2eTest, ShortExptimeExpires) {
  StartServer({"-t", "1"});
  Client c = Connect();
  ExpectCall(c, Set("short", "gone soon", "0", "1"), "STORED\r\n");
  ExpectCall(c, Set("long", "stays", "0", "100"), "STORED\r\n");
  ExpectCall(c, Set("past", "never", "0", "-1"), "STORED\r\n");
  ExpectCall(c, "get short\r\n", Value("short", "gone soon"));
  ExpectCall(c, "get past\r\n", "END\r\n");  // negative: expired at once
  // exptime 1 is dead once the server's 1-second clock has advanced past
  // the store second; 2.1 s covers that, plus a bounded grace for a busy
  // machine whose clock tick runs late.
  absl::SleepFor(absl::Milliseconds(2100));
  std::string reply_text;
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  for (;;) {
    absl::StatusOr<std::string> reply = c.Call("get short\r\n");
    ASSERT_TRUE(reply.ok()) << reply.status();
    reply_text = *reply;
    if (reply_text == "END\r\n" || absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(reply_text, "END\r\n");
  ExpectCall(c, "get long\r\n", Value("long", "stays"));
}

TEST_F(CachedE2eTest, IdleTimeoutClosesIdleConnections) {
  StartServer({"-t", "1", "--idle-timeout", "1"});
  Client idle = Connect();
  ExpectCall(idle, "version\r\n", "VERSION 1.6.18-eventide\r\n");
  absl::StatusOr<std::string> rest = idle.ReadUntilClosed(absl::Seconds(5));
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "");
  // The server still accepts and serves.
  Client fresh = Connect();
  ExpectCall(fresh, "version\r\n", "VERSION 1.6.18-eventide\r\n");
}

// --- the command line, without a running server -------------------------

// Runs cached with `args` and expects a clean refusal: exit 2, one line on
// stderr, nothing on stdout.
void ExpectBadFlags(const std::vector<std::string>& args) {
  absl::StatusOr<std::string> path = CachedBinaryPath();
  ASSERT_TRUE(path.ok()) << path.status();
  absl::StatusOr<RunResult> run =
      RunToCompletion(*path, args, absl::Seconds(15));
  std::string joined = absl::StrJoin(args, " ");
  ASSERT_TRUE(run.ok()) << run.status() << " for: " << joined;
  EXPECT_TRUE(WIFEXITED(run->wait_status) && WEXITSTATUS(run->wait_status) == 2)
      << "wait status " << run->wait_status << " for: " << joined
      << "; stderr: " << run->stderr_text;
  EXPECT_EQ(run->stdout_text, "") << joined;
  // One line: non-empty text ending in its only '\n'.
  EXPECT_GT(run->stderr_text.size(), 1u) << joined;
  EXPECT_EQ(run->stderr_text.find('\n'), run->stderr_text.size() - 1)
      << joined << ": " << Printable(run->stderr_text);
}

TEST(CachedCommandLineTest, BadFlagsExitTwoWithOneLine) {
  ExpectBadFlags({"--no-such-flag"});
  ExpectBadFlags({"-p", "abc"});
  ExpectBadFlags({"-p", "65536"});
  ExpectBadFlags({"-p", "0", "-t", "0"});
  ExpectBadFlags({"-p", "0", "-c", "-5"});
  ExpectBadFlags({"-p", "0", "-I", "2x"});
  ExpectBadFlags({"-p", "0", "--idle-timeout", "soon"});
  ExpectBadFlags({"-p", "0", "-m"});  // missing value
  ExpectBadFlags({"stray-argument"});
}

TEST(CachedCommandLineTest, UnknownBackendIsRefused) {
  ExpectBadFlags(
      {"-p", "0", "-l", "127.0.0.1", "--backend", "no_such_backend"});
}

TEST(CachedCommandLineTest, HelpExitsZero) {
  absl::StatusOr<std::string> path = CachedBinaryPath();
  ASSERT_TRUE(path.ok()) << path.status();
  for (const char* flag : {"-h", "--help"}) {
    absl::StatusOr<RunResult> run =
        RunToCompletion(*path, {flag}, absl::Seconds(15));
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_TRUE(WIFEXITED(run->wait_status) &&
                WEXITSTATUS(run->wait_status) == 0)
        << flag << ": wait status " << run->wait_status;
    EXPECT_TRUE(absl::StrContains(run->stdout_text, "-p")) << run->stdout_text;
  }
}

TEST(CachedCommandLineTest, PortInUseExitsOne) {
  // Hold a listening socket on a kernel-chosen port, then ask cached for it.
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  absl::StatusOr<std::string> path = CachedBinaryPath();
  ASSERT_TRUE(path.ok()) << path.status();
  absl::StatusOr<RunResult> run = RunToCompletion(
      *path, {"-l", "127.0.0.1", "-p", absl::StrCat(port), "-t", "1"},
      absl::Seconds(15));
  close(fd);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(WIFEXITED(run->wait_status) && WEXITSTATUS(run->wait_status) == 1)
      << "wait status " << run->wait_status << "; stderr: " << run->stderr_text;
  EXPECT_EQ(run->stdout_text, "");
  EXPECT_GT(run->stderr_text.size(), 1u);
  EXPECT_EQ(run->stderr_text.find('\n'), run->stderr_text.size() - 1)
      << Printable(run->stderr_text);
}

}  // namespace
}  // namespace cached_test
}  // namespace eventide
