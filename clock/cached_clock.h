// CachedClock: "now" read once per loop iteration (libevent's tv_cache).
//
// While the cache is set, Now() returns the cached instant and costs no
// system call, so every callback of one loop iteration sees the same instant
// for free, and timers computed from it (now + timeout) line up. The loop
// sets the cache right after its wait returns and clears it before the next
// wait:
//
//   eventide::CachedClock clock(&eventide::SystemTimeSource::Default());
//   for (;;) {
//     eventide::MonoTime before = clock.Now();
//     clock.ClearCache();
//     backend.Wait(timeout);
//     eventide::MonoTime after = clock.UpdateCache();  // one system call
//     ... run callbacks: clock.Now() == after, no system calls ...
//   }
//
// A caller that needs the precise current instant even inside an iteration
// uses NowUncached(); it never changes the cache.
//
// Ownership: the TimeSource is NOT owned and must outlive the CachedClock.
// Thread safety: none. A CachedClock belongs to one thread (the loop's);
// only the underlying TimeSource is thread-safe.

#ifndef EVENTIDE_CLOCK_CACHED_CLOCK_H_
#define EVENTIDE_CLOCK_CACHED_CLOCK_H_

#include "clock/mono_time.h"
#include "clock/time_source.h"

namespace eventide {

class CachedClock {
 public:
  // `source` must be non-null and outlive this object.
  explicit CachedClock(TimeSource* source) : source_(source) {}

  CachedClock(const CachedClock&) = delete;
  CachedClock& operator=(const CachedClock&) = delete;

  // The cached instant if the cache is set, else a fresh reading (which does
  // not set the cache).
  MonoTime Now() {
    if (has_cache_) return cache_;
    return source_->Now();
  }

  // Reads the source, stores the reading in the cache and returns it.
  MonoTime UpdateCache() {
    cache_ = source_->Now();
    has_cache_ = true;
    return cache_;
  }

  // Drops the cache: the next Now() reads the source.
  void ClearCache() { has_cache_ = false; }

  // Always reads the source; leaves the cache untouched.
  MonoTime NowUncached() { return source_->Now(); }

  bool has_cache() const { return has_cache_; }
  TimeSource* source() const { return source_; }

 private:
  TimeSource* const source_;
  MonoTime cache_;
  bool has_cache_ = false;
};

}  // namespace eventide

#endif  // EVENTIDE_CLOCK_CACHED_CLOCK_H_
