#include "clock/jump_detector.h"

#include <algorithm>
#include <ostream>

namespace eventide {

ClockJump DetectJump(MonoTime before_wait, absl::Duration requested_timeout,
                     MonoTime after_wait, absl::Duration forward_tolerance) {
  ClockJump jump;
  jump.measured = after_wait - before_wait;  // exact, never overflows

  if (jump.measured < absl::ZeroDuration()) {
    jump.kind = ClockJump::Kind::kBackward;
    jump.offset = jump.measured;
    return jump;
  }

  // Without a timeout the wait may legitimately last forever.
  if (requested_timeout == absl::InfiniteDuration()) return jump;

  const absl::Duration timeout =
      std::max(requested_timeout, absl::ZeroDuration());
  const absl::Duration tolerance =
      std::max(forward_tolerance, absl::ZeroDuration());
  // Duration addition saturates at InfiniteDuration(), so a huge tolerance
  // simply disables forward detection.
  if (jump.measured > timeout + tolerance) {
    jump.kind = ClockJump::Kind::kForward;
    jump.offset = jump.measured - timeout;
  }
  return jump;
}

absl::string_view ClockJumpKindName(ClockJump::Kind kind) {
  switch (kind) {
    case ClockJump::Kind::kNone:
      return "none";
    case ClockJump::Kind::kBackward:
      return "backward";
    case ClockJump::Kind::kForward:
      return "forward";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, ClockJump::Kind kind) {
  return os << ClockJumpKindName(kind);
}

std::ostream& operator<<(std::ostream& os, const ClockJump& jump) {
  return os << "ClockJump{" << jump.kind << ", offset=" << jump.offset
            << ", measured=" << jump.measured << "}";
}

}  // namespace eventide
