// A scripted byte stream of several hundred requests, covering every command
// and error path, is fed to a session in one piece and then split at random
// points (seeded, so failures reproduce); the output must be identical.

#include <stdint.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "apps/cached/session.h"
#include "apps/cached/store.h"
#include "apps/cached/unix_clock.h"
#include "clock/fake_clock.h"
#include "gtest/gtest.h"

namespace eventide {
namespace cached {
namespace {

class FixedServer : public ServerStatsSource {
 public:
  ServerStats GetServerStats() const override {
    ServerStats s;
    s.pid = 1;
    s.threads = 4;
    return s;
  }
};

constexpr size_t kItemSizeMax = 4096;

std::string Script(uint32_t seed) {
  std::mt19937 rng(seed);
  const auto key = [&rng] { return absl::StrCat("key", rng() % 12); };
  const auto value = [&rng](size_t max_len) {
    std::string v(rng() % (max_len + 1), 'a');
    for (char& c : v) c = static_cast<char>(rng() % 256);  // binary-safe
    return v;
  };
  const char* const kStorage[] = {"set", "add", "replace", "append", "prepend"};
  std::string s;
  for (int i = 0; i < 400; ++i) {
    const std::string noreply = rng() % 5 == 0 ? " noreply" : "";
    switch (rng() % 22) {
      case 0:
      case 1:
      case 2: {
        const std::string v = value(40);
        absl::StrAppend(&s, kStorage[rng() % 5], " ", key(), " ", rng() % 70000,
                        " ", static_cast<int>(rng() % 100) - 10, " ", v.size(),
                        noreply, "\r\n", v, "\r\n");
        break;
      }
      case 3: {
        // A numeric value for incr/decr.
        const std::string v = std::to_string(rng() % 1000);
        absl::StrAppend(&s, "set ", key(), " 0 0 ", v.size(), "\r\n", v,
                        "\r\n");
        break;
      }
      case 4:
        absl::StrAppend(&s, "cas ", key(), " 0 0 1 ", rng() % 40, noreply,
                        "\r\nc\r\n");
        break;
      case 5:
        absl::StrAppend(&s, rng() % 2 ? "get" : "gets", " ", key(), " ", key(),
                        " ", key(), "\r\n");
        break;
      case 6:
        absl::StrAppend(&s, rng() % 2 ? "gat " : "gats ",
                        static_cast<int>(rng() % 20) - 5, " ", key(), "\r\n");
        break;
      case 7:
        absl::StrAppend(&s, rng() % 2 ? "incr " : "decr ", key(), " ",
                        rng() % 500, noreply, "\r\n");
        break;
      case 8:
        absl::StrAppend(&s, "delete ", key(), noreply, "\r\n");
        break;
      case 9:
        absl::StrAppend(&s, "touch ", key(), " ",
                        static_cast<int>(rng() % 20) - 5, noreply, "\r\n");
        break;
      case 10:
        // Rare, or the script would mostly miss.
        if (rng() % 8 == 0) {
          absl::StrAppend(&s, "flush_all", rng() % 2 ? " 0" : "", noreply,
                          "\r\n");
        }
        break;
      case 11:
        s += rng() % 2 ? "version\r\n" : "verbosity 1\r\n";
        break;
      case 12:
        s += rng() % 2 ? "stats\r\n" : "stats settings\r\n";
        break;
      case 13:  // bad data chunk
        absl::StrAppend(&s, "set ", key(), " 0 0 2", noreply, "\r\nabcd\r\n");
        break;
      case 14:  // too large: refused and swallowed
        absl::StrAppend(&s, "set ", key(), " 0 0 5000", noreply, "\r\n",
                        std::string(5000, 'z'), "\r\n");
        break;
      case 15:  // long keys
        absl::StrAppend(&s, "get a ", std::string(251, 'k'), "\r\n", "set ",
                        std::string(251, 'k'), " 0 0 1\r\nx\r\n");
        break;
      case 16:  // malformed lines
        s += rng() % 2 ? "bogus command\r\n" : "set k 0 0\r\n";
        break;
      case 17:
        s += "incr k x\r\ntouch k x\r\ndelete k 5\r\ngat x k\r\n";
        break;
      case 18:  // a long multiget line
        s += "get";
        for (int k = 0; k < 400; ++k) absl::StrAppend(&s, " key", k % 12);
        s += "\r\n";
        break;
      case 19:  // bare '\n' line endings and extra spaces
        absl::StrAppend(&s, "get  ", key(), " \n");
        break;
      case 20:
        s += std::string("get k\0junk\r\n", 12);
        break;
      default:
        absl::StrAppend(&s, "append ", key(), " 0 0 1\r\n+\r\n");
        break;
    }
  }
  s += "stats\r\nquit\r\nversion\r\n";
  return s;
}

// Runs `script` on a fresh store, splitting it at the given cut points.
std::string RunScript(absl::string_view script, const std::vector<size_t>& cuts,
                      bool* closed) {
  FakeClock fake;
  MonotonicUnixClock clock(&fake, 1700000000);
  // A small -I keeps the refused blocks (and the script) small.
  StoreOptions options;
  options.item_size_max = kItemSizeMax;
  Store store(options, &clock);
  FixedServer server;
  SessionConfig config;
  config.store = &store;
  config.server = &server;
  config.limits.item_size_max = kItemSizeMax;
  Session session(config);
  std::string buffer;
  std::string out;
  size_t prev = 0;
  for (size_t cut : cuts) {
    buffer.append(script.data() + prev, cut - prev);
    prev = cut;
    buffer.erase(0, session.Consume(buffer, &out));
    if (session.wants_close()) break;
  }
  *closed = session.wants_close();
  return out;
}

TEST(SessionFuzzTest, RandomSplitsGiveIdenticalOutput) {
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    const std::string script = Script(seed);
    bool closed = false;
    const std::string expect = RunScript(script, {script.size()}, &closed);
    ASSERT_TRUE(closed);
    // The script exercises what it claims to.
    for (absl::string_view needle :
         {"STORED\r\n", "NOT_STORED\r\n", "EXISTS\r\n", "NOT_FOUND\r\n",
          "DELETED\r\n", "TOUCHED\r\n", "VALUE ", "END\r\n", "ERROR\r\n",
          "CLIENT_ERROR bad data chunk\r\n",
          "SERVER_ERROR object too large for cache\r\n",
          "CLIENT_ERROR bad command line format\r\n",
          "CLIENT_ERROR invalid exptime argument\r\n", "VERSION ",
          "STAT curr_items"}) {
      EXPECT_NE(expect.find(std::string(needle)), std::string::npos)
          << "seed " << seed << " never produced " << needle;
    }
    EXPECT_EQ(expect.find("VERSION", expect.rfind("STAT curr_items")),
              std::string::npos)
        << "a request after quit was answered";
    std::mt19937 rng(seed * 7919);
    for (int round = 0; round < 40; ++round) {
      std::vector<size_t> cuts;
      // Mostly small pieces, sometimes large ones, as a socket delivers.
      const size_t max_piece =
          round % 4 == 0 ? 3 : (round % 4 == 1 ? 64 : 70000);
      for (size_t pos = 0; pos < script.size();) {
        pos = std::min(script.size(), pos + 1 + rng() % max_piece);
        cuts.push_back(pos);
      }
      bool split_closed = false;
      const std::string got = RunScript(script, cuts, &split_closed);
      ASSERT_EQ(got, expect) << "seed " << seed << " round " << round;
      ASSERT_TRUE(split_closed);
    }
  }
}

}  // namespace
}  // namespace cached
}  // namespace eventide
