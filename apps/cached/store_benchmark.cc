// Store throughput under the memcaslap-like mix the server is measured with
// (90% get / 10% set, 64-byte keys, 100-byte values), for several shard
// counts and thread counts, over 10,000 keys (they stay in the CPU caches)
// and over memcaslap's working set in compare_memcached.sh (about 125,000
// items after a 10 s run, its curr_items: most lookups miss the caches, as
// in the server). Only ratios within one run mean anything on a shared
// machine.
//
//   ./bazelw run --config=bench //apps/cached:store_benchmark --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>
#include <stdint.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "apps/cached/store.h"
#include "apps/cached/unix_clock.h"

namespace eventide {
namespace cached {
namespace {

constexpr int kKeys = 10000;
constexpr int kMemcaslapKeys = 125000;

struct Fixture {
  std::unique_ptr<MonotonicUnixClock> wall = MonotonicUnixClock::FromSystem();
  std::unique_ptr<CachedUnixClock> clock =
      std::make_unique<CachedUnixClock>(wall.get());
  std::unique_ptr<Store> store;
  std::vector<std::string> keys;
  std::string value = std::string(100, 'v');
};

// Replaced by thread 0 of each benchmark, when the previous benchmark's
// threads are all done.
std::unique_ptr<Fixture> fixture;

void SetUp(size_t shards, int keys) {
  fixture = std::make_unique<Fixture>();
  StoreOptions options;
  options.num_shards = shards;
  fixture->store = std::make_unique<Store>(options, fixture->clock.get());
  for (int i = 0; i < keys; ++i) {
    // memcaslap's keys are 64 bytes.
    std::string key = absl::StrCat("key-", i, "-");
    key.resize(64, 'x');
    fixture->keys.push_back(key);
    fixture->store->Put(StoreMode::kSet, key, fixture->value, 0, 0, 0);
  }
}

void BM_GetSetMix(benchmark::State& state) {
  const int keys = static_cast<int>(state.range(1));
  if (state.thread_index() == 0) {
    SetUp(static_cast<size_t>(state.range(0)), keys);
  }
  std::mt19937 rng(state.thread_index() + 1);
  size_t hits = 0;
  for (auto _ : state) {
    const std::string& key = fixture->keys[rng() % keys];
    if (rng() % 10 == 0) {
      fixture->store->Put(StoreMode::kSet, key, fixture->value, 0, 0, 0);
    } else {
      hits += fixture->store->Get(key, [](const ItemView& item) {
        benchmark::DoNotOptimize(item.value.data());
      });
    }
  }
  benchmark::DoNotOptimize(hits);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GetSetMix)
    ->ArgNames({"shards", "keys"})
    ->ArgsProduct({{1, 4, 16, 64}, {kKeys}})
    ->Args({64, kMemcaslapKeys})
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();

// The same mix reading the time through MonotonicUnixClock directly (one
// clock_gettime per request) instead of the cached second.
void BM_GetSetMixUncachedClock(benchmark::State& state) {
  auto wall = MonotonicUnixClock::FromSystem();
  Store store(StoreOptions(), wall.get());
  std::vector<std::string> keys;
  const std::string value(100, 'v');
  for (int i = 0; i < kKeys; ++i) {
    std::string key = absl::StrCat("key-", i, "-");
    key.resize(64, 'x');
    keys.push_back(key);
    store.Put(StoreMode::kSet, key, value, 0, 0, 0);
  }
  std::mt19937 rng(1);
  for (auto _ : state) {
    const std::string& key = keys[rng() % kKeys];
    if (rng() % 10 == 0) {
      store.Put(StoreMode::kSet, key, value, 0, 0, 0);
    } else {
      store.Get(key, [](const ItemView& item) {
        benchmark::DoNotOptimize(item.value.data());
      });
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GetSetMixUncachedClock);

}  // namespace
}  // namespace cached
}  // namespace eventide
