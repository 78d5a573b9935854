#include "apps/bench/timerbench_common.h"

#include <chrono>
#include <numeric>
#include <random>
#include <utility>

#include "absl/status/status.h"

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

}  // namespace eventide_bench
