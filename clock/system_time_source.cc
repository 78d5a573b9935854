#include "clock/system_time_source.h"

#include <sys/time.h>
#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/time/time.h"
#include "absl/types/optional.h"

namespace eventide {
namespace {

MonoTime FromTimespec(const struct timespec& ts) {
  return MonoTime::FromNanos(static_cast<int64_t>(ts.tv_sec) * 1000000000 +
                             ts.tv_nsec);
}

// A clock that worked at probe time and then fails is a broken invariant of
// the system, not something a caller can handle: stop with a message rather
// than hand out a garbage instant.
[[noreturn]] void DieReadingClock(const char* what) {
  const int err = errno;
  std::fprintf(stderr, "eventide: reading %s failed: %s\n", what,
               std::strerror(err));
  std::abort();
}

MonoTime ReadClock(clockid_t id, const char* what) {
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0) DieReadingClock(what);
  return FromTimespec(ts);
}

MonoTime ReadWallClock() {
  struct timeval tv;
  if (gettimeofday(&tv, nullptr) != 0) DieReadingClock("gettimeofday");
  return MonoTime::FromNanos(static_cast<int64_t>(tv.tv_sec) * 1000000000 +
                             static_cast<int64_t>(tv.tv_usec) * 1000);
}

ClockProbe RunProbe() {
  ClockProbe probe;
  struct timespec ts;
  probe.monotonic_works = clock_gettime(CLOCK_MONOTONIC, &ts) == 0;
#ifdef CLOCK_MONOTONIC_COARSE
  struct timespec res;
  if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 &&
      clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0) {
    probe.coarse_resolution = absl::DurationFromTimespec(res);
  }
#endif
  return probe;
}

}  // namespace

absl::string_view ClockKindName(ClockKind kind) {
  switch (kind) {
    case ClockKind::kMonotonic:
      return "CLOCK_MONOTONIC";
    case ClockKind::kMonotonicCoarse:
      return "CLOCK_MONOTONIC_COARSE";
    case ClockKind::kWallClock:
      return "gettimeofday";
  }
  return "unknown";
}

const ClockProbe& ProbeSystemClocks() {
  // A function-local static: C++11 guarantees one initialisation even with
  // concurrent first calls. ClockProbe is trivially destructible in practice
  // (a bool and an optional Duration), so it is safe at exit too.
  static const ClockProbe probe = RunProbe();
  return probe;
}

ClockKind SelectClockKind(const SystemClockOptions& options,
                          const ClockProbe& probe) {
  if (options.force_wall_clock || !probe.monotonic_works) {
    return ClockKind::kWallClock;
  }
  if (options.allow_coarse && probe.coarse_resolution.has_value() &&
      *probe.coarse_resolution > absl::ZeroDuration() &&
      *probe.coarse_resolution <= kMaxCoarseResolution) {
    return ClockKind::kMonotonicCoarse;
  }
  return ClockKind::kMonotonic;
}

SystemTimeSource::SystemTimeSource(const SystemClockOptions& options)
    : kind_(SelectClockKind(options, ProbeSystemClocks())) {}

SystemTimeSource& SystemTimeSource::Default() {
  // Intentionally leaked (the Google-style way to get a static that is never
  // destroyed): threads still running during exit may keep reading it.
  static SystemTimeSource* const instance = new SystemTimeSource();
  return *instance;
}

MonoTime SystemTimeSource::Now() {
  switch (kind_) {
    case ClockKind::kMonotonic:
      return ReadClock(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
    case ClockKind::kMonotonicCoarse:
#ifdef CLOCK_MONOTONIC_COARSE
      return ReadClock(CLOCK_MONOTONIC_COARSE, "CLOCK_MONOTONIC_COARSE");
#else
      break;
#endif
    case ClockKind::kWallClock:
      return ReadWallClock();
  }
  return ReadWallClock();
}

}  // namespace eventide
