// Cost of reading "now": the cached clock against the system calls it saves.
//
//   ./bazelw run --config=bench //clock:clock_benchmark --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// (one command line)
//
// On Linux all of clock_gettime and gettimeofday are vDSO calls (no kernel
// entry) as long as the clocksource supports it; the coarse clock only reads
// the tick-updated value, so it skips the TSC read.

#include <benchmark/benchmark.h>
#include <sys/time.h>
#include <time.h>

#include "clock/cached_clock.h"
#include "clock/system_time_source.h"

namespace eventide {
namespace {

void BM_CachedNow_Hit(benchmark::State& state) {
  CachedClock clock(&SystemTimeSource::Default());
  clock.UpdateCache();
  for (auto _ : state) {
    benchmark::DoNotOptimize(clock.Now());
    // Keep the compiler from hoisting the load out of the loop.
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_CachedNow_Hit);

void BM_CachedNow_Miss(benchmark::State& state) {
  CachedClock clock(&SystemTimeSource::Default());
  for (auto _ : state) benchmark::DoNotOptimize(clock.Now());
}
BENCHMARK(BM_CachedNow_Miss);

void BM_SystemTimeSource(benchmark::State& state, ClockKind want) {
  SystemClockOptions options;
  options.force_wall_clock = want == ClockKind::kWallClock;
  options.allow_coarse = want == ClockKind::kMonotonicCoarse;
  SystemTimeSource source(options);
  if (source.kind() != want) {
    state.SkipWithError(
        "not selected on this machine (the coarse clock needs a resolution "
        "of 1 ms or better)");
    return;
  }
  TimeSource* virtual_source = &source;
  for (auto _ : state) benchmark::DoNotOptimize(virtual_source->Now());
}
BENCHMARK_CAPTURE(BM_SystemTimeSource, monotonic, ClockKind::kMonotonic);
BENCHMARK_CAPTURE(BM_SystemTimeSource, wall, ClockKind::kWallClock);
BENCHMARK_CAPTURE(BM_SystemTimeSource, coarse, ClockKind::kMonotonicCoarse);

void BM_RawClockGettime(benchmark::State& state, clockid_t id) {
  struct timespec ts;
  for (auto _ : state) {
    clock_gettime(id, &ts);
    benchmark::DoNotOptimize(ts);
  }
}
BENCHMARK_CAPTURE(BM_RawClockGettime, CLOCK_MONOTONIC, CLOCK_MONOTONIC);
BENCHMARK_CAPTURE(BM_RawClockGettime, CLOCK_MONOTONIC_COARSE,
                  CLOCK_MONOTONIC_COARSE);
BENCHMARK_CAPTURE(BM_RawClockGettime, CLOCK_REALTIME, CLOCK_REALTIME);

void BM_RawGettimeofday(benchmark::State& state) {
  struct timeval tv;
  for (auto _ : state) {
    gettimeofday(&tv, nullptr);
    benchmark::DoNotOptimize(tv);
  }
}
BENCHMARK(BM_RawGettimeofday);

}  // namespace
}  // namespace eventide
