#include "apps/cached/unix_clock.h"

#include <memory>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clock/system_time_source.h"

namespace eventide {
namespace cached {

MonotonicUnixClock::MonotonicUnixClock(TimeSource* source,
                                       int64_t start_unix_seconds)
    : source_(source),
      start_mono_(source->Now()),
      start_unix_(start_unix_seconds) {}

std::unique_ptr<MonotonicUnixClock> MonotonicUnixClock::FromSystem() {
  return std::make_unique<MonotonicUnixClock>(&SystemTimeSource::Default(),
                                              absl::ToUnixSeconds(absl::Now()));
}

int64_t MonotonicUnixClock::NowUnixSeconds() {
  // Integer nanoseconds (absl::Duration arithmetic costs more than the clock
  // read on the request path). Floor division: a source that stepped back
  // (only a non-monotonic one can) gives an earlier second, not a truncation
  // toward the start. Sources stay far from the int64 ends in practice.
  constexpr int64_t kNanosPerSecond = 1000 * 1000 * 1000;
  const int64_t elapsed = source_->Now().nanos() - start_mono_.nanos();
  int64_t seconds = elapsed / kNanosPerSecond;
  if (elapsed % kNanosPerSecond < 0) --seconds;
  return start_unix_ + seconds;
}

CachedUnixClock::CachedUnixClock(UnixClock* source)
    : source_(source), now_(source->NowUnixSeconds()) {}

void CachedUnixClock::Refresh() {
  now_.store(source_->NowUnixSeconds(), std::memory_order_relaxed);
}

}  // namespace cached
}  // namespace eventide
