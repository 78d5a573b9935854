#include "clock/jump_detector.h"

#include <sstream>
#include <vector>

#include "absl/time/time.h"
#include "clock/cached_clock.h"
#include "clock/fake_clock.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

using Kind = ClockJump::Kind;

const MonoTime kBefore = MonoTime::FromNanos(int64_t{50} * 1000000000);

TEST(DetectJumpTest, NormalWaitIsNoJump) {
  const ClockJump jump = DetectJump(kBefore, absl::Milliseconds(100),
                                    kBefore + absl::Milliseconds(100));
  EXPECT_EQ(jump.kind, Kind::kNone);
  EXPECT_EQ(jump.offset, absl::ZeroDuration());
  EXPECT_EQ(jump.measured, absl::Milliseconds(100));
}

TEST(DetectJumpTest, EarlyWakeupAndZeroElapsedAreNoJump) {
  EXPECT_EQ(
      DetectJump(kBefore, absl::Seconds(10), kBefore + absl::Milliseconds(1))
          .kind,
      Kind::kNone);
  EXPECT_EQ(DetectJump(kBefore, absl::Seconds(10), kBefore).kind, Kind::kNone);
}

TEST(DetectJumpTest, BackwardJumpReportsNegativeOffsetOfItsSize) {
  const MonoTime after = kBefore - absl::Seconds(30);
  const ClockJump jump = DetectJump(kBefore, absl::Milliseconds(100), after);
  EXPECT_EQ(jump.kind, Kind::kBackward);
  EXPECT_EQ(jump.offset, -absl::Seconds(30));
  EXPECT_EQ(jump.measured, -absl::Seconds(30));
}

TEST(DetectJumpTest, TinyBackwardStepIsStillABackwardJump) {
  const ClockJump jump = DetectJump(kBefore, absl::InfiniteDuration(),
                                    kBefore - absl::Nanoseconds(1));
  EXPECT_EQ(jump.kind, Kind::kBackward);
  EXPECT_EQ(jump.offset, -absl::Nanoseconds(1));
}

TEST(DetectJumpTest, BackwardShiftPreservesRemainingTime) {
  // A timer due 2 s after the wait began must still be 2 s away after the
  // clock stepped back an hour (the wait is assumed to have taken no time).
  const MonoTime deadline = kBefore + absl::Seconds(2);
  const MonoTime after = kBefore - absl::Hours(1);
  const ClockJump jump = DetectJump(kBefore, absl::Seconds(2), after);
  ASSERT_EQ(jump.kind, Kind::kBackward);
  EXPECT_EQ((deadline + jump.offset) - after, absl::Seconds(2));
}

TEST(DetectJumpTest, ForwardJumpBeyondToleranceIsDetected) {
  const absl::Duration timeout = absl::Milliseconds(500);
  const MonoTime after = kBefore + absl::Hours(1);
  const ClockJump jump = DetectJump(kBefore, timeout, after, absl::Seconds(1));
  EXPECT_EQ(jump.kind, Kind::kForward);
  // The wait is assumed to have lasted its timeout; the rest is the jump.
  EXPECT_EQ(jump.offset, absl::Hours(1) - timeout);
  EXPECT_EQ(jump.measured, absl::Hours(1));
}

TEST(DetectJumpTest, ForwardShiftFiresOnlyWhatWasDue) {
  const absl::Duration timeout = absl::Milliseconds(500);
  const MonoTime after = kBefore + absl::Minutes(10);
  const ClockJump jump = DetectJump(kBefore, timeout, after);
  ASSERT_EQ(jump.kind, Kind::kForward);
  // The timer the wait was for is due exactly now; a later one keeps its
  // remaining time instead of firing at once.
  const MonoTime due = kBefore + timeout;
  const MonoTime later = kBefore + absl::Seconds(30);
  EXPECT_EQ(due + jump.offset, after);
  EXPECT_EQ((later + jump.offset) - after, absl::Seconds(30) - timeout);
}

TEST(DetectJumpTest, ForwardThresholdIsTimeoutPlusTolerance) {
  const absl::Duration timeout = absl::Milliseconds(200);
  const absl::Duration tolerance = absl::Milliseconds(50);
  // Exactly at the threshold: still a plausible (late) wakeup.
  EXPECT_EQ(
      DetectJump(kBefore, timeout, kBefore + timeout + tolerance, tolerance)
          .kind,
      Kind::kNone);
  // One nanosecond beyond: a jump.
  const ClockJump jump = DetectJump(
      kBefore, timeout, kBefore + timeout + tolerance + absl::Nanoseconds(1),
      tolerance);
  EXPECT_EQ(jump.kind, Kind::kForward);
  EXPECT_EQ(jump.offset, tolerance + absl::Nanoseconds(1));
}

TEST(DetectJumpTest, DefaultToleranceIsOneSecond) {
  EXPECT_EQ(kDefaultForwardJumpTolerance, absl::Seconds(1));
  const absl::Duration timeout = absl::Milliseconds(10);
  EXPECT_EQ(
      DetectJump(kBefore, timeout, kBefore + absl::Milliseconds(900)).kind,
      Kind::kNone);
  EXPECT_EQ(DetectJump(kBefore, timeout, kBefore + absl::Seconds(2)).kind,
            Kind::kForward);
}

TEST(DetectJumpTest, InfiniteTimeoutNeverReportsAForwardJump) {
  EXPECT_EQ(DetectJump(kBefore, absl::InfiniteDuration(),
                       kBefore + absl::Hours(24 * 365))
                .kind,
            Kind::kNone);
}

TEST(DetectJumpTest, NegativeTimeoutAndToleranceCountAsZero) {
  const ClockJump jump =
      DetectJump(kBefore, -absl::Seconds(5), kBefore + absl::Milliseconds(1),
                 -absl::Seconds(5));
  EXPECT_EQ(jump.kind, Kind::kForward);
  EXPECT_EQ(jump.offset, absl::Milliseconds(1));
  EXPECT_EQ(
      DetectJump(kBefore, -absl::Seconds(5), kBefore, -absl::Seconds(5)).kind,
      Kind::kNone);
}

TEST(DetectJumpTest, InfiniteToleranceDisablesForwardDetection) {
  EXPECT_EQ(DetectJump(kBefore, absl::Milliseconds(1), MonoTime::Max(),
                       absl::InfiniteDuration())
                .kind,
            Kind::kNone);
}

TEST(DetectJumpTest, ExtremeReadingsDoNotOverflow) {
  const ClockJump back =
      DetectJump(MonoTime::Max(), absl::Seconds(1), MonoTime::Min());
  EXPECT_EQ(back.kind, Kind::kBackward);
  EXPECT_EQ(back.offset, MonoTime::Min() - MonoTime::Max());
  const ClockJump fwd =
      DetectJump(MonoTime::Min(), absl::Seconds(1), MonoTime::Max());
  EXPECT_EQ(fwd.kind, Kind::kForward);
  EXPECT_EQ(fwd.offset, (MonoTime::Max() - MonoTime::Min()) - absl::Seconds(1));
}

TEST(DetectJumpTest, Printing) {
  std::ostringstream os;
  os << DetectJump(kBefore, absl::Seconds(1), kBefore - absl::Seconds(3));
  EXPECT_EQ(os.str(), "ClockJump{backward, offset=-3s, measured=-3s}");
  EXPECT_EQ(ClockJumpKindName(Kind::kNone), "none");
  EXPECT_EQ(ClockJumpKindName(Kind::kForward), "forward");
}

// The loop's correction, simulated on a wall-clock fake: a sorted list of
// deadlines stands in for the timer heap.
TEST(DetectJumpTest, LoopCorrectionWithFakeWallClock) {
  FakeClock fake;
  ASSERT_FALSE(fake.is_monotonic());
  CachedClock clock(&fake);
  const MonoTime start = clock.UpdateCache();
  std::vector<MonoTime> deadlines = {start + absl::Seconds(1),
                                     start + absl::Seconds(5)};

  // Iteration 1: wait 1 s but the clock is stepped back 2 h meanwhile.
  MonoTime before = clock.Now();
  clock.ClearCache();
  fake.JumpBackward(absl::Hours(2));
  MonoTime after = clock.UpdateCache();
  ClockJump jump = DetectJump(before, absl::Seconds(1), after);
  ASSERT_EQ(jump.kind, Kind::kBackward);
  for (MonoTime& d : deadlines) d += jump.offset;
  EXPECT_EQ(deadlines[0] - after, absl::Seconds(1));
  EXPECT_EQ(deadlines[1] - after, absl::Seconds(5));

  // Iteration 2: the 1 s wait really takes 1 s: nothing to correct, the
  // first timer is due.
  before = clock.Now();
  clock.ClearCache();
  fake.Advance(absl::Seconds(1));
  after = clock.UpdateCache();
  jump = DetectJump(before, absl::Seconds(1), after);
  EXPECT_EQ(jump.kind, Kind::kNone);
  EXPECT_LE(deadlines[0], after);
  EXPECT_GT(deadlines[1], after);

  // Iteration 3: a 4 s wait, and the clock leaps a day ahead.
  before = clock.Now();
  clock.ClearCache();
  fake.JumpForward(absl::Hours(24));
  after = clock.UpdateCache();
  jump = DetectJump(before, absl::Seconds(4), after);
  ASSERT_EQ(jump.kind, Kind::kForward);
  deadlines[1] += jump.offset;
  EXPECT_EQ(deadlines[1], after);  // due now, not a day overdue
}

}  // namespace
}  // namespace eventide
