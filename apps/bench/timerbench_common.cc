#include "apps/bench/timerbench_common.h"

#include <chrono>
#include <numeric>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define TIMERBENCH_HAVE_CALLGRIND 1
#endif
#endif

namespace eventide_bench {

TimerWorkload MakeTimerWorkload(size_t count, uint64_t seed) {
  // std::mt19937_64 is fully specified by the standard, so the same seed gives
  // the same workload on every machine and every run (callgrind needs that).
  // The draws are done by hand rather than with std::uniform_int_distribution
  // and std::shuffle, whose algorithms the standard leaves open.
  std::mt19937_64 rng(seed);
  TimerWorkload w;
  w.count = count;
  w.timeout_ms.resize(count);
  const uint64_t span = kTimeoutMaxMs - kTimeoutMinMs + 1;
  for (size_t i = 0; i < count; ++i) {
    w.timeout_ms[i] = kTimeoutMinMs + static_cast<int64_t>(rng() % span);
  }
  w.cancel_order.resize(count);
  std::iota(w.cancel_order.begin(), w.cancel_order.end(), 0u);
  for (size_t i = count; i > 1; --i) {  // Fisher-Yates
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(w.cancel_order[i - 1], w.cancel_order[j]);
  }
  return w;
}

int64_t TimerbenchNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void SectionBegin() {
#ifdef TIMERBENCH_HAVE_CALLGRIND
  CALLGRIND_TOGGLE_COLLECT;
#endif
}

void SectionEnd(const char* name) {
#ifdef TIMERBENCH_HAVE_CALLGRIND
  CALLGRIND_TOGGLE_COLLECT;
  CALLGRIND_DUMP_STATS_AT(name);
#else
  (void)name;
#endif
}

absl::Status CheckFailed(const std::string& what) {
  return absl::InternalError(what);
}

absl::StatusOr<TimerRepResult> FinishRepetition(const char* impl,
                                                const TimerWorkload& w,
                                                uint64_t fired,
                                                uint64_t wrong_fires,
                                                const PhaseTimes& t) {
  if (wrong_fires != 0) {
    return CheckFailed(
        absl::StrCat(impl, ": ", wrong_fires, " cancelled timers fired"));
  }
  if (fired != w.count) {
    return CheckFailed(
        absl::StrCat(impl, ": fired ", fired, " of ", w.count, " due timers"));
  }
  const double n = static_cast<double>(w.count);
  TimerRepResult r;
  r.add_ns = (t.t1 - t.t0) / n;
  r.cancel_ns = (t.t2 - t.t1) / n;
  r.fire_ns = (t.t4 - t.t3) / n;
  r.fired = fired;
  return r;
}

}  // namespace eventide_bench
