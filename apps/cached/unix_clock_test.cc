#include "apps/cached/unix_clock.h"

#include <cstdlib>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clock/fake_clock.h"
#include "gtest/gtest.h"

namespace eventide {
namespace cached {
namespace {

TEST(MonotonicUnixClockTest, AdvancesWithTheSourceInWholeSeconds) {
  FakeClock fake;
  MonotonicUnixClock clock(&fake, 1700000000);
  EXPECT_EQ(clock.NowUnixSeconds(), 1700000000);
  fake.Advance(absl::Milliseconds(999));
  EXPECT_EQ(clock.NowUnixSeconds(), 1700000000);
  fake.Advance(absl::Milliseconds(1));
  EXPECT_EQ(clock.NowUnixSeconds(), 1700000001);
  fake.Advance(absl::Hours(1));
  EXPECT_EQ(clock.NowUnixSeconds(), 1700003601);
}

TEST(MonotonicUnixClockTest, BackwardStepOfAWallSourceFloors) {
  FakeClock fake;  // a wall-clock-like fake may step back
  MonotonicUnixClock clock(&fake, 1700000000);
  fake.JumpBackward(absl::Milliseconds(1));
  EXPECT_EQ(clock.NowUnixSeconds(), 1699999999);
}

TEST(MonotonicUnixClockTest, FromSystemIsNearTheWallClock) {
  auto clock = MonotonicUnixClock::FromSystem();
  const int64_t wall = absl::ToUnixSeconds(absl::Now());
  EXPECT_LE(std::abs(clock->NowUnixSeconds() - wall), 5);
}

TEST(CachedUnixClockTest, AnswersTheLastRefresh) {
  FakeClock fake;
  MonotonicUnixClock source(&fake, 1000000000);
  CachedUnixClock cached(&source);
  EXPECT_EQ(cached.NowUnixSeconds(), 1000000000);
  fake.Advance(absl::Seconds(3));
  EXPECT_EQ(cached.NowUnixSeconds(), 1000000000);
  cached.Refresh();
  EXPECT_EQ(cached.NowUnixSeconds(), 1000000003);
}

}  // namespace
}  // namespace cached
}  // namespace eventide
