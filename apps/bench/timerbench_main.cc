// timerbench: ns per timer add / cancel / fire for Eventide and its peers.
// See timerbench_common.h for the workload and each timerbench_<impl>.cc for
// what its timed sections contain.
//
//   timerbench --list
//   timerbench --impl=libev [--count=1000000] [--repetitions=5] [--seed=9]
//
// Prints one JSON object on one line: per-phase medians ("add_ns",
// "cancel_ns", "fire_ns"), minima ("*_min") and every repetition
// ("*_runs"). Exits 1 with a one-line reason on stderr when a check fails,
// 2 on bad flags.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
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

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "timerbench: %s\n", why.c_str());
  std::exit(2);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Stats(absl::string_view key, const std::vector<double>& v) {
  return absl::StrCat("\"", key, "\":", Median(v), ",\"", key,
                      "_min\":", *std::min_element(v.begin(), v.end()), ",\"",
                      key, "_runs\":[", absl::StrJoin(v, ","), "]");
}

int Main(int argc, char** argv) {
  std::string impl_name;
  uint64_t count = 1000000;
  uint64_t repetitions = 5;
  uint64_t seed = 9;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--list") {
      for (const Impl& impl : kImpls) std::printf("%s\n", impl.name);
      return 0;
    }
    const size_t eq = arg.find('=');
    if (eq == absl::string_view::npos) Usage(absl::StrCat("bad flag ", arg));
    const absl::string_view key = arg.substr(0, eq);
    const absl::string_view value = arg.substr(eq + 1);
    bool ok = true;
    if (key == "--impl") {
      impl_name = std::string(value);
    } else if (key == "--count") {
      ok = absl::SimpleAtoi(value, &count) && count > 0 && count < (1u << 31);
    } else if (key == "--repetitions") {
      ok = absl::SimpleAtoi(value, &repetitions) && repetitions > 0;
    } else if (key == "--seed") {
      ok = absl::SimpleAtoi(value, &seed);
    } else {
      Usage(absl::StrCat("unknown flag ", key));
    }
    if (!ok) Usage(absl::StrCat("bad value for ", key, ": ", value));
  }
  const Impl* impl = nullptr;
  for (const Impl& candidate : kImpls) {
    if (impl_name == candidate.name) impl = &candidate;
  }
  if (impl == nullptr) {
    Usage(absl::StrCat(
        "--impl must be one of: ",
        absl::StrJoin(kImpls, ", ", [](std::string* out, const Impl& i) {
          out->append(i.name);
        })));
  }

  const TimerWorkload workload = MakeTimerWorkload(count, seed);
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
                   ",\"seed\":", seed, ",\"timeout_min_ms\":", kTimeoutMinMs,
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
