#include "clock/mono_time.h"

#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

TEST(MonoTimeTest, DefaultIsOrigin) {
  EXPECT_EQ(MonoTime().nanos(), 0);
  EXPECT_EQ(MonoTime(), MonoTime::FromNanos(0));
}

TEST(MonoTimeTest, FromNanosRoundTrips) {
  for (int64_t n : {int64_t{-5}, int64_t{0}, int64_t{1}, int64_t{123456789},
                    kInt64Max, kInt64Min}) {
    EXPECT_EQ(MonoTime::FromNanos(n).nanos(), n);
  }
  EXPECT_EQ(MonoTime::Max().nanos(), kInt64Max);
  EXPECT_EQ(MonoTime::Min().nanos(), kInt64Min);
}

TEST(MonoTimeTest, Comparisons) {
  const MonoTime a = MonoTime::FromNanos(10);
  const MonoTime b = MonoTime::FromNanos(20);
  EXPECT_TRUE(a < b);
  EXPECT_TRUE(a <= b);
  EXPECT_TRUE(b > a);
  EXPECT_TRUE(b >= a);
  EXPECT_TRUE(a != b);
  EXPECT_FALSE(a == b);
  EXPECT_FALSE(b < a);
  EXPECT_TRUE(a <= MonoTime::FromNanos(10));
  EXPECT_TRUE(a >= MonoTime::FromNanos(10));
  EXPECT_TRUE(MonoTime::Min() < MonoTime() && MonoTime() < MonoTime::Max());
}

TEST(MonoTimeTest, AddAndSubtractDurations) {
  MonoTime t = MonoTime::FromNanos(1000);
  EXPECT_EQ((t + absl::Microseconds(2)).nanos(), 3000);
  EXPECT_EQ((absl::Microseconds(2) + t).nanos(), 3000);
  EXPECT_EQ((t - absl::Nanoseconds(1500)).nanos(), -500);
  EXPECT_EQ((t + absl::Nanoseconds(-1000)).nanos(), 0);
  t += absl::Seconds(1);
  EXPECT_EQ(t.nanos(), 1000000000 + 1000);
  t -= absl::Milliseconds(1);
  EXPECT_EQ(t.nanos(), 999000000 + 1000);
}

TEST(MonoTimeTest, SubNanosecondPartsAreTruncated) {
  const MonoTime t = MonoTime::FromNanos(10);
  EXPECT_EQ((t + absl::Nanoseconds(1) / 2).nanos(), 10);
  EXPECT_EQ((t + absl::Nanoseconds(3) / 2).nanos(), 11);
}

TEST(MonoTimeTest, DifferenceIsExact) {
  EXPECT_EQ(MonoTime::FromNanos(5000) - MonoTime::FromNanos(2000),
            absl::Microseconds(3));
  EXPECT_EQ(MonoTime::FromNanos(2000) - MonoTime::FromNanos(5000),
            absl::Microseconds(-3));
  // The full range does not fit in int64 nanoseconds, but it does in an
  // absl::Duration: no overflow, exact value.
  const absl::Duration span = MonoTime::Max() - MonoTime::Min();
  EXPECT_EQ(span, absl::Nanoseconds(kInt64Max) - absl::Nanoseconds(kInt64Min));
  EXPECT_GT(span, absl::Nanoseconds(kInt64Max));
  EXPECT_LT(MonoTime::Min() - MonoTime::Max(), -absl::Nanoseconds(kInt64Max));
}

TEST(MonoTimeTest, InfiniteDurationSaturates) {
  const MonoTime t = MonoTime::FromNanos(42);
  EXPECT_EQ(t + absl::InfiniteDuration(), MonoTime::Max());
  EXPECT_EQ(t - absl::InfiniteDuration(), MonoTime::Min());
  EXPECT_EQ(t + -absl::InfiniteDuration(), MonoTime::Min());
  EXPECT_EQ(t - -absl::InfiniteDuration(), MonoTime::Max());
  MonoTime u = t;
  u += absl::InfiniteDuration();
  EXPECT_EQ(u, MonoTime::Max());
  u -= absl::InfiniteDuration();
  EXPECT_EQ(u, MonoTime::Min());
}

TEST(MonoTimeTest, HugeFiniteDurationsSaturate) {
  // 1000 years: finite as a Duration, beyond int64 nanoseconds (~292 y).
  const absl::Duration millennium = absl::Hours(24 * 365 * 1000);
  EXPECT_EQ(MonoTime() + millennium, MonoTime::Max());
  EXPECT_EQ(MonoTime() - millennium, MonoTime::Min());
  // In range by itself, out of range once added.
  const MonoTime near_max = MonoTime::Max() - absl::Seconds(1);
  EXPECT_EQ(near_max.nanos(), kInt64Max - 1000000000);
  EXPECT_EQ(near_max + absl::Seconds(2), MonoTime::Max());
  EXPECT_EQ(MonoTime::Min() + absl::Seconds(1) - absl::Seconds(2),
            MonoTime::Min());
  EXPECT_EQ(MonoTime::Max() + absl::Nanoseconds(1), MonoTime::Max());
  EXPECT_EQ(MonoTime::Min() - absl::Nanoseconds(1), MonoTime::Min());
}

// The inline fast path of MonoTime + Duration must agree with the exact
// Duration arithmetic everywhere, around its bounds included.
TEST(MonoTimeTest, AddingMatchesExactArithmetic) {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::vector<absl::Duration> durations = {
      absl::ZeroDuration(),
      absl::Nanoseconds(1),
      absl::Nanoseconds(1) / 4,
      absl::Nanoseconds(7) / 4,
      absl::Milliseconds(1500),
      absl::Seconds(59) + absl::Nanoseconds(999999999),
      absl::Seconds(8999999999) + absl::Nanoseconds(999999999),
      absl::Seconds(9000000000),
      absl::Seconds(9223372036),
      absl::Seconds(9223372037),
      -absl::Nanoseconds(1),
      -absl::Nanoseconds(1) / 4,
      -absl::Milliseconds(1500),
      absl::InfiniteDuration(),
      -absl::InfiniteDuration(),
  };
  const std::vector<int64_t> starts = {0,        1,    -1000, 123456789012345,
                                       kMax - 5, -kMax};
  for (int64_t start : starts) {
    for (absl::Duration d : durations) {
      const absl::Duration exact =
          absl::Nanoseconds(start) + absl::Trunc(d, absl::Nanoseconds(1));
      int64_t want;
      if (exact >= absl::Nanoseconds(kMax)) {
        want = kMax;
      } else if (exact <= absl::Nanoseconds(-kMax - 1)) {
        want = -kMax - 1;
      } else {
        want = absl::ToInt64Nanoseconds(exact);
      }
      EXPECT_EQ((MonoTime::FromNanos(start) + d).nanos(), want)
          << start << " + " << d;
    }
  }
}

TEST(MonoTimeTest, MaxIsNotSticky) {
  EXPECT_EQ((MonoTime::Max() - absl::Nanoseconds(1)).nanos(), kInt64Max - 1);
  EXPECT_EQ((MonoTime::Min() + absl::Nanoseconds(1)).nanos(), kInt64Min + 1);
}

TEST(MonoTimeTest, Printing) {
  EXPECT_EQ(MonoTime::FromNanos(12000000345).ToString(),
            "MonoTime(12.000000345s)");
  EXPECT_EQ(MonoTime::FromNanos(-1500000000).ToString(),
            "MonoTime(-1.500000000s)");
  EXPECT_EQ(MonoTime::FromNanos(-5).ToString(), "MonoTime(-0.000000005s)");
  EXPECT_EQ(MonoTime().ToString(), "MonoTime(0.000000000s)");
  EXPECT_EQ(MonoTime::Max().ToString(), "MonoTime(max)");
  EXPECT_EQ(MonoTime::Min().ToString(), "MonoTime(min)");
  std::ostringstream os;
  os << MonoTime::FromNanos(1);
  EXPECT_EQ(os.str(), "MonoTime(0.000000001s)");
}

struct StringSink {
  void Append(absl::string_view s) { out.append(s.data(), s.size()); }
  std::string out;
};

TEST(MonoTimeTest, AbslStringifyAppendsToString) {
  StringSink sink;
  AbslStringify(sink, MonoTime::FromNanos(2000000000));
  EXPECT_EQ(sink.out, "MonoTime(2.000000000s)");
}

}  // namespace
}  // namespace eventide
