// Property test: TimerHeap against a reference model over long random
// sequences of push / cancel / reschedule / pop / shift, including operations
// on stale handles.
//
// The model is a std::map keyed by (key, insertion order): its first element
// is exactly what the heap must return, FIFO tie-break included (a
// reschedule takes a fresh insertion order, as the heap documents). After
// every step the test checks the size, the top (key, payload, handle), and
// the handle that step touched; every live handle, a sample of dead handles
// and the heap's internal invariants are checked after every step while the
// heap is small, and every few steps once it is large.
//
// Total: about 900,000 operations over 3 layouts, each with cancels eager
// and lazy from two sizes; well under 10 s with ASan.

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "timerheap/timer_heap.h"

namespace eventide {
namespace {

struct Scenario {
  const char* name;
  uint64_t seed;
  int ops;
  int64_t key_range;     // small ranges force many equal keys
  size_t soft_max_size;  // pushes slow down above this size
  // Grow-then-drain phases of this many ops (0: steady mix). Draining to
  // empty exercises the slot-table compaction and slot reuse.
  int phase_ops;
  // Every this many ops (0: never), move the heap's 32-bit insertion
  // counter close to its end, so the renumbering on wrap runs mid-sequence.
  int seq_wrap_every = 0;
};

template <int Arity>
class ModelChecker {
 public:
  using Heap = TimerHeap<int64_t, uint64_t, std::less<int64_t>, Arity>;
  using Handle = typename Heap::Handle;

  // `lazy_cancel_min_size`: 0 keeps the heap's default (eager below 16384
  // entries, which these heaps never reach); a small value makes most
  // cancels leave dead entries, so the sweeps and the dropping of dead tops
  // run against the model too.
  ModelChecker(const Scenario& s, size_t lazy_cancel_min_size)
      : s_(s), rng_(s.seed) {
    if (lazy_cancel_min_size != 0) {
      heap_.SetLazyCancelMinSizeForTesting(lazy_cancel_min_size);
    }
  }

  void Run() {
    for (step_ = 0; step_ < s_.ops; ++step_) {
      Step();
      CheckTopAndSize();
      if (::testing::Test::HasFatalFailure()) return;
      const bool full = heap_.size() <= 64 || step_ % 101 == 0;
      if (full) CheckEverything();
      if (::testing::Test::HasFatalFailure()) return;
    }
    // Drain completely at the end: the pop order is the model's order.
    while (!live_.empty()) {
      DoPop();
      CheckTopAndSize();
      if (::testing::Test::HasFatalFailure()) return;
    }
    CheckEverything();
    EXPECT_LE(heap_.slot_capacity(), 64u) << "memory not given back";
    EXPECT_GT(counts_[kPush], 0);
    EXPECT_GT(counts_[kStale], 0);
    EXPECT_GT(counts_[kPopDue], 0);
  }

 private:
  enum Op {
    kPush,
    kPop,
    kCancel,
    kReschedule,
    kShift,
    kStale,
    kPopDue,
    kNumOps
  };

  struct Live {
    Handle handle;
    int64_t key;
    uint64_t order;
    uint64_t id;
  };

  std::string Where() const {
    return std::string(s_.name) + " arity " + std::to_string(Arity) + " step " +
           std::to_string(step_);
  }

  Op PickOp() {
    bool growing = true;
    if (s_.phase_ops > 0) growing = (step_ / s_.phase_ops) % 2 == 0;
    const bool too_big = heap_.size() >= s_.soft_max_size;
    int push = growing ? 45 : 12;
    if (too_big) push = 5;
    const int weights[kNumOps] = {push, growing ? 15 : 35, 15, 20, 1, 6, 2};
    int total = 0;
    for (int w : weights) total += w;
    int r = static_cast<int>(rng_() % total);
    for (int op = 0; op < kNumOps; ++op) {
      if (r < weights[op]) return static_cast<Op>(op);
      r -= weights[op];
    }
    return kPush;
  }

  int64_t RandomKey() {
    return static_cast<int64_t>(rng_() % static_cast<uint64_t>(s_.key_range));
  }

  void Step() {
    if (s_.seq_wrap_every > 0 && step_ % s_.seq_wrap_every == 0) {
      heap_.SetNextSequenceForTesting(std::numeric_limits<uint32_t>::max() -
                                      static_cast<uint32_t>(rng_() % 64));
    }
    const Op op = PickOp();
    ++counts_[op];
    switch (op) {
      case kPush:
        DoPush();
        break;
      case kPop:
        if (!live_.empty()) DoPop();
        break;
      case kCancel:
        if (!live_.empty()) DoCancel();
        break;
      case kReschedule:
        if (!live_.empty()) DoReschedule();
        break;
      case kShift:
        DoShift();
        break;
      case kStale:
        DoStale();
        break;
      case kPopDue:
        DoPopDue();
        break;
      case kNumOps:
        break;
    }
  }

  void DoPush() {
    const int64_t key = RandomKey();
    const uint64_t id = next_id_++;
    const Handle h = heap_.Push(key, id);
    const uint64_t order = next_order_++;
    model_.emplace(std::make_pair(key, order), id);
    index_of_[id] = live_.size();
    live_.push_back(Live{h, key, order, id});
    ExpectLive(live_.back());
  }

  void DoPop() {
    ASSERT_FALSE(heap_.empty()) << Where();
    auto first = model_.begin();
    const uint64_t want_id = first->second;
    const int64_t want_key = first->first.first;
    const size_t index = IndexOf(want_id);
    const Handle h = live_[index].handle;
    auto [key, id] = heap_.Pop();
    ASSERT_EQ(key, want_key) << Where();
    ASSERT_EQ(id, want_id) << Where() << ": FIFO order among equal keys";
    model_.erase(first);
    Kill(index);
    ExpectDead(h);
  }

  // PopDue up to a limit that takes none, a few, or (with large heaps) the
  // bulk path's share of the heap; the result must be the model's prefix.
  void DoPopDue() {
    int64_t limit = RandomKey() - s_.key_range / 2;
    if (rng_() % 4 == 0) limit = RandomKey();
    std::vector<std::pair<int64_t, uint64_t>> out;
    const size_t got = heap_.PopDue(limit, &out);
    ASSERT_EQ(got, out.size()) << Where();
    for (const auto& [key, id] : out) {
      ASSERT_FALSE(model_.empty()) << Where();
      auto first = model_.begin();
      ASSERT_EQ(key, first->first.first) << Where();
      ASSERT_EQ(id, first->second) << Where() << ": PopDue order";
      const size_t index = IndexOf(id);
      const Handle h = live_[index].handle;
      model_.erase(first);
      Kill(index);
      ExpectDead(h);
    }
    if (!model_.empty()) {
      ASSERT_GT(model_.begin()->first.first, limit) << Where() << ": left due";
    }
  }

  void DoCancel() {
    const size_t index = rng_() % live_.size();
    const Live victim = live_[index];
    if (rng_() % 2 == 0) {
      ASSERT_TRUE(heap_.Cancel(victim.handle)) << Where();
    } else {
      // The event loop's way: the fast path, and the full one where it
      // refuses (having changed nothing).
      const uint32_t record = victim.handle.record_index();
      if (!heap_.TryCancelLazily(victim.handle, record)) {
        ASSERT_TRUE(heap_.Contains(victim.handle)) << Where();
        ASSERT_TRUE(heap_.CancelWithRecord(victim.handle, record)) << Where();
      }
    }
    model_.erase(std::make_pair(victim.key, victim.order));
    Kill(index);
    ExpectDead(victim.handle);
  }

  void DoReschedule() {
    const size_t index = rng_() % live_.size();
    Live& l = live_[index];
    const int64_t key = RandomKey();
    ASSERT_TRUE(heap_.Reschedule(l.handle, key)) << Where();
    model_.erase(std::make_pair(l.key, l.order));
    l.key = key;
    l.order = next_order_++;
    model_.emplace(std::make_pair(l.key, l.order), l.id);
    ExpectLive(l);
  }

  void DoShift() {
    const int64_t delta =
        static_cast<int64_t>(rng_() % 41) - 20;  // both directions
    heap_.ShiftAll(delta);
    std::map<std::pair<int64_t, uint64_t>, uint64_t> shifted;
    for (const auto& [k, id] : model_) {
      shifted.emplace(std::make_pair(k.first + delta, k.second), id);
    }
    model_.swap(shifted);
    for (Live& l : live_) l.key += delta;
  }

  void DoStale() {
    if (dead_.empty()) return;
    const Handle h = dead_[rng_() % dead_.size()];
    const size_t before = heap_.size();
    switch (rng_() % 3) {
      case 0:
        ASSERT_FALSE(heap_.Cancel(h)) << Where();
        ASSERT_FALSE(heap_.TryCancelLazily(h, h.record_index())) << Where();
        break;
      case 1:
        ASSERT_FALSE(heap_.Reschedule(h, RandomKey())) << Where();
        break;
      default:
        ExpectDead(h);
        break;
    }
    ASSERT_EQ(heap_.size(), before) << Where();
  }

  size_t IndexOf(uint64_t id) const {
    auto it = index_of_.find(id);
    if (it == index_of_.end()) {
      ADD_FAILURE() << Where() << ": id " << id << " not live in the model";
      return 0;
    }
    return it->second;
  }

  void Kill(size_t index) {
    if (dead_.size() < 4096) {
      dead_.push_back(live_[index].handle);
    } else {
      dead_[rng_() % dead_.size()] = live_[index].handle;
    }
    index_of_.erase(live_[index].id);
    if (index + 1 != live_.size()) {
      live_[index] = live_.back();
      index_of_[live_[index].id] = index;
    }
    live_.pop_back();
  }

  void ExpectLive(const Live& l) {
    ASSERT_TRUE(heap_.Contains(l.handle)) << Where();
    ASSERT_NE(heap_.KeyOf(l.handle), nullptr) << Where();
    ASSERT_EQ(*heap_.KeyOf(l.handle), l.key) << Where();
    ASSERT_NE(heap_.Get(l.handle), nullptr) << Where();
    ASSERT_EQ(*heap_.Get(l.handle), l.id) << Where();
  }

  void ExpectDead(Handle h) {
    ASSERT_FALSE(heap_.Contains(h)) << Where();
    ASSERT_EQ(heap_.KeyOf(h), nullptr) << Where();
    ASSERT_EQ(heap_.Get(h), nullptr) << Where();
  }

  void CheckTopAndSize() {
    ASSERT_EQ(heap_.size(), model_.size()) << Where();
    ASSERT_EQ(heap_.empty(), model_.empty()) << Where();
    if (model_.empty()) return;
    const auto& first = *model_.begin();
    ASSERT_EQ(heap_.TopKey(), first.first.first) << Where();
    ASSERT_EQ(heap_.TopPayload(), first.second) << Where();
    ASSERT_EQ(heap_.TopHandle(), live_[IndexOf(first.second)].handle)
        << Where();
  }

  void CheckEverything() {
    std::string why;
    ASSERT_TRUE(heap_.VerifyInvariants(&why)) << Where() << ": " << why;
    for (const Live& l : live_) {
      ExpectLive(l);
      if (::testing::Test::HasFatalFailure()) return;
    }
    for (size_t i = 0; i < dead_.size(); i += 1 + dead_.size() / 64) {
      ExpectDead(dead_[i]);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  const Scenario s_;
  std::mt19937_64 rng_;
  Heap heap_;
  std::map<std::pair<int64_t, uint64_t>, uint64_t> model_;
  std::vector<Live> live_;
  std::unordered_map<uint64_t, size_t> index_of_;  // id -> index in live_
  std::vector<Handle> dead_;
  uint64_t next_id_ = 0;
  uint64_t next_order_ = 0;
  int step_ = 0;
  int counts_[kNumOps] = {};
};

// Mixed sizes and key ranges; ~100,000 operations per layout.
const Scenario kScenarios[] = {
    // Tiny heap, keys 0..7: nearly everything ties, full checks every step.
    {"tiny-ties", 1, 30000, 8, 40, 0, 0},
    // Small heap, wider keys; the sequence counter wraps every 3000 ops.
    {"small", 2, 30000, 1000, 200, 0, 3000},
    // Grows to a few thousand and drains to empty, repeatedly.
    {"spikes", 3, 40000, 50, 5000, 5000, 0},
};

template <int Arity>
void RunAll() {
  for (const Scenario& s : kScenarios) {
    // 64: the sweep when the array falls below half of it runs too.
    for (size_t lazy_from : {size_t{0}, size_t{4}, size_t{64}}) {
      SCOPED_TRACE(std::string(s.name) + ", lazy cancel from " +
                   std::to_string(lazy_from));
      ModelChecker<Arity> checker(s, lazy_from);
      checker.Run();
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(TimerHeapPropertyTest, BinaryMatchesModel) { RunAll<2>(); }
TEST(TimerHeapPropertyTest, FourAryMatchesModel) { RunAll<4>(); }
TEST(TimerHeapPropertyTest, EightAryMatchesModel) { RunAll<8>(); }

}  // namespace
}  // namespace eventide
