// TimeSource: where Eventide reads the current instant from.
//
// The interface is injectable (in the shape of absl/time/clock_interface.h)
// so the loop and its tests can run on a real clock (SystemTimeSource) or a
// simulated one (FakeClock, //clock:fake_clock).
//
// Contract for implementations:
//  - Now() may be called from any thread, concurrently.
//  - If is_monotonic() is true, successive Now() readings never decrease, and
//    the loop skips jump correction. If false (a wall clock), readings may
//    jump in either direction and the loop corrects with DetectJump()
//    (clock/jump_detector.h). The answer never changes for a given source:
//    the loop reads it once, when it is created.
//  - name() is for logs and test output; the view stays valid for the
//    lifetime of the source.

#ifndef EVENTIDE_CLOCK_TIME_SOURCE_H_
#define EVENTIDE_CLOCK_TIME_SOURCE_H_

#include "absl/strings/string_view.h"
#include "clock/mono_time.h"

namespace eventide {

class TimeSource {
 public:
  TimeSource() = default;
  TimeSource(const TimeSource&) = delete;
  TimeSource& operator=(const TimeSource&) = delete;
  virtual ~TimeSource() = default;

  // The current instant. Thread-safe.
  virtual MonoTime Now() = 0;

  // True if readings never go backwards (see the contract above).
  virtual bool is_monotonic() const = 0;

  // A short human-readable name, e.g. "CLOCK_MONOTONIC".
  virtual absl::string_view name() const { return "TimeSource"; }
};

}  // namespace eventide

#endif  // EVENTIDE_CLOCK_TIME_SOURCE_H_
