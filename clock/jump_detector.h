// Clock-jump detection for non-monotonic (wall-clock) time sources.
//
// A wall clock can be stepped by an administrator or NTP while the loop
// waits. The loop remembers the instant it started waiting and the timeout it
// asked for, reads the clock again when the wait returns, and asks
// DetectJump() whether the difference is plausible. If not, it adds the
// returned `offset` to every timer deadline (TimerHeap::ShiftAll). Adding the
// same offset to every deadline keeps their order, so no re-sort is needed.
//
// Policy (guarantees):
//  - Monotonic sources never jump. The loop does not call DetectJump() when
//    TimeSource::is_monotonic() is true; a monotonic clock that advanced more
//    than the timeout (e.g. the process was stopped) is real elapsed time and
//    timers that are due must fire.
//  - Backward jump: `after_wait < before_wait`. The wait is assumed to have
//    taken no time, so kind == kBackward and offset == after_wait -
//    before_wait (negative). Shifting every deadline by it preserves each
//    timer's remaining time as it was before the wait: nothing fires early,
//    and nothing is delayed by the size of the jump (libevent's
//    timeout_correct does the same). Timers can be late by at most the real
//    duration of that one wait.
//  - Forward jump: the wait had a finite timeout and `after_wait -
//    before_wait` exceeds `requested_timeout + forward_tolerance`. A wait
//    cannot outlast its timeout by more than scheduling noise, so the wait is
//    assumed to have lasted exactly `requested_timeout`: kind == kForward and
//    offset == (after_wait - before_wait) - requested_timeout (positive).
//    After the shift, the timers that were due at the end of the wait are due
//    now and the others keep their remaining time, instead of all firing at
//    once after a leap of the wall clock.
//  - Otherwise kind == kNone and offset is zero. In particular an infinite
//    requested_timeout (wait for I/O only) cannot reveal a forward jump, and
//    a forward step smaller than `requested_timeout + forward_tolerance` is
//    indistinguishable from a real wait: such timers fire early by at most
//    that much.
//  - A negative requested_timeout or forward_tolerance counts as zero.
//
// The function is pure and thread-compatible.
//
// Example (inside the loop, for a non-monotonic source):
//   eventide::MonoTime before = clock.Now();
//   clock.ClearCache();
//   backend.Wait(timeout);
//   eventide::MonoTime after = clock.UpdateCache();
//   eventide::ClockJump jump = eventide::DetectJump(before, timeout, after);
//   if (jump.kind != eventide::ClockJump::Kind::kNone) {
//     timers.ShiftAll(jump.offset);
//   }

#ifndef EVENTIDE_CLOCK_JUMP_DETECTOR_H_
#define EVENTIDE_CLOCK_JUMP_DETECTOR_H_

#include <iosfwd>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clock/mono_time.h"

namespace eventide {

// Scheduling noise tolerated before a long wait is called a forward jump.
// One second, like libev's MIN_TIMEJUMP: a loaded machine can overshoot a
// timeout by tens of milliseconds, never by a second.
inline constexpr absl::Duration kDefaultForwardJumpTolerance = absl::Seconds(1);

struct ClockJump {
  enum class Kind { kNone, kBackward, kForward };

  Kind kind = Kind::kNone;
  // Add to every timer deadline. Negative for kBackward, positive for
  // kForward, zero for kNone.
  absl::Duration offset = absl::ZeroDuration();
  // after_wait - before_wait as read, for logs.
  absl::Duration measured = absl::ZeroDuration();
};

ClockJump DetectJump(
    MonoTime before_wait, absl::Duration requested_timeout, MonoTime after_wait,
    absl::Duration forward_tolerance = kDefaultForwardJumpTolerance);

// "none", "backward", "forward".
absl::string_view ClockJumpKindName(ClockJump::Kind kind);
std::ostream& operator<<(std::ostream& os, ClockJump::Kind kind);
std::ostream& operator<<(std::ostream& os, const ClockJump& jump);

}  // namespace eventide

#endif  // EVENTIDE_CLOCK_JUMP_DETECTOR_H_
