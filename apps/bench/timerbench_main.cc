// timerbench: ns per timer add / cancel / fire for Eventide and its peers.
// See timerbench_common.h for the workload and each timerbench_<impl>.cc for
// what its timed sections contain.
//
//   timerbench --list
//   timerbench --impl=libev [--count=1000000] [--repetitions=5] [--seed=9]
//              [--watchers=zeroed|untouched]
//
// --watchers: whether the peers' watcher arrays are zeroed before timing
// (the default) or left unwritten, so that their add pays the first touch of
// that memory as Eventide's add does for its slot table; see
// timerbench_common.h.
//
// Prints one JSON object on one line: per-phase medians ("add_ns",
// "cancel_ns", "fire_ns"), minima ("*_min") and every repetition
// ("*_runs"). Exits 1 with a one-line reason on stderr when a check fails,
// 2 on bad flags.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "apps/bench/bench_util.h"
#include "apps/bench/timerbench_common.h"

namespace eventide_bench {
namespace {

struct Impl {
  const char* name;
  TimerImplFn run;
};

constexpr Impl kImpls[] = {
    {"eventide-epoll", RunEventideTimers},
    {"libevent", RunLibeventTimers},
    {"libev", RunLibevTimers},
    {"libuv", RunLibuvTimers},
};

constexpr char kProgram[] = "timerbench";

std::string Stats(absl::string_view key, const std::vector<double>& v) {
  return JsonStats(key, v, JsonStatsFields::kNoMax);
}

int Main(int argc, char** argv) {
  std::string impl_name;
  uint64_t count = 1000000;
  uint64_t repetitions = 5;
  uint64_t seed = 9;
  std::string watchers = "zeroed";
  ParseKeyValueFlags(argc, argv, kProgram, ImplNames(kImpls),
                     [&](absl::string_view key, absl::string_view value) {
                       bool ok = true;
                       if (key == "--impl") {
                         impl_name = std::string(value);
                       } else if (key == "--count") {
                         ok = absl::SimpleAtoi(value, &count) && count > 0 &&
                              count < (1u << 31);
                       } else if (key == "--repetitions") {
                         ok = absl::SimpleAtoi(value, &repetitions) &&
                              repetitions > 0;
                       } else if (key == "--seed") {
                         ok = absl::SimpleAtoi(value, &seed);
                       } else if (key == "--watchers") {
                         watchers = std::string(value);
                         ok = watchers == "zeroed" || watchers == "untouched";
                       } else {
                         return FlagResult::kUnknown;
                       }
                       return ok ? FlagResult::kOk : FlagResult::kBadValue;
                     });
  const Impl* impl = &FindImpl(kImpls, impl_name, kProgram);

  TimerWorkload workload = MakeTimerWorkload(count, seed);
  workload.untouched_watchers = watchers == "untouched";
  std::vector<double> add, cancel, fire;
  uint64_t fired = 0;
  for (uint64_t rep = 0; rep < repetitions; ++rep) {
    absl::StatusOr<TimerRepResult> r = impl->run(workload);
    if (!r.ok()) {
      std::fprintf(stderr, "timerbench: %s: %s\n", impl->name,
                   std::string(r.status().message()).c_str());
      return 1;
    }
    add.push_back(r->add_ns);
    cancel.push_back(r->cancel_ns);
    fire.push_back(r->fire_ns);
    fired += r->fired;
  }
  std::printf(
      "%s\n",
      absl::StrCat("{\"bench\":\"timerbench\",\"impl\":\"", impl->name,
                   "\",\"count\":", count, ",\"repetitions\":", repetitions,
                   ",\"seed\":", seed, ",\"watchers\":\"", watchers,
                   "\",\"timeout_min_ms\":", kTimeoutMinMs,
                   ",\"timeout_max_ms\":", kTimeoutMaxMs, ",\"added\":",
                   count * repetitions, ",\"cancelled\":", count * repetitions,
                   ",\"fired\":", fired, ",", Stats("add_ns", add), ",",
                   Stats("cancel_ns", cancel), ",", Stats("fire_ns", fire), "}")
          .c_str());
  return 0;
}

}  // namespace
}  // namespace eventide_bench

int main(int argc, char** argv) { return eventide_bench::Main(argc, argv); }
