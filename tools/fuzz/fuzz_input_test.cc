#include "tools/fuzz/fuzz_input.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "tools/fuzz/fuzz_check.h"

namespace eventide {
namespace fuzz {
namespace {

TEST(FuzzInputTest, ReadsInOrderAndZerosPastTheEnd) {
  const std::string s("\x01\x02\x03", 3);
  FuzzInput in(s);
  EXPECT_EQ(in.remaining(), 3u);
  EXPECT_EQ(in.Byte(), 1);
  EXPECT_EQ(in.Bits(2), 0x0302u);
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(in.Byte(), 0);
  EXPECT_EQ(in.Bits(8), 0u);
  EXPECT_EQ(in.Bytes(5), "");
  EXPECT_TRUE(in.empty());
}

TEST(FuzzInputTest, RangeStaysInBoundsAndUsesFewBytes) {
  const std::string s("\xff\xff\xff\x07\x00\x01", 6);
  FuzzInput in(s);
  EXPECT_EQ(in.Range(5, 5), 5u);  // no byte used
  EXPECT_EQ(in.remaining(), 6u);
  EXPECT_EQ(in.Range(0, 9), 255u % 10);                // one byte
  EXPECT_EQ(in.Range(10, 1000), 10u + 0xffffu % 991);  // two bytes
  EXPECT_EQ(in.Range(0, 255), 7u);
  EXPECT_EQ(in.Range(0, UINT64_MAX), 0x0100u);  // what is left, zero-padded
  EXPECT_TRUE(in.empty());
}

TEST(FuzzInputTest, BytesAndRest) {
  FuzzInput in(std::string_view("hello world"));
  EXPECT_EQ(in.Bytes(5), "hello");
  EXPECT_FALSE(in.Bool());  // ' ' is 0x20: low bit clear
  EXPECT_TRUE(in.Bool());   // 'w' is 0x77
  EXPECT_EQ(in.Rest(), "orld");
  EXPECT_TRUE(in.empty());
}

TEST(FuzzCheckTest, DescribesTheFirstDifference) {
  const std::string d = DescribeMismatch("abcXef", "abcYef\n");
  EXPECT_NE(d.find("sizes 6 vs 7"), std::string::npos) << d;
  EXPECT_NE(d.find("first difference at byte 3"), std::string::npos) << d;
  EXPECT_NE(d.find("\\x0a"), std::string::npos) << d;
}

TEST(FuzzCheckDeathTest, FailedCheckAborts) {
  EXPECT_DEATH(EVENTIDE_FUZZ_CHECK_EQ(std::string("ab"), std::string("ac")),
               "fuzz check failed.*first difference at byte 1");
  EXPECT_DEATH(EVENTIDE_FUZZ_CHECK(1 + 1 == 3),
               "fuzz check failed: 1 \\+ 1 == 3");
}

}  // namespace
}  // namespace fuzz
}  // namespace eventide
