// Differential test: the same scripted requests to our `cached` and to a
// real memcached 1.6 (/usr/bin/memcached), replies compared byte for byte.
//
// The script (a few hundred requests) has a fixed part that walks every
// command and error path (storage commands, cas, get/gets/gat/gats,
// delete, incr/decr, touch, flush_all, verbosity, version, noreply, bad data
// chunks, too-large objects, unknown commands, long keys, odd numbers and
// exptimes, incr wrap/floor) and a seeded random part that mixes them on a
// small key set, so that the servers' states must keep agreeing.
//
// Framing: requests go one at a time. Each request is followed, in a
// separate write, by a sentinel "version\r\n"; the reply to a request is
// everything up to the sentinel's VERSION line. Both servers answer
// `version` in every state we drive them into, so no reply shape has to be
// predicted and a silent request (noreply) costs one round trip, not an
// idle timeout. A request that makes the server hang up (quit, an HTTP
// request line) is read until the close instead, and both clients reconnect.
//
// Not compared byte for byte, on purpose (the short list):
// - the VERSION line: ours is "1.6.18-eventide";
// - `stats` values: ours lists a subset of memcached's fields and values
//   such as pid, uptime, rusage, memory differ. For `stats`, every field we
//   report must exist in memcached's reply, and the protocol counters listed
//   in kComparedStats must be equal.
// Left out, because apps/cached/README.md documents a deliberate difference:
// lines over 2048 bytes (memcached's outcome depends on packet boundaries),
// meta commands (not implemented here), items larger than -m, incr on items
// over 512 KiB. Relative exptimes are 0, negative or >= 60 s so that no item
// expires while the test runs (the two servers are not in lock step).
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/cached_test_util.h"

namespace eventide {
namespace cached_test {
namespace {

struct Step {
  std::string request;
  // The request itself contains this many `version` commands (so the
  // sentinel's VERSION line is the (n+1)-th).
  int own_versions = 0;
  // The server hangs up after this request.
  bool closes = false;
};

// Protocol counters whose values must agree (after the same requests on
// fresh servers). memcached runs with its LRU crawler and maintainer
// threads off: while they hold a reference to an item, incr cannot update
// it in place and links a new one, so total_items drifted between runs
// (observed: 152 vs 153 for the same script). Left out: curr_items,
// reclaimed, expired_unfetched, get_expired, get_flushed: our server
// sweeps expired items once a second (Store::SweepExpired), so they depend
// on when the sweep runs.
const char* const kComparedStats[] = {
    "cmd_get",     "cmd_set",       "cmd_flush",   "cmd_touch",   "get_hits",
    "get_misses",  "delete_misses", "delete_hits", "incr_misses", "incr_hits",
    "decr_misses", "decr_hits",     "cas_misses",  "cas_hits",    "cas_badval",
    "touch_hits",  "touch_misses",  "total_items",
};

std::string Storage(absl::string_view cmd, absl::string_view key,
                    absl::string_view flags, absl::string_view exptime,
                    absl::string_view value, bool noreply = false) {
  return absl::StrCat(cmd, " ", key, " ", flags, " ", exptime, " ",
                      value.size(), noreply ? " noreply" : "", "\r\n", value,
                      "\r\n");
}

class Script {
 public:
  void Add(std::string request) { steps_.push_back({std::move(request)}); }
  void AddVersion(std::string request) {
    steps_.push_back({std::move(request), 1, false});
  }
  void AddClosing(std::string request) {
    steps_.push_back({std::move(request), 0, true});
  }
  std::vector<Step>& steps() { return steps_; }

 private:
  std::vector<Step> steps_;
};

// Every command and error path, in an order that makes each reply depend
// on the state built before it.
void AddFixedPart(Script& s, int64_t now) {
  const std::string kLong(251, 'L');
  const std::string kMax(250, 'M');
  // --- storage commands
  s.Add(Storage("set", "a", "0", "0", "x"));
  s.Add("get a\r\n");
  s.Add("gets a\r\n");
  s.Add(Storage("set", "a", "5", "0", "abc", true));
  s.Add("get a\r\n");
  s.Add(Storage("add", "a", "0", "0", "n"));
  s.Add(Storage("add", "b", "1", "0", "bee"));
  s.Add(Storage("add", "b", "1", "0", "bee", true));
  s.Add(Storage("replace", "c", "0", "0", "c"));
  s.Add(Storage("replace", "a", "9", "0", "replaced"));
  s.Add(Storage("replace", "a", "9", "0", "again", true));
  s.Add(Storage("append", "a", "0", "0", "+tail"));
  s.Add(Storage("prepend", "a", "0", "0", "head+"));
  s.Add(Storage("append", "nokey", "0", "0", "x"));
  s.Add(Storage("prepend", "nokey", "0", "0", "x"));
  s.Add(Storage("append", "a", "0", "0", "!", true));
  s.Add("get a b c nokey a\r\n");
  s.Add("gets a b\r\n");
  s.Add(Storage("set", "empty", "0", "0", ""));
  s.Add("get empty\r\n");
  // --- cas: misses, stale uniques, then a walk over small uniques, some of
  // which are current (both servers count uniques the same way).
  s.Add("cas nokey 0 0 1 1\r\nx\r\n");
  s.Add("cas a 0 0 1 0\r\nx\r\n");
  for (int unique = 1; unique <= 16; ++unique) {
    s.Add(absl::StrCat("cas a 0 0 2 ", unique, "\r\nc", unique % 10, "\r\n"));
    s.Add(absl::StrCat("cas b 3 0 1 ", unique, " noreply\r\nB\r\n"));
  }
  s.Add("gets a b\r\n");
  s.Add("cas a 0 0 1\r\nx\r\n");  // no unique: ERROR, then "x" is a command
  s.Add("cas a 0 0 1 abc\r\nx\r\n");
  // --- get family, gat/gats
  s.Add("get\r\n");
  s.Add("gets\r\n");
  s.Add("gat 0 a b nokey\r\n");
  s.Add("gats 100 a\r\n");
  s.Add("gat 10 nokey\r\n");
  s.Add("gat x a\r\n");
  s.Add("gat\r\n");
  s.Add("gat 100\r\n");
  s.Add(Storage("set", "g", "0", "0", "gat-me"));
  s.Add("gat -1 g\r\n");  // returns the value, then it is expired
  s.Add("get g\r\n");
  s.Add("get  a  \n");  // runs of spaces, bare \n
  s.Add(std::string("get a\0junk\r\n", 12));
  s.Add("get a a a a a a a a a a a a a a a a a a a a a a a a a a a a\r\n");
  // --- delete
  s.Add(Storage("set", "d", "0", "0", "del"));
  s.Add("delete d\r\n");
  s.Add("delete d\r\n");
  s.Add(Storage("set", "d", "0", "0", "del"));
  s.Add("delete d noreply\r\n");
  s.Add("get d\r\n");
  s.Add("delete d 0\r\n");
  s.Add("delete d 5\r\n");
  s.Add("delete d 0 noreply\r\n");
  s.Add("delete\r\n");
  // --- incr/decr: floor, wrap, padding, bad numbers, non-numeric values
  s.Add(Storage("set", "n", "0", "0", "10"));
  s.Add("incr n 5\r\n");
  s.Add("decr n 3\r\n");
  s.Add("decr n 100\r\n");
  s.Add("incr n 18446744073709551615\r\n");
  s.Add("incr n 1\r\n");
  s.Add("incr n 18446744073709551616\r\n");
  s.Add("incr n -1\r\n");
  s.Add("incr n x\r\n");
  s.Add("incr n 1 noreply\r\n");
  s.Add("get n\r\n");
  s.Add("incr n\r\n");
  s.Add("incr n 1 2 3\r\n");
  s.Add("incr nokey 1\r\n");
  s.Add("decr nokey 1\r\n");
  s.Add(Storage("set", "p", "0", "0", "100"));
  s.Add("decr p 95\r\n");
  s.Add("get p\r\n");
  s.Add("incr p 1000\r\n");
  s.Add("get p\r\n");
  s.Add(Storage("set", "s", "0", "0", "abc"));
  s.Add("incr s 1\r\n");
  s.Add("decr s 1\r\n");
  for (const char* v : {"18446744073709551615", "18446744073709551616", "-1",
                        " 12  ", "12 ab", "-0   ", "+5   ", "00007", ""}) {
    s.Add(Storage("set", "v", "0", "0", v));
    s.Add("incr v 1\r\n");
    s.Add("get v\r\n");
  }
  // --- touch and exptimes
  s.Add(Storage("set", "t", "0", "0", "touch"));
  s.Add("touch t 100\r\n");
  s.Add("touch nokey 100\r\n");
  s.Add("touch t x\r\n");
  s.Add("touch t\r\n");
  s.Add("touch t 100 noreply\r\n");
  s.Add("touch t -1\r\n");
  s.Add("get t\r\n");
  s.Add(Storage("set", "e1", "0", "-1", "neg"));
  s.Add(Storage("set", "e2", "0", "2592001", "1970"));
  s.Add(Storage("set", "e3", "0", "2592000", "30days"));
  s.Add(Storage("set", "e4", "0", "1000000000", "2001"));
  s.Add(Storage("set", "e5", "0", absl::StrCat(now + 3600), "absolute"));
  s.Add(Storage("set", "e6", "0", "100", "relative"));
  s.Add("get e1 e2 e3 e4 e5 e6\r\n");
  // --- numbers in storage commands
  for (const char* flags : {"4294967296", "+1", "-1", "1x", "00", "4294967295"})
    s.Add(absl::StrCat("set f ", flags, " 0 1\r\n1\r\n"));
  s.Add("get f\r\n");
  for (const char* exptime : {"+0", "x", "-0"})
    s.Add(absl::StrCat("set f 0 ", exptime, " 1\r\n1\r\n"));
  // Beyond 32 bits memcached keeps the low 32: never expires, already
  // expired; a length of 1, a negative length.
  s.Add("set w1 0 4294967296 1\r\na\r\nset w2 0 2147483648 1\r\nb\r\n");
  s.Add("set w3 0 4294967296 1 noreply\r\nc\r\nget w1 w2 w3\r\n");
  s.Add("touch w1 4294967296\r\ngat 4294967296 w3\r\n");
  s.Add("set w4 0 0 4294967297\r\nd\r\nset w5 0 0 2147483648\r\n");
  s.Add("get w4 w5\r\n");
  for (const char* bytes : {"-1", "x", "+1", "01"})
    s.Add(absl::StrCat("set f 0 0 ", bytes, "\r\n1\r\n"));
  s.Add("set f 0 0 1\tz\r\n1\r\n");
  s.Add("get f\r\n");
  s.Add("set f 0 0\r\n");
  s.Add("set f 0 0 1 junk\r\n1\r\n");  // an extra token other than noreply
  // --- bad data chunks
  s.Add("set k 0 0 2\r\nabcd\r\n");
  s.Add("set k 0 0 2 noreply\r\nabcd\r\n");
  s.Add("set k 0 0 3\r\nabc\nX");
  s.Add("set k 0 0 3\r\nabcde");
  s.Add("get k\r\n");
  // --- sizes: the -I boundary (1 MiB), refusal swallows the block, a
  // refused set drops the old value, add/replace keep it, append past -I
  s.Add(Storage("set", "k", "0", "0", std::string(1048516, 'a')));
  s.Add(Storage("set", "k", "0", "0", std::string(1048517, 'b')));
  s.Add("get k\r\n");
  s.Add(Storage("set", "k", "1", "0", std::string(1048512, 'c')));
  s.Add(Storage("set", "k", "1", "0", std::string(1048513, 'd')));
  s.Add(Storage("set", "big", "0", "0", "old"));
  s.Add(Storage("set", "big", "0", "0", std::string((1 << 20) + 1, 'e')));
  s.Add("get big\r\n");
  s.Add(Storage("set", "big", "0", "0", "old"));
  s.Add(Storage("add", "big", "0", "0", std::string((1 << 20) + 1, 'f')));
  s.Add(Storage("replace", "big", "0", "0", std::string((1 << 20) + 1, 'g')));
  s.Add(Storage("set", "big", "0", "0", std::string((1 << 20) + 1, 'h'), true));
  s.Add("get big\r\n");
  s.Add(Storage("set", "grow", "0", "0", std::string(1048000, 'i')));
  s.Add(Storage("append", "grow", "0", "0", std::string(1000, 'j')));
  s.Add(Storage("append", "grow", "0", "0", std::string(10, 'k')));
  s.Add("get nokey\r\n");
  // --- keys
  s.Add(Storage("set", kLong, "0", "0", "x"));
  s.Add(Storage("set", kMax, "0", "0", "x"));
  s.Add("get " + kMax + "\r\n");
  s.Add("delete " + kLong + "\r\n");
  s.Add("incr " + kLong + " 1\r\n");
  s.Add("touch " + kLong + " 10\r\n");
  s.Add("get " + kLong + "\r\n");
  s.Add(Storage("set", "tab\there", "0", "0", "t"));
  s.Add("get tab\there\r\n");
  // --- unknown and malformed commands
  for (const char* line :
       {"bogus command\r\n", "GET a\r\n", "\r\n", "\r\r\n", "g\r\n",
        "shutdown\r\n", "set\r\n", "cas\r\n", "verbosity\r\n",
        "flush_all 1 2 3\r\n", "stats nonsense\r\n"}) {
    s.Add(line);
  }
  s.Add(
      "set k 0 0 1 noreply a b c d e f g h i j k l m n o p q r s t u v w\r\n"
      "1\r\n");
  // --- verbosity, version, stats
  s.Add("verbosity 1\r\n");
  s.Add("verbosity 0 noreply\r\n");
  s.Add("verbosity x\r\n");
  s.Add("verbosity 5 5\r\n");
  s.Add("verbosity 0\r\n");
  s.AddVersion("version\r\n");
  s.Add("stats\r\n");
  s.Add("stats reset\r\n");
  s.Add("stats reset extra\r\n");
  // --- flush_all: now, delayed, replaced, bad times, noreply
  s.Add(Storage("set", "fl", "0", "0", "flushed"));
  s.Add("flush_all\r\n");
  s.Add("get fl a b\r\n");
  s.Add(Storage("set", "fl", "0", "0", "after"));
  s.Add("get fl\r\n");
  s.Add("flush_all 0\r\n");
  s.Add("flush_all noreply\r\n");
  s.Add("flush_all 0 noreply\r\n");
  s.Add("flush_all noreply 5\r\n");
  s.Add("flush_all x\r\n");
  s.Add("flush_all -1\r\n");
  s.Add(Storage("set", "fl", "0", "0", "before-delay"));
  s.Add("flush_all 100\r\n");
  s.Add("get fl\r\n");
  s.Add("flush_all 1000000000\r\n");  // absolute and in the past: now
  s.Add("get fl\r\n");
  s.Add("stats\r\n");
}

// The seeded random part: ~250 requests on 12 keys.
void AddRandomPart(Script& s, uint32_t seed, int64_t now) {
  std::mt19937 rng(seed);
  auto pick = [&rng](int n) {
    return static_cast<int>(rng() % static_cast<uint32_t>(n));
  };
  auto key = [&] { return absl::StrCat("key", pick(12)); };
  const char* const kExptimes[] = {"0", "0", "0", "-1", "100", "2592001"};
  const char* const kStorage[] = {"set", "add", "replace", "append", "prepend"};
  for (int i = 0; i < 250; ++i) {
    const bool noreply = pick(5) == 0;
    const char* nr = noreply ? " noreply" : "";
    switch (pick(14)) {
      case 0:
      case 1:
      case 2: {
        std::string value;
        const int len = pick(41);
        for (int j = 0; j < len; ++j)
          value.push_back(static_cast<char>(pick(256)));
        s.Add(Storage(kStorage[pick(5)], key(), absl::StrCat(pick(70000)),
                      kExptimes[pick(6)], value, noreply));
        break;
      }
      case 3:
        s.Add(Storage("set", key(), "0", "0", absl::StrCat(pick(1000))));
        break;
      case 4:
        s.Add(absl::StrCat("cas ", key(), " 0 0 1 ", pick(60) + 1, nr,
                           "\r\nc\r\n"));
        break;
      case 5:
        s.Add(absl::StrCat(pick(2) ? "get " : "gets ", key(), " ", key(), " ",
                           key(), "\r\n"));
        break;
      case 6:
        s.Add(absl::StrCat(pick(2) ? "gat " : "gats ", kExptimes[pick(6)], " ",
                           key(), "\r\n"));
        break;
      case 7:
        s.Add(absl::StrCat(pick(2) ? "incr " : "decr ", key(), " ", pick(500),
                           nr, "\r\n"));
        break;
      case 8:
        s.Add(absl::StrCat("delete ", key(), nr, "\r\n"));
        break;
      case 9:
        s.Add(
            absl::StrCat("touch ", key(), " ", kExptimes[pick(6)], nr, "\r\n"));
        break;
      case 10:
        if (pick(6) == 0) {
          const char* const kFlush[] = {"", " 0", " -1", " 100"};
          s.Add(absl::StrCat("flush_all", kFlush[pick(4)], nr, "\r\n"));
        } else {
          s.Add(absl::StrCat("set ", key(), " 0 ", now + 600, " 2\r\nab\r\n"));
        }
        break;
      case 11:
        s.Add(absl::StrCat("set ", key(), " 0 0 2", nr, "\r\nabcd\r\n"));
        break;
      case 12: {
        std::string get = "get";
        for (int k = 0; k < 400; ++k) absl::StrAppend(&get, " key", k % 12);
        s.Add(get + "\r\n");
        break;
      }
      default:
        s.Add(absl::StrCat("append ", key(), " 0 0 1\r\n+\r\n"));
        break;
    }
  }
}

// One server under test with its current connection.
struct Side {
  const char* name;
  std::unique_ptr<ServerProcess> server;
  Client client;
};

// Sends `step` (and the sentinel) and returns what the server answered:
// the replies up to the sentinel's, or all bytes up to the close. Replies
// of the form "VERSION ..." are normalised to "VERSION *\r\n".
absl::StatusOr<std::string> Exchange(Side& side, const Step& step) {
  absl::Status sent = side.client.Send(step.request);
  if (!sent.ok()) return sent;
  if (step.closes) {
    absl::StatusOr<std::string> rest =
        side.client.ReadUntilClosed(absl::Seconds(10));
    if (!rest.ok()) return rest.status();
    return absl::StrCat(*rest, "<closed>");
  }
  sent = side.client.Send("version\r\n");
  if (!sent.ok()) return sent;
  std::string replies;
  int versions_left = step.own_versions + 1;
  while (versions_left > 0) {
    absl::StatusOr<std::string> reply =
        side.client.ReadReply(absl::Seconds(10));
    if (!reply.ok()) return reply.status();
    if (absl::StartsWith(*reply, "VERSION ")) {
      --versions_left;
      if (versions_left == 0) break;  // the sentinel: not part of the reply
      replies += "VERSION *\r\n";
    } else {
      replies += *reply;
    }
  }
  return replies;
}

class CachedDifferentialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!MemcachedBinaryPath().ok()) {
      GTEST_SKIP() << "/usr/bin/memcached is not installed: nothing to "
                      "compare with";
    }
    absl::StatusOr<std::unique_ptr<ServerProcess>> ours =
        ServerProcess::StartCached({"-l", "127.0.0.1", "-p", "0", "-t", "1"});
    ASSERT_TRUE(ours.ok()) << ours.status();
    absl::StatusOr<std::unique_ptr<ServerProcess>> theirs =
        ServerProcess::StartMemcached(
            {"-t", "1", "-o", "no_lru_crawler,no_lru_maintainer"});
    ASSERT_TRUE(theirs.ok()) << theirs.status();
    ours_.server = std::move(*ours);
    theirs_.server = std::move(*theirs);
    Reconnect(ours_);
    Reconnect(theirs_);
  }

  void TearDown() override {
    // memcached is only killed; ours must also shut down cleanly.
    if (ours_.server != nullptr && !ours_.server->HasExited()) {
      absl::StatusOr<int> status =
          ours_.server->Stop(SIGTERM, absl::Seconds(5));
      ASSERT_TRUE(status.ok()) << status.status();
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
          << "cached wait status " << *status;
    }
  }

  void Reconnect(Side& side) {
    absl::StatusOr<Client> client = Client::Connect(side.server->port());
    ASSERT_TRUE(client.ok()) << side.name << ": " << client.status();
    side.client = std::move(*client);
  }

  // Runs the steps on both servers and compares; stops after a few
  // mismatches (later ones are usually consequences).
  void RunAndCompare(std::vector<Step>& steps) {
    int mismatches = 0;
    int compared_stats = 0;
    for (size_t i = 0; i < steps.size() && mismatches < 10; ++i) {
      const Step& step = steps[i];
      absl::StatusOr<std::string> mine = Exchange(ours_, step);
      ASSERT_TRUE(mine.ok())
          << "cached, step " << i << " " << Printable(step.request, 200) << ": "
          << mine.status();
      absl::StatusOr<std::string> ref = Exchange(theirs_, step);
      ASSERT_TRUE(ref.ok())
          << "memcached, step " << i << " " << Printable(step.request, 200)
          << ": " << ref.status();
      if (trace_) {
        std::cerr << "step " << i << ": " << Printable(step.request, 200)
                  << "\n  cached:    " << Printable(*mine, 300)
                  << "\n  memcached: " << Printable(*ref, 300) << "\n";
      }
      if (absl::StartsWith(step.request, "stats\r\n")) {
        ++compared_stats;
        CompareStats(i, *mine, *ref, &mismatches);
      } else if (*mine != *ref) {
        ++mismatches;
        ADD_FAILURE() << "step " << i << ": " << Printable(step.request, 300)
                      << "\n  cached:    " << Printable(*mine, 600)
                      << "\n  memcached: " << Printable(*ref, 600);
      }
      if (step.closes) {
        Reconnect(ours_);
        Reconnect(theirs_);
      }
    }
    EXPECT_EQ(mismatches, 0);
    std::cerr << steps.size() << " steps compared (" << compared_stats
              << " of them stats)\n";
  }

  void CompareStats(size_t i, const std::string& mine, const std::string& ref,
                    int* mismatches) {
    EXPECT_TRUE(absl::EndsWith(mine, "END\r\n")) << Printable(mine);
    const auto a = ParseStats(mine);
    const auto b = ParseStats(ref);
    EXPECT_GT(a.size(), 20u);
    for (const auto& [name, value] : a) {
      if (b.count(name) == 0) {
        ++*mismatches;
        ADD_FAILURE() << "step " << i << ": stat " << name
                      << " is not one of memcached's";
      }
    }
    for (const char* name : kComparedStats) {
      auto mine_it = a.find(name);
      auto ref_it = b.find(name);
      if (mine_it == a.end() || ref_it == b.end() ||
          mine_it->second != ref_it->second) {
        ++*mismatches;
        ADD_FAILURE() << "step " << i << ": stat " << name << " cached="
                      << (mine_it == a.end() ? "(absent)" : mine_it->second)
                      << " memcached="
                      << (ref_it == b.end() ? "(absent)" : ref_it->second);
      }
    }
  }

  // CACHED_DIFF_TRACE=1 prints every exchange (debugging aid).
  const bool trace_ = getenv("CACHED_DIFF_TRACE") != nullptr;
  Side ours_{"cached", nullptr, Client()};
  Side theirs_{"memcached", nullptr, Client()};
};

TEST_F(CachedDifferentialTest, FixedScriptEveryCommandAndErrorPath) {
  Script script;
  AddFixedPart(script, static_cast<int64_t>(time(nullptr)));
  script.AddClosing("quit\r\n");
  script.Add("get a\r\n");  // on the new connection
  script.AddClosing("GET / HTTP/1.1\r\n");
  script.Add(Storage("set", "after", "0", "0", "close"));
  script.Add("get after\r\n");
  RunAndCompare(script.steps());
}

TEST_F(CachedDifferentialTest, SeededRandomMix) {
  Script script;
  const int64_t now = static_cast<int64_t>(time(nullptr));
  AddRandomPart(script, /*seed=*/20240601, now);
  script.Add("stats\r\n");
  AddRandomPart(script, /*seed=*/7, now);
  script.Add("stats\r\n");
  RunAndCompare(script.steps());
}

}  // namespace
}  // namespace cached_test
}  // namespace eventide
