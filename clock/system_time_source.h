// SystemTimeSource: the operating system's clock behind the TimeSource
// interface.
//
// Which clock is read is decided once, when the source is constructed, from
// a process-wide probe (ProbeSystemClocks(), run once per process):
//
//   1. CLOCK_MONOTONIC, if clock_gettime(CLOCK_MONOTONIC) works (it does on
//      every Linux since 2.6; the probe keeps the code honest on systems
//      where it does not). is_monotonic() is true.
//   2. CLOCK_MONOTONIC_COARSE, only if the caller allows it
//      (SystemClockOptions::allow_coarse) AND clock_getres() reports a
//      resolution of kMaxCoarseResolution (1 ms) or better. The coarse clock
//      is a few times cheaper to read, but its resolution is the kernel tick:
//      with HZ=250 it is 4 ms, and a 1 ms timer would then fire every 4 ms
//      (libevent picks the coarse clock without checking and its users see
//      exactly that). When the check fails the source falls back to 1.
//   3. The wall clock (gettimeofday), if CLOCK_MONOTONIC does not work or the
//      caller forces it (SystemClockOptions::force_wall_clock, for tests of
//      the jump correction and for users who want wall-clock timers).
//      is_monotonic() is false: the loop must correct jumps.
//
// Thread safety: Now() may be called from any thread. The process-wide
// Default() instance lives until the process exits.
//
// Example:
//   eventide::SystemTimeSource& src = eventide::SystemTimeSource::Default();
//   eventide::MonoTime t = src.Now();
//
//   eventide::SystemClockOptions opts;
//   opts.force_wall_clock = true;
//   eventide::SystemTimeSource wall(opts);   // wall.is_monotonic() == false

#ifndef EVENTIDE_CLOCK_SYSTEM_TIME_SOURCE_H_
#define EVENTIDE_CLOCK_SYSTEM_TIME_SOURCE_H_

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "clock/mono_time.h"
#include "clock/time_source.h"

namespace eventide {

// The coarsest resolution at which CLOCK_MONOTONIC_COARSE is accepted.
inline constexpr absl::Duration kMaxCoarseResolution = absl::Milliseconds(1);

enum class ClockKind {
  kMonotonic,        // clock_gettime(CLOCK_MONOTONIC)
  kMonotonicCoarse,  // clock_gettime(CLOCK_MONOTONIC_COARSE)
  kWallClock,        // gettimeofday()
};

// "CLOCK_MONOTONIC", "CLOCK_MONOTONIC_COARSE", "gettimeofday".
absl::string_view ClockKindName(ClockKind kind);

// What the process's clocks can do. Filled once per process by
// ProbeSystemClocks(); tests build their own to exercise SelectClockKind().
struct ClockProbe {
  // clock_gettime(CLOCK_MONOTONIC) succeeded.
  bool monotonic_works = false;
  // clock_getres(CLOCK_MONOTONIC_COARSE) when that clock can be both queried
  // and read; nullopt when it cannot.
  absl::optional<absl::Duration> coarse_resolution;
};

// Probes the clocks on the first call and returns the cached result on every
// later call (thread-safe; the probe runs exactly once per process).
const ClockProbe& ProbeSystemClocks();

struct SystemClockOptions {
  // Read the wall clock even if a monotonic clock works.
  bool force_wall_clock = false;
  // Permit CLOCK_MONOTONIC_COARSE when its resolution is <= 1 ms.
  bool allow_coarse = false;
};

// The policy above as a pure function of the options and the probe.
ClockKind SelectClockKind(const SystemClockOptions& options,
                          const ClockProbe& probe);

class SystemTimeSource final : public TimeSource {
 public:
  // Uses ProbeSystemClocks() and SelectClockKind().
  SystemTimeSource() : SystemTimeSource(SystemClockOptions()) {}
  explicit SystemTimeSource(const SystemClockOptions& options);

  // The process-wide default: CLOCK_MONOTONIC when it works, else the wall
  // clock; never the coarse clock. Created on first use, never destroyed (so
  // it stays usable from other threads and static destructors at exit).
  static SystemTimeSource& Default();

  MonoTime Now() override;
  bool is_monotonic() const override { return kind_ != ClockKind::kWallClock; }
  absl::string_view name() const override { return ClockKindName(kind_); }

  ClockKind kind() const { return kind_; }

 private:
  ClockKind kind_;
};

}  // namespace eventide

#endif  // EVENTIDE_CLOCK_SYSTEM_TIME_SOURCE_H_
