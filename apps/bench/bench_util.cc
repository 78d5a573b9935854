#include "apps/bench/bench_util.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace eventide_bench {

void UsageError(absl::string_view program, absl::string_view why) {
  std::fprintf(stderr, "%s: %s\n", std::string(program).c_str(),
               std::string(why).c_str());
  std::exit(2);
}

void ParseKeyValueFlags(int argc, char** argv, absl::string_view program,
                        const std::vector<std::string>& impl_names,
                        absl::FunctionRef<FlagResult(absl::string_view key,
                                                     absl::string_view value)>
                            on_flag) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--list") {
      for (const std::string& name : impl_names) {
        std::printf("%s\n", name.c_str());
      }
      std::exit(0);
    }
    const size_t eq = arg.find('=');
    if (eq == absl::string_view::npos) {
      UsageError(program, absl::StrCat("bad flag ", arg));
    }
    const absl::string_view key = arg.substr(0, eq);
    const absl::string_view value = arg.substr(eq + 1);
    switch (on_flag(key, value)) {
      case FlagResult::kOk:
        break;
      case FlagResult::kUnknown:
        UsageError(program, absl::StrCat("unknown flag ", key));
      case FlagResult::kBadValue:
        UsageError(program, absl::StrCat("bad value for ", key, ": ", value));
    }
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string JsonStats(absl::string_view key, const std::vector<double>& v,
                      JsonStatsFields fields) {
  std::string out =
      absl::StrCat("\"", key, "\":", Median(v), ",\"", key,
                   "_min\":", *std::min_element(v.begin(), v.end()));
  if (fields == JsonStatsFields::kWithMax) {
    absl::StrAppend(&out, ",\"", key,
                    "_max\":", *std::max_element(v.begin(), v.end()));
  }
  absl::StrAppend(&out, ",\"", key, "_runs\":[", absl::StrJoin(v, ","), "]");
  return out;
}

bool SymbolFromLibrary(void* symbol, absl::string_view library) {
  Dl_info info;
  if (dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return false;
  return absl::string_view(info.dli_fname).find(library) !=
         absl::string_view::npos;
}

}  // namespace eventide_bench
