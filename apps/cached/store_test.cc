#include "apps/cached/store.h"

#include <stdint.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/cached/limits.h"
#include "apps/cached/unix_clock.h"
#include "clock/fake_clock.h"
#include "gtest/gtest.h"

namespace eventide {
namespace cached {
namespace {

constexpr int64_t kStartUnix = 1700000000;

class StoreTest : public ::testing::Test {
 protected:
  StoreTest() : clock_(&fake_, kStartUnix) {}

  std::unique_ptr<Store> Make(size_t memory_limit = size_t{64} << 20,
                              size_t shards = 4) {
    StoreOptions options;
    options.memory_limit = memory_limit;
    options.num_shards = shards;
    return std::make_unique<Store>(options, &clock_);
  }

  // The value, or "<miss>".
  static std::string GetValue(Store& store, absl::string_view key) {
    std::string v = "<miss>";
    store.Get(key, [&v](const ItemView& item) { v = std::string(item.value); });
    return v;
  }
  static ItemView GetView(Store& store, absl::string_view key,
                          std::string* storage) {
    ItemView out{};
    store.Get(key, [&](const ItemView& item) {
      *storage = std::string(item.value);
      out = item;
    });
    out.value = *storage;
    out.key = absl::string_view();
    return out;
  }
  static uint64_t CasOf(Store& store, absl::string_view key) {
    uint64_t cas = 0;
    store.Get(key, [&cas](const ItemView& item) { cas = item.cas; });
    return cas;
  }
  static StoreStatus Set(Store& store, absl::string_view key,
                         absl::string_view value, int32_t exptime = 0,
                         uint32_t flags = 0) {
    return store.Put(StoreMode::kSet, key, value, flags, exptime, 0);
  }

  void Advance(int seconds) { fake_.Advance(absl::Seconds(seconds)); }

  FakeClock fake_;
  MonotonicUnixClock clock_;
};

TEST_F(StoreTest, SetGetRoundTripsBinaryValuesAndFlags) {
  auto store = Make();
  const std::string binary("a\0b\r\nc\xff", 7);
  EXPECT_EQ(Set(*store, "k", binary, 0, 0xFFFFFFFFu), StoreStatus::kStored);
  std::string storage;
  const ItemView v = GetView(*store, "k", &storage);
  EXPECT_EQ(v.value, binary);
  EXPECT_EQ(v.flags, 0xFFFFFFFFu);
  EXPECT_EQ(GetValue(*store, "missing"), "<miss>");
  // Overwrite with a shorter and a longer value.
  Set(*store, "k", "x");
  EXPECT_EQ(GetValue(*store, "k"), "x");
  Set(*store, "k", std::string(1000, 'y'));
  EXPECT_EQ(GetValue(*store, "k"), std::string(1000, 'y'));
}

TEST_F(StoreTest, AddReplaceAppendPrepend) {
  auto store = Make();
  EXPECT_EQ(store->Put(StoreMode::kReplace, "k", "v", 0, 0, 0),
            StoreStatus::kNotStored);
  EXPECT_EQ(store->Put(StoreMode::kAppend, "k", "v", 0, 0, 0),
            StoreStatus::kNotStored);
  EXPECT_EQ(store->Put(StoreMode::kPrepend, "k", "v", 0, 0, 0),
            StoreStatus::kNotStored);
  EXPECT_EQ(store->Put(StoreMode::kAdd, "k", "1", 5, 100, 0),
            StoreStatus::kStored);
  EXPECT_EQ(store->Put(StoreMode::kAdd, "k", "x", 0, 0, 0),
            StoreStatus::kNotStored);
  EXPECT_EQ(store->Put(StoreMode::kAppend, "k", "2", 9, 0, 0),
            StoreStatus::kStored);
  EXPECT_EQ(store->Put(StoreMode::kPrepend, "k", "0", 9, 0, 0),
            StoreStatus::kStored);
  std::string storage;
  ItemView v = GetView(*store, "k", &storage);
  EXPECT_EQ(v.value, "012");
  EXPECT_EQ(v.flags, 5u);  // append/prepend keep the old flags...
  Advance(100);            // ...and the old exptime (100 s)
  EXPECT_EQ(GetValue(*store, "k"), "<miss>");
  Set(*store, "k", "a");
  EXPECT_EQ(store->Put(StoreMode::kReplace, "k", "b", 3, 0, 0),
            StoreStatus::kStored);
  v = GetView(*store, "k", &storage);
  EXPECT_EQ(v.value, "b");
  EXPECT_EQ(v.flags, 3u);
}

TEST_F(StoreTest, AppendBeyondItemSizeMaxIsNotStored) {
  StoreOptions options;
  options.item_size_max = 1000;
  Store store(options, &clock_);
  // Largest value for a 1-byte key, flags 0: 1000 - 48 - 2 - 2 - 8 = 940.
  ASSERT_TRUE(ItemSizeOk(1, 0, 940, 1000));
  ASSERT_FALSE(ItemSizeOk(1, 0, 941, 1000));
  ASSERT_EQ(Set(store, "k", std::string(900, 'a')), StoreStatus::kStored);
  EXPECT_EQ(store.Put(StoreMode::kAppend, "k", std::string(40, 'b'), 0, 0, 0),
            StoreStatus::kStored);
  EXPECT_EQ(store.Put(StoreMode::kAppend, "k", "c", 0, 0, 0),
            StoreStatus::kNotStored);
  EXPECT_EQ(GetValue(store, "k").size(), 940u);
}

TEST_F(StoreTest, CasUniquesFollowMemcachedsCounter) {
  auto store = Make();
  Set(*store, "a", "1");
  EXPECT_EQ(CasOf(*store, "a"), 1u);
  uint64_t v = 0;
  ASSERT_EQ(store->Delta("a", true, 1, &v), DeltaStatus::kOk);
  EXPECT_EQ(CasOf(*store, "a"), 2u);
  ASSERT_TRUE(store->Touch("a", 100));
  EXPECT_EQ(CasOf(*store, "a"), 2u);  // touch keeps the cas
  store->Put(StoreMode::kAppend, "a", "x", 0, 0, 0);
  EXPECT_EQ(CasOf(*store, "a"), 3u);
  store->FlushAll(0);  // takes unique 4
  Set(*store, "b", "1");
  EXPECT_EQ(CasOf(*store, "b"), 5u);
  store->FlushAll(100);  // in the future: takes no unique
  Set(*store, "c", "1");
  EXPECT_EQ(CasOf(*store, "c"), 6u);
  EXPECT_EQ(store->Put(StoreMode::kAdd, "c", "1", 0, 0, 0),
            StoreStatus::kNotStored);
  Set(*store, "c", "2");
  EXPECT_EQ(CasOf(*store, "c"), 7u);
}

TEST_F(StoreTest, CasCommand) {
  auto store = Make();
  EXPECT_EQ(store->Put(StoreMode::kCas, "k", "v", 0, 0, 5),
            StoreStatus::kNotFound);
  Set(*store, "k", "v");
  const uint64_t cas = CasOf(*store, "k");
  EXPECT_EQ(store->Put(StoreMode::kCas, "k", "w", 0, 0, cas + 1),
            StoreStatus::kExists);
  EXPECT_EQ(store->Put(StoreMode::kCas, "k", "w", 0, 0, 0),
            StoreStatus::kExists);  // cas 0 never matches
  EXPECT_EQ(GetValue(*store, "k"), "v");
  EXPECT_EQ(store->Put(StoreMode::kCas, "k", "w", 7, 0, cas),
            StoreStatus::kStored);
  EXPECT_EQ(GetValue(*store, "k"), "w");
  EXPECT_GT(CasOf(*store, "k"), cas);
  EXPECT_EQ(store->Put(StoreMode::kCas, "k", "z", 0, 0, cas),
            StoreStatus::kExists);  // the old unique is spent
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.cas_misses, 1u);
  EXPECT_EQ(s.cas_badval, 3u);
  EXPECT_EQ(s.cas_hits, 1u);
}

TEST_F(StoreTest, RelativeExptimeExpiresAtTheSecond) {
  auto store = Make();
  Set(*store, "k", "v", 10);
  Advance(9);
  EXPECT_EQ(GetValue(*store, "k"), "v");
  Advance(1);
  EXPECT_EQ(GetValue(*store, "k"), "<miss>");
  EXPECT_EQ(store->GetStats().get_expired, 1u);
  EXPECT_EQ(store->GetStats().curr_items, 0u);  // removed lazily
}

TEST_F(StoreTest, ExptimeRules) {
  auto store = Make();
  Set(*store, "never", "v", 0);
  Set(*store, "negative", "v", -1);
  Set(*store, "thirty_days", "v", kRealtimeMaxDelta);   // still relative
  Set(*store, "abs_1970", "v", kRealtimeMaxDelta + 1);  // absolute, past
  Set(*store, "abs_past", "v", static_cast<int32_t>(kStartUnix - 10));
  Set(*store, "abs_now", "v", static_cast<int32_t>(kStartUnix));
  Set(*store, "abs_future", "v", static_cast<int32_t>(kStartUnix + 50));
  EXPECT_EQ(GetValue(*store, "never"), "v");
  EXPECT_EQ(GetValue(*store, "negative"), "<miss>");
  EXPECT_EQ(GetValue(*store, "thirty_days"), "v");
  EXPECT_EQ(GetValue(*store, "abs_1970"), "<miss>");
  EXPECT_EQ(GetValue(*store, "abs_past"), "<miss>");
  EXPECT_EQ(GetValue(*store, "abs_now"), "<miss>");
  EXPECT_EQ(GetValue(*store, "abs_future"), "v");
  Advance(49);
  EXPECT_EQ(GetValue(*store, "abs_future"), "v");
  Advance(1);
  EXPECT_EQ(GetValue(*store, "abs_future"), "<miss>");
  Advance(kRealtimeMaxDelta - 50 - 1);
  EXPECT_EQ(GetValue(*store, "thirty_days"), "v");
  Advance(1);
  EXPECT_EQ(GetValue(*store, "thirty_days"), "<miss>");
  Advance(1000000);
  EXPECT_EQ(GetValue(*store, "never"), "v");
}

TEST_F(StoreTest, TouchAndGetAndTouchSetTheExptime) {
  auto store = Make();
  EXPECT_FALSE(store->Touch("k", 10));
  Set(*store, "k", "v", 5);
  EXPECT_TRUE(store->Touch("k", 20));
  Advance(10);
  EXPECT_EQ(GetValue(*store, "k"), "v");
  std::string seen;
  EXPECT_TRUE(store->GetAndTouch(
      "k", 0, [&seen](const ItemView& i) { seen = std::string(i.value); }));
  EXPECT_EQ(seen, "v");
  Advance(100000);
  EXPECT_EQ(GetValue(*store, "k"), "v");  // touched to "never"
  // gat with a negative exptime answers the value, then it is gone.
  seen.clear();
  EXPECT_TRUE(store->GetAndTouch(
      "k", -1, [&seen](const ItemView& i) { seen = std::string(i.value); }));
  EXPECT_EQ(seen, "v");
  EXPECT_EQ(GetValue(*store, "k"), "<miss>");
  EXPECT_FALSE(store->GetAndTouch(
      "k", 0, [](const ItemView&) { ADD_FAILURE() << "visited a miss"; }));
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.touch_hits, 3u);
  EXPECT_EQ(s.touch_misses, 2u);
  EXPECT_EQ(s.cmd_touch, 5u);
}

TEST_F(StoreTest, IncrDecr) {
  auto store = Make();
  uint64_t v = 0;
  EXPECT_EQ(store->Delta("n", true, 1, &v), DeltaStatus::kNotFound);
  Set(*store, "n", "100");
  ASSERT_EQ(store->Delta("n", false, 95, &v), DeltaStatus::kOk);
  EXPECT_EQ(v, 5u);
  EXPECT_EQ(GetValue(*store, "n"), "5  ");  // keeps its length, space-padded
  ASSERT_EQ(store->Delta("n", true, 1000, &v), DeltaStatus::kOk);
  EXPECT_EQ(v, 1005u);
  EXPECT_EQ(GetValue(*store, "n"), "1005");  // grows when longer
  ASSERT_EQ(store->Delta("n", false, 5000, &v), DeltaStatus::kOk);
  EXPECT_EQ(v, 0u);  // decr floors at 0
  EXPECT_EQ(GetValue(*store, "n"), "0   ");

  Set(*store, "n", "18446744073709551615");
  ASSERT_EQ(store->Delta("n", true, 2, &v), DeltaStatus::kOk);
  EXPECT_EQ(v, 1u);  // incr wraps
  EXPECT_EQ(GetValue(*store, "n"), "1" + std::string(19, ' '));

  Set(*store, "n", " 12");  // strtoull skips leading whitespace
  ASSERT_EQ(store->Delta("n", true, 1, &v), DeltaStatus::kOk);
  EXPECT_EQ(GetValue(*store, "n"), "13 ");
  Set(*store, "n", "12 ab");  // and stops at whitespace
  ASSERT_EQ(store->Delta("n", true, 1, &v), DeltaStatus::kOk);
  EXPECT_EQ(GetValue(*store, "n"), "13   ");

  for (const char* bad : {"abc", "", "-1", "12abc", "18446744073709551616"}) {
    Set(*store, "n", bad);
    EXPECT_EQ(store->Delta("n", true, 1, &v), DeltaStatus::kNonNumeric) << bad;
    EXPECT_EQ(GetValue(*store, "n"), bad);
  }
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.incr_misses, 1u);
  EXPECT_EQ(s.decr_hits, 2u);
  EXPECT_EQ(s.incr_hits, 4u);
}

TEST_F(StoreTest, IncrKeepsFlagsAndExptime) {
  auto store = Make();
  Set(*store, "n", "9", 10, 42);
  uint64_t v = 0;
  ASSERT_EQ(store->Delta("n", true, 1, &v), DeltaStatus::kOk);
  std::string storage;
  EXPECT_EQ(GetView(*store, "n", &storage).flags, 42u);
  EXPECT_EQ(storage, "10");
  Advance(10);
  EXPECT_EQ(GetValue(*store, "n"), "<miss>");
}

TEST_F(StoreTest, Delete) {
  auto store = Make();
  EXPECT_FALSE(store->Delete("k"));
  Set(*store, "k", "v");
  EXPECT_TRUE(store->Delete("k"));
  EXPECT_FALSE(store->Delete("k"));
  EXPECT_EQ(GetValue(*store, "k"), "<miss>");
  Set(*store, "e", "v", 1);
  Advance(1);
  EXPECT_FALSE(store->Delete("e"));  // expired items are not deleted
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.delete_hits, 1u);
  EXPECT_EQ(s.delete_misses, 3u);
  EXPECT_EQ(s.curr_items, 0u);
  EXPECT_EQ(s.bytes, 0u);
}

TEST_F(StoreTest, FlushAllNow) {
  auto store = Make();
  Set(*store, "a", "1");
  Set(*store, "b", "2");
  store->FlushAll(0);
  EXPECT_EQ(GetValue(*store, "a"), "<miss>");
  Set(*store, "c", "3");  // same second, after the flush: valid
  EXPECT_EQ(GetValue(*store, "c"), "3");
  EXPECT_EQ(GetValue(*store, "b"), "<miss>");
  EXPECT_EQ(store->GetStats().get_flushed, 2u);
  EXPECT_EQ(store->GetStats().cmd_flush, 1u);
  store->FlushAll(-5);  // negative: now
  EXPECT_EQ(GetValue(*store, "c"), "<miss>");
}

TEST_F(StoreTest, FlushAllWithDelay) {
  auto store = Make();
  Set(*store, "old", "1");
  store->FlushAll(10);
  Advance(5);
  Set(*store, "mid", "2");
  EXPECT_EQ(GetValue(*store, "old"), "1");
  // memcached's oldest_live is flush time - 1: it takes effect at +9 s and
  // invalidates items stored up to then.
  Advance(4);
  EXPECT_EQ(GetValue(*store, "old"), "<miss>");
  EXPECT_EQ(GetValue(*store, "mid"), "<miss>");
  Advance(1);
  Set(*store, "new", "3");
  EXPECT_EQ(GetValue(*store, "new"), "3");
  // flush_all 1 is "now" by the same arithmetic.
  store->FlushAll(1);
  EXPECT_EQ(GetValue(*store, "new"), "<miss>");
}

TEST_F(StoreTest, DelayedFlushCancelsAnEarlierOneForUnreclaimedItems) {
  // memcached keeps one oldest_live: a later flush_all with a future delay
  // replaces an immediate one, and items not yet reclaimed are live again.
  auto store = Make();
  Set(*store, "a", "1");
  store->FlushAll(0);
  store->FlushAll(100);
  EXPECT_EQ(GetValue(*store, "a"), "1");
}

TEST_F(StoreTest, FlushAllAbsoluteTimes) {
  auto store = Make();
  Set(*store, "x", "1");
  // An absolute time at or before "process start" disables the flush.
  store->FlushAll(static_cast<int32_t>(kRealtimeMaxDelta + 1));
  EXPECT_EQ(GetValue(*store, "x"), "1");
  // A past absolute time after start flushes now.
  Advance(100);
  store->FlushAll(static_cast<int32_t>(kStartUnix + 50));
  EXPECT_EQ(GetValue(*store, "x"), "<miss>");
  // A future absolute time flushes then.
  Set(*store, "y", "1");
  store->FlushAll(static_cast<int32_t>(kStartUnix + 110));
  Advance(8);
  EXPECT_EQ(GetValue(*store, "y"), "1");
  Advance(1);
  EXPECT_EQ(GetValue(*store, "y"), "<miss>");
}

TEST_F(StoreTest, MemoryAccounting) {
  auto store = Make();
  Set(*store, "k1", "12345");
  Set(*store, "key2", std::string(100, 'x'));
  size_t expect = Store::ItemFootprint(2, 5) + Store::ItemFootprint(4, 100);
  EXPECT_EQ(store->GetStats().bytes, expect);
  Set(*store, "k1", "1");  // overwrite: -4 bytes
  expect -= 4;
  EXPECT_EQ(store->GetStats().bytes, expect);
  store->Put(StoreMode::kAppend, "k1", "234", 0, 0, 0);
  expect += 3;
  EXPECT_EQ(store->GetStats().bytes, expect);
  uint64_t v = 0;
  Set(*store, "n", "9");
  expect += Store::ItemFootprint(1, 1);
  store->Delta("n", true, 1, &v);  // "10": one more byte
  expect += 1;
  EXPECT_EQ(store->GetStats().bytes, expect);
  store->Delete("key2");
  expect -= Store::ItemFootprint(4, 100);
  EXPECT_EQ(store->GetStats().bytes, expect);
  EXPECT_EQ(store->GetStats().curr_items, 2u);
  EXPECT_GT(Store::kItemOverhead, 64u);  // a real per-item cost is counted
  EXPECT_EQ(store->GetStats().limit_maxbytes, size_t{64} << 20);
}

TEST_F(StoreTest, LruEvictionOrderOneShard) {
  const size_t per_item = Store::ItemFootprint(2, 10);
  auto store = Make(per_item * 3, /*shards=*/1);
  const std::string v(10, 'v');
  Set(*store, "k1", v);
  Set(*store, "k2", v);
  Set(*store, "k3", v);
  EXPECT_EQ(store->GetStats().evictions, 0u);
  EXPECT_EQ(GetValue(*store, "k1"), v);  // k1 is now the most recent
  Set(*store, "k4", v);                  // evicts k2, the least recent
  EXPECT_EQ(GetValue(*store, "k2"), "<miss>");
  EXPECT_EQ(GetValue(*store, "k1"), v);
  EXPECT_EQ(GetValue(*store, "k4"), v);  // order now: k4 k1 k3
  // touch and a failed add promote too.
  EXPECT_TRUE(store->Touch("k3", 0));
  EXPECT_EQ(store->Put(StoreMode::kAdd, "k1", v, 0, 0, 0),
            StoreStatus::kNotStored);
  Set(*store, "k5", v);  // evicts k4
  EXPECT_EQ(GetValue(*store, "k4"), "<miss>");
  EXPECT_EQ(GetValue(*store, "k3"), v);
  EXPECT_EQ(GetValue(*store, "k1"), v);
  EXPECT_EQ(GetValue(*store, "k5"), v);
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.evictions, 2u);
  EXPECT_EQ(s.evicted_unfetched, 1u);  // k2 was never read, k4 was
  EXPECT_EQ(s.curr_items, 3u);
  EXPECT_LE(s.bytes, per_item * 3);
}

TEST_F(StoreTest, EvictingAnExpiredTailCountsAsReclaimed) {
  const size_t per_item = Store::ItemFootprint(2, 1);
  auto store = Make(per_item * 2, 1);
  Set(*store, "k1", "a", 5);
  Set(*store, "k2", "b");
  Advance(5);
  Set(*store, "k3", "c");
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.evictions, 0u);
  EXPECT_EQ(s.reclaimed, 1u);
  EXPECT_EQ(s.expired_unfetched, 1u);
  EXPECT_EQ(GetValue(*store, "k2"), "b");
  EXPECT_EQ(GetValue(*store, "k3"), "c");
}

TEST_F(StoreTest, MemoryLimitIsGlobalAcrossShards) {
  const size_t per_item = Store::ItemFootprint(6, 100);
  auto store = Make(per_item * 20, /*shards=*/8);
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(Set(*store, absl::StrCat("k", 10000 + i), std::string(100, 'x')),
              StoreStatus::kStored);
    ASSERT_LE(store->GetStats().bytes, per_item * 20);
  }
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.evictions, 180u);
  EXPECT_EQ(s.curr_items, 20u);
  // The last item stored is always there.
  EXPECT_EQ(GetValue(*store, "k10199"), std::string(100, 'x'));
}

TEST_F(StoreTest, ItemLargerThanTheLimitIsOutOfMemory) {
  auto store = Make(Store::ItemFootprint(1, 100), 1);
  ASSERT_EQ(Set(*store, "k", "old"), StoreStatus::kStored);
  EXPECT_EQ(Set(*store, "k", std::string(101, 'x')), StoreStatus::kOutOfMemory);
  // memcached drops the old value of a failed set.
  EXPECT_EQ(GetValue(*store, "k"), "<miss>");
  EXPECT_EQ(store->GetStats().store_no_memory, 1u);
  EXPECT_EQ(Set(*store, "k", std::string(100, 'x')), StoreStatus::kStored);
}

TEST_F(StoreTest, SweepExpiredReclaimsOnlyDeadItems) {
  auto store = Make(size_t{64} << 20, 4);
  for (int i = 0; i < 100; ++i) {
    Set(*store, absl::StrCat("e", i), "v", 10);
    Set(*store, absl::StrCat("l", i), "v", 0);
  }
  EXPECT_EQ(store->SweepExpired(1000), 0u);
  Advance(10);
  size_t removed = 0;
  for (int round = 0; round < 60 && removed < 100; ++round) {
    const size_t n = store->SweepExpired(16);
    EXPECT_LE(n, 16u + 4u);  // bounded by the per-shard budget
    removed += n;
  }
  EXPECT_EQ(removed, 100u);
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.curr_items, 100u);
  EXPECT_EQ(s.reclaimed, 100u);
  EXPECT_EQ(s.expired_unfetched, 100u);
  // "l0".."l9" have 2-byte keys, "l10".."l99" 3-byte keys.
  EXPECT_EQ(s.bytes,
            10 * Store::ItemFootprint(2, 1) + 90 * Store::ItemFootprint(3, 1));
  EXPECT_EQ(GetValue(*store, "l42"), "v");
  // Flushed items are swept as well.
  store->FlushAll(0);
  removed = 0;
  for (int round = 0; round < 10; ++round) removed += store->SweepExpired(64);
  EXPECT_EQ(removed, 100u);
  EXPECT_EQ(store->GetStats().curr_items, 0u);
}

// An item lives in one block with its key and value; a value that outgrows
// the block, or shrinks to well under half of it, moves the item to a new
// block. The moved item keeps its header, its place in the LRU list and the
// sweep's place in that list. A stale cursor would point at the freed block;
// only AddressSanitizer reliably reports that (CI runs every test under it):
// the cursor rests on the item being moved at k2's first append and at
// k3's incr.
TEST_F(StoreTest, ItemsMovedToANewBlockKeepTheirValueAndPlace) {
  auto store = Make(size_t{64} << 20, /*shards=*/1);
  ASSERT_EQ(Set(*store, "k1", "a", /*exptime=*/100, /*flags=*/7),
            StoreStatus::kStored);
  ASSERT_EQ(Set(*store, "k2", "b", 5), StoreStatus::kStored);
  ASSERT_EQ(Set(*store, "k3", "9", 5), StoreStatus::kStored);
  ASSERT_EQ(Set(*store, "k4", "d", 5), StoreStatus::kStored);
  // The sweep looks at k1 (the tail, alive) and stops on k2.
  EXPECT_EQ(store->SweepExpired(1), 0u);

  // Append 10,000 bytes to k2 one byte at a time: each append that does
  // not fit moves it. The first moves it while the cursor rests on it; the
  // bump that follows leaves the cursor on k3.
  std::string expect = "b";
  for (int i = 0; i < 10000; ++i) {
    const std::string byte(1, static_cast<char>('a' + i % 26));
    ASSERT_EQ(store->Put(StoreMode::kAppend, "k2", byte, 0, 0, 0),
              StoreStatus::kStored);
    expect += byte;
  }
  EXPECT_EQ(GetValue(*store, "k2"), expect);
  // incr to a longer number moves k3 (its block held just "9") while the
  // cursor rests on it.
  uint64_t result = 0;
  ASSERT_EQ(store->Delta("k3", true, 1, &result), DeltaStatus::kOk);
  EXPECT_EQ(result, 10u);
  EXPECT_EQ(GetValue(*store, "k3"), "10");
  // Prepend moves too, keeping what was there after the new bytes.
  ASSERT_EQ(
      store->Put(StoreMode::kPrepend, "k2", std::string(5000, 'p'), 0, 0, 0),
      StoreStatus::kStored);
  EXPECT_EQ(GetValue(*store, "k2"), std::string(5000, 'p') + expect);
  // A set that shrinks the value to a tenth moves it to a smaller block.
  ASSERT_EQ(Set(*store, "k2", "small", 5), StoreStatus::kStored);
  EXPECT_EQ(GetValue(*store, "k2"), "small");
  // A set that grows k1 keeps nothing of its old header but the key.
  ASSERT_EQ(Set(*store, "k1", std::string(300, 'z'), 0, 3),
            StoreStatus::kStored);
  std::string storage;
  const ItemView k1 = GetView(*store, "k1", &storage);
  EXPECT_EQ(k1.value, std::string(300, 'z'));
  EXPECT_EQ(k1.flags, 3u);

  // The sweep walks on from where it stopped: k2, k3 and k4 expire, k1 no
  // longer does.
  Advance(5);
  size_t removed = 0;
  for (int round = 0; round < 8; ++round) removed += store->SweepExpired(1);
  EXPECT_EQ(removed, 3u);
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.curr_items, 1u);
  EXPECT_EQ(s.bytes, Store::ItemFootprint(2, 300));
  EXPECT_EQ(GetValue(*store, "k1"), std::string(300, 'z'));
}

// An empty value given as a string_view with no data pointer is stored,
// appended and prepended like any other (UBSan reports a memcpy from null).
TEST_F(StoreTest, EmptyValuesWithoutADataPointer) {
  auto store = Make();
  const absl::string_view empty;
  ASSERT_EQ(empty.data(), nullptr);
  EXPECT_EQ(Set(*store, "k", empty), StoreStatus::kStored);
  EXPECT_EQ(GetValue(*store, "k"), "");
  EXPECT_EQ(store->Put(StoreMode::kAppend, "k", empty, 0, 0, 0),
            StoreStatus::kStored);
  EXPECT_EQ(store->Put(StoreMode::kPrepend, "k", empty, 0, 0, 0),
            StoreStatus::kStored);
  EXPECT_EQ(store->Put(StoreMode::kAppend, "k", "x", 0, 0, 0),
            StoreStatus::kStored);
  EXPECT_EQ(GetValue(*store, "k"), "x");
  EXPECT_EQ(Set(*store, "k", empty), StoreStatus::kStored);
  EXPECT_EQ(GetValue(*store, "k"), "");
  EXPECT_EQ(store->GetStats().bytes, Store::ItemFootprint(1, 0));
}

// LRU order survives the moves: the item that grew is the most recent.
TEST_F(StoreTest, AnItemMovedToANewBlockIsTheMostRecentlyUsed) {
  // Room for two 100-byte items and one 1-byte item, not one byte more.
  auto store =
      Make(2 * Store::ItemFootprint(2, 100) + Store::ItemFootprint(2, 1) - 1,
           /*shards=*/1);
  Set(*store, "k1", "v");
  Set(*store, "k2", "v");
  Set(*store, "k3", "v");
  ASSERT_EQ(store->Put(StoreMode::kAppend, "k1", std::string(99, 'w'), 0, 0, 0),
            StoreStatus::kStored);  // k1 moves and becomes the most recent
  Set(*store, "k4", std::string(100, 'x'));  // evicts k2, then k3
  EXPECT_EQ(GetValue(*store, "k2"), "<miss>");
  EXPECT_EQ(GetValue(*store, "k3"), "<miss>");
  EXPECT_EQ(GetValue(*store, "k1"), "v" + std::string(99, 'w'));
  EXPECT_EQ(GetValue(*store, "k4"), std::string(100, 'x'));
  EXPECT_EQ(store->GetStats().evictions, 2u);
}

TEST_F(StoreTest, DiscardAndRecordedRefusals) {
  auto store = Make();
  Set(*store, "k", "v");
  store->Discard("k");
  store->Discard("absent");
  EXPECT_EQ(GetValue(*store, "k"), "<miss>");
  store->RecordTooLarge();
  store->RecordBadDataChunk();
  const StoreStats s = store->GetStats();
  EXPECT_EQ(s.delete_hits, 0u);
  EXPECT_EQ(s.store_too_large, 1u);
  EXPECT_EQ(s.cmd_set, 2u);  // the set and the bad chunk
}

TEST_F(StoreTest, GetStatsAndReset) {
  auto store = Make();
  Set(*store, "k", "v");
  GetValue(*store, "k");
  GetValue(*store, "x");
  StoreStats s = store->GetStats();
  EXPECT_EQ(s.cmd_get, 2u);
  EXPECT_EQ(s.get_hits, 1u);
  EXPECT_EQ(s.get_misses, 1u);
  EXPECT_EQ(s.cmd_set, 1u);
  EXPECT_EQ(s.total_items, 1u);
  store->ResetStats();
  s = store->GetStats();
  EXPECT_EQ(s.cmd_get, 0u);
  EXPECT_EQ(s.total_items, 0u);
  EXPECT_EQ(s.curr_items, 1u);  // not a counter
  EXPECT_GT(s.bytes, 0u);
}

TEST_F(StoreTest, ShardCountIsAPowerOfTwo) {
  EXPECT_EQ(Make(1 << 20, 0)->num_shards(), 1u);
  EXPECT_EQ(Make(1 << 20, 5)->num_shards(), 8u);
  EXPECT_EQ(Make(1 << 20, 64)->num_shards(), 64u);
  EXPECT_EQ(Make()->CurrentTime(), 62);  // memcached's current_time origin
}

}  // namespace
}  // namespace cached
}  // namespace eventide
