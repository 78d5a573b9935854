#include "clock/mono_time.h"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <ostream>
#include <string>

#include "absl/strings/str_format.h"

namespace eventide {

int64_t MonoTime::AddSaturatingSlow(int64_t t, absl::Duration d) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  // Duration arithmetic is exact over a far larger range than int64
  // nanoseconds (and saturates to +-InfiniteDuration beyond it).
  const absl::Duration sum =
      absl::Nanoseconds(t) + absl::Trunc(d, absl::Nanoseconds(1));
  if (sum >= absl::Nanoseconds(kMax)) return kMax;
  if (sum <= absl::Nanoseconds(kMin)) return kMin;
  return absl::ToInt64Nanoseconds(sum);
}

std::string MonoTime::ToString() const {
  if (*this == Max()) return "MonoTime(max)";
  if (*this == Min()) return "MonoTime(min)";
  // Seconds and nanoseconds printed separately: a double would lose the
  // nanoseconds of a wall-clock reading (~1.7e18 ns since the epoch).
  const int64_t sec = nanos_ / 1000000000;
  const int64_t sub = nanos_ % 1000000000;
  const char* sign = nanos_ < 0 ? "-" : "";
  return absl::StrFormat("MonoTime(%s%d.%09ds)", sign, std::llabs(sec),
                         std::llabs(sub));
}

std::ostream& operator<<(std::ostream& os, MonoTime t) {
  return os << t.ToString();
}

}  // namespace eventide
