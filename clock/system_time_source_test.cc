#include "clock/system_time_source.h"

#include <sys/time.h>
#include <time.h>

#include <cstdint>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

ClockProbe MakeProbe(bool monotonic_works,
                     absl::optional<absl::Duration> coarse) {
  ClockProbe probe;
  probe.monotonic_works = monotonic_works;
  probe.coarse_resolution = coarse;
  return probe;
}

SystemClockOptions Options(bool force_wall_clock, bool allow_coarse) {
  SystemClockOptions options;
  options.force_wall_clock = force_wall_clock;
  options.allow_coarse = allow_coarse;
  return options;
}

int64_t RawNanos(clockid_t id) {
  struct timespec ts;
  EXPECT_EQ(clock_gettime(id, &ts), 0);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// --- The selection policy, on synthetic probes ---------------------------

TEST(SelectClockKindTest, MonotonicWhenItWorks) {
  EXPECT_EQ(SelectClockKind(Options(false, false),
                            MakeProbe(true, absl::Microseconds(1))),
            ClockKind::kMonotonic);
}

TEST(SelectClockKindTest, WallClockWhenMonotonicIsBroken) {
  EXPECT_EQ(SelectClockKind(Options(false, false), MakeProbe(false, {})),
            ClockKind::kWallClock);
  // Even if the coarse clock seems fine: without a working CLOCK_MONOTONIC
  // we trust no monotonic clock.
  EXPECT_EQ(SelectClockKind(Options(false, true),
                            MakeProbe(false, absl::Microseconds(1))),
            ClockKind::kWallClock);
}

TEST(SelectClockKindTest, ForcedWallClockWins) {
  EXPECT_EQ(SelectClockKind(Options(true, false), MakeProbe(true, {})),
            ClockKind::kWallClock);
  EXPECT_EQ(SelectClockKind(Options(true, true),
                            MakeProbe(true, absl::Microseconds(1))),
            ClockKind::kWallClock);
}

TEST(SelectClockKindTest, CoarseOnlyWhenAllowedAndFineEnough) {
  // Allowed and 1 ms: accepted (the bound is inclusive).
  EXPECT_EQ(SelectClockKind(Options(false, true),
                            MakeProbe(true, absl::Milliseconds(1))),
            ClockKind::kMonotonicCoarse);
  EXPECT_EQ(SelectClockKind(Options(false, true),
                            MakeProbe(true, absl::Microseconds(100))),
            ClockKind::kMonotonicCoarse);
  // HZ=250: 4 ms, the libevent trap. Rejected.
  EXPECT_EQ(SelectClockKind(Options(false, true),
                            MakeProbe(true, absl::Milliseconds(4))),
            ClockKind::kMonotonic);
  // Just over the bound.
  EXPECT_EQ(SelectClockKind(
                Options(false, true),
                MakeProbe(true, absl::Milliseconds(1) + absl::Nanoseconds(1))),
            ClockKind::kMonotonic);
  // Not allowed: never, however fine.
  EXPECT_EQ(SelectClockKind(Options(false, false),
                            MakeProbe(true, absl::Nanoseconds(1))),
            ClockKind::kMonotonic);
  // Unknown or nonsensical resolution: not trusted.
  EXPECT_EQ(SelectClockKind(Options(false, true), MakeProbe(true, {})),
            ClockKind::kMonotonic);
  EXPECT_EQ(SelectClockKind(Options(false, true),
                            MakeProbe(true, absl::ZeroDuration())),
            ClockKind::kMonotonic);
}

TEST(ClockKindNameTest, Names) {
  EXPECT_EQ(ClockKindName(ClockKind::kMonotonic), "CLOCK_MONOTONIC");
  EXPECT_EQ(ClockKindName(ClockKind::kMonotonicCoarse),
            "CLOCK_MONOTONIC_COARSE");
  EXPECT_EQ(ClockKindName(ClockKind::kWallClock), "gettimeofday");
}

// --- Detection on this machine -------------------------------------------

TEST(ProbeSystemClocksTest, MatchesTheSystemCalls) {
  const ClockProbe& probe = ProbeSystemClocks();
  struct timespec ts;
  EXPECT_EQ(probe.monotonic_works, clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
#ifdef CLOCK_MONOTONIC_COARSE
  struct timespec res;
  if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0) {
    ASSERT_TRUE(probe.coarse_resolution.has_value());
    EXPECT_EQ(*probe.coarse_resolution, absl::DurationFromTimespec(res));
  }
#endif
}

TEST(ProbeSystemClocksTest, RunsOncePerProcess) {
  // Same object every time: the probe is cached, not re-run.
  EXPECT_EQ(&ProbeSystemClocks(), &ProbeSystemClocks());
}

TEST(SystemTimeSourceTest, DefaultIsMonotonicOnLinux) {
  SystemTimeSource& source = SystemTimeSource::Default();
  EXPECT_EQ(&source, &SystemTimeSource::Default());
  ASSERT_TRUE(ProbeSystemClocks().monotonic_works);
  EXPECT_EQ(source.kind(), ClockKind::kMonotonic);
  EXPECT_TRUE(source.is_monotonic());
  EXPECT_EQ(source.name(), "CLOCK_MONOTONIC");
}

TEST(SystemTimeSourceTest, MonotonicReadingsTrackClockMonotonic) {
  SystemTimeSource source;
  const int64_t before = RawNanos(CLOCK_MONOTONIC);
  const MonoTime t = source.Now();
  const int64_t after = RawNanos(CLOCK_MONOTONIC);
  EXPECT_LE(before, t.nanos());
  EXPECT_LE(t.nanos(), after);
}

TEST(SystemTimeSourceTest, MonotonicReadingsNeverDecrease) {
  SystemTimeSource source;
  MonoTime last = source.Now();
  for (int i = 0; i < 10000; ++i) {
    const MonoTime t = source.Now();
    ASSERT_GE(t, last) << "at read " << i;
    last = t;
  }
}

TEST(SystemTimeSourceTest, ForcedWallClockReadsGettimeofday) {
  SystemTimeSource source(Options(/*force_wall_clock=*/true, false));
  EXPECT_EQ(source.kind(), ClockKind::kWallClock);
  EXPECT_FALSE(source.is_monotonic());
  EXPECT_EQ(source.name(), "gettimeofday");

  struct timeval tv;
  ASSERT_EQ(gettimeofday(&tv, nullptr), 0);
  const int64_t before =
      static_cast<int64_t>(tv.tv_sec) * 1000000000 + tv.tv_usec * 1000;
  const MonoTime t = source.Now();
  ASSERT_EQ(gettimeofday(&tv, nullptr), 0);
  const int64_t after =
      static_cast<int64_t>(tv.tv_sec) * 1000000000 + tv.tv_usec * 1000;
  // Microsecond resolution: whole microseconds, between the two readings
  // (unless the wall clock was stepped in between, which a test machine
  // does not do within microseconds).
  EXPECT_EQ(t.nanos() % 1000, 0);
  EXPECT_LE(before, t.nanos());
  EXPECT_LE(t.nanos(), after);
}

TEST(SystemTimeSourceTest, CoarseClockHonoursTheResolutionCheck) {
  SystemTimeSource source(Options(false, /*allow_coarse=*/true));
  const ClockProbe& probe = ProbeSystemClocks();
  const bool fine_enough = probe.coarse_resolution.has_value() &&
                           *probe.coarse_resolution <= kMaxCoarseResolution;
  if (fine_enough) {
    EXPECT_EQ(source.kind(), ClockKind::kMonotonicCoarse);
    EXPECT_TRUE(source.is_monotonic());
  } else {
    // E.g. a HZ=250 kernel: 4 ms coarse resolution, so the precise clock.
    EXPECT_EQ(source.kind(), ClockKind::kMonotonic);
  }
  // Either way it reads a monotonic clock on the CLOCK_MONOTONIC time base
  // (the coarse clock lags by at most one tick).
  const MonoTime t = source.Now();
  const int64_t after = RawNanos(CLOCK_MONOTONIC);
  EXPECT_LE(t.nanos(), after);
  EXPECT_GE(t.nanos(), after - absl::ToInt64Nanoseconds(absl::Seconds(1)));
}

}  // namespace
}  // namespace eventide
