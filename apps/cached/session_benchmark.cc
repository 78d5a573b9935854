// Parse + execute + format cost of one session, on pipelined batches of
// memcaslap-like requests (64-byte keys, 100-byte values).
//
//   ./bazelw run --config=bench //apps/cached:session_benchmark --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>
#include <stdint.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "apps/cached/session.h"
#include "apps/cached/store.h"
#include "apps/cached/unix_clock.h"

namespace eventide {
namespace cached {
namespace {

constexpr int kBatch = 100;

std::string Key(int i) {
  std::string key = absl::StrCat("key-", i, "-");
  key.resize(64, 'x');
  return key;
}

void Run(benchmark::State& state, bool gets) {
  auto wall = MonotonicUnixClock::FromSystem();
  CachedUnixClock clock(wall.get());
  Store store(StoreOptions(), &clock);
  SessionConfig config;
  config.store = &store;
  Session session(config);
  std::string batch;
  for (int i = 0; i < kBatch; ++i) {
    store.Put(StoreMode::kSet, Key(i), std::string(100, 'v'), 0, 0, 0);
    if (gets) {
      absl::StrAppend(&batch, "get ", Key(i), "\r\n");
    } else {
      absl::StrAppend(&batch, "set ", Key(i), " 0 0 100\r\n",
                      std::string(100, 'w'), "\r\n");
    }
  }
  std::string out;
  out.reserve(1 << 16);
  for (auto _ : state) {
    out.clear();
    const size_t used = session.Consume(batch, &out);
    benchmark::DoNotOptimize(used);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * batch.size());
}

void BM_PipelinedGets(benchmark::State& state) { Run(state, true); }
BENCHMARK(BM_PipelinedGets);

void BM_PipelinedSets(benchmark::State& state) { Run(state, false); }
BENCHMARK(BM_PipelinedSets);

}  // namespace
}  // namespace cached
}  // namespace eventide
