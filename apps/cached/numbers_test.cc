#include "apps/cached/numbers.h"

#include <stdint.h>

#include <string>

#include "gtest/gtest.h"

namespace eventide {
namespace cached {
namespace {

TEST(SafeStrtoullTest, PlainAndLimits) {
  uint64_t v = 7;
  EXPECT_TRUE(SafeStrtoull("0", &v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(SafeStrtoull("18446744073709551615", &v));
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_FALSE(SafeStrtoull("18446744073709551616", &v));  // ERANGE
  EXPECT_EQ(v, 0u);
  EXPECT_FALSE(SafeStrtoull("", &v));
  EXPECT_FALSE(SafeStrtoull("abc", &v));
  EXPECT_FALSE(SafeStrtoull("12abc", &v));
  EXPECT_FALSE(SafeStrtoull("0x10", &v));
}

TEST(SafeStrtoullTest, GlibcQuirksKeptByMemcached) {
  uint64_t v = 0;
  EXPECT_TRUE(SafeStrtoull(" \t12", &v));  // leading whitespace
  EXPECT_EQ(v, 12u);
  EXPECT_TRUE(SafeStrtoull("+3", &v));
  EXPECT_EQ(v, 3u);
  EXPECT_TRUE(SafeStrtoull("5\tjunk", &v));  // whitespace ends the number
  EXPECT_EQ(v, 5u);
  EXPECT_TRUE(SafeStrtoull("12 ab", &v));
  EXPECT_EQ(v, 12u);
  EXPECT_TRUE(SafeStrtoull("-0", &v));  // not negative as a signed number
  EXPECT_EQ(v, 0u);
  EXPECT_FALSE(SafeStrtoull("-1", &v));
  EXPECT_FALSE(SafeStrtoull("-5", &v));
  // strtoull negates modulo 2^64: -(2^64-1) is 1, which is not "negative".
  EXPECT_TRUE(SafeStrtoull("-18446744073709551615", &v));
  EXPECT_EQ(v, 1u);
  EXPECT_FALSE(SafeStrtoull(" ", &v));
  EXPECT_FALSE(SafeStrtoull("+", &v));
  EXPECT_FALSE(SafeStrtoull("+-5", &v));
}

TEST(SafeStrtoulTest, KeepsLow32Bits) {
  uint32_t v = 9;
  EXPECT_TRUE(SafeStrtoul("4294967295", &v));
  EXPECT_EQ(v, 4294967295u);
  EXPECT_TRUE(SafeStrtoul("4294967296", &v));  // memcached stores flags 0
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(SafeStrtoul("4294967297", &v));
  EXPECT_EQ(v, 1u);
  EXPECT_FALSE(SafeStrtoul("-1", &v));
  EXPECT_TRUE(SafeStrtoul("00", &v));
  EXPECT_EQ(v, 0u);
  EXPECT_FALSE(SafeStrtoul("1x", &v));
}

TEST(SafeStrtolTest, KeepsTheLow32BitsOfA64BitLong) {
  int32_t v = 1;
  EXPECT_TRUE(SafeStrtol("-1", &v));
  EXPECT_EQ(v, -1);
  EXPECT_TRUE(SafeStrtol("2147483647", &v));
  EXPECT_EQ(v, 2147483647);
  // Above INT32_MAX too, as memcached 1.6 does (no range check at all).
  EXPECT_TRUE(SafeStrtol("2147483648", &v));
  EXPECT_EQ(v, INT32_MIN);
  EXPECT_TRUE(SafeStrtol("4294967296", &v));
  EXPECT_EQ(v, 0);
  EXPECT_TRUE(SafeStrtol("4294967297", &v));
  EXPECT_EQ(v, 1);
  EXPECT_TRUE(SafeStrtol("-2147483648", &v));
  EXPECT_EQ(v, INT32_MIN);
  // Below INT32_MIN: memcached truncates to 32 bits instead of refusing.
  EXPECT_TRUE(SafeStrtol("-2147483649", &v));
  EXPECT_EQ(v, 2147483647);
  EXPECT_FALSE(SafeStrtol("9223372036854775808", &v));   // ERANGE
  EXPECT_FALSE(SafeStrtol("-9223372036854775809", &v));  // ERANGE
  EXPECT_TRUE(SafeStrtol("+0", &v));
  EXPECT_EQ(v, 0);
  EXPECT_TRUE(SafeStrtol("1\tx", &v));
  EXPECT_EQ(v, 1);
  EXPECT_FALSE(SafeStrtol("1x", &v));
  EXPECT_FALSE(SafeStrtol("noreply", &v));
}

TEST(FormatUint64Test, Digits) {
  char buf[20];
  EXPECT_EQ(std::string(buf, FormatUint64(0, buf)), "0");
  EXPECT_EQ(std::string(buf, FormatUint64(1005, buf)), "1005");
  EXPECT_EQ(std::string(buf, FormatUint64(UINT64_MAX, buf)),
            "18446744073709551615");
}

}  // namespace
}  // namespace cached
}  // namespace eventide
