// UnixClock: "what unix second is it now", as the cache store needs it.
//
// memcached exptimes and flush_all delays are in unix seconds (relative up to
// 30 days, absolute above), so the store needs a wall-clock view of time.
// Reading the wall clock directly would let a clock step (NTP, an admin)
// expire or resurrect every item at once; memcached avoids that by reading
// the wall clock once at start-up and adding monotonic elapsed time
// (process_started + current_time). MonotonicUnixClock does the same on top
// of an injectable eventide::TimeSource, so tests drive it with a FakeClock.
//
// Thread safety: NowUnixSeconds() may be called from any thread, concurrently
// (for MonotonicUnixClock as long as the TimeSource allows that, which every
// Eventide source does). CachedUnixClock::Refresh() may be called from any
// thread too.
//
// Example:
//   eventide::FakeClock fake;
//   eventide::cached::MonotonicUnixClock clock(&fake, 1700000000);
//   fake.Advance(absl::Seconds(5));
//   clock.NowUnixSeconds();  // 1700000005
//
//   // In the server: the current second, refreshed by a 1 s timer.
//   auto wall = eventide::cached::MonotonicUnixClock::FromSystem();
//   eventide::cached::CachedUnixClock cached(wall.get());
//   // timer callback: cached.Refresh();

#ifndef EVENTIDE_APPS_CACHED_UNIX_CLOCK_H_
#define EVENTIDE_APPS_CACHED_UNIX_CLOCK_H_

#include <stdint.h>

#include <atomic>
#include <memory>

#include "clock/mono_time.h"
#include "clock/time_source.h"

namespace eventide {
namespace cached {

class UnixClock {
 public:
  UnixClock() = default;
  UnixClock(const UnixClock&) = delete;
  UnixClock& operator=(const UnixClock&) = delete;
  virtual ~UnixClock() = default;

  // The current unix time in whole seconds. Thread-safe.
  virtual int64_t NowUnixSeconds() = 0;
};

// start_unix_seconds + whole seconds elapsed on `source` since construction.
// Never goes backwards if `source` is monotonic.
class MonotonicUnixClock final : public UnixClock {
 public:
  // `source` is not owned and must outlive the clock.
  MonotonicUnixClock(TimeSource* source, int64_t start_unix_seconds);

  // The system's monotonic clock anchored at the current wall-clock time.
  static std::unique_ptr<MonotonicUnixClock> FromSystem();

  int64_t NowUnixSeconds() override;

 private:
  TimeSource* const source_;
  const MonoTime start_mono_;
  const int64_t start_unix_;
};

// A UnixClock that answers a cached second, updated by Refresh() (memcached
// updates its current_time once a second from a timer): a read is one
// relaxed atomic load instead of a clock_gettime() per request.
class CachedUnixClock final : public UnixClock {
 public:
  // `source` is not owned and must outlive the clock. Reads it once now.
  explicit CachedUnixClock(UnixClock* source);

  int64_t NowUnixSeconds() override {
    return now_.load(std::memory_order_relaxed);
  }

  // Reads `source` again and publishes its answer.
  void Refresh();

 private:
  UnixClock* const source_;
  std::atomic<int64_t> now_;
};

}  // namespace cached
}  // namespace eventide

#endif  // EVENTIDE_APPS_CACHED_UNIX_CLOCK_H_
