#include "timerheap/timer_heap.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "timerheap/huge_pages.h"

namespace eventide {
namespace {

// The behaviour must not depend on the layout: every typed test runs on the
// binary, 4-ary and 8-ary heaps.
template <int A>
struct ArityTag {
  static constexpr int kArity = A;
};
using Arities = ::testing::Types<ArityTag<2>, ArityTag<4>, ArityTag<8>>;

template <typename Tag>
class TimerHeapTest : public ::testing::Test {
 protected:
  template <typename Payload>
  using Heap = TimerHeap<int64_t, Payload, std::less<int64_t>, Tag::kArity>;
  using IntHeap = Heap<int>;
};
TYPED_TEST_SUITE(TimerHeapTest, Arities);

#define EXPECT_VALID(heap)                             \
  do {                                                 \
    std::string why;                                   \
    EXPECT_TRUE((heap).VerifyInvariants(&why)) << why; \
  } while (0)

TYPED_TEST(TimerHeapTest, StartsEmpty) {
  typename TestFixture::IntHeap heap;
  EXPECT_TRUE(heap.empty());
  EXPECT_EQ(heap.size(), 0u);
  typename TestFixture::IntHeap::Handle none;
  EXPECT_FALSE(heap.Contains(none));
  EXPECT_FALSE(heap.Cancel(none));
  EXPECT_FALSE(heap.Reschedule(none, 5));
  EXPECT_EQ(heap.Get(none), nullptr);
  EXPECT_EQ(heap.KeyOf(none), nullptr);
  EXPECT_VALID(heap);
}

// PopDue must hand out exactly what repeated Pop() calls give, in the same
// order, on both of its paths: one-by-one pops (few due) and the one-pass
// partition (most due, or the last array element due), with many equal keys
// so that the FIFO tie-break decides much of the order. What stays must be
// a valid heap whose handles still work.
TYPED_TEST(TimerHeapTest, PopDueMatchesRepeatedPop) {
  using Heap = typename TestFixture::template Heap<std::unique_ptr<int>>;
  using Handle = typename Heap::Handle;
  std::mt19937_64 rng(11);
  for (int round = 0; round < 60; ++round) {
    const int n = 1 + static_cast<int>(rng() % 3000);
    const int64_t spread = 1 + static_cast<int64_t>(rng() % 200);
    const int64_t limit = static_cast<int64_t>(rng() % (spread + 2)) - 1;
    const uint64_t seed = rng();
    // The same operations on both heaps: pushes, then cancellations and
    // reschedules so that the array is not in push order.
    auto build = [&](Heap* heap, std::vector<Handle>* handles) {
      std::mt19937_64 ops(seed);
      for (int i = 0; i < n; ++i) {
        const int64_t key = static_cast<int64_t>(ops() % spread);
        handles->push_back(heap->Push(key, std::make_unique<int>(i)));
      }
      for (int i = 0; i < n; i += 1 + static_cast<int>(ops() % 9)) {
        if (ops() % 2 == 0) {
          ASSERT_TRUE(heap->Cancel((*handles)[i]));
        } else {
          ASSERT_TRUE(heap->Reschedule((*handles)[i],
                                       static_cast<int64_t>(ops() % spread)));
        }
      }
    };
    Heap heap, twin;
    std::vector<Handle> handles, twin_handles;
    build(&heap, &handles);
    build(&twin, &twin_handles);

    std::vector<std::pair<int64_t, std::unique_ptr<int>>> got;
    const size_t count = heap.PopDue(limit, &got);
    ASSERT_EQ(count, got.size());
    size_t i = 0;
    while (!twin.empty() && twin.TopKey() <= limit) {
      auto [key, payload] = twin.Pop();
      ASSERT_LT(i, got.size()) << "round " << round;
      EXPECT_EQ(got[i].first, key) << "round " << round << " at " << i;
      EXPECT_EQ(*got[i].second, *payload) << "round " << round << " at " << i;
      ++i;
    }
    EXPECT_EQ(i, got.size()) << "round " << round;
    EXPECT_VALID(heap);
    ASSERT_EQ(heap.size(), twin.size());
    for (size_t h = 0; h < handles.size(); ++h) {
      EXPECT_EQ(heap.Contains(handles[h]), twin.Contains(twin_handles[h]));
    }
    // The rest pops in the same order too, and a reused slot does not
    // revive a handle PopDue made stale.
    heap.Push(limit, std::make_unique<int>(-1));
    twin.Push(limit, std::make_unique<int>(-1));
    for (size_t h = 0; h < handles.size(); ++h) {
      EXPECT_EQ(heap.Contains(handles[h]), twin.Contains(twin_handles[h]));
    }
    while (!twin.empty()) {
      auto a = heap.Pop();
      auto b = twin.Pop();
      EXPECT_EQ(a.first, b.first);
      EXPECT_EQ(*a.second, *b.second);
    }
    EXPECT_TRUE(heap.empty());
    EXPECT_VALID(heap);
  }
}

// Many timers due at one instant, armed in turn (the array lies in firing
// order): the one-pass path gives them back in FIFO order and shrinks the
// heap's memory back down.
TYPED_TEST(TimerHeapTest, PopDueDrainsAnInstantInFifoOrder) {
  typename TestFixture::IntHeap heap;
  constexpr int kCount = 20000;
  heap.Push(6, kCount);  // the survivor, in the lowest slot
  for (int i = 0; i < kCount; ++i) heap.Push(5, i);
  std::vector<std::pair<int64_t, int>> got;
  EXPECT_EQ(heap.PopDue(4, &got), 0u);
  EXPECT_EQ(heap.PopDue(5, &got), static_cast<size_t>(kCount));
  ASSERT_EQ(got.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(got[i].second, i);
    ASSERT_EQ(got[i].first, 5);
  }
  ASSERT_EQ(heap.size(), 1u);
  EXPECT_EQ(heap.TopPayload(), kCount);
  EXPECT_LT(heap.MemoryBytes(), 64u * 1024u);
  EXPECT_VALID(heap);
}

TYPED_TEST(TimerHeapTest, PopsInKeyOrder) {
  typename TestFixture::IntHeap heap;
  std::mt19937_64 rng(7);
  std::vector<int64_t> keys;
  for (int i = 0; i < 1000; ++i) {
    keys.push_back(static_cast<int64_t>(rng() % 100000));
    heap.Push(keys.back(), i);
  }
  EXPECT_EQ(heap.size(), 1000u);
  EXPECT_VALID(heap);
  std::sort(keys.begin(), keys.end());
  for (int64_t want : keys) {
    ASSERT_EQ(heap.TopKey(), want);
    EXPECT_EQ(heap.Pop().first, want);
  }
  EXPECT_TRUE(heap.empty());
}

TYPED_TEST(TimerHeapTest, EqualKeysPopInInsertionOrder) {
  typename TestFixture::IntHeap heap;
  // Interleave three keys so ties are spread over the whole heap.
  for (int i = 0; i < 300; ++i) heap.Push(10 * (i % 3), i);
  for (int64_t key : {0, 10, 20}) {
    for (int i = static_cast<int>(key / 10); i < 300; i += 3) {
      auto [k, payload] = heap.Pop();
      ASSERT_EQ(k, key);
      ASSERT_EQ(payload, i);
    }
  }
  EXPECT_TRUE(heap.empty());
}

TYPED_TEST(TimerHeapTest, RescheduleCountsAsANewInsertionForTies) {
  typename TestFixture::IntHeap heap;
  auto a = heap.Push(5, 1);
  heap.Push(5, 2);
  heap.Push(5, 3);
  // Same key, but A now counts as the newest: it goes behind B and C.
  ASSERT_TRUE(heap.Reschedule(a, 5));
  EXPECT_EQ(heap.Pop().second, 2);
  EXPECT_EQ(heap.Pop().second, 3);
  EXPECT_EQ(heap.Pop().second, 1);
}

TYPED_TEST(TimerHeapTest, RescheduleMovesBothWays) {
  typename TestFixture::IntHeap heap;
  std::vector<typename TestFixture::IntHeap::Handle> h;
  for (int i = 0; i < 100; ++i) h.push_back(heap.Push(100 + i, i));
  ASSERT_TRUE(heap.Reschedule(h[50], 1));  // up, to the top
  EXPECT_EQ(heap.TopPayload(), 50);
  EXPECT_EQ(heap.TopHandle(), h[50]);
  EXPECT_EQ(*heap.KeyOf(h[50]), 1);
  ASSERT_TRUE(heap.Reschedule(h[50], 1000));  // down, to the end
  ASSERT_TRUE(heap.Reschedule(h[0], 999));
  EXPECT_EQ(heap.TopPayload(), 1);
  EXPECT_VALID(heap);
  // The handles stay valid through both moves.
  EXPECT_TRUE(heap.Contains(h[50]));
  EXPECT_EQ(*heap.Get(h[50]), 50);
  std::vector<int> order;
  while (!heap.empty()) order.push_back(heap.Pop().second);
  ASSERT_EQ(order.size(), 100u);
  EXPECT_EQ(order[97], 99);  // key 199
  EXPECT_EQ(order[98], 0);   // key 999
  EXPECT_EQ(order[99], 50);  // key 1000
}

TYPED_TEST(TimerHeapTest, CancelRemovesOnlyThatElement) {
  typename TestFixture::IntHeap heap;
  std::vector<typename TestFixture::IntHeap::Handle> h;
  for (int i = 0; i < 50; ++i) h.push_back(heap.Push(i, i));
  for (int i = 0; i < 50; i += 2) ASSERT_TRUE(heap.Cancel(h[i]));
  EXPECT_EQ(heap.size(), 25u);
  EXPECT_VALID(heap);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(heap.Contains(h[i]), i % 2 == 1) << i;
    EXPECT_EQ(heap.Get(h[i]) != nullptr, i % 2 == 1) << i;
  }
  for (int i = 1; i < 50; i += 2) EXPECT_EQ(heap.Pop().second, i);
}

TYPED_TEST(TimerHeapTest, StaleHandlesAreRejectedSafely) {
  typename TestFixture::IntHeap heap;
  auto a = heap.Push(1, 1);
  auto b = heap.Push(2, 2);
  EXPECT_TRUE(heap.Cancel(a));
  EXPECT_FALSE(heap.Cancel(a));  // already cancelled
  EXPECT_FALSE(heap.Reschedule(a, 0));
  EXPECT_EQ(heap.Pop().second, 2);  // b fired
  EXPECT_FALSE(heap.Contains(b));
  EXPECT_FALSE(heap.Cancel(b));

  // The slots are reused by new pushes; the old handles must not reach the
  // new elements.
  auto c = heap.Push(3, 3);
  auto d = heap.Push(4, 4);
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
  EXPECT_NE(d, a);
  EXPECT_NE(d, b);
  EXPECT_FALSE(heap.Cancel(a));
  EXPECT_FALSE(heap.Reschedule(b, -1));
  EXPECT_EQ(heap.Get(a), nullptr);
  EXPECT_EQ(heap.KeyOf(b), nullptr);
  EXPECT_EQ(heap.size(), 2u);
  EXPECT_EQ(heap.TopPayload(), 3);
  EXPECT_TRUE(heap.Contains(c));
  EXPECT_TRUE(heap.Contains(d));
  EXPECT_VALID(heap);
}

TYPED_TEST(TimerHeapTest, HandlesFromAnotherHeapAreBoundsChecked) {
  typename TestFixture::IntHeap big;
  typename TestFixture::IntHeap small;
  typename TestFixture::IntHeap::Handle far;
  for (int i = 0; i < 100; ++i) far = big.Push(i, i);
  EXPECT_FALSE(small.Contains(far));
  EXPECT_FALSE(small.Cancel(far));
  EXPECT_EQ(small.Get(far), nullptr);
}

TYPED_TEST(TimerHeapTest, TopAccessors) {
  typename TestFixture::IntHeap heap;
  heap.Push(30, 3);
  auto h = heap.Push(10, 1);
  heap.Push(20, 2);
  EXPECT_EQ(heap.TopKey(), 10);
  EXPECT_EQ(heap.TopPayload(), 1);
  EXPECT_EQ(heap.TopHandle(), h);
  heap.TopPayload() = 11;  // mutable access
  EXPECT_EQ(*heap.Get(h), 11);
  *heap.Get(h) = 12;
  EXPECT_EQ(heap.Pop(), std::make_pair(int64_t{10}, 12));
  const auto& const_heap = heap;
  EXPECT_EQ(const_heap.TopPayload(), 2);
}

TYPED_TEST(TimerHeapTest, MoveOnlyPayloadAndDestruction) {
  typename TestFixture::template Heap<std::unique_ptr<int>> heap;
  auto tracker = std::make_shared<int>(0);
  // A payload that owns a reference: use_count tells whether it was
  // destroyed.
  typename TestFixture::template Heap<std::shared_ptr<int>> shared_heap;
  auto h1 = shared_heap.Push(1, tracker);
  shared_heap.Push(2, tracker);
  auto h3 = shared_heap.Push(3, tracker);
  EXPECT_EQ(tracker.use_count(), 4);
  shared_heap.Cancel(h3);
  EXPECT_EQ(tracker.use_count(), 3);
  auto popped = shared_heap.Pop();
  EXPECT_FALSE(shared_heap.Contains(h1));
  EXPECT_EQ(tracker.use_count(), 3);  // moved out, not copied
  popped.second.reset();
  EXPECT_EQ(tracker.use_count(), 2);

  auto h = heap.Push(5, std::make_unique<int>(55));
  heap.Push(6, std::make_unique<int>(66));
  EXPECT_EQ(**heap.Get(h), 55);
  std::unique_ptr<int> p = heap.Pop().second;
  EXPECT_EQ(*p, 55);
  EXPECT_EQ(*heap.TopPayload(), 66);
}

TYPED_TEST(TimerHeapTest, PayloadsDestroyedWithTheHeap) {
  auto tracker = std::make_shared<int>(0);
  {
    typename TestFixture::template Heap<std::shared_ptr<int>> heap;
    for (int i = 0; i < 10; ++i) heap.Push(i, tracker);
    EXPECT_EQ(tracker.use_count(), 11);
  }
  EXPECT_EQ(tracker.use_count(), 1);
}

TYPED_TEST(TimerHeapTest, ShiftAllKeepsOrderAndRelativeKeys) {
  typename TestFixture::IntHeap heap;
  std::vector<typename TestFixture::IntHeap::Handle> h;
  for (int i = 0; i < 200; ++i) h.push_back(heap.Push((i * 37) % 101, i));
  heap.ShiftAll(int64_t{-1000});
  EXPECT_VALID(heap);
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(*heap.KeyOf(h[i]), (i * 37) % 101 - 1000);
  }
  heap.ShiftAll(int64_t{2000});
  int64_t last = std::numeric_limits<int64_t>::min();
  while (!heap.empty()) {
    const int64_t k = heap.Pop().first;
    ASSERT_GE(k, last);
    ASSERT_GE(k, 1000);
    last = k;
  }
}

// A key that saturates at +-kLimit, as MonoTime does at its ends: a shift can
// merge distinct keys, which a plain O(n) shift would turn into a broken heap
// order between ties.
struct Clamped {
  static constexpr int64_t kLimit = 1000;
  int64_t v;
  friend Clamped operator+(Clamped a, int64_t d) {
    return Clamped{std::max(-kLimit, std::min(kLimit, a.v + d))};
  }
  friend bool operator<(Clamped a, Clamped b) { return a.v < b.v; }
};

TYPED_TEST(TimerHeapTest, ShiftAllRepairsOrderWhenTheShiftSaturates) {
  TimerHeap<Clamped, int, std::less<Clamped>, TestFixture::IntHeap::kArity>
      heap;
  std::mt19937_64 rng(3);
  // Later pushes get smaller keys, so after saturation every tie between
  // a parent and its child is out of FIFO order until repaired.
  for (int i = 0; i < 500; ++i) {
    heap.Push(Clamped{900 - i + static_cast<int64_t>(rng() % 5)}, i);
  }
  heap.ShiftAll(int64_t{700});  // most keys clamp to 1000
  std::string why;
  ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
  int64_t last_key = -Clamped::kLimit;
  int last_clamped_payload = -1;
  while (!heap.empty()) {
    auto [key, payload] = heap.Pop();
    ASSERT_GE(key.v, last_key);
    if (key.v == Clamped::kLimit) {
      // Ties at the clamp pop in push order.
      ASSERT_GT(payload, last_clamped_payload);
      last_clamped_payload = payload;
    }
    last_key = key.v;
  }
}

TYPED_TEST(TimerHeapTest, CustomCompareMakesAMaxHeap) {
  TimerHeap<int64_t, int, std::greater<int64_t>, TestFixture::IntHeap::kArity>
      heap;
  for (int i = 0; i < 20; ++i) heap.Push(i % 7, i);
  EXPECT_EQ(heap.TopKey(), 6);
  EXPECT_EQ(heap.Pop().second, 6);   // first pushed with key 6
  EXPECT_EQ(heap.Pop().second, 13);  // second
}

TYPED_TEST(TimerHeapTest, ClearInvalidatesEveryHandle) {
  auto tracker = std::make_shared<int>(0);
  typename TestFixture::template Heap<std::shared_ptr<int>> heap;
  std::vector<typename TestFixture::template Heap<std::shared_ptr<int>>::Handle>
      h;
  for (int i = 0; i < 1000; ++i) h.push_back(heap.Push(i, tracker));
  heap.Clear();
  EXPECT_TRUE(heap.empty());
  EXPECT_EQ(tracker.use_count(), 1);
  // Reuse every slot again: none of the old handles may match.
  for (int i = 0; i < 1000; ++i) heap.Push(i, tracker);
  for (const auto& old : h) ASSERT_FALSE(heap.Contains(old));
  EXPECT_VALID(heap);
}

TYPED_TEST(TimerHeapTest, MoveKeepsHandlesAndEmptiesTheSource) {
  typename TestFixture::IntHeap a;
  auto h = a.Push(5, 50);
  a.Push(6, 60);
  typename TestFixture::IntHeap b(std::move(a));
  EXPECT_TRUE(b.Contains(h));
  EXPECT_EQ(*b.Get(h), 50);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented
  a.Push(1, 10);           // the moved-from heap is usable
  EXPECT_EQ(a.TopPayload(), 10);
  EXPECT_VALID(a);

  typename TestFixture::IntHeap c;
  c.Push(0, 0);
  c = std::move(b);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.Pop().second, 50);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_VALID(c);
}

// Memory follows the load: a spike of a million timers, drained, must give
// the memory back.
TYPED_TEST(TimerHeapTest, MemoryShrinksAfterASpikeDrainsByPop) {
  typename TestFixture::IntHeap heap;
  const size_t idle_bytes = heap.MemoryBytes();
  std::mt19937_64 rng(11);
  constexpr int kSpike = 1000000;
  for (int i = 0; i < kSpike; ++i) {
    heap.Push(static_cast<int64_t>(rng() % 1000000000), i);
  }
  const size_t spike_bytes = heap.MemoryBytes();
  EXPECT_GE(heap.heap_capacity(), static_cast<size_t>(kSpike));
  EXPECT_GE(heap.slot_capacity(), static_cast<size_t>(kSpike));
  while (!heap.empty()) heap.Pop();
  EXPECT_LE(heap.heap_capacity(), 64u);
  EXPECT_LE(heap.slot_capacity(), 64u);
  EXPECT_LE(heap.MemoryBytes(), spike_bytes / 1000);
  EXPECT_GE(heap.MemoryBytes(), idle_bytes);
  EXPECT_VALID(heap);
}

TYPED_TEST(TimerHeapTest, MemoryShrinksAfterASpikeDrainsByCancel) {
  typename TestFixture::IntHeap heap;
  // Long-lived timers first: they hold the lowest slots.
  std::vector<typename TestFixture::IntHeap::Handle> keep;
  for (int i = 0; i < 10; ++i) keep.push_back(heap.Push(1000000 + i, -i));
  std::vector<typename TestFixture::IntHeap::Handle> spike;
  constexpr int kSpike = 200000;
  for (int i = 0; i < kSpike; ++i) spike.push_back(heap.Push(i, i));
  std::mt19937_64 rng(5);
  std::shuffle(spike.begin(), spike.end(), rng);
  for (size_t i = 0; i < spike.size(); ++i) {
    ASSERT_TRUE(heap.Cancel(spike[i]));
    // Shrinking never costs correctness midway.
    if (i % 20000 == 0) EXPECT_VALID(heap);
  }
  EXPECT_EQ(heap.size(), keep.size());
  EXPECT_LE(heap.heap_capacity(), 64u);
  EXPECT_LE(heap.slot_capacity(), 64u);
  // The survivors are intact, the cancelled handles stale.
  for (size_t i = 0; i < keep.size(); ++i) {
    ASSERT_TRUE(heap.Contains(keep[i]));
    EXPECT_EQ(*heap.Get(keep[i]), -static_cast<int>(i));
  }
  for (int i = 0; i < 1000; ++i) ASSERT_FALSE(heap.Contains(spike[i]));
  EXPECT_VALID(heap);
}

// From kLazyCancelMinSize (16384) entries, Cancel leaves the entry in the
// array, marked dead. A cancelled element must still never come out, by
// Pop or by either path of PopDue, and the dead entries must stay within
// their bound (VerifyInvariants) while cancels, pops and reschedules mix.
TYPED_TEST(TimerHeapTest, LazilyCancelledEntriesNeverComeOut) {
  typename TestFixture::IntHeap heap;
  constexpr int kCount = 40000;
  std::vector<int> keys(kCount);
  for (int i = 0; i < kCount; ++i) keys[i] = i;
  std::mt19937_64 rng(23);
  std::shuffle(keys.begin(), keys.end(), rng);
  std::vector<typename TestFixture::IntHeap::Handle> handles;
  for (int i = 0; i < kCount; ++i) handles.push_back(heap.Push(keys[i], i));
  std::vector<int> order(kCount);
  for (int i = 0; i < kCount; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<bool> cancelled(kCount, false);
  for (int j = 0; j < kCount * 3 / 5; ++j) {
    const int i = order[j];
    if (j % 3 == 0) {  // the event loop's path, with a right or wrong hint
      const uint32_t hint = j % 2 == 0 ? handles[i].record_index() : 7u;
      ASSERT_TRUE(heap.CancelWithRecord(handles[i], hint));
    } else {
      ASSERT_TRUE(heap.Cancel(handles[i]));
    }
    ASSERT_FALSE(heap.Contains(handles[i]));
    ASSERT_FALSE(heap.Cancel(handles[i]));
    cancelled[i] = true;
    if (j % 4 == 0) {  // a survivor moves: dead entries move with the rest
      const int k = order[kCount - 1 - j / 4];
      ASSERT_TRUE(heap.Reschedule(handles[k], keys[k] + kCount));
      keys[k] += kCount;
    }
    if (j % 5000 == 0) EXPECT_VALID(heap);
    if (j == kCount / 4) {  // dead entries move with the heap
      typename TestFixture::IntHeap moved(std::move(heap));
      EXPECT_TRUE(heap.empty());
      EXPECT_VALID(moved);
      heap = std::move(moved);
    }
  }
  EXPECT_EQ(heap.size(), static_cast<size_t>(kCount - kCount * 3 / 5));
  EXPECT_VALID(heap);

  std::vector<std::pair<int, int>> want;  // (key, payload) of survivors
  for (int i = 0; i < kCount; ++i) {
    if (!cancelled[i]) want.emplace_back(keys[i], i);
  }
  std::sort(want.begin(), want.end());
  std::vector<std::pair<int64_t, int>> got;
  for (int i = 0; i < 100; ++i) got.push_back(heap.Pop());
  heap.PopDue(kCount / 2, &got);  // some due
  heap.PopDue(3 * kCount, &got);  // the rest
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].first, want[i].first) << i;
    ASSERT_EQ(got[i].second, want[i].second) << i;
  }
  EXPECT_TRUE(heap.empty());
  EXPECT_LE(heap.heap_capacity(), 64u);
  EXPECT_LE(heap.slot_capacity(), 64u);
  EXPECT_VALID(heap);
}

// ShiftAll's repair (a saturating shift) re-heapifies dead entries with the
// live ones; a dead one must not end up on top, nor come out later.
TYPED_TEST(TimerHeapTest, ShiftAllRepairKeepsDeadEntriesOut) {
  TimerHeap<Clamped, int, std::less<Clamped>, TestFixture::IntHeap::kArity>
      heap;
  heap.SetLazyCancelMinSizeForTesting(16);
  std::vector<decltype(heap.Push(Clamped{0}, 0))> handles;
  for (int i = 0; i < 500; ++i) {
    handles.push_back(heap.Push(Clamped{900 - i + (i * 7) % 5}, i));
  }
  // Every third, but not so many that the sweep clears them first.
  for (int i = 1; i < 500; i += 3) ASSERT_TRUE(heap.Cancel(handles[i]));
  std::string why;
  ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
  heap.ShiftAll(int64_t{700});  // most keys clamp to 1000: a repair
  ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
  size_t popped = 0;
  int64_t last_key = -Clamped::kLimit;
  while (!heap.empty()) {
    auto [key, payload] = heap.Pop();
    ASSERT_NE(payload % 3, 1) << "a cancelled element came out";
    ASSERT_GE(key.v, last_key);
    last_key = key.v;
    ++popped;
  }
  EXPECT_EQ(popped, 500u - 167u);
  ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
}

// A lazily cancelled entry stays in the array, but its payload must not:
// Cancel destroys it at once, as it does below the lazy size.
TYPED_TEST(TimerHeapTest, LazyCancelDestroysThePayloadAtOnce) {
  auto tracker = std::make_shared<int>(0);
  typename TestFixture::template Heap<std::shared_ptr<int>> heap;
  std::vector<typename decltype(heap)::Handle> handles;
  for (int i = 0; i < 20000; ++i) handles.push_back(heap.Push(i, tracker));
  ASSERT_EQ(tracker.use_count(), 20001);
  // Neither the top nor the last entry (those go at once anyway).
  ASSERT_TRUE(heap.Cancel(handles[7777]));
  EXPECT_EQ(tracker.use_count(), 20000);
  EXPECT_EQ(heap.size(), 19999u);
  EXPECT_VALID(heap);
  heap.Clear();
  EXPECT_EQ(tracker.use_count(), 1);
  EXPECT_VALID(heap);
}

// The heap array regrows through reused slots, while one long-lived element
// at the top of the slot table keeps the table from shrinking: no new slot
// is made, yet the array must still be given back once it is less than a
// quarter full (MaybeShrink's cached threshold has to follow the growth).
TYPED_TEST(TimerHeapTest, ArrayRegrownThroughReusedSlotsStillShrinks) {
  typename TestFixture::IntHeap heap;
  constexpr int kTable = 4000;
  std::vector<typename TestFixture::IntHeap::Handle> handles;
  for (int i = 0; i < kTable; ++i) handles.push_back(heap.Push(i, i));
  const auto pinned = handles.back();  // the highest slot
  handles.pop_back();
  for (const auto& h : handles) ASSERT_TRUE(heap.Cancel(h));
  EXPECT_EQ(heap.size(), 1u);
  EXPECT_EQ(heap.slot_count(), static_cast<size_t>(kTable));
  EXPECT_LE(heap.heap_capacity(), 64u);
  EXPECT_VALID(heap);

  // The first push lists the free slots again; a removal re-arms the check.
  ASSERT_TRUE(heap.Cancel(heap.Push(-1, -1)));
  EXPECT_VALID(heap);

  handles.clear();
  for (int i = 0; i < 3000; ++i) handles.push_back(heap.Push(kTable + i, i));
  EXPECT_EQ(heap.slot_count(), static_cast<size_t>(kTable)) << "reused";
  const size_t grown = heap.heap_capacity();
  ASSERT_GE(grown, 3001u);
  EXPECT_VALID(heap);

  // Down to just under a quarter of the array: it must be reallocated.
  size_t cancelled = 0;
  while (heap.size() >= grown / 4) {
    ASSERT_TRUE(heap.Cancel(handles[cancelled++]));
  }
  EXPECT_LT(heap.heap_capacity(), grown);
  EXPECT_VALID(heap);
  while (cancelled < handles.size()) {
    ASSERT_TRUE(heap.Cancel(handles[cancelled++]));
  }
  ASSERT_TRUE(heap.Cancel(pinned));
  EXPECT_TRUE(heap.empty());
  EXPECT_LE(heap.heap_capacity(), 64u);
  EXPECT_LE(heap.slot_capacity(), 64u);
  EXPECT_VALID(heap);
}

TYPED_TEST(TimerHeapTest, TrimmedSlotsNeverResurrectOldHandles) {
  typename TestFixture::IntHeap heap;
  std::vector<typename TestFixture::IntHeap::Handle> old;
  for (int round = 0; round < 3; ++round) {
    std::vector<typename TestFixture::IntHeap::Handle> now;
    for (int i = 0; i < 5000; ++i) now.push_back(heap.Push(i, i));
    for (const auto& h : old) ASSERT_FALSE(heap.Contains(h));
    while (!heap.empty()) heap.Pop();  // trims the whole slot table
    old.insert(old.end(), now.begin(), now.end());
  }
  for (const auto& h : old) ASSERT_FALSE(heap.Contains(h));
}

TYPED_TEST(TimerHeapTest, ReserveSetsAFloorForShrinking) {
  typename TestFixture::IntHeap heap;
  heap.Reserve(10000);
  for (int i = 0; i < 20000; ++i) heap.Push(i, i);
  while (!heap.empty()) heap.Pop();
  EXPECT_GE(heap.heap_capacity(), 10000u);
  EXPECT_GE(heap.slot_capacity(), 10000u);
  EXPECT_LE(heap.heap_capacity(), 20000u);
}

TYPED_TEST(TimerHeapTest, ChurnBelowAQuarterDoesNotLoseElements) {
  // Hovering around the shrink threshold: repeated shrink/grow must keep
  // every element and handle.
  typename TestFixture::IntHeap heap;
  std::vector<typename TestFixture::IntHeap::Handle> h;
  for (int i = 0; i < 4096; ++i) h.push_back(heap.Push(i, i));
  for (int i = 0; i < 4000; ++i) heap.Pop();
  for (int cycle = 0; cycle < 50; ++cycle) {
    std::vector<typename TestFixture::IntHeap::Handle> extra;
    for (int i = 0; i < 300; ++i) extra.push_back(heap.Push(10000 + i, -1));
    for (const auto& e : extra) ASSERT_TRUE(heap.Cancel(e));
  }
  EXPECT_EQ(heap.size(), 96u);
  for (int i = 4000; i < 4096; ++i) ASSERT_TRUE(heap.Contains(h[i]));
  EXPECT_VALID(heap);
}

TYPED_TEST(TimerHeapTest, SlotTableDrainsAfterAPinnedSpike) {
  // A spike leaves a few long-lived timers at random slots, pinning the
  // slot table; steady churn follows. Once the long-lived timers go, the
  // table must shrink: churn must have moved to the lowest slots instead of
  // recycling the high ones.
  typename TestFixture::IntHeap heap;
  std::vector<typename TestFixture::IntHeap::Handle> spike;
  constexpr int kSpike = 100000;
  for (int i = 0; i < kSpike; ++i) spike.push_back(heap.Push(i, i));
  std::mt19937_64 rng(17);
  std::shuffle(spike.begin(), spike.end(), rng);
  const std::vector<typename TestFixture::IntHeap::Handle> survivors(
      spike.end() - 10, spike.end());
  spike.resize(spike.size() - 10);
  for (const auto& h : spike) ASSERT_TRUE(heap.Cancel(h));
  // Steady churn: one timer comes, one goes.
  for (int i = 0; i < kSpike; ++i) {
    ASSERT_TRUE(heap.Cancel(heap.Push(kSpike + i, -1)));
  }
  auto steady = heap.Push(0, 7);
  for (const auto& h : survivors) ASSERT_TRUE(heap.Cancel(h));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(heap.Cancel(heap.Push(kSpike + i, -1)));
  }
  EXPECT_EQ(heap.size(), 1u);
  EXPECT_TRUE(heap.Contains(steady));
  EXPECT_LE(heap.slot_count(), 64u);
  EXPECT_LE(heap.slot_capacity(), 128u);
  EXPECT_LE(heap.heap_capacity(), 64u);
  EXPECT_VALID(heap);
}

TYPED_TEST(TimerHeapTest, SequenceWrapKeepsFifoOrder) {
  // The FIFO tie-break uses 32-bit sequence numbers that are renumbered
  // when they run out; ties pushed on both sides of the wrap, and a
  // reschedule across it, must keep their order.
  typename TestFixture::IntHeap heap;
  for (int i = 0; i < 50; ++i) heap.Push(i % 2 == 0 ? 5 : 9, i);
  heap.SetNextSequenceForTesting(std::numeric_limits<uint32_t>::max() - 20);
  std::vector<typename TestFixture::IntHeap::Handle> late;
  for (int i = 50; i < 100; ++i)
    late.push_back(heap.Push(i % 2 == 0 ? 5 : 9, i));
  EXPECT_VALID(heap);
  // Rescheduled to key 5: now the newest of all the 5s.
  ASSERT_TRUE(heap.Reschedule(late[1], 5));  // payload 51
  std::vector<int> fives;
  std::vector<int> nines;
  while (!heap.empty()) {
    auto [key, payload] = heap.Pop();
    (key == 5 ? fives : nines).push_back(payload);
  }
  std::vector<int> want_fives;
  for (int i = 0; i < 100; i += 2) want_fives.push_back(i);
  want_fives.push_back(51);
  std::vector<int> want_nines;
  for (int i = 1; i < 100; i += 2) {
    if (i != 51) want_nines.push_back(i);
  }
  EXPECT_EQ(fives, want_fives);
  EXPECT_EQ(nines, want_nines);
}

// The example of README.md, kept compiling and true.
TEST(TimerHeapReadmeTest, Example) {
  eventide::TimerHeap<int64_t, std::string> timers;
  auto idle = timers.Push(30'000, "idle timeout");
  timers.Push(5'000, "retransmit");
  timers.Push(5'000, "flush");
  EXPECT_TRUE(timers.Reschedule(idle, 60'000));
  int64_t now = 10'000;
  std::vector<std::string> fired;
  while (!timers.empty() && timers.TopKey() <= now) {
    auto [deadline, what] = timers.Pop();
    EXPECT_LE(deadline, now);
    fired.push_back(what);
  }
  EXPECT_EQ(fired, (std::vector<std::string>{"retransmit", "flush"}));
  EXPECT_TRUE(timers.Cancel(idle));
  EXPECT_FALSE(timers.Cancel(idle));
  timers.Push(1'000, "x");
  timers.ShiftAll(int64_t{-3'600'000'000'000});
  EXPECT_EQ(timers.TopKey(), 1'000 - 3'600'000'000'000);
}

using TimerHeapDeathTest = ::testing::Test;

TEST(TimerHeapDeathTest, SequenceCannotMoveBack) {
  TimerHeap<int64_t, int> heap;
  heap.SetNextSequenceForTesting(100);
  EXPECT_DEATH(heap.SetNextSequenceForTesting(99), "sequence moved back");
}

TEST(TimerHeapDeathTest, PopOrTopOnEmptyAborts) {
  TimerHeap<int64_t, int> heap;
  EXPECT_DEATH(heap.Pop(), "empty heap");
  EXPECT_DEATH(heap.TopKey(), "empty heap");
  EXPECT_DEATH(heap.TopPayload(), "empty heap");
  EXPECT_DEATH(heap.TopHandle(), "empty heap");
}

TEST(TimerHeapLayoutTest, HandleIsSmallAndHashable) {
  using Heap = TimerHeap<int64_t, void*>;
  static_assert(sizeof(Heap::Handle) == 8, "8-byte handles");
  static_assert(Heap::kArity == 4, "4-ary by default");
  Heap heap;
  Heap::Handle a = heap.Push(1, nullptr);
  Heap::Handle b = heap.Push(1, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, a);
}

// record_index() names the element's record for as long as the handle is
// live, whatever the heap does around it; PrefetchRecord() takes any index
// (stale, or far past the table) and changes nothing.
TEST(TimerHeapLayoutTest, RecordIndexIsStableAndPrefetchIsOnlyAHint) {
  TimerHeap<int64_t, int> heap;
  std::vector<TimerHeap<int64_t, int>::Handle> handles;
  for (int i = 0; i < 100; ++i) handles.push_back(heap.Push(100 - i, i));
  const uint32_t kept = handles[50].record_index();
  for (int i = 0; i < 100; i += 3) {
    if (i != 50) heap.Cancel(handles[i]);
  }
  ASSERT_TRUE(heap.Reschedule(handles[50], 1));
  EXPECT_EQ(handles[50].record_index(), kept);
  EXPECT_NE(handles[51].record_index(), kept);
  heap.PrefetchRecord(kept);
  heap.PrefetchRecord(handles[0].record_index());  // cancelled: stale
  heap.PrefetchRecord(std::numeric_limits<uint32_t>::max());
  std::string why;
  EXPECT_TRUE(heap.VerifyInvariants(&why)) << why;
  EXPECT_EQ(heap.TopKey(), 1);
  EXPECT_EQ(heap.TopPayload(), 50);
}

// CancelWithRecord() cancels exactly what Cancel(h) would, whatever the
// record hint says: the right record, another live element's record (with
// the same generation number, so a generation check alone would take it),
// a freed record, an index past the table. A stale handle changes nothing.
TEST(TimerHeapLayoutTest, CancelWithRecordTrustsTheHandleNotTheHint) {
  using Heap = TimerHeap<int64_t, int>;
  Heap heap;
  std::vector<Heap::Handle> handles;
  for (int i = 0; i < 64; ++i) handles.push_back(heap.Push(1000 - i, i));
  const Heap::Handle freed = heap.Push(5, -1);
  ASSERT_TRUE(heap.Cancel(freed));

  // The right hint.
  EXPECT_TRUE(heap.CancelWithRecord(handles[10], handles[10].record_index()));
  EXPECT_FALSE(heap.Contains(handles[10]));
  // Another live element's record: handles[20] goes, handles[21] stays.
  EXPECT_TRUE(heap.CancelWithRecord(handles[20], handles[21].record_index()));
  EXPECT_FALSE(heap.Contains(handles[20]));
  EXPECT_TRUE(heap.Contains(handles[21]));
  // A freed record, and one past the table.
  EXPECT_TRUE(heap.CancelWithRecord(handles[30], freed.record_index()));
  EXPECT_TRUE(
      heap.CancelWithRecord(handles[40], std::numeric_limits<uint32_t>::max()));
  EXPECT_FALSE(heap.Contains(handles[30]));
  EXPECT_FALSE(heap.Contains(handles[40]));
  // Stale handles, with their own record as the hint or another's.
  EXPECT_FALSE(heap.CancelWithRecord(handles[10], handles[10].record_index()));
  EXPECT_FALSE(heap.CancelWithRecord(handles[20], handles[22].record_index()));
  EXPECT_FALSE(heap.CancelWithRecord(Heap::Handle(), 0));

  EXPECT_EQ(heap.size(), 60u);
  for (int i = 0; i < 64; ++i) {
    const bool gone = i == 10 || i == 20 || i == 30 || i == 40;
    EXPECT_EQ(heap.Contains(handles[i]), !gone) << i;
  }
  std::string why;
  EXPECT_TRUE(heap.VerifyInvariants(&why)) << why;
  EXPECT_EQ(heap.TopPayload(), 63);
}

// The pass that drops every dead entry has two forms: branch-free for
// entries that copy as bytes (an integer key), a plain loop for the rest (a
// string key). Both must keep exactly the live elements, free exactly the
// dead slots for reuse, and leave a valid heap.
template <typename Key, typename MakeKey>
void CheckSweepKeepsTheLiveOnes(MakeKey make_key) {
  using Heap = TimerHeap<Key, int>;
  Heap heap;
  heap.SetLazyCancelMinSizeForTesting(8);
  std::mt19937 rng(5);
  std::vector<typename Heap::Handle> handles;
  std::vector<int> values(200);
  for (int i = 0; i < 200; ++i) {
    values[i] = static_cast<int>(rng() % 1000);
    handles.push_back(heap.Push(make_key(values[i]), i));
  }
  const size_t slots_for_200 = heap.slot_capacity();
  std::vector<int> order(200);
  for (int i = 0; i < 200; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  // 150 cancels: dead entries pass half the array, so the pass runs.
  std::vector<bool> cancelled(200, false);
  std::string why;
  for (int k = 0; k < 150; ++k) {
    ASSERT_TRUE(heap.Cancel(handles[order[k]]));
    cancelled[order[k]] = true;
    ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
  }
  ASSERT_EQ(heap.size(), 50u);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(heap.Contains(handles[i]), !cancelled[i]) << i;
  }
  // Freed slots are reused: 150 new elements fit without the slot table
  // growing past what the first 200 needed.
  for (int i = 0; i < 150; ++i) heap.Push(make_key(5000 + i), 1000 + i);
  EXPECT_LE(heap.slot_capacity(), slots_for_200);
  ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
  // Everything comes out in key order, the 50 survivors first.
  std::vector<std::pair<int, int>> survivors;  // (value, payload)
  for (int i = 0; i < 200; ++i) {
    if (!cancelled[i]) survivors.push_back({values[i], i});
  }
  std::stable_sort(
      survivors.begin(), survivors.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [value, payload] : survivors) {
    ASSERT_FALSE(heap.empty());
    EXPECT_EQ(heap.TopKey(), make_key(value));
    EXPECT_EQ(heap.Pop().second, payload);
  }
  for (int i = 0; i < 150; ++i) EXPECT_EQ(heap.Pop().second, 1000 + i);
  EXPECT_TRUE(heap.empty());
}

TEST(TimerHeapLayoutTest, SweepOfDeadEntriesKeepsTheLiveOnes) {
  CheckSweepKeepsTheLiveOnes<int64_t>([](int v) { return int64_t{v}; });
  // Zero-padded, so string order is number order.
  CheckSweepKeepsTheLiveOnes<std::string>([](int v) {
    std::string s = std::to_string(v);
    return std::string(6 - s.size(), '0') + s;
  });
}

// An int64 key that is not trivially copyable: its heap takes the plain
// loop of the dead-entry pass where an int64_t heap takes the branch-free
// one.
struct NotTriviallyCopyableKey {
  int64_t value;
  NotTriviallyCopyableKey(int64_t v) : value(v) {}  // NOLINT(runtime/explicit)
  NotTriviallyCopyableKey(const NotTriviallyCopyableKey& other)
      : value(other.value) {}
  NotTriviallyCopyableKey& operator=(const NotTriviallyCopyableKey& other) {
    value = other.value;
    return *this;
  }
  friend bool operator<(const NotTriviallyCopyableKey& a,
                        const NotTriviallyCopyableKey& b) {
    return a.value < b.value;
  }
};
static_assert(!std::is_trivially_copyable<NotTriviallyCopyableKey>::value);

// Both forms of the pass run the same random sequence and must leave the
// heaps alike in everything that shows later: which slot each new element
// gets (the free list's contents and order), when the arrays shrink (the
// count of frees behind the free-list rebuild), and the pop order.
TEST(TimerHeapLayoutTest, BothSweepFormsLeaveTheSameState) {
  TimerHeap<int64_t, int> fast;
  TimerHeap<NotTriviallyCopyableKey, int> plain;
  fast.SetLazyCancelMinSizeForTesting(8);
  plain.SetLazyCancelMinSizeForTesting(8);
  std::mt19937 rng(23);
  std::vector<TimerHeap<int64_t, int>::Handle> fast_handles;
  std::vector<TimerHeap<NotTriviallyCopyableKey, int>::Handle> plain_handles;
  std::string why;
  int next_payload = 0;
  auto check_alike = [&](int round, const char* step) {
    ASSERT_EQ(fast.size(), plain.size()) << round << step;
    ASSERT_EQ(fast.slot_count(), plain.slot_count()) << round << step;
    ASSERT_EQ(fast.slot_capacity(), plain.slot_capacity()) << round << step;
    ASSERT_EQ(fast.MemoryBytes(), plain.MemoryBytes()) << round << step;
    ASSERT_TRUE(fast.VerifyInvariants(&why)) << why;
    ASSERT_TRUE(plain.VerifyInvariants(&why)) << why;
  };
  for (int round = 0; round < 12; ++round) {
    // Grow by a random amount; each new element must get the same slot.
    const int pushes = 20 + static_cast<int>(rng() % 400);
    for (int i = 0; i < pushes; ++i) {
      const int64_t key = static_cast<int64_t>(rng() % 5000);
      fast_handles.push_back(fast.Push(key, next_payload));
      plain_handles.push_back(plain.Push(key, next_payload));
      ++next_payload;
      ASSERT_EQ(fast_handles.back().record_index(),
                plain_handles.back().record_index())
          << round;
    }
    check_alike(round, " push");
    // Cancel most of what is there, in a random order: several passes,
    // some of them (5 with this seed) while the free list waits to be
    // rebuilt, where neither form lists the slots it frees.
    std::vector<size_t> order(fast_handles.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    const size_t cancels = order.size() * (60 + rng() % 40) / 100;
    for (size_t k = 0; k < cancels; ++k) {
      const size_t i = order[k];
      ASSERT_EQ(fast.Cancel(fast_handles[i]), plain.Cancel(plain_handles[i]));
    }
    check_alike(round, " cancel");
    // Pop a few: dead entries that reach the top are dropped there.
    const int pops = static_cast<int>(rng() % 20);
    for (int i = 0; i < pops && !fast.empty(); ++i) {
      ASSERT_FALSE(plain.empty());
      ASSERT_EQ(fast.TopKey(), plain.TopKey().value);
      ASSERT_EQ(fast.Pop().second, plain.Pop().second);
    }
    check_alike(round, " pop");
  }
  while (!fast.empty()) {
    ASSERT_FALSE(plain.empty());
    ASSERT_EQ(fast.Pop().second, plain.Pop().second);
  }
  EXPECT_TRUE(plain.empty());
  check_alike(12, " drained");
}

// TryCancelLazily does exactly what Cancel would where Cancel leaves the
// entry dead with nothing else to do, and nothing at all anywhere else.
// Keys 100, 99, ..., 81 with payloads 0 to 19: a sift-up each, so handle
// i's entry is not at i. Cancels lazily from 8 entries on.
struct DescendingTwenty {
  using Heap = TimerHeap<int64_t, uint32_t>;
  DescendingTwenty() {
    heap.SetLazyCancelMinSizeForTesting(8);
    for (uint32_t i = 0; i < 20; ++i) h.push_back(heap.Push(100 - i, i));
  }
  Heap heap;
  std::vector<Heap::Handle> h;
};

TEST(TimerHeapLayoutTest, TryCancelLazilyTakesOnlyTheSimpleLazyCase) {
  using Heap = DescendingTwenty::Heap;
  DescendingTwenty twenty;
  Heap& heap = twenty.heap;
  const std::vector<Heap::Handle>& h = twenty.h;
  std::string why;

  // Not the simple case: stale or default handle, wrong or out-of-range
  // hint, the top entry. Nothing changes.
  EXPECT_FALSE(heap.TryCancelLazily(Heap::Handle(), 0));
  EXPECT_FALSE(heap.TryCancelLazily(h[3], h[4].record_index()));
  EXPECT_FALSE(heap.TryCancelLazily(h[3], 1u << 30));
  EXPECT_FALSE(
      heap.TryCancelLazily(heap.TopHandle(), heap.TopHandle().record_index()));
  EXPECT_EQ(heap.size(), 20u);
  EXPECT_TRUE(heap.Contains(h[3]));

  // The simple case: gone at once, the handle stale, the entry never seen.
  ASSERT_TRUE(heap.TryCancelLazily(h[3], h[3].record_index()));
  EXPECT_FALSE(heap.Contains(h[3]));
  EXPECT_EQ(heap.size(), 19u);
  EXPECT_FALSE(heap.TryCancelLazily(h[3], h[3].record_index()));
  EXPECT_FALSE(heap.Cancel(h[3]));
  EXPECT_TRUE(heap.VerifyInvariants(&why)) << why;

  // Dead entries may not pass half the array: TryCancelLazily refuses the
  // cancel that would need the pass, and Cancel then does it all.
  int lazily = 1;
  for (uint32_t i = 0; i < 19; ++i) {
    if (i == 3 || !heap.Contains(h[i])) continue;
    if (heap.TryCancelLazily(h[i], h[i].record_index())) {
      ++lazily;
    } else {
      EXPECT_TRUE(heap.Cancel(h[i])) << i;
    }
    ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
  }
  EXPECT_GT(lazily, 2);
  // Only the last handle (key 81, the minimum) is left, at the top.
  EXPECT_EQ(heap.size(), 1u);
  EXPECT_EQ(heap.TopPayload(), 19u);

  // Ascending keys never sift: handle i's entry is at position i, so the
  // last entry is known. It is removed at once, not lazily.
  Heap ordered;
  ordered.SetLazyCancelMinSizeForTesting(8);
  std::vector<Heap::Handle> o;
  for (uint32_t i = 0; i < 20; ++i) o.push_back(ordered.Push(i, i));
  EXPECT_FALSE(ordered.TryCancelLazily(o[19], o[19].record_index()));
  EXPECT_FALSE(ordered.TryCancelLazily(o[0], o[0].record_index()));
  EXPECT_TRUE(ordered.Contains(o[19]));
  EXPECT_TRUE(ordered.TryCancelLazily(o[18], o[18].record_index()));
  EXPECT_EQ(ordered.size(), 19u);

  // Below the lazy size nothing is lazy.
  Heap small;
  std::vector<Heap::Handle> s;
  for (uint32_t i = 0; i < 5; ++i) s.push_back(small.Push(i, i));
  EXPECT_FALSE(small.TryCancelLazily(s[2], s[2].record_index()));
  EXPECT_TRUE(small.Contains(s[2]));

  // A payload with a destructor to run is left to Cancel.
  TimerHeap<int64_t, std::string> named;
  named.SetLazyCancelMinSizeForTesting(8);
  std::vector<TimerHeap<int64_t, std::string>::Handle> n;
  for (int i = 0; i < 20; ++i) n.push_back(named.Push(i, std::to_string(i)));
  EXPECT_FALSE(named.TryCancelLazily(n[5], n[5].record_index()));
  EXPECT_EQ(named.size(), 20u);
}

// For a caller with at most one live element per payload (the event
// loop), the payload names the element: ContainsOwned checks it next to
// the handle, TryCancelLazilyByOwner instead of it. That is what tells a
// stale handle apart from the element that reuses its record once the
// 32-bit generation has come round again: the plain forms cannot.
TEST(TimerHeapLayoutTest, OwnerCheckTellsAReusedGenerationApart) {
  using Heap = DescendingTwenty::Heap;
  DescendingTwenty twenty;
  Heap& heap = twenty.heap;
  const std::vector<Heap::Handle>& h = twenty.h;
  std::string why;

  EXPECT_TRUE(heap.ContainsOwned(h[3], 3u));
  EXPECT_FALSE(heap.ContainsOwned(h[3], 4u));
  // The wrong owner, or the right one with another element's record.
  EXPECT_FALSE(heap.TryCancelLazilyByOwner(h[3].record_index(), 4u));
  EXPECT_FALSE(heap.TryCancelLazilyByOwner(h[4].record_index(), 3u));
  EXPECT_FALSE(heap.TryCancelLazilyByOwner(1u << 30, 3u));
  EXPECT_TRUE(heap.Contains(h[3]));
  EXPECT_TRUE(heap.Contains(h[4]));
  EXPECT_EQ(heap.size(), 20u);
  ASSERT_TRUE(heap.TryCancelLazilyByOwner(h[3].record_index(), 3u));
  EXPECT_FALSE(heap.Contains(h[3]));
  EXPECT_FALSE(heap.ContainsOwned(h[3], 3u));
  // Dead (its record still reserved, its payload still there): refused.
  EXPECT_FALSE(heap.TryCancelLazilyByOwner(h[3].record_index(), 3u));
  EXPECT_EQ(heap.size(), 19u);
  EXPECT_TRUE(heap.VerifyInvariants(&why)) << why;
  // Not the simple lazy case (the top): refused, as TryCancelLazily would.
  const Heap::Handle top = heap.TopHandle();
  EXPECT_FALSE(heap.TryCancelLazilyByOwner(top.record_index(), 19u));
  EXPECT_TRUE(heap.Contains(top));

  // Below the lazy size a cancel frees the record at once, and the next
  // push reuses it: here with the stale handle's own generation.
  Heap eager;
  std::vector<Heap::Handle> e;
  for (uint32_t i = 0; i < 20; ++i) e.push_back(eager.Push(1000 - 10 * i, i));
  ASSERT_TRUE(eager.Cancel(e[7]));
  const Heap::Handle stale = e[7];
  eager.RewindGenerationForTesting(stale);
  // Key 815: sifts up to the first level, neither the top nor the last
  // entry, so a lazy cancel applies to it.
  const Heap::Handle reused = eager.Push(815, 77u);
  ASSERT_EQ(reused, stale);  // what 2^31 reuses of the record would give
  EXPECT_TRUE(eager.Contains(stale));  // the plain check is fooled
  EXPECT_FALSE(eager.ContainsOwned(stale, 7u));
  EXPECT_TRUE(eager.ContainsOwned(reused, 77u));
  eager.SetLazyCancelMinSizeForTesting(8);
  EXPECT_FALSE(eager.TryCancelLazilyByOwner(stale.record_index(), 7u));
  EXPECT_TRUE(eager.VerifyInvariants(&why)) << why;
  // The new element is untouched: still there, with its key.
  ASSERT_NE(eager.KeyOf(reused), nullptr);
  EXPECT_EQ(*eager.KeyOf(reused), 815);
  EXPECT_EQ(eager.size(), 20u);
  // Its own owner cancels it, lazily: the refusal above was the owner's.
  EXPECT_TRUE(eager.TryCancelLazilyByOwner(reused.record_index(), 77u));
  EXPECT_FALSE(eager.Contains(reused));
  EXPECT_EQ(eager.size(), 19u);
  EXPECT_TRUE(eager.VerifyInvariants(&why)) << why;

  // Payloads that cannot be read while dead are never cancelled this way.
  TimerHeap<int64_t, std::string> named;
  named.SetLazyCancelMinSizeForTesting(8);
  std::vector<TimerHeap<int64_t, std::string>::Handle> n;
  for (int i = 0; i < 20; ++i) n.push_back(named.Push(i, std::to_string(i)));
  EXPECT_TRUE(named.ContainsOwned(n[5], "5"));
  EXPECT_FALSE(named.TryCancelLazilyByOwner(n[5].record_index(), "5"));
  EXPECT_EQ(named.size(), 20u);
}

// Past 2 MB the arrays live on huge pages (huge_pages.h): grown into them,
// shrunk back out of them, with the heap order and handles intact across
// every move.
TEST(TimerHeapLayoutTest, ArraysMoveIntoAndOutOfHugePages) {
  using Heap = TimerHeap<int64_t, uint32_t>;
  Heap heap;
  constexpr uint32_t kCount = 300000;  // a 4.8 MB heap array, 2.4 MB records
  std::mt19937_64 rng(41);
  std::vector<Heap::Handle> handles;
  std::vector<int64_t> keys;
  for (uint32_t i = 0; i < kCount; ++i) {
    keys.push_back(static_cast<int64_t>(rng() % 1000000));
    handles.push_back(heap.Push(keys.back(), i));
  }
  std::vector<int64_t> kept;
  for (uint32_t i = 0; i < kCount; ++i) {
    if (i % 3 == 0) {
      ASSERT_TRUE(heap.Cancel(handles[i]));
    } else {
      kept.push_back(keys[i]);
    }
  }
  std::string why;
  ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
  // Past 2 MB of 16-byte entries, so the entry array is on the huge path.
  ASSERT_GE(heap.heap_capacity() * 16, huge_pages::kPageSize);
  // Every handle still names its own element after the growth.
  for (uint32_t i = 0; i < kCount; ++i) {
    if (i % 3 == 0) {
      ASSERT_FALSE(heap.Contains(handles[i])) << i;
    } else {
      ASSERT_TRUE(heap.Contains(handles[i])) << i;
      ASSERT_EQ(*heap.Get(handles[i]), i);
      ASSERT_EQ(*heap.KeyOf(handles[i]), keys[i]);
    }
  }
  std::sort(kept.begin(), kept.end());
  for (size_t i = 0; i < kept.size(); ++i) {
    ASSERT_EQ(heap.TopKey(), kept[i]) << i;
    const uint32_t payload = heap.TopPayload();
    ASSERT_EQ(keys[payload], kept[i]);
    heap.Pop();
    if (i % 50000 == 0) {
      ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
    }
  }
  EXPECT_TRUE(heap.empty());
  // Small again: the shrunken arrays still take new elements.
  const Heap::Handle h = heap.Push(5, 1);
  EXPECT_EQ(heap.TopPayload(), 1u);
  EXPECT_TRUE(heap.Cancel(h));
}

// The heap's own growable array: what it shares with std::vector must
// behave like it, since the heap's arrays switch between the two with the
// element type.
TEST(PodArrayTest, BehavesLikeAVectorForWhatTheHeapUses) {
  using Array =
      timer_heap_internal::PodArray<uint32_t, std::allocator<uint32_t>>;
  Array a;
  std::vector<uint32_t> model;
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.capacity(), 0u);
  for (uint32_t i = 0; i < 1000; ++i) {
    a.push_back(i * 7);
    model.push_back(i * 7);
    ASSERT_GE(a.capacity(), a.size());
  }
  ASSERT_EQ(a.size(), model.size());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), model.begin()));
  EXPECT_EQ(a.back(), 999u * 7);
  // Doubling: 1000 appends one at a time reallocated ~11 times, not 1000.
  EXPECT_LT(a.capacity(), 2048u);

  a.reserve(5000);
  EXPECT_EQ(a.capacity(), 5000u);  // exactly, as std::vector::reserve
  EXPECT_TRUE(std::equal(a.begin(), a.end(), model.begin()));
  a.reserve(10);  // never shrinks
  EXPECT_EQ(a.capacity(), 5000u);

  // Room checked by the caller: no reallocation, the data stays put.
  const uint32_t* before = a.data();
  a.AppendUnchecked(42u);
  EXPECT_EQ(a.data(), before);
  EXPECT_EQ(a.back(), 42u);
  a.pop_back();

  a.erase(a.begin() + 600, a.end());
  EXPECT_EQ(a.size(), 600u);
  const uint32_t extra[] = {1, 2, 3};
  a.insert(a.end(), extra, extra + 3);
  ASSERT_EQ(a.size(), 603u);
  EXPECT_EQ(a[600], 1u);
  EXPECT_EQ(a[602], 3u);
  EXPECT_EQ(a[599], 599u * 7);

  Array b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): specified
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_EQ(b.size(), 603u);
  Array c;
  c.push_back(9);
  swap(b, c);
  EXPECT_EQ(b.size(), 1u);
  EXPECT_EQ(c.size(), 603u);
  c = std::move(b);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], 9u);
  c.clear();
  EXPECT_TRUE(c.empty());
}

TEST(PodArrayDeathTest, RangeOperationsAwayFromTheEndAbort) {
  using Array =
      timer_heap_internal::PodArray<uint32_t, std::allocator<uint32_t>>;
  Array a;
  for (uint32_t i = 0; i < 10; ++i) a.push_back(i);
  const uint32_t one[] = {1};
  EXPECT_DEATH(a.erase(a.begin(), a.begin() + 2), "not at the end");
  EXPECT_DEATH(a.insert(a.begin(), one, one + 1), "not at the end");
}

// Push's inline path takes a record off the free list or past the table's
// end; everything else (growth, a sequence number about to wrap) goes the
// slow way. Both must hand out records that a model agrees with.
template <typename Payload>
void PushThroughEveryPath() {
  TimerHeap<int64_t, Payload> heap;
  std::mt19937_64 rng(77);
  std::map<std::pair<int64_t, uint64_t>, int> model;  // (key, order) -> id
  std::vector<typename TimerHeap<int64_t, Payload>::Handle> handles;
  std::vector<std::pair<int64_t, uint64_t>> where;
  uint64_t order = 0;
  heap.SetNextSequenceForTesting(std::numeric_limits<uint32_t>::max() - 300);
  for (int round = 0; round < 2000; ++round) {
    const int id = static_cast<int>(handles.size());
    const int64_t key = static_cast<int64_t>(rng() % 50);
    handles.push_back(heap.Push(key, static_cast<Payload>(id)));
    where.emplace_back(key, order);
    model[{key, order++}] = id;
    if (rng() % 3 == 0 && !model.empty()) {
      // Cancel a random live one: its record goes on the free list.
      const int victim = static_cast<int>(rng() % handles.size());
      if (model.erase(where[victim]) == 1) {
        ASSERT_TRUE(heap.Cancel(handles[victim]));
      } else {
        ASSERT_FALSE(heap.Cancel(handles[victim]));
      }
    }
    std::string why;
    ASSERT_TRUE(heap.VerifyInvariants(&why)) << round << ": " << why;
  }
  while (!model.empty()) {
    ASSERT_EQ(heap.TopKey(), model.begin()->first.first);
    ASSERT_EQ(static_cast<int>(heap.TopPayload()), model.begin()->second);
    heap.Pop();
    model.erase(model.begin());
  }
  EXPECT_TRUE(heap.empty());
}

TEST(TimerHeapLayoutTest, ForEachLiveSkipsDeadEntries) {
  TimerHeap<int64_t, std::string> heap;
  heap.SetLazyCancelMinSizeForTesting(1);  // cancelled entries stay, dead
  std::vector<TimerHeap<int64_t, std::string>::Handle> handles;
  for (int i = 0; i < 10; ++i) {
    handles.push_back(heap.Push(100 - i, "e" + std::to_string(i)));
  }
  for (int i : {2, 5, 7}) ASSERT_TRUE(heap.Cancel(handles[i]));
  std::map<int64_t, std::string> seen;
  heap.ForEachLive([&](TimerHeap<int64_t, std::string>::Handle h, int64_t key,
                       const std::string& payload) {
    EXPECT_TRUE(heap.Contains(h));
    EXPECT_EQ(*heap.KeyOf(h), key);
    EXPECT_EQ(*heap.Get(h), payload);
    EXPECT_TRUE(seen.emplace(key, payload).second) << key;
  });
  ASSERT_EQ(seen.size(), heap.size());
  ASSERT_EQ(seen.size(), 7u);
  for (int i = 0; i < 10; ++i) {
    const bool cancelled = i == 2 || i == 5 || i == 7;
    EXPECT_EQ(seen.count(100 - i), cancelled ? 0u : 1u) << i;
  }
}

TEST(TimerHeapPushTest, InlineAndSlowPathsAgreeWithAModel) {
  PushThroughEveryPath<uint32_t>();  // bare payload: the inline path
  PushThroughEveryPath<double>();    // bare too, 8 bytes
}

// One timer re-armed after each expiry trims and recreates record 0 every
// time, each cycle advancing the generation new records start from by 2;
// after 2^31 cycles it wraps. Compared as plain numbers the wrapped value
// looked old, the start stayed at 0xFFFFFFFE for good, every new record got
// 0xFFFFFFFF, and a stale handle passed for the next timer after a single
// reuse: Cancel(stale) cancelled someone else's timer.
TEST(TimerHeapTest, GenerationsStayDistinctAcrossTheWrap) {
  TimerHeap<int64_t, uint32_t> heap;
  heap.SetNewRecordGenerationForTesting(0xFFFFFFFEu);
  std::vector<TimerHeap<int64_t, uint32_t>::Handle> fired;
  for (uint32_t i = 0; i < 4; ++i) {
    const auto h = heap.Push(10 + i, i);  // record 0, across the wrap
    for (const auto& old : fired) {
      EXPECT_NE(old, h) << "cycle " << i;
      EXPECT_FALSE(heap.Contains(old)) << "cycle " << i;
      EXPECT_FALSE(heap.Cancel(old)) << "cycle " << i;
    }
    EXPECT_TRUE(heap.Contains(h));
    ASSERT_EQ(heap.Pop().second, i);
    fired.push_back(h);
    std::string why;
    ASSERT_TRUE(heap.VerifyInvariants(&why)) << why;
  }
}

}  // namespace
}  // namespace eventide
