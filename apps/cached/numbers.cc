#include "apps/cached/numbers.h"

#include <stdint.h>

#include <cstring>
#include <limits>

namespace eventide {
namespace cached {
namespace {

// What glibc's strto*() family sees in `s` (base 10).
struct Scan {
  bool converted = false;  // at least one digit (else endptr == str)
  bool negative = false;
  bool overflow = false;  // magnitude above UINT64_MAX
  uint64_t magnitude = 0;
  size_t end = 0;  // index of the first unparsed char (endptr)
};

Scan ScanDecimal(absl::string_view s) {
  Scan r;
  size_t i = 0;
  while (i < s.size() && IsCSpace(s[i])) ++i;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    r.negative = s[i] == '-';
    ++i;
  }
  const size_t digits_start = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    const uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (!r.overflow) {
      if (r.magnitude > (std::numeric_limits<uint64_t>::max() - d) / 10) {
        r.overflow = true;
      } else {
        r.magnitude = r.magnitude * 10 + d;
      }
    }
    ++i;
  }
  r.converted = i > digits_start;
  r.end = r.converted ? i : 0;
  return r;
}

// memcached: xisspace(*endptr) || (*endptr == '\0' && endptr != str).
bool TrailerOk(absl::string_view s, const Scan& r) {
  return r.end == s.size() || IsCSpace(s[r.end]);
}

bool HasMinus(absl::string_view s, size_t end) {
  return std::memchr(s.data(), '-', end) != nullptr;
}

// strtoull()/strtoul() with LP64: the negation wraps modulo 2^64.
bool StrtoullLike(absl::string_view s, Scan* r, uint64_t* v) {
  *r = ScanDecimal(s);
  if (!r->converted || r->overflow) return false;  // str == endptr, ERANGE
  *v = r->negative ? uint64_t{0} - r->magnitude : r->magnitude;
  return true;
}

}  // namespace

bool SafeStrtoull(absl::string_view s, uint64_t* out) {
  *out = 0;
  Scan r;
  uint64_t v;
  if (!StrtoullLike(s, &r, &v)) return false;
  if (!TrailerOk(s, r)) return false;
  if (static_cast<int64_t>(v) < 0 && HasMinus(s, r.end)) return false;
  *out = v;
  return true;
}

bool SafeStrtoul(absl::string_view s, uint32_t* out) {
  *out = 0;
  Scan r;
  uint64_t v;
  if (!StrtoullLike(s, &r, &v)) return false;
  if (!TrailerOk(s, r)) return false;
  if (static_cast<int64_t>(v) < 0 && HasMinus(s, r.end)) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

bool SafeStrtol(absl::string_view s, int32_t* out) {
  *out = 0;
  const Scan r = ScanDecimal(s);
  if (!r.converted || r.overflow) return false;
  constexpr uint64_t kMaxPos = std::numeric_limits<int64_t>::max();
  int64_t l;
  if (r.negative) {
    if (r.magnitude > kMaxPos + 1) return false;  // ERANGE below LONG_MIN
    l = r.magnitude == kMaxPos + 1 ? std::numeric_limits<int64_t>::min()
                                   : -static_cast<int64_t>(r.magnitude);
  } else {
    if (r.magnitude > kMaxPos) return false;  // ERANGE above LONG_MAX
    l = static_cast<int64_t>(r.magnitude);
  }
  if (!TrailerOk(s, r)) return false;
  // memcached stores the long into an int32_t with no range check at all
  // (checked against 1.6.18: "set k 0 4294967296 1" stores a value that
  // never expires, exptime 2147483648 one that is already expired); keep
  // the same low 32 bits (two's complement, as gcc defines it).
  *out = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(l)));
  return true;
}

size_t FormatUint64(uint64_t v, char* buf) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
  return n;
}

}  // namespace cached
}  // namespace eventide
