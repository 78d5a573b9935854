// Shared pieces of the bench drivers (timerbench, xthreadbench, pipebench):
// "--key=value" flag parsing with the usual exits, picking the --impl entry,
// median and the JSON statistics fields, and the check that libevent's API
// really is libevent's.
//
// Exit codes as every driver documents them: 0 for --list, 2 for bad flags.
// Call from main's thread; nothing here is thread-safe or needs to be.
//
// Usage:
//   ParseKeyValueFlags(argc, argv, "timerbench", ImplNames(kImpls),
//                      [&](absl::string_view key, absl::string_view value) {
//                        if (key == "--count") {
//                          return absl::SimpleAtoi(value, &count)
//                                     ? FlagResult::kOk
//                                     : FlagResult::kBadValue;
//                        }
//                        return FlagResult::kUnknown;
//                      });
//   const Impl& impl = FindImpl(kImpls, impl_name, "timerbench");
//   absl::StrCat("{", JsonStats("add_ns", add, JsonStatsFields::kNoMax), "}");
#ifndef EVENTIDE_APPS_BENCH_BENCH_UTIL_H_
#define EVENTIDE_APPS_BENCH_BENCH_UTIL_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace eventide_bench {

// Prints "<program>: <why>" on stderr and exits 2.
[[noreturn]] void UsageError(absl::string_view program, absl::string_view why);

// What a flag handler makes of one "--key=value".
enum class FlagResult { kOk, kBadValue, kUnknown };

// Parses argv[1..], in order, as "--key=value" flags and hands each to
// `on_flag` (key with its "--"). "--list" prints `impl_names` one per line on
// stdout and exits 0. An argument without '=' ("bad flag ARG"), a key
// `on_flag` answers kUnknown for ("unknown flag KEY") or a value it answers
// kBadValue for ("bad value for KEY: VALUE") ends the program through
// UsageError().
void ParseKeyValueFlags(int argc, char** argv, absl::string_view program,
                        const std::vector<std::string>& impl_names,
                        absl::FunctionRef<FlagResult(absl::string_view key,
                                                     absl::string_view value)>
                            on_flag);

// The names of a table of implementations (entries with a `name` member).
template <typename Impl, size_t N>
std::vector<std::string> ImplNames(const Impl (&impls)[N]) {
  std::vector<std::string> names;
  for (const Impl& impl : impls) names.emplace_back(impl.name);
  return names;
}

// The entry of `impls` named `name`; otherwise UsageError() with
// "--impl must be one of: a, b, ...".
template <typename Impl, size_t N>
const Impl& FindImpl(const Impl (&impls)[N], absl::string_view name,
                     absl::string_view program) {
  for (const Impl& candidate : impls) {
    if (name == candidate.name) return candidate;
  }
  UsageError(program, absl::StrCat("--impl must be one of: ",
                                   absl::StrJoin(ImplNames(impls), ", ")));
}

// The median of `v` (the mean of the middle two for an even count). `v`
// must not be empty.
double Median(std::vector<double> v);

// Whether JsonStats() adds a "<key>_max" field.
enum class JsonStatsFields { kNoMax, kWithMax };

// JSON object members (no braces) for the repetitions `v` of one statistic:
// "<key>":median, "<key>_min":min, ["<key>_max":max,] "<key>_runs":[...].
// `v` must not be empty.
std::string JsonStats(absl::string_view key, const std::vector<double>& v,
                      JsonStatsFields fields);

// True if `symbol` (the address of a function of a shared library) was bound
// to a library whose file name contains `library`. Debian's libev.so also
// exports libevent's API (its emulation layer): if libev comes first in the
// link, event_add & co. silently bind to libev, so the libevent
// implementations check e.g.
// SymbolFromLibrary(reinterpret_cast<void*>(&event_base_new), "libevent").
bool SymbolFromLibrary(void* symbol, absl::string_view library);

}  // namespace eventide_bench

#endif  // EVENTIDE_APPS_BENCH_BENCH_UTIL_H_
