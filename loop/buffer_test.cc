#include "loop/buffer.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

// A buffer whose blocks are exactly `pieces` (external blocks are never
// merged), to put block boundaries where a test wants them.
Buffer Chained(const std::vector<std::string>& pieces,
               std::vector<std::shared_ptr<std::string>>* keep) {
  Buffer b;
  for (const std::string& p : pieces) {
    auto s = std::make_shared<std::string>(p);
    keep->push_back(s);
    EXPECT_TRUE(b.AppendExternal(*s, s).ok());
  }
  return b;
}

std::string Pattern(size_t n, uint32_t seed = 1) {
  std::string s(n, '\0');
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>('a' + (x >> 16) % 26);
  }
  return s;
}

TEST(BufferTest, EmptyBuffer) {
  Buffer b;
  EXPECT_EQ(b.size(), 0u);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.FrontChunk(), "");
  EXPECT_EQ(b.Find("x"), Buffer::npos);
  EXPECT_EQ(b.Take(10), "");
  b.Consume(5);
  EXPECT_EQ(b.size(), 0u);
}

TEST(BufferTest, AppendTakeAndConsumeKeepOrder) {
  Buffer b;
  ASSERT_TRUE(b.Append("hello ").ok());
  ASSERT_TRUE(b.Append(std::string("world")).ok());
  EXPECT_EQ(b.size(), 11u);
  EXPECT_EQ(b.Peek(5), "hello");
  EXPECT_EQ(b.Peek(5, 6), "world");
  EXPECT_EQ(b.Take(6), "hello ");
  EXPECT_EQ(b.ToString(), "world");
  b.Consume(100);
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, ManySmallAppendsSpanBlocksAndStayIntact) {
  Buffer b;
  std::string expected;
  for (int i = 0; i < 5000; ++i) {
    const std::string piece = absl::StrCat(i, ",");
    expected += piece;
    ASSERT_TRUE(b.Append(piece).ok());
  }
  EXPECT_GT(b.chunk_count(), 1u);
  EXPECT_EQ(b.size(), expected.size());
  EXPECT_EQ(b.ToString(), expected);
  // Chunks concatenate to the content.
  std::string joined;
  for (size_t i = 0; i < b.chunk_count(); ++i)
    joined += std::string(b.chunk(i));
  EXPECT_EQ(joined, expected);
}

TEST(BufferTest, FindDelimiterAcrossBlockBoundaries) {
  std::vector<std::shared_ptr<std::string>> keep;
  Buffer b = Chained({"GET /a", " HTTP\r", "\nHost", ": x\r\n"}, &keep);
  ASSERT_EQ(b.chunk_count(), 4u);
  EXPECT_EQ(b.FindCrlf(), 11u);  // '\r' ends block 1, '\n' starts block 2
  EXPECT_EQ(b.FindCrlf(12), 20u);
  EXPECT_EQ(b.Find("HTTP\r\nHost"), 7u);
  EXPECT_EQ(b.Find("Host: x"), 13u);
  EXPECT_EQ(b.Find("nothere"), Buffer::npos);
  EXPECT_EQ(b.FindByte(':'), 17u);

  std::string line;
  ASSERT_TRUE(b.TakeLine(&line));
  EXPECT_EQ(line, "GET /a HTTP");
  ASSERT_TRUE(b.TakeLine(&line));
  EXPECT_EQ(line, "Host: x");
  EXPECT_FALSE(b.TakeLine(&line));
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, NeedleSpanningManyOneByteBlocks) {
  std::vector<std::shared_ptr<std::string>> keep;
  Buffer b = Chained({"x", "\r", "y", "\r", "\n", "z"}, &keep);
  EXPECT_EQ(b.FindCrlf(), 3u);
  Buffer c = Chained({"a", "b", "c", "a", "b", "d"}, &keep);
  EXPECT_EQ(c.Find("abd"), 3u);
  EXPECT_EQ(c.Find("abc"), 0u);
  EXPECT_EQ(c.Find("abcabdx"), Buffer::npos);
  // A partial match at the very end is not a match.
  Buffer d = Chained({"abc", "\r"}, &keep);
  EXPECT_EQ(d.FindCrlf(), Buffer::npos);
}

TEST(BufferTest, FindMatchesStdStringOnRandomSplits) {
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::string text;
    const int len = 1 + static_cast<int>(rng() % 200);
    for (int i = 0; i < len; ++i) text += "ab\r\n"[rng() % 4];
    std::vector<std::string> pieces;
    for (size_t at = 0; at < text.size();) {
      const size_t n = 1 + rng() % 7;
      pieces.push_back(text.substr(at, n));
      at += n;
    }
    std::vector<std::shared_ptr<std::string>> keep;
    Buffer b = Chained(pieces, &keep);
    for (const char* needle : {"\r\n", "a", "ab\r", "\n\n", "b\r\na"}) {
      for (size_t from = 0; from <= text.size(); from += 3) {
        const size_t want = text.find(needle, from);
        EXPECT_EQ(b.Find(needle, from),
                  want == std::string::npos ? Buffer::npos : want)
            << "text=" << absl::CEscape(text) << " needle=" << needle
            << " from=" << from;
      }
    }
  }
}

TEST(BufferTest, PullupJoinsAPrefixAndKeepsTheRest) {
  std::vector<std::shared_ptr<std::string>> keep;
  Buffer b = Chained({"ab", "cd", "ef", "gh"}, &keep);
  EXPECT_EQ(b.Pullup(1), "a");  // already contiguous: no change
  EXPECT_EQ(b.chunk_count(), 4u);
  EXPECT_EQ(b.Pullup(5), "abcde");
  EXPECT_EQ(b.FrontChunk(), "abcde");
  EXPECT_EQ(b.size(), 8u);
  EXPECT_EQ(b.ToString(), "abcdefgh");
  EXPECT_EQ(b.Pullup(100), "abcdefgh");
  EXPECT_EQ(b.chunk_count(), 1u);
}

TEST(BufferTest, HugeAppendIsOneCopyAndAdoptionIsNone) {
  const size_t kBig = 64u << 20;
  std::string big = Pattern(kBig);
  Buffer b;
  ASSERT_TRUE(b.Append(absl::string_view(big)).ok());
  EXPECT_EQ(b.size(), kBig);
  EXPECT_EQ(b.chunk_count(), 1u);  // one block, copied once
  EXPECT_EQ(b.Peek(16, kBig - 16), big.substr(kBig - 16));

  // A moved-in string becomes a block as it is: same bytes, same address.
  std::string adopted = Pattern(8u << 20, 7);
  const char* address = adopted.data();
  const std::string copy = adopted;
  ASSERT_TRUE(b.Append(std::move(adopted)).ok());
  EXPECT_EQ(b.size(), kBig + copy.size());
  EXPECT_EQ(b.chunk(b.chunk_count() - 1).data(), address);
  b.Consume(kBig);
  EXPECT_EQ(b.ToString(), copy);
}

TEST(BufferTest, AppendBufferMovesBlocksWithoutCopying) {
  Buffer a;
  ASSERT_TRUE(a.Append("head:").ok());
  Buffer b;
  std::string payload = Pattern(100000);
  const char* address = payload.data();
  ASSERT_TRUE(b.Append(std::move(payload)).ok());
  ASSERT_TRUE(a.Append(std::move(b)).ok());
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(a.size(), 5u + 100000u);
  EXPECT_EQ(a.chunk(a.chunk_count() - 1).data(), address);
  EXPECT_EQ(a.Take(5), "head:");
  // Small buffers are copied into free space instead (one block).
  Buffer c;
  ASSERT_TRUE(c.Append("x").ok());
  Buffer d;
  ASSERT_TRUE(d.Append("yz").ok());
  ASSERT_TRUE(c.Append(std::move(d)).ok());
  EXPECT_EQ(c.chunk_count(), 1u);
  EXPECT_EQ(c.ToString(), "xyz");
}

TEST(BufferTest, CapRejectsAppendsAndLimitsReads) {
  Buffer b(10);
  EXPECT_EQ(b.room(), 10u);
  ASSERT_TRUE(b.Append("12345").ok());
  absl::Status s = b.Append("678901");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(b.size(), 5u);  // nothing of the failed append went in
  EXPECT_EQ(b.Append(std::string(2000, 'x')).code(),
            absl::StatusCode::kResourceExhausted);
  Buffer other;
  ASSERT_TRUE(other.Append("abcdefgh").ok());
  EXPECT_EQ(b.Append(std::move(other)).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(other.size(), 8u);  // untouched on failure
  EXPECT_TRUE(b.Reserve(6).empty());
  ASSERT_TRUE(b.Append("67890").ok());
  EXPECT_EQ(b.room(), 0u);

  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_EQ(write(p[1], "abcdef", 6), 6);
  IoResult r = b.ReadFrom(p[0]);
  EXPECT_EQ(r.error, ENOBUFS);
  EXPECT_EQ(r.bytes, 0u);
  b.Consume(3);
  r = b.ReadFrom(p[0]);
  EXPECT_EQ(r.bytes, 3u);  // only the room left
  EXPECT_EQ(b.ToString(), "4567890abc");
  close(p[0]);
  close(p[1]);
}

TEST(BufferTest, ReserveAndCommitWriteInPlace) {
  Buffer b;
  ASSERT_TRUE(b.Append("x").ok());
  absl::Span<char> space = b.Reserve(100);
  ASSERT_GE(space.size(), 100u);
  std::memcpy(space.data(), "VALUE", 5);
  b.Commit(5);
  EXPECT_EQ(b.ToString(), "xVALUE");
  space = b.Reserve(50000);  // bigger than any free tail: a new block
  ASSERT_GE(space.size(), 50000u);
  std::memset(space.data(), 'z', 50000);
  b.Commit(50000);
  EXPECT_EQ(b.size(), 6u + 50000u);
  EXPECT_EQ(b.Find("Vz"), Buffer::npos);
  EXPECT_EQ(b.Find("Ez"), 5u);
}

// Found by //loop:buffer_fuzzer: Reserve(0) behind an adopted or external
// block returned a span at null + offset (UB) instead of writable memory.
TEST(BufferTest, ReserveZeroAfterReadOnlyBlockGivesWritableSpace) {
  Buffer b;
  ASSERT_TRUE(b.Append(std::string(Buffer::kAdoptThreshold, 'a')).ok());
  absl::Span<char> space = b.Reserve(0);
  ASSERT_NE(space.data(), nullptr);
  ASSERT_GE(space.size(), 1u);
  space[0] = 'b';
  b.Commit(1);
  static const char kExternal[] = "ext";
  ASSERT_TRUE(b.AppendExternal(kExternal, nullptr).ok());
  space = b.Reserve(0);
  ASSERT_NE(space.data(), nullptr);
  b.Commit(0);
  EXPECT_EQ(b.ToString(), std::string(Buffer::kAdoptThreshold, 'a') + "bext");
}

TEST(BufferTest, ReadFromFillsFreeSpaceAndReportsEofAndAgain) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  Buffer b;
  IoResult r = b.ReadFrom(sv[0]);
  EXPECT_TRUE(r.would_block());
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(b.chunk_count(), 0u);  // the unused block was not kept
  const std::string data = Pattern(100000);
  size_t sent = 0;
  std::string got;
  while (got.size() < data.size()) {
    if (sent < data.size()) {
      const ssize_t n = write(sv[1], data.data() + sent, data.size() - sent);
      if (n > 0) sent += static_cast<size_t>(n);
    }
    r = b.ReadFrom(sv[0]);
    ASSERT_TRUE(r.ok()) << r.error;
    got += b.Take(b.size());
  }
  EXPECT_EQ(got, data);
  close(sv[1]);
  r = b.ReadFrom(sv[0]);
  EXPECT_TRUE(r.eof);
  EXPECT_FALSE(r.ok());
  EXPECT_LE(b.chunk_count(), 1u);  // at most one small block kept
  close(sv[0]);
}

TEST(BufferTest, WriteToSendsAtMostIovMaxBlocksPerCall) {
  std::vector<std::shared_ptr<std::string>> keep;
  std::vector<std::string> pieces;
  for (int i = 0; i < 2000; ++i) pieces.push_back("0123456789");
  Buffer b = Chained(pieces, &keep);
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 1 << 20), 0);
  IoResult r = b.WriteTo(p[1]);
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(r.bytes, static_cast<size_t>(IOV_MAX) * 10);
  EXPECT_TRUE(r.filled);
  EXPECT_EQ(b.size(), 20000u - IOV_MAX * 10);
  r = b.WriteTo(p[1], 15);  // `max` splits a block
  EXPECT_EQ(r.bytes, 15u);
  r = b.WriteTo(p[1]);
  EXPECT_EQ(r.bytes, 20000u - IOV_MAX * 10 - 15);
  EXPECT_TRUE(b.empty());
  std::string all(20000, '\0');
  ASSERT_EQ(read(p[0], all.data(), all.size()), 20000);
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(all[i], static_cast<char>('0' + i % 10)) << i;
  }
  close(p[0]);
  close(p[1]);
}

TEST(BufferTest, SendToAClosedPeerGivesEpipeNotSignal) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  close(sv[1]);
  Buffer b;
  ASSERT_TRUE(b.Append("doomed").ok());
  // Would kill the test with SIGPIPE if MSG_NOSIGNAL were missing.
  IoResult r = b.SendTo(sv[0]);
  EXPECT_EQ(r.error, EPIPE);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(b.size(), 6u);
  close(sv[0]);
}

TEST(BufferTest, ConsumeFreesBlocksAndKeepsAtMostOneSmall) {
  Buffer b;
  ASSERT_TRUE(b.Append(std::string(100000, 'a')).ok());
  ASSERT_TRUE(b.Append("tail").ok());
  EXPECT_GE(b.chunk_count(), 2u);
  b.Consume(100000);
  EXPECT_EQ(b.chunk_count(), 1u);
  EXPECT_EQ(b.FrontChunk(), "tail");
  b.Consume(4);
  EXPECT_LE(b.chunk_count(), 1u);
  ASSERT_TRUE(b.Append("again").ok());
  EXPECT_EQ(b.chunk_count(), 1u);
  EXPECT_EQ(b.FrontChunk(), "again");
}

TEST(BufferTest, ExternalMemoryIsReleasedWhenConsumed) {
  auto payload = std::make_shared<std::string>("shared bytes");
  std::weak_ptr<std::string> watch = payload;
  {
    Buffer b;
    ASSERT_TRUE(b.AppendExternal(*payload, payload).ok());
    payload.reset();
    EXPECT_FALSE(watch.expired());  // the buffer holds it
    EXPECT_EQ(b.Take(6), "shared");
    EXPECT_FALSE(watch.expired());
    b.Consume(6);
    EXPECT_TRUE(watch.expired());
  }
}

TEST(BufferTest, MoveLeavesSourceEmpty) {
  Buffer a(1000);
  ASSERT_TRUE(a.Append("abc").ok());
  Buffer b(std::move(a));
  EXPECT_EQ(b.ToString(), "abc");
  EXPECT_EQ(b.max_size(), 1000u);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): defined state
  Buffer c;
  c = std::move(b);
  EXPECT_EQ(c.ToString(), "abc");
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
}

}  // namespace
}  // namespace eventide
