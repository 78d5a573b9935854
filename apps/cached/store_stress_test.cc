// Several threads hammer one Store on overlapping keys. Run it under
// --config=tsan: the point is as much the absence of data races as the
// invariants checked at the end.

#include <stdint.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/cached/store.h"
#include "apps/cached/unix_clock.h"
#include "clock/fake_clock.h"
#include "gtest/gtest.h"

namespace eventide {
namespace cached {
namespace {

constexpr int kThreads = 4;
constexpr int kKeys = 64;

std::string KeyOf(int i) { return absl::StrCat("key:", i); }

// A value that names its key, so a reader can tell whether it got the value
// of another key (a torn or misplaced write).
std::string ValueOf(int key, int thread, int len) {
  std::string v = absl::StrCat(KeyOf(key), "/", thread, "/");
  v.resize(std::max<size_t>(v.size(), static_cast<size_t>(len)), '.');
  return v;
}

TEST(StoreStressTest, CountersAndValuesStayConsistent) {
  FakeClock fake;
  MonotonicUnixClock clock(&fake, 1700000000);
  StoreOptions options;
  options.num_shards = 8;
  Store store(options, &clock);
  ASSERT_EQ(store.Put(StoreMode::kSet, "counter", "0", 0, 0, 0),
            StoreStatus::kStored);

  constexpr int kOps = 20000;
  std::atomic<int> bad_values{0};
  std::atomic<uint64_t> increments{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      for (int i = 0; i < kOps; ++i) {
        const int key = static_cast<int>(rng() % kKeys);
        const std::string k = KeyOf(key);
        switch (rng() % 8) {
          case 0:
          case 1:
            store.Put(StoreMode::kSet, k,
                      ValueOf(key, t, static_cast<int>(rng() % 200)), t, 0, 0);
            break;
          case 2:
            store.Put(StoreMode::kAppend, k, "+", 0, 0, 0);
            break;
          case 3:
            store.Delete(k);
            break;
          case 4: {
            uint64_t v = 0;
            if (store.Delta("counter", true, 1, &v) == DeltaStatus::kOk) {
              increments.fetch_add(1);
            }
            break;
          }
          case 5:
            store.Touch(k, 0);
            break;
          default:
            store.Get(k, [&](const ItemView& item) {
              if (item.value.substr(0, k.size() + 1) != k + "/") {
                bad_values.fetch_add(1);
              }
            });
            break;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();

  EXPECT_EQ(bad_values.load(), 0);
  uint64_t counter = 0;
  store.Get("counter", [&counter](const ItemView& item) {
    counter = std::stoull(std::string(item.value));
  });
  EXPECT_EQ(counter, increments.load());
  EXPECT_GT(counter, 0u);

  // curr_items and bytes agree with what a reader finds.
  uint64_t items = 0;
  uint64_t bytes = 0;
  for (int key = 0; key < kKeys; ++key) {
    store.Get(KeyOf(key), [&](const ItemView& item) {
      ++items;
      bytes += Store::ItemFootprint(item.key.size(), item.value.size());
    });
  }
  store.Get("counter", [&](const ItemView& item) {
    ++items;
    bytes += Store::ItemFootprint(item.key.size(), item.value.size());
  });
  const StoreStats s = store.GetStats();
  EXPECT_EQ(s.curr_items, items);
  EXPECT_EQ(s.bytes, bytes);
  EXPECT_EQ(s.evictions, 0u);
}

TEST(StoreStressTest, TightMemoryLimitHoldsUnderConcurrentSetsAndSweeps) {
  FakeClock fake;
  MonotonicUnixClock clock(&fake, 1700000000);
  StoreOptions options;
  options.num_shards = 4;
  options.memory_limit = 40 * Store::ItemFootprint(12, 100);
  Store store(options, &clock);

  constexpr int kOps = 10000;
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(99 + t);
      for (int i = 0; i < kOps; ++i) {
        const int key = static_cast<int>(rng() % 1000);
        const std::string k = KeyOf(key);
        if (rng() % 4 == 0) {
          store.Get(k, [](const ItemView&) {});
        } else if (store.Put(StoreMode::kSet, k,
                             ValueOf(key, t, static_cast<int>(rng() % 100)), 0,
                             static_cast<int32_t>(rng() % 3),
                             0) != StoreStatus::kStored) {
          refused.fetch_add(1);
        }
      }
    });
  }
  // A sweeper and a clock, as the server's timer would run them.
  std::thread sweeper([&] {
    int rounds = 0;
    while (!stop.load() && rounds < 100000) {
      store.SweepExpired(32);
      if (++rounds % 64 == 0) fake.Advance(absl::Seconds(1));
    }
  });
  for (std::thread& th : threads) th.join();
  stop.store(true);
  sweeper.join();

  EXPECT_EQ(refused.load(), 0);
  const StoreStats s = store.GetStats();
  EXPECT_LE(s.bytes, options.memory_limit);
  EXPECT_GT(s.evictions + s.reclaimed, 0u);
  // Count what is left: the counters must match it.
  uint64_t items = 0;
  uint64_t bytes = 0;
  for (int key = 0; key < 1000; ++key) {
    store.Get(KeyOf(key), [&](const ItemView& item) {
      ++items;
      bytes += Store::ItemFootprint(item.key.size(), item.value.size());
    });
  }
  // Reads above may lazily drop expired items; re-read the stats after.
  const StoreStats after = store.GetStats();
  EXPECT_EQ(after.curr_items, items);
  EXPECT_EQ(after.bytes, bytes);
}

}  // namespace
}  // namespace cached
}  // namespace eventide
