#include "clock/cached_clock.h"

#include "absl/time/time.h"
#include "clock/fake_clock.h"
#include "clock/system_time_source.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

TEST(CachedClockTest, StartsWithoutCacheAndExposesSource) {
  FakeClock fake;
  CachedClock clock(&fake);
  EXPECT_FALSE(clock.has_cache());
  EXPECT_EQ(clock.source(), &fake);
}

TEST(CachedClockTest, WithoutCacheEveryNowReadsTheSource) {
  FakeClock fake;
  CachedClock clock(&fake);
  EXPECT_EQ(clock.Now(), FakeClock::kDefaultStart);
  fake.Advance(absl::Milliseconds(3));
  EXPECT_EQ(clock.Now(), FakeClock::kDefaultStart + absl::Milliseconds(3));
  EXPECT_EQ(fake.now_calls(), 2);
  // Reading does not set the cache.
  EXPECT_FALSE(clock.has_cache());
}

TEST(CachedClockTest, CacheHitCostsNoReadAndAnswersTheSameInstant) {
  FakeClock fake;
  CachedClock clock(&fake);
  const MonoTime cached = clock.UpdateCache();
  EXPECT_EQ(cached, FakeClock::kDefaultStart);
  EXPECT_TRUE(clock.has_cache());
  EXPECT_EQ(fake.now_calls(), 1);

  // Time moves on, the cache does not.
  fake.Advance(absl::Seconds(7));
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(clock.Now(), cached);
  }
  EXPECT_EQ(fake.now_calls(), 1);
}

TEST(CachedClockTest, ClearCacheMakesTheNextNowAMiss) {
  FakeClock fake;
  CachedClock clock(&fake);
  clock.UpdateCache();
  fake.Advance(absl::Seconds(1));
  clock.ClearCache();
  EXPECT_FALSE(clock.has_cache());
  EXPECT_EQ(clock.Now(), FakeClock::kDefaultStart + absl::Seconds(1));
  EXPECT_EQ(fake.now_calls(), 2);
}

TEST(CachedClockTest, UpdateCacheTakesAFreshReadingEachTime) {
  FakeClock fake;
  CachedClock clock(&fake);
  const MonoTime first = clock.UpdateCache();
  fake.Advance(absl::Milliseconds(10));
  const MonoTime second = clock.UpdateCache();
  EXPECT_EQ(second - first, absl::Milliseconds(10));
  EXPECT_EQ(clock.Now(), second);
  EXPECT_EQ(fake.now_calls(), 2);
}

TEST(CachedClockTest, NowUncachedReadsButLeavesTheCache) {
  FakeClock fake;
  CachedClock clock(&fake);
  const MonoTime cached = clock.UpdateCache();
  fake.Advance(absl::Microseconds(250));
  EXPECT_EQ(clock.NowUncached(), cached + absl::Microseconds(250));
  EXPECT_EQ(fake.now_calls(), 2);
  EXPECT_TRUE(clock.has_cache());
  EXPECT_EQ(clock.Now(), cached);
  EXPECT_EQ(fake.now_calls(), 2);
}

TEST(CachedClockTest, LoopIterationPattern) {
  // The loop's use: one read per iteration, however many callbacks ask.
  FakeClock fake;
  fake.SetAutoAdvance(absl::Microseconds(1));  // readings always differ
  CachedClock clock(&fake);
  for (int iteration = 0; iteration < 5; ++iteration) {
    clock.ClearCache();
    fake.Advance(absl::Milliseconds(1));  // "the wait"
    const MonoTime now = clock.UpdateCache();
    for (int callback = 0; callback < 10; ++callback) {
      ASSERT_EQ(clock.Now(), now);
    }
  }
  EXPECT_EQ(fake.now_calls(), 5);
}

TEST(CachedClockTest, WorksOverTheSystemSource) {
  CachedClock clock(&SystemTimeSource::Default());
  const MonoTime cached = clock.UpdateCache();
  // The real clock moves; the cache does not.
  const MonoTime later = clock.NowUncached();
  EXPECT_GE(later, cached);
  EXPECT_EQ(clock.Now(), cached);
  clock.ClearCache();
  EXPECT_GE(clock.Now(), later);
}

}  // namespace
}  // namespace eventide
