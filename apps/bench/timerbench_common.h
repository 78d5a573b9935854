// timerbench (issue 9, part 2): the workload, the per-implementation entry
// points and the helpers the implementations share.
//
// Workload, fixed by --count and --seed:
//   phase 1 (add):    `count` timers with timeouts drawn uniformly from
//                     1..60 s (whole milliseconds), added in index order;
//   phase 2 (cancel): every one of them cancelled, in a second random order
//                     (a permutation drawn from the same seeded generator);
//   phase 3 (fire):   `count` already-due timers, armed untimed, then fired
//                     by running the loop until all have run.
// Each implementation runs phases 1 and 2 from inside a callback of its own
// loop, where every library answers "now" from its per-iteration cache (as a
// real program that arms timers from callbacks would see it), and phase 3 by
// running its loop from the outside until it has nothing left to do.
//
// Every implementation allocates its watcher/handle array before timing and
// reports ns per operation of each phase; the file of each implementation
// says exactly what its timed sections contain.
//
// The peers' watchers (ev_timer, struct event, uv_timer_t) are the caller's
// memory. By default that array is zeroed before timing, so every page of it
// is already mapped when add starts; Eventide's watcher state lives in the
// loop's slot table, which its add fills for the first time. With
// --watchers=untouched the peers' arrays are allocated but not written
// before timing, so their add pays the first touch of their watcher memory
// too (Eventide's handle array is zeroed either way, as the peers' arrays
// are by default: it is the caller's side of the API).
#ifndef EVENTIDE_APPS_BENCH_TIMERBENCH_COMMON_H_
#define EVENTIDE_APPS_BENCH_TIMERBENCH_COMMON_H_

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"

namespace eventide_bench {

struct TimerWorkload {
  size_t count = 0;
  // timeout_ms[i]: the timeout of timer i in phase 1, in [1000, 60000].
  std::vector<int64_t> timeout_ms;
  // A permutation of 0..count-1: the order of phase 2.
  std::vector<uint32_t> cancel_order;
  // --watchers=untouched: see the top of this file.
  bool untouched_watchers = false;
};

// The peers' watcher array: `w.count` watchers of the C type T in an
// anonymous mapping of their own, zeroed (every page written, so mapped,
// before timing) unless w.untouched_watchers; each implementation
// initializes a watcher before using it. Not malloc: below its mmap
// threshold (which grows up to 32 MiB) glibc hands a freed block out again,
// so at smaller counts a later repetition's "untouched" array would be
// memory an earlier one had touched.
template <typename T>
class WatcherArray {
 public:
  static_assert(std::is_trivial<T>::value, "a C watcher struct");

  explicit WatcherArray(const TimerWorkload& w)
      : bytes_(std::max<size_t>(1, w.count) * sizeof(T)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    data_ = static_cast<T*>(p);
    if (!w.untouched_watchers) std::memset(p, 0, bytes_);
  }
  ~WatcherArray() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }
  WatcherArray(const WatcherArray&) = delete;
  WatcherArray& operator=(const WatcherArray&) = delete;

  // False when the mapping failed.
  bool ok() const { return data_ != nullptr; }
  T* get() const { return data_; }
  T& operator[](size_t i) const { return data_[i]; }

 private:
  size_t bytes_;
  T* data_ = nullptr;
};

inline constexpr int64_t kTimeoutMinMs = 1000;
inline constexpr int64_t kTimeoutMaxMs = 60000;

TimerWorkload MakeTimerWorkload(size_t count, uint64_t seed);

// One repetition's result. The implementation checks its own counts and
// returns an error (the driver exits non-zero) when a check fails.
struct TimerRepResult {
  double add_ns = 0;     // per timer, phase 1
  double cancel_ns = 0;  // per timer, phase 2
  double fire_ns = 0;    // per timer, phase 3 (loop run incl. dispatch)
  uint64_t fired = 0;    // callbacks run in phase 3 (must equal count)
};

using TimerImplFn = absl::StatusOr<TimerRepResult> (*)(const TimerWorkload&);

absl::StatusOr<TimerRepResult> RunEventideTimers(const TimerWorkload& w);
absl::StatusOr<TimerRepResult> RunLibeventTimers(const TimerWorkload& w);
absl::StatusOr<TimerRepResult> RunLibevTimers(const TimerWorkload& w);
absl::StatusOr<TimerRepResult> RunLibuvTimers(const TimerWorkload& w);

// steady_clock in nanoseconds.
int64_t TimerbenchNowNs();

// Brackets one timed section for callgrind. Outside valgrind these cost a
// handful of instructions. Under
//   valgrind --tool=callgrind --collect-atstart=no
// only the sections are counted, and End() dumps each section's counts as
// its own file (<out-file>.1 = add, .2 = cancel, .3 = fire per repetition).
void SectionBegin();
void SectionEnd(const char* name);

// The error every implementation returns when its checks fail.
absl::Status CheckFailed(const std::string& what);

// One repetition's phase boundaries (TimerbenchNowNs()): add t0..t1,
// cancel t1..t2, fire t3..t4.
struct PhaseTimes {
  int64_t t0, t1, t2, t3, t4;
};

// The end of every implementation's repetition: checks that no cancelled
// timer fired and that every due timer did (CheckFailed naming `impl`
// otherwise), then turns the phase times into nanoseconds per timer.
absl::StatusOr<TimerRepResult> FinishRepetition(const char* impl,
                                                const TimerWorkload& w,
                                                uint64_t fired,
                                                uint64_t wrong_fires,
                                                const PhaseTimes& t);

}  // namespace eventide_bench

#endif  // EVENTIDE_APPS_BENCH_TIMERBENCH_COMMON_H_
