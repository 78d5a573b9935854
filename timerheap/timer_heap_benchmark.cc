// TimerHeap against the usual alternatives, in one binary.
//
//   ./bazelw run --config=bench //timerheap:timer_heap_benchmark --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// (one command line). The `per_op` counter is the time per element
// operation (the timed region of one iteration does n of them).
//
// Contenders, all with int64 keys, 8-byte payloads and FIFO order for equal
// keys (the same semantics as TimerHeap):
//   Heap2, Heap4, Heap8  TimerHeap with 2, 4 and 8 children per node; keys
//                        stored beside the slot index in the heap array.
//   Indirect2            a binary heap of slot indices whose keys live in the
//                        slot records (libevent's min_heap layout: the heap
//                        holds event pointers, the key sits in the event).
//   PqLazy               std::priority_queue; cancel marks the element stale
//                        through a per-id generation, pop skips stale
//                        entries, reschedule = mark stale + push a new entry.
//                        Entries are {key, 64-bit seq, id, generation}: 24
//                        bytes (TimerHeap gets FIFO into 16 bytes with a
//                        32-bit sequence it renumbers on wrap, which a plain
//                        priority_queue cannot do in place). Cancel is O(1)
//                        here, but the dead entries stay in memory until
//                        popped, and every pop pays for skipping them.
//   Set                  std::set ordered by (key, seq); the handle is the
//                        iterator; reschedule re-inserts the extracted node
//                        with an end() hint (no allocation).
//
// Operations, for n = 1,000 / 100,000 / 1,000,000 timers:
//   Push        n pushes into an empty container (random keys).
//   PushPop     n pushes, then pop everything.
//   PopAll      pop everything from a container of n.
//   Cancel      cancel all n elements in random order.
//   Reschedule  n times: pick a random live timer, move its deadline to
//               now + timeout (the latest deadline): "push the idle timeout
//               forward".
// Setup and teardown are outside the timed region.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <queue>
#include <random>
#include <set>
#include <vector>

#include "timerheap/timer_heap.h"

namespace eventide {
namespace {

// ---------------------------------------------------------------- adapters

template <int Arity>
class HeapAdapter {
 public:
  using Heap = TimerHeap<int64_t, uint64_t, std::less<int64_t>, Arity>;
  using Handle = typename Heap::Handle;
  Handle Push(int64_t key, uint64_t payload) {
    return heap_.Push(key, payload);
  }
  void Cancel(Handle& h) { heap_.Cancel(h); }
  void Reschedule(Handle& h, int64_t key) { heap_.Reschedule(h, key); }
  uint64_t Pop() { return heap_.Pop().second; }
  bool Empty() { return heap_.empty(); }
  void ShiftAll(int64_t delta) { heap_.ShiftAll(delta); }

 private:
  Heap heap_;
};

// libevent's layout: the heap array holds indices, keys live in the records.
class IndirectBinaryAdapter {
 public:
  struct Handle {
    uint32_t slot;
    uint32_t gen;
  };
  Handle Push(int64_t key, uint64_t payload) {
    uint32_t s;
    if (!free_.empty()) {
      s = free_.back();
      free_.pop_back();
    } else {
      s = static_cast<uint32_t>(slots_.size());
      slots_.push_back(Slot{});
    }
    Slot& r = slots_[s];
    r.key = key;
    r.seq = seq_++;
    r.payload = payload;
    ++r.gen;
    heap_.push_back(s);
    Up(heap_.size() - 1, s);
    return Handle{s, r.gen};
  }
  void Cancel(Handle& h) {
    Slot& r = slots_[h.slot];
    if (r.gen != h.gen) return;
    RemoveAt(r.pos);
    ++r.gen;
    free_.push_back(h.slot);
  }
  void Reschedule(Handle& h, int64_t key) {
    Slot& r = slots_[h.slot];
    if (r.gen != h.gen) return;
    r.key = key;
    r.seq = seq_++;
    Fix(r.pos, h.slot);
  }
  uint64_t Pop() {
    const uint32_t s = heap_[0];
    RemoveAt(0);
    ++slots_[s].gen;
    free_.push_back(s);
    return slots_[s].payload;
  }
  bool Empty() { return heap_.empty(); }

 private:
  struct Slot {
    int64_t key = 0;
    uint64_t seq = 0;
    uint64_t payload = 0;
    uint32_t pos = 0;
    uint32_t gen = 0;
  };
  bool Less(uint32_t a, uint32_t b) const {
    const Slot& x = slots_[a];
    const Slot& y = slots_[b];
    return x.key < y.key || (x.key == y.key && x.seq < y.seq);
  }
  void Set(size_t i, uint32_t s) {
    heap_[i] = s;
    slots_[s].pos = static_cast<uint32_t>(i);
  }
  void Up(size_t i, uint32_t s) {
    while (i > 0) {
      const size_t p = (i - 1) / 2;
      if (!Less(s, heap_[p])) break;
      Set(i, heap_[p]);
      i = p;
    }
    Set(i, s);
  }
  void Down(size_t i, uint32_t s) {
    const size_t n = heap_.size();
    for (;;) {
      size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && Less(heap_[c + 1], heap_[c])) ++c;
      if (!Less(heap_[c], s)) break;
      Set(i, heap_[c]);
      i = c;
    }
    Set(i, s);
  }
  void Fix(size_t i, uint32_t s) {
    if (i > 0 && Less(s, heap_[(i - 1) / 2])) {
      Up(i, s);
    } else {
      Down(i, s);
    }
  }
  void RemoveAt(size_t i) {
    const uint32_t last = heap_.back();
    heap_.pop_back();
    if (i < heap_.size()) Fix(i, last);
  }

  std::vector<Slot> slots_;
  std::vector<uint32_t> heap_;
  std::vector<uint32_t> free_;
  uint64_t seq_ = 0;
};

class PqLazyAdapter {
 public:
  struct Handle {
    uint32_t id;
    uint32_t gen;
  };
  Handle Push(int64_t key, uint64_t payload) {
    uint32_t id;
    if (!free_ids_.empty()) {
      id = free_ids_.back();
      free_ids_.pop_back();
    } else {
      id = static_cast<uint32_t>(gens_.size());
      gens_.push_back(0);
      payloads_.push_back(0);
    }
    const uint32_t gen = ++gens_[id];
    payloads_[id] = payload;
    pq_.push(Entry{key, seq_++, id, gen});
    return Handle{id, gen};
  }
  void Cancel(Handle& h) {
    if (gens_[h.id] != h.gen) return;
    ++gens_[h.id];  // the queued entry is now stale
    free_ids_.push_back(h.id);
  }
  void Reschedule(Handle& h, int64_t key) {
    if (gens_[h.id] != h.gen) return;
    h.gen = ++gens_[h.id];
    pq_.push(Entry{key, seq_++, h.id, h.gen});
  }
  uint64_t Pop() {
    SkipStale();
    const Entry e = pq_.top();
    pq_.pop();
    ++gens_[e.id];
    free_ids_.push_back(e.id);
    return payloads_[e.id];
  }
  bool Empty() {
    SkipStale();
    return pq_.empty();
  }

 private:
  struct Entry {
    int64_t key;
    uint64_t seq;
    uint32_t id;
    uint32_t gen;
  };
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const {
      return a.key > b.key || (a.key == b.key && a.seq > b.seq);
    }
  };
  void SkipStale() {
    while (!pq_.empty() && gens_[pq_.top().id] != pq_.top().gen) pq_.pop();
  }

  std::priority_queue<Entry, std::vector<Entry>, Later> pq_;
  std::vector<uint32_t> gens_;
  std::vector<uint64_t> payloads_;
  std::vector<uint32_t> free_ids_;
  uint64_t seq_ = 0;
};

class SetAdapter {
 public:
  struct Entry {
    int64_t key;
    uint64_t seq;
    uint64_t payload;
    bool operator<(const Entry& o) const {
      return key < o.key || (key == o.key && seq < o.seq);
    }
  };
  using Handle = std::set<Entry>::iterator;
  Handle Push(int64_t key, uint64_t payload) {
    return set_.insert(Entry{key, seq_++, payload}).first;
  }
  void Cancel(Handle& h) { set_.erase(h); }
  void Reschedule(Handle& h, int64_t key) {
    auto node = set_.extract(h);
    node.value().key = key;
    node.value().seq = seq_++;
    h = set_.insert(set_.end(), std::move(node));
  }
  uint64_t Pop() {
    auto it = set_.begin();
    const uint64_t p = it->payload;
    set_.erase(it);
    return p;
  }
  bool Empty() { return set_.empty(); }

 private:
  std::set<Entry> set_;
  uint64_t seq_ = 0;
};

// ------------------------------------------------------------------ inputs

// Keys spread over ~1000 s of nanoseconds, like deadlines.
const std::vector<int64_t>& RandomKeys() {
  static const std::vector<int64_t>* const keys = [] {
    auto* v = new std::vector<int64_t>(1000000);
    std::mt19937_64 rng(42);
    for (int64_t& k : *v) k = static_cast<int64_t>(rng() % 1000000000000ull);
    return v;
  }();
  return *keys;
}

std::vector<size_t> RandomPermutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  std::shuffle(p.begin(), p.end(), std::mt19937_64(seed));
  return p;
}

void SetPerOp(benchmark::State& state, size_t n) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.counters["per_op"] = benchmark::Counter(
      static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate |
                                  benchmark::Counter::kInvert);
}

// -------------------------------------------------------------- benchmarks

template <typename C>
void BM_Push(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto& keys = RandomKeys();
  for (auto _ : state) {
    state.PauseTiming();
    auto c = std::make_unique<C>();
    state.ResumeTiming();
    for (size_t i = 0; i < n; ++i) c->Push(keys[i], i);
    benchmark::ClobberMemory();
    state.PauseTiming();
    c.reset();
    state.ResumeTiming();
  }
  SetPerOp(state, n);
}

template <typename C>
void BM_PushPop(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto& keys = RandomKeys();
  uint64_t sink = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto c = std::make_unique<C>();
    state.ResumeTiming();
    for (size_t i = 0; i < n; ++i) c->Push(keys[i], i);
    while (!c->Empty()) sink += c->Pop();
    state.PauseTiming();
    c.reset();
    state.ResumeTiming();
  }
  benchmark::DoNotOptimize(sink);
  SetPerOp(state, n);
}

template <typename C>
void BM_PopAll(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto& keys = RandomKeys();
  uint64_t sink = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto c = std::make_unique<C>();
    for (size_t i = 0; i < n; ++i) c->Push(keys[i], i);
    state.ResumeTiming();
    while (!c->Empty()) sink += c->Pop();
    state.PauseTiming();
    c.reset();
    state.ResumeTiming();
  }
  benchmark::DoNotOptimize(sink);
  SetPerOp(state, n);
}

template <typename C>
void BM_Cancel(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto& keys = RandomKeys();
  const std::vector<size_t> order = RandomPermutation(n, 7);
  for (auto _ : state) {
    state.PauseTiming();
    auto c = std::make_unique<C>();
    std::vector<typename C::Handle> h;
    h.reserve(n);
    for (size_t i = 0; i < n; ++i) h.push_back(c->Push(keys[i], i));
    state.ResumeTiming();
    for (size_t i : order) c->Cancel(h[i]);
    benchmark::ClobberMemory();
    state.PauseTiming();
    c.reset();
    state.ResumeTiming();
  }
  SetPerOp(state, n);
}

template <typename C>
void BM_Reschedule(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto& keys = RandomKeys();
  const std::vector<size_t> order = RandomPermutation(n, 9);
  constexpr int64_t kTimeout = 1000000000000;  // the whole key range
  for (auto _ : state) {
    state.PauseTiming();
    auto c = std::make_unique<C>();
    std::vector<typename C::Handle> h;
    h.reserve(n);
    for (size_t i = 0; i < n; ++i) h.push_back(c->Push(keys[i], i));
    state.ResumeTiming();
    int64_t now = 0;
    for (size_t i : order) c->Reschedule(h[i], ++now + kTimeout);
    benchmark::ClobberMemory();
    state.PauseTiming();
    c.reset();
    state.ResumeTiming();
  }
  SetPerOp(state, n);
}

template <typename C>
void BM_ShiftAll(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto& keys = RandomKeys();
  C c;
  for (size_t i = 0; i < n; ++i) c.Push(keys[i], i);
  int64_t delta = 1;
  for (auto _ : state) {
    c.ShiftAll(delta);
    delta = -delta;
    benchmark::ClobberMemory();
  }
  SetPerOp(state, n);
}

#define EVENTIDE_TIMER_BENCH(op, C) \
  BENCHMARK_TEMPLATE(op, C)         \
      ->Name(#op "/" #C)            \
      ->Arg(1000)                   \
      ->Arg(100000)                 \
      ->Arg(1000000)                \
      ->Unit(benchmark::kMicrosecond)

using Heap2 = HeapAdapter<2>;
using Heap4 = HeapAdapter<4>;
using Heap8 = HeapAdapter<8>;
using Indirect2 = IndirectBinaryAdapter;
using PqLazy = PqLazyAdapter;
using Set = SetAdapter;

#define EVENTIDE_ALL(op)               \
  EVENTIDE_TIMER_BENCH(op, Heap2);     \
  EVENTIDE_TIMER_BENCH(op, Heap4);     \
  EVENTIDE_TIMER_BENCH(op, Heap8);     \
  EVENTIDE_TIMER_BENCH(op, Indirect2); \
  EVENTIDE_TIMER_BENCH(op, PqLazy);    \
  EVENTIDE_TIMER_BENCH(op, Set)

EVENTIDE_ALL(BM_Push);
EVENTIDE_ALL(BM_PushPop);
EVENTIDE_ALL(BM_PopAll);
EVENTIDE_ALL(BM_Cancel);
EVENTIDE_ALL(BM_Reschedule);
EVENTIDE_TIMER_BENCH(BM_ShiftAll, Heap2);
EVENTIDE_TIMER_BENCH(BM_ShiftAll, Heap4);

}  // namespace
}  // namespace eventide
