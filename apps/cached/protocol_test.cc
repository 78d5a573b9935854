#include "apps/cached/protocol.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "apps/cached/limits.h"
#include "gtest/gtest.h"

namespace eventide {
namespace cached {
namespace {

ParseResult Parse(absl::string_view in, Request* req,
                  const ParserLimits& limits = ParserLimits()) {
  return ParseRequest(in, limits, req);
}

// The reply the parser gives to a whole line that it refuses.
std::string ReplyTo(absl::string_view in) {
  Request req;
  const ParseResult r = Parse(in, &req);
  if (r.status != ParseStatus::kReply) return "<not a reply>";
  EXPECT_EQ(r.consumed, in.find('\n') + 1) << in;
  return std::string(r.reply);
}

std::vector<std::string> Keys(absl::string_view keys) {
  std::vector<std::string> out;
  absl::string_view key;
  while (NextKey(&keys, &key)) out.emplace_back(key);
  return out;
}

TEST(ProtocolTest, NeedMoreUntilTheLineEnds) {
  Request req;
  for (absl::string_view partial : {"", "g", "get", "get k", "get k\r"}) {
    const ParseResult r = Parse(partial, &req);
    EXPECT_EQ(r.status, ParseStatus::kNeedMore) << partial;
    EXPECT_EQ(r.consumed, 0u);
    EXPECT_EQ(r.scanned, partial.size());
  }
}

TEST(ProtocolTest, GetFamily) {
  Request req;
  ParseResult r = Parse("get a bb  ccc\r\nnext", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(r.consumed, 15u);
  EXPECT_EQ(req.command, Command::kGet);
  EXPECT_EQ(Keys(req.keys), (std::vector<std::string>{"a", "bb", "ccc"}));

  r = Parse("gets k\n", &req);  // a bare '\n' ends a line too
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(r.consumed, 7u);
  EXPECT_EQ(req.command, Command::kGets);

  r = Parse("gat 100 a b\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kGat);
  EXPECT_EQ(req.exptime, 100);
  EXPECT_EQ(Keys(req.keys), (std::vector<std::string>{"a", "b"}));

  r = Parse("gats -1 a\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kGats);
  EXPECT_EQ(req.exptime, -1);

  r = Parse("gat 10\r\n", &req);  // memcached answers "END"
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_TRUE(Keys(req.keys).empty());

  r = Parse("bget a\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kGet);

  EXPECT_EQ(ReplyTo("get\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("gets\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("gat x a\r\n"),
            "CLIENT_ERROR invalid exptime argument\r\n");
  EXPECT_EQ(ReplyTo("getx a\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("GET a\r\n"), "ERROR\r\n");
}

TEST(ProtocolTest, GetKeysBeyondTheTokenLimitAndLongKeysArePassedOn) {
  std::string line = "get";
  for (int i = 0; i < 40; ++i) absl::StrAppend(&line, " k", i);
  line += "\r\n";
  Request req;
  ASSERT_EQ(Parse(line, &req).status, ParseStatus::kRequest);
  const std::vector<std::string> keys = Keys(req.keys);
  ASSERT_EQ(keys.size(), 40u);
  EXPECT_EQ(keys.back(), "k39");
  // The executor fails on the first long key, after the lookups before it.
  const std::string long_key(251, 'k');
  const std::string with_long = "get a " + long_key + "\r\n";
  ASSERT_EQ(Parse(with_long, &req).status, ParseStatus::kRequest);
  EXPECT_EQ(Keys(req.keys).back(), long_key);
}

TEST(ProtocolTest, StorageCommandsWaitForTheirDataBlock) {
  Request req;
  const std::string full = "set k 5 100 3\r\nabc\r\nget k\r\n";
  const ParseResult partial_line = Parse(full.substr(0, 14), &req);
  ASSERT_EQ(partial_line.status, ParseStatus::kNeedMore);
  EXPECT_EQ(partial_line.need, 0u);  // unknown until the line is complete
  for (size_t n = 15; n < 20; ++n) {
    const ParseResult r = Parse(full.substr(0, n), &req);
    ASSERT_EQ(r.status, ParseStatus::kNeedMore) << n;
    EXPECT_EQ(r.need, 20u);
    EXPECT_EQ(r.scanned, 14u);  // up to the line's '\n'
  }
  const ParseResult r = Parse(full, &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(r.consumed, 20u);
  EXPECT_EQ(req.command, Command::kSet);
  EXPECT_EQ(req.key, "k");
  EXPECT_EQ(req.flags, 5u);
  EXPECT_EQ(req.exptime, 100);
  EXPECT_EQ(req.data, "abc");
  EXPECT_FALSE(req.noreply);
}

TEST(ProtocolTest, AllStorageCommands) {
  struct Case {
    const char* line;
    Command command;
  };
  for (const Case& c :
       {Case{"set", Command::kSet}, Case{"add", Command::kAdd},
        Case{"replace", Command::kReplace}, Case{"append", Command::kAppend},
        Case{"prepend", Command::kPrepend}}) {
    Request req;
    const std::string in = absl::StrCat(c.line, " key 1 2 2 noreply\r\nhi\r\n");
    const ParseResult r = Parse(in, &req);
    ASSERT_EQ(r.status, ParseStatus::kRequest) << c.line;
    EXPECT_EQ(r.consumed, in.size());
    EXPECT_EQ(req.command, c.command);
    EXPECT_TRUE(req.noreply);
    EXPECT_EQ(req.data, "hi");
    EXPECT_EQ(ReplyTo(absl::StrCat(c.line, " key 1 2\r\n")), "ERROR\r\n");
  }
  Request req;
  ParseResult r = Parse("cas k 0 0 1 12345\r\nx\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kCas);
  EXPECT_EQ(req.cas_unique, 12345u);
  EXPECT_EQ(ReplyTo("cas k 0 0 1\r\n"), "ERROR\r\n");  // unique missing
}

TEST(ProtocolTest, StorageLineErrors) {
  const std::string bad = "CLIENT_ERROR bad command line format\r\n";
  EXPECT_EQ(ReplyTo("set k -1 0 1\r\n"), bad);
  EXPECT_EQ(ReplyTo("set k 1 0 -1\r\n"), bad);
  EXPECT_EQ(ReplyTo("set k x 0 1\r\n"), bad);
  EXPECT_EQ(ReplyTo("set k 0 x 1\r\n"), bad);
  EXPECT_EQ(ReplyTo("set k 0 0 1x\r\n"), bad);
  EXPECT_EQ(ReplyTo("set k 0 0 2147483646\r\n"), bad);  // > INT_MAX - 2
  EXPECT_EQ(ReplyTo("cas k 0 0 1 -5\r\n"), bad);
  EXPECT_EQ(ReplyTo("set " + std::string(251, 'k') + " 0 0 1\r\n"), bad);
  // "noreply" silences errors found after it was seen...
  EXPECT_EQ(ReplyTo("set k 0 0 x noreply\r\n"), "");
  EXPECT_EQ(ReplyTo("set k 0 0 noreply\r\n"), "");
  // ...but not arity errors, found before.
  EXPECT_EQ(ReplyTo("set k 0 0 1 noreply extra\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("set k 0 0\r\n"), "ERROR\r\n");
  // An extra last token that is not "noreply" is ignored.
  Request req;
  ParseResult r = Parse("set k 0 0 1 junk\r\nx\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_FALSE(req.noreply);
  // Numbers as strtoul/strtol read them.
  r = Parse("set k 4294967296 +0 01\r\nx\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(req.flags, 0u);
  r = Parse("set k 1 0 1\tjunk\r\nx\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(req.data, "x");
  // A 250-byte key is fine.
  r = Parse("set " + std::string(250, 'k') + " 0 0 1\r\nx\r\n", &req);
  EXPECT_EQ(r.status, ParseStatus::kRequest);
}

TEST(ProtocolTest, BadDataChunkConsumesExactlyTheBlock) {
  Request req;
  const std::string in = "set k 1 0 3\r\nabcde\r\n";
  const ParseResult r = Parse(in, &req);
  ASSERT_EQ(r.status, ParseStatus::kReply);
  EXPECT_EQ(r.reply, "CLIENT_ERROR bad data chunk\r\n");
  EXPECT_EQ(r.error, ParseError::kBadDataChunk);
  EXPECT_EQ(r.consumed, 18u);  // line + 3 + 2: "\r\n" is left over
  EXPECT_EQ(r.swallow, 0u);
  EXPECT_EQ(req.key, "k");
  // Silenced by noreply.
  const ParseResult q = Parse("set k 1 0 3 noreply\r\nabcde\r\n", &req);
  ASSERT_EQ(q.status, ParseStatus::kReply);
  EXPECT_EQ(q.reply, "");
  // "\n" alone is not the end of a data block.
  const ParseResult n = Parse("set k 1 0 3\r\nabc\nv", &req);
  EXPECT_EQ(n.status, ParseStatus::kReply);
}

TEST(ProtocolTest, TooLargeIsRefusedBeforeTheDataAndSwallowed) {
  Request req;
  // memcached 1.6.18 with -I 1m: 1048516 is the largest value for key "k".
  ParseResult r = Parse("set k 0 0 1048517\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kReply);
  EXPECT_EQ(r.reply, "SERVER_ERROR object too large for cache\r\n");
  EXPECT_EQ(r.error, ParseError::kTooLarge);
  EXPECT_EQ(r.consumed, 19u);
  EXPECT_EQ(r.swallow, 1048519u);
  EXPECT_EQ(req.command, Command::kSet);
  EXPECT_EQ(req.key, "k");
  r = Parse("set k 0 0 1048516\r\n", &req);
  EXPECT_EQ(r.status, ParseStatus::kNeedMore);
  EXPECT_EQ(r.need, 19u + 1048518u);
  // Non-zero flags cost 4 bytes.
  EXPECT_EQ(Parse("set k 1 0 1048513\r\n", &req).status, ParseStatus::kReply);
  EXPECT_EQ(Parse("set k 1 0 1048512\r\n", &req).status,
            ParseStatus::kNeedMore);
  // noreply silences the reply, not the swallow.
  r = Parse("append k 0 0 2000000 noreply\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kReply);
  EXPECT_EQ(r.reply, "");
  EXPECT_EQ(r.swallow, 2000002u);
  EXPECT_EQ(req.command, Command::kAppend);
  // A smaller -I.
  ParserLimits small;
  small.item_size_max = 100;
  EXPECT_EQ(Parse("set k 0 0 41\r\n", &req, small).status, ParseStatus::kReply);
  EXPECT_EQ(Parse("set k 0 0 40\r\n", &req, small).status,
            ParseStatus::kNeedMore);
}

TEST(ProtocolTest, DeleteIncrDecrTouch) {
  Request req;
  ASSERT_EQ(Parse("delete k\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kDelete);
  EXPECT_EQ(req.key, "k");
  ASSERT_EQ(Parse("delete k 0\r\n", &req).status, ParseStatus::kRequest);
  ASSERT_EQ(Parse("delete k noreply\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_TRUE(req.noreply);
  ASSERT_EQ(Parse("delete k 0 noreply\r\n", &req).status,
            ParseStatus::kRequest);
  EXPECT_TRUE(req.noreply);
  EXPECT_EQ(ReplyTo("delete k 5\r\n"),
            "CLIENT_ERROR bad command line format.  Usage: delete <key> "
            "[noreply]\r\n");
  EXPECT_EQ(ReplyTo("delete k 1 noreply\r\n"), "");
  EXPECT_EQ(ReplyTo("delete\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("delete a b c d\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("delete " + std::string(251, 'k') + "\r\n"),
            "CLIENT_ERROR bad command line format\r\n");

  ASSERT_EQ(Parse("incr k 18446744073709551615\r\n", &req).status,
            ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kIncr);
  EXPECT_EQ(req.delta, 18446744073709551615u);
  ASSERT_EQ(Parse("decr k 3 noreply\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kDecr);
  EXPECT_TRUE(req.noreply);
  const std::string bad_delta =
      "CLIENT_ERROR invalid numeric delta argument\r\n";
  EXPECT_EQ(ReplyTo("incr k x\r\n"), bad_delta);
  EXPECT_EQ(ReplyTo("incr k -1\r\n"), bad_delta);
  EXPECT_EQ(ReplyTo("decr k 18446744073709551616\r\n"), bad_delta);
  EXPECT_EQ(ReplyTo("incr k x noreply\r\n"), "");
  EXPECT_EQ(ReplyTo("incr\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("incr k\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("incr k 1 2 3\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("incr " + std::string(251, 'k') + " 1\r\n"),
            "CLIENT_ERROR bad command line format\r\n");

  ASSERT_EQ(Parse("touch k -7\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kTouch);
  EXPECT_EQ(req.exptime, -7);
  EXPECT_EQ(ReplyTo("touch k x\r\n"),
            "CLIENT_ERROR invalid exptime argument\r\n");
  EXPECT_EQ(ReplyTo("touch k\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("touch k 1 noreply x\r\n"), "ERROR\r\n");
}

TEST(ProtocolTest, FlushAllVersionVerbosityStatsQuit) {
  Request req;
  ASSERT_EQ(Parse("flush_all\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kFlushAll);
  EXPECT_EQ(req.exptime, 0);
  ASSERT_EQ(Parse("flush_all 30 noreply\r\n", &req).status,
            ParseStatus::kRequest);
  EXPECT_EQ(req.exptime, 30);
  EXPECT_TRUE(req.noreply);
  ASSERT_EQ(Parse("flush_all noreply\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_TRUE(req.noreply);
  EXPECT_EQ(req.exptime, 0);
  EXPECT_EQ(ReplyTo("flush_all x\r\n"),
            "CLIENT_ERROR invalid exptime argument\r\n");
  EXPECT_EQ(ReplyTo("flush_all noreply 5\r\n"),
            "CLIENT_ERROR invalid exptime argument\r\n");
  EXPECT_EQ(ReplyTo("flush_all x noreply\r\n"), "");
  EXPECT_EQ(ReplyTo("flush_all 1 2 3\r\n"), "ERROR\r\n");

  ASSERT_EQ(Parse("version\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kVersion);
  ASSERT_EQ(Parse("version HTTP/1.0\r\n", &req).status, ParseStatus::kRequest);
  ASSERT_EQ(Parse("quit\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kQuit);

  ASSERT_EQ(Parse("verbosity 7 noreply\r\n", &req).status,
            ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kVerbosity);
  EXPECT_EQ(req.verbosity, 7u);
  EXPECT_TRUE(req.noreply);
  EXPECT_EQ(ReplyTo("verbosity\r\n"), "ERROR\r\n");
  EXPECT_EQ(ReplyTo("verbosity x\r\n"),
            "CLIENT_ERROR bad command line format\r\n");

  ASSERT_EQ(Parse("stats\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(req.command, Command::kStats);
  EXPECT_EQ(req.stats_args, "");
  ASSERT_EQ(Parse("stats  detail on\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(req.stats_args, "detail on");

  EXPECT_EQ(ReplyTo("shutdown\r\n"), "ERROR: shutdown not enabled\r\n");
}

TEST(ProtocolTest, UnknownAndMalformedCommands) {
  for (absl::string_view line :
       {"foo\r\n", "\r\n", "\n", "g\r\n", "x\r\n", " \r\n", "mn\r\n",
        "mg k v\r\n", "slabs reassign 1 2\r\n", "lru_crawler crawl all\r\n",
        "watch\r\n", "cache_memlimit 100\r\n", "stat\r\n"}) {
    EXPECT_EQ(ReplyTo(line), "ERROR\r\n") << line;
  }
}

TEST(ProtocolTest, LineEndingsNulAndSpaces) {
  Request req;
  // Only one '\r' is stripped: the key is "k\r".
  ASSERT_EQ(Parse("get k\r\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(Keys(req.keys), (std::vector<std::string>{"k\r"}));
  // Tabs and control characters are part of a key.
  ASSERT_EQ(Parse("get k\tz k\x01z\r\n", &req).status, ParseStatus::kRequest);
  EXPECT_EQ(Keys(req.keys), (std::vector<std::string>{"k\tz", "k\x01z"}));
  // A NUL ends the line.
  const std::string with_nul("get k\0zzz\r\n", 11);
  const ParseResult r = Parse(with_nul, &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(r.consumed, 11u);
  EXPECT_EQ(Keys(req.keys), (std::vector<std::string>{"k"}));
  EXPECT_EQ(ReplyTo(std::string("set k\0 0 0 1\r\n", 14)), "ERROR\r\n");
  // Runs of spaces separate tokens.
  const ParseResult s = Parse("set  k  0  0  1 \r\nx\r\n", &req);
  ASSERT_EQ(s.status, ParseStatus::kRequest);
  EXPECT_EQ(req.key, "k");
  EXPECT_EQ(req.data, "x");
  // More than 23 tokens: the arity check fails, as in memcached.
  std::string many = "set k";
  for (int i = 0; i < 30; ++i) many += " 1";
  EXPECT_EQ(ReplyTo(many + "\r\n"), "ERROR\r\n");
}

TEST(ProtocolTest, HttpRequestLineCloses) {
  Request req;
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\n", &req).status, ParseStatus::kClose);
  EXPECT_EQ(Parse("foo bar HTTP/1.0\r\n", &req).status, ParseStatus::kClose);
  EXPECT_EQ(ReplyTo("foo HTTP\r\n"), "ERROR\r\n");
}

TEST(ProtocolTest, TooLongLineCloses) {
  Request req;
  // 2048 bytes before the '\n' are fine...
  std::string ok(kMaxLineLength, 'x');
  EXPECT_EQ(Parse(ok, &req).status, ParseStatus::kNeedMore);
  EXPECT_EQ(ReplyTo(ok + "\n"), "ERROR\r\n");
  // ...2049 are not, whether or not the '\n' has arrived.
  std::string too_long(kMaxLineLength + 1, 'x');
  EXPECT_EQ(Parse(too_long, &req).status, ParseStatus::kClose);
  EXPECT_EQ(Parse(too_long + "\n", &req).status, ParseStatus::kClose);
  EXPECT_EQ(Parse(std::string(kMaxLineLength, 'x') + "\r\n", &req).status,
            ParseStatus::kClose);  // the '\r' is byte 2049
  const std::string set_line = "set k 0 0 1 " + std::string(3000, 'x');
  EXPECT_EQ(Parse(set_line, &req).status, ParseStatus::kClose);
  EXPECT_EQ(Parse(std::string(5000, ' '), &req).status, ParseStatus::kClose);
}

TEST(ProtocolTest, LongMultigetLinesAreAllowedUpToTheirOwnLimit) {
  std::string line = "get";
  while (line.size() < 3000) line += " somekey";
  Request req;
  ParseResult r = Parse(line, &req);
  EXPECT_EQ(r.status, ParseStatus::kNeedMore);
  EXPECT_EQ(r.scanned, line.size());
  r = Parse(line + "\r\n", &req);
  ASSERT_EQ(r.status, ParseStatus::kRequest);
  EXPECT_EQ(r.consumed, line.size() + 2);
  // "gets " too, after up to 100 spaces, but not "gat".
  EXPECT_EQ(Parse(std::string(100, ' ') + "gets" + line.substr(3), &req).status,
            ParseStatus::kNeedMore);
  EXPECT_EQ(Parse(std::string(101, ' ') + line, &req).status,
            ParseStatus::kClose);
  EXPECT_EQ(Parse("gat 1" + line.substr(3), &req).status, ParseStatus::kClose);
  // The multiget limit bounds the buffer.
  ParserLimits limits;
  limits.max_multiget_line = 4000;
  std::string huge = line;
  while (huge.size() <= 4000) huge += " somekey";
  EXPECT_EQ(Parse(huge, &req, limits).status, ParseStatus::kClose);
  EXPECT_EQ(Parse(huge.substr(0, 4000), &req, limits).status,
            ParseStatus::kNeedMore);
  EXPECT_EQ(Parse(huge.substr(0, 4000) + "\n", &req, limits).status,
            ParseStatus::kRequest);
}

TEST(ProtocolTest, ScanFromSkipsWhatWasSearched) {
  Request req;
  const std::string in = "get aaaaaaaa\r\n";
  for (size_t from = 0; from <= 13; ++from) {
    const ParseResult r = ParseRequest(in, ParserLimits(), &req, from);
    ASSERT_EQ(r.status, ParseStatus::kRequest) << from;
    EXPECT_EQ(r.consumed, in.size());
  }
}

}  // namespace
}  // namespace cached
}  // namespace eventide
