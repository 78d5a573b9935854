#include "clock/fake_clock.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

TEST(FakeClockTest, StandsStillUntilMoved) {
  FakeClock fake;
  EXPECT_EQ(fake.Now(), FakeClock::kDefaultStart);
  EXPECT_EQ(fake.Now(), FakeClock::kDefaultStart);
  EXPECT_EQ(fake.now_calls(), 2);
  EXPECT_EQ(fake.name(), "FakeClock");
}

TEST(FakeClockTest, DefaultIsAWallClock) {
  EXPECT_FALSE(FakeClock().is_monotonic());
  EXPECT_TRUE(FakeClock(MonoTime(), /*monotonic=*/true).is_monotonic());
}

TEST(FakeClockTest, CustomStart) {
  FakeClock fake(MonoTime::FromNanos(-7));
  EXPECT_EQ(fake.Now().nanos(), -7);
}

TEST(FakeClockTest, AdvanceAndJumps) {
  FakeClock fake(MonoTime::FromNanos(0));
  fake.Advance(absl::Milliseconds(5));
  EXPECT_EQ(fake.Now().nanos(), 5000000);
  fake.JumpForward(absl::Seconds(10));
  EXPECT_EQ(fake.Now().nanos(), 10005000000);
  fake.JumpBackward(absl::Seconds(20));
  EXPECT_EQ(fake.Now().nanos(), -9995000000);
  fake.Set(MonoTime::FromNanos(123));
  EXPECT_EQ(fake.Now().nanos(), 123);
  fake.Advance(absl::ZeroDuration());
  EXPECT_EQ(fake.Now().nanos(), 123);
}

TEST(FakeClockTest, PeekDoesNotCountOrAdvance) {
  FakeClock fake(MonoTime::FromNanos(0));
  fake.SetAutoAdvance(absl::Nanoseconds(10));
  EXPECT_EQ(fake.Peek().nanos(), 0);
  EXPECT_EQ(fake.Peek().nanos(), 0);
  EXPECT_EQ(fake.now_calls(), 0);
}

TEST(FakeClockTest, AutoAdvanceAppliesAfterEachRead) {
  FakeClock fake(MonoTime::FromNanos(0));
  fake.SetAutoAdvance(absl::Microseconds(1));
  EXPECT_EQ(fake.Now().nanos(), 0);
  EXPECT_EQ(fake.Now().nanos(), 1000);
  EXPECT_EQ(fake.Now().nanos(), 2000);
  fake.SetAutoAdvance(absl::ZeroDuration());
  EXPECT_EQ(fake.Now().nanos(), 3000);
  EXPECT_EQ(fake.Now().nanos(), 3000);
}

TEST(FakeClockTest, SaturatesLikeMonoTime) {
  FakeClock fake(MonoTime::Max() - absl::Seconds(1));
  fake.Advance(absl::InfiniteDuration());
  EXPECT_EQ(fake.Now(), MonoTime::Max());
}

TEST(FakeClockTest, MonotonicFakeMovesForward) {
  FakeClock fake(MonoTime::FromNanos(100), /*monotonic=*/true);
  fake.Advance(absl::Nanoseconds(5));
  fake.Set(MonoTime::FromNanos(200));
  fake.Set(MonoTime::FromNanos(200));  // equal is fine
  fake.JumpBackward(absl::ZeroDuration());
  EXPECT_EQ(fake.Now().nanos(), 200);
}

using FakeClockDeathTest = ::testing::Test;

TEST(FakeClockDeathTest, MonotonicFakeRefusesToGoBack) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  FakeClock fake(MonoTime::FromNanos(100), /*monotonic=*/true);
  EXPECT_DEATH(fake.JumpBackward(absl::Nanoseconds(1)), "monotonic");
  EXPECT_DEATH(fake.Set(MonoTime::FromNanos(99)), "monotonic");
}

TEST(FakeClockDeathTest, NegativeDurationsAreRejected) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  FakeClock fake;
  EXPECT_DEATH(fake.Advance(-absl::Seconds(1)), "negative");
  EXPECT_DEATH(fake.JumpForward(-absl::Seconds(1)), "negative");
  EXPECT_DEATH(fake.JumpBackward(-absl::Seconds(1)), "negative");
  EXPECT_DEATH(fake.SetAutoAdvance(-absl::Seconds(1)), "negative");
}

TEST(FakeClockTest, ConcurrentReadersSeeNonDecreasingTime) {
  // One writer advances while readers read; with the mutex every reader sees
  // a non-decreasing sequence and the call count is exact. Bounded by count.
  FakeClock fake(MonoTime::FromNanos(0), /*monotonic=*/true);
  constexpr int kReaders = 3;
  constexpr int kReads = 2000;
  constexpr int kAdvances = 2000;
  std::atomic<bool> ok{true};
  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&] {
      MonoTime last = MonoTime::Min();
      for (int i = 0; i < kReads; ++i) {
        const MonoTime t = fake.Now();
        if (t < last) ok = false;
        last = t;
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < kAdvances; ++i) fake.Advance(absl::Nanoseconds(1));
  });
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(ok);
  EXPECT_EQ(fake.now_calls(), kReaders * kReads);
  EXPECT_EQ(fake.Peek().nanos(), kAdvances);
}

}  // namespace
}  // namespace eventide
