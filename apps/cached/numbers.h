// Number parsing exactly as memcached's text protocol does it.
//
// memcached parses every numeric token with glibc's strtoul/strtol/strtoull
// (base 10, C locale) wrapped in its safe_strto*() checks. The quirks that
// clients can observe are reproduced here, because a differential test
// compares our replies with memcached's byte for byte:
//   - leading whitespace and a '+' or '-' sign are accepted;
//   - after the digits, the token must end or continue with whitespace
//     (so "5\tjunk" parses as 5);
//   - a '-' is refused only when the result looks negative as a signed
//     number ("-0" is 0, "-1" is refused for unsigned parses);
//   - SafeStrtoul() parses a 64-bit unsigned long and keeps its low 32 bits
//     ("4294967296" becomes 0), as memcached's flags parse does;
//   - SafeStrtol() parses a 64-bit long and keeps its low 32 bits both ways
//     ("4294967296" becomes 0, "2147483648" becomes INT32_MIN), as memcached
//     does for exptimes, lengths and delays; only a value beyond a 64-bit
//     long is refused.
// The end of the view plays the part of the terminating NUL.
//
// Pure functions: usable from any thread.

#ifndef EVENTIDE_APPS_CACHED_NUMBERS_H_
#define EVENTIDE_APPS_CACHED_NUMBERS_H_

#include <stddef.h>
#include <stdint.h>

#include "absl/strings/string_view.h"

namespace eventide {
namespace cached {

// memcached's safe_strtoull(): cas uniques, incr/decr deltas and values.
bool SafeStrtoull(absl::string_view s, uint64_t* out);
// memcached's safe_strtoul() into a uint32_t: client flags, verbosity.
bool SafeStrtoul(absl::string_view s, uint32_t* out);
// memcached's safe_strtol() into an int32_t: exptimes, value lengths.
bool SafeStrtol(absl::string_view s, int32_t* out);

// isspace() in the C locale.
constexpr bool IsCSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r';
}

// Writes `v` in decimal to `buf` (at least 20 bytes); returns the length.
size_t FormatUint64(uint64_t v, char* buf);

}  // namespace cached
}  // namespace eventide

#endif  // EVENTIDE_APPS_CACHED_NUMBERS_H_
