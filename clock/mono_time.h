// MonoTime: the one type for monotonic instants in Eventide.
//
// A MonoTime is a count of nanoseconds since an arbitrary, per-source origin
// (boot for CLOCK_MONOTONIC, the Unix epoch for the wall-clock fallback, any
// value for a FakeClock). Only differences and comparisons between instants
// of the same source mean anything; a MonoTime is not a calendar time.
//
// Durations are absl::Duration. Arithmetic saturates instead of overflowing:
//
//   MonoTime deadline = now + absl::InfiniteDuration();  // == MonoTime::Max()
//   MonoTime early = now - absl::InfiniteDuration();     // == MonoTime::Min()
//
// so "never" timers can be written without special cases and UBSan stays
// quiet. Max() and Min() are ordinary (finite) values at the ends of the
// range, not sticky infinities: Max() - absl::Seconds(1) is one second
// before Max(). MonoTime - MonoTime is exact for every pair of values (an
// absl::Duration spans far more than the int64 nanosecond range).
// Sub-nanosecond parts of a Duration are truncated toward zero.
//
// MonoTime is a trivially copyable 8-byte value; all operations are
// thread-compatible (no shared state).
//
// Example:
//   eventide::MonoTime start = clock.Now();
//   eventide::MonoTime deadline = start + absl::Milliseconds(250);
//   absl::Duration left = deadline - clock.Now();

#ifndef EVENTIDE_CLOCK_MONO_TIME_H_
#define EVENTIDE_CLOCK_MONO_TIME_H_

#include <cstdint>
#include <iosfwd>
#include <limits>
#include <string>

#include "absl/time/time.h"

namespace eventide {

class MonoTime {
 public:
  // The origin of the source (nanos() == 0).
  constexpr MonoTime() = default;

  static constexpr MonoTime FromNanos(int64_t nanos) { return MonoTime(nanos); }
  // The latest representable instant; "never" for a deadline.
  static constexpr MonoTime Max() {
    return MonoTime(std::numeric_limits<int64_t>::max());
  }
  // The earliest representable instant.
  static constexpr MonoTime Min() {
    return MonoTime(std::numeric_limits<int64_t>::min());
  }

  constexpr int64_t nanos() const { return nanos_; }

  // Saturating: the result is clamped to [Min(), Max()].
  MonoTime& operator+=(absl::Duration d) {
    nanos_ = AddSaturating(nanos_, d);
    return *this;
  }
  MonoTime& operator-=(absl::Duration d) {
    nanos_ = AddSaturating(nanos_, -d);
    return *this;
  }

  friend MonoTime operator+(MonoTime t, absl::Duration d) { return t += d; }
  friend MonoTime operator+(absl::Duration d, MonoTime t) { return t += d; }
  friend MonoTime operator-(MonoTime t, absl::Duration d) { return t -= d; }
  // Exact for every pair of values.
  friend absl::Duration operator-(MonoTime a, MonoTime b) {
    return absl::Nanoseconds(a.nanos_) - absl::Nanoseconds(b.nanos_);
  }

  friend constexpr bool operator==(MonoTime a, MonoTime b) {
    return a.nanos_ == b.nanos_;
  }
  friend constexpr bool operator!=(MonoTime a, MonoTime b) {
    return a.nanos_ != b.nanos_;
  }
  friend constexpr bool operator<(MonoTime a, MonoTime b) {
    return a.nanos_ < b.nanos_;
  }
  friend constexpr bool operator<=(MonoTime a, MonoTime b) {
    return a.nanos_ <= b.nanos_;
  }
  friend constexpr bool operator>(MonoTime a, MonoTime b) {
    return a.nanos_ > b.nanos_;
  }
  friend constexpr bool operator>=(MonoTime a, MonoTime b) {
    return a.nanos_ >= b.nanos_;
  }

  // "MonoTime(12.000000345s)", "MonoTime(max)", "MonoTime(min)".
  std::string ToString() const;

  // Used by absl::StrCat / absl::StrFormat("%v") on Abseil versions that
  // support it (the system Abseil 20220623 predates it; operator<< below
  // serves GoogleTest and streams).
  template <typename Sink>
  friend void AbslStringify(Sink& sink, MonoTime t) {
    sink.Append(t.ToString());
  }

  template <typename H>
  friend H AbslHashValue(H h, MonoTime t) {
    return H::combine(std::move(h), t.nanos_);
  }

 private:
  explicit constexpr MonoTime(int64_t nanos) : nanos_(nanos) {}

  // t + trunc(d), clamped. The fast path covers every duration shorter
  // than ~292 years; absl::ToInt64Nanoseconds() saturates (to +-INT64_MAX)
  // beyond that, so those take the exact slow path in Duration arithmetic.
  static int64_t AddSaturating(int64_t t, absl::Duration d) {
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
    // Inline fast path for a non-negative duration under ~285 years (every
    // timer delay): absl::ToInt64Nanoseconds is out of line (~20
    // instructions and a call on each AddTimer). A Duration is whole seconds
    // plus quarter-nanosecond ticks (absl's documented representation, read
    // through its accessors); truncating the ticks is truncation toward zero
    // here. mono_time_test checks this against ToInt64Nanoseconds.
    const int64_t secs = absl::time_internal::GetRepHi(d);
    const uint32_t ticks = absl::time_internal::GetRepLo(d);
    if (secs >= 0 && secs < kFastSeconds && ticks != ~uint32_t{0}) {
      const int64_t dn =
          secs * 1000000000 + ticks / absl::time_internal::kTicksPerNanosecond;
      int64_t r;
      if (!__builtin_add_overflow(t, dn, &r)) return r;
      return kMax;
    }
    const int64_t dn = absl::ToInt64Nanoseconds(d);
    if (dn > -kMax && dn < kMax) {
      int64_t r;
      if (!__builtin_add_overflow(t, dn, &r)) return r;
      return dn > 0 ? kMax : kMin;
    }
    return AddSaturatingSlow(t, d);
  }
  static int64_t AddSaturatingSlow(int64_t t, absl::Duration d);
  // Seconds below which secs * 1e9 + 999999999 fits in int64.
  static constexpr int64_t kFastSeconds = 9000000000;

  int64_t nanos_ = 0;
};

std::ostream& operator<<(std::ostream& os, MonoTime t);

}  // namespace eventide

#endif  // EVENTIDE_CLOCK_MONO_TIME_H_
