// FakeClock: a TimeSource under the test's control (testonly).
//
// Time stands still until the test moves it: Advance() for the normal
// passage of time, JumpForward()/JumpBackward()/Set() for the clock steps a
// wall clock can take. Every Now() is counted, so tests can prove that a
// cached read did not touch the source. An optional auto-advance moves the
// clock by a fixed step after every read (a source whose readings are never
// equal, like a real one).
//
// is_monotonic() is chosen at construction and defaults to FALSE: the
// default fake models a wall clock, so jump tests work out of the box. A fake
// built as monotonic refuses to go backwards: JumpBackward(), or Set() to an
// earlier instant, aborts with a message, because a monotonic source that
// goes backwards would break the contract the loop relies on.
// Advance() and JumpForward() take a non-negative duration; a negative one
// aborts (use JumpBackward() to say what you mean).
//
// Thread safety: every method may be called from any thread (one mutex).
//
// Example:
//   eventide::FakeClock fake;                         // starts at 1000 s
//   eventide::CachedClock clock(&fake);
//   fake.Advance(absl::Milliseconds(5));
//   fake.JumpBackward(absl::Hours(1));                // a wall-clock step
//   EXPECT_EQ(fake.now_calls(), 0);

#ifndef EVENTIDE_CLOCK_FAKE_CLOCK_H_
#define EVENTIDE_CLOCK_FAKE_CLOCK_H_

#include <cstdint>
#include <mutex>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clock/mono_time.h"
#include "clock/time_source.h"

namespace eventide {

class FakeClock final : public TimeSource {
 public:
  // An arbitrary non-zero start, far from both ends of the range, so that
  // both backward and forward jumps have room.
  static constexpr MonoTime kDefaultStart =
      MonoTime::FromNanos(int64_t{1000} * 1000 * 1000 * 1000);

  FakeClock() : FakeClock(kDefaultStart, /*monotonic=*/false) {}
  explicit FakeClock(MonoTime start, bool monotonic = false)
      : now_(start), monotonic_(monotonic) {}

  // TimeSource. Counts the call, returns the current instant, then applies
  // the auto-advance step.
  MonoTime Now() override;
  bool is_monotonic() const override { return monotonic_; }
  absl::string_view name() const override { return "FakeClock"; }

  // Reads the instant without counting a call or auto-advancing.
  MonoTime Peek() const;

  // Moves time forward by `d` (>= 0).
  void Advance(absl::Duration d);
  // A forward step of the clock; same effect as Advance(d), named for tests
  // that model a wall-clock leap.
  void JumpForward(absl::Duration d) { Advance(d); }
  // A backward step by `d` (>= 0). Aborts on a monotonic fake.
  void JumpBackward(absl::Duration d);
  // Sets the instant. Aborts on a monotonic fake if `t` is earlier than now.
  void Set(MonoTime t);

  // Every later Now() advances the clock by `step` (>= 0) after reading.
  void SetAutoAdvance(absl::Duration step);

  // Number of Now() calls so far.
  int64_t now_calls() const;

 private:
  mutable std::mutex mu_;
  MonoTime now_;
  absl::Duration auto_advance_ = absl::ZeroDuration();
  int64_t now_calls_ = 0;
  const bool monotonic_;
};

}  // namespace eventide

#endif  // EVENTIDE_CLOCK_FAKE_CLOCK_H_
