// Checks for fuzz targets: a failed check prints what failed and aborts, which
// libFuzzer reports as a crash (saving the input as crash-<sha1>) and the
// corpus replay main reports as a failed test. Unlike assert() they are never
// compiled out.
//
//   EVENTIDE_FUZZ_CHECK(heap.size() == model.size());
//   EVENTIDE_FUZZ_CHECK_EQ(buffer.ToString(), model);   // shows both sides
//
// Header-only, no dependencies beyond the standard library.

#ifndef EVENTIDE_TOOLS_FUZZ_FUZZ_CHECK_H_
#define EVENTIDE_TOOLS_FUZZ_FUZZ_CHECK_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>

namespace eventide {
namespace fuzz {

[[noreturn]] inline void Fail(const char* file, int line, const char* what,
                              const std::string& detail) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n%s%s", file, line, what,
               detail.c_str(), detail.empty() ? "" : "\n");
  std::fflush(stderr);
  std::abort();
}

// Up to 64 bytes of `s` from `from`, with non-printable bytes escaped.
inline std::string Excerpt(std::string_view s, size_t from) {
  std::string out = "\"";
  const size_t end = from + 64 < s.size() ? from + 64 : s.size();
  for (size_t i = from; i < end; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out.push_back(static_cast<char>(c));
    } else {
      char esc[8];
      std::snprintf(esc, sizeof(esc), "\\x%02x", c);
      out += esc;
    }
  }
  out += end < s.size() ? "\"..." : "\"";
  return out;
}

// Where two byte strings first differ, with both sides from there on.
inline std::string DescribeMismatch(std::string_view a, std::string_view b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  const size_t from = i >= 16 ? i - 16 : 0;
  return "sizes " + std::to_string(a.size()) + " vs " +
         std::to_string(b.size()) + ", first difference at byte " +
         std::to_string(i) + " (showing from " + std::to_string(from) +
         ")\n  left:  " + Excerpt(a, from) + "\n  right: " + Excerpt(b, from);
}

template <typename A, typename B>
std::string DescribeValues(const A& a, const B& b) {
  if constexpr (std::is_convertible_v<const A&, std::string_view> &&
                std::is_convertible_v<const B&, std::string_view>) {
    return DescribeMismatch(a, b);
  } else if constexpr (std::is_integral_v<A> && std::is_integral_v<B>) {
    return "  left:  " + std::to_string(a) + "\n  right: " + std::to_string(b);
  } else {
    return "";
  }
}

}  // namespace fuzz
}  // namespace eventide

#define EVENTIDE_FUZZ_CHECK(cond)                                       \
  do {                                                                  \
    if (!(cond)) ::eventide::fuzz::Fail(__FILE__, __LINE__, #cond, ""); \
  } while (0)

#define EVENTIDE_FUZZ_CHECK_EQ(a, b)                                           \
  do {                                                                         \
    const auto& eventide_fuzz_a = (a);                                         \
    const auto& eventide_fuzz_b = (b);                                         \
    if (!(eventide_fuzz_a == eventide_fuzz_b)) {                               \
      ::eventide::fuzz::Fail(                                                  \
          __FILE__, __LINE__, #a " == " #b,                                    \
          ::eventide::fuzz::DescribeValues(eventide_fuzz_a, eventide_fuzz_b)); \
    }                                                                          \
  } while (0)

#endif  // EVENTIDE_TOOLS_FUZZ_FUZZ_CHECK_H_
