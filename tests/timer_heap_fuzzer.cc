// Fuzz target: TimerHeap driven by operation sequences from the input and
// checked against a reference model after every operation.
//
// The model is a std::map keyed by (key, insertion number); its first entry
// is what the heap must yield, FIFO ties included (a reschedule counts as a
// new insertion, as the heap documents). Every handle ever issued is kept,
// so operations also run on stale handles (popped, cancelled, cleared, after
// their slot was reused) and on a default handle. The same operations run on
// a 4-ary (the default) and a 3-ary heap: an odd arity catches index
// arithmetic that only happens to work for powers of two. The 3-ary heap
// also cancels lazily (dead entries left in the array), the 4-ary one at
// once. A third heap, 4-ary and lazy, holds plain ids (a trivially
// destructible payload, as the event loop's) and cancels the way the loop
// does: TryCancelLazilyByOwner first (with the right record hint or
// another handle's, and the element's id as owner or one never issued,
// which it must refuse; ids are unique, as the loop's slot indices are
// among live elements), CancelWithRecord where that refuses.
//
// Keys are a saturating integer in [-kKeyLimit, kKeyLimit]: small, so equal
// keys are common, and ShiftAll() can clamp several keys to one value, which
// takes the heap's repair path. Payloads are move-only and own heap memory,
// so a payload the heap forgets to destroy is a leak LeakSanitizer reports.
//
// Input: a sequence of operations, each an opcode byte and its arguments
// (see Op). Seeds: testdata/timer_heap_fuzzer_corpus/.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "timerheap/timer_heap.h"
#include "tools/fuzz/fuzz_check.h"
#include "tools/fuzz/fuzz_input.h"

namespace eventide {
namespace {

constexpr int32_t kKeyLimit = 1000;
// Pushes per input beyond this are skipped (bounds the work per input).
constexpr size_t kMaxHandles = 300;

// A deadline that saturates at +-kKeyLimit when shifted.
struct SatKey {
  int32_t v;
  friend bool operator<(SatKey a, SatKey b) { return a.v < b.v; }
  friend SatKey operator+(SatKey a, int32_t d) {
    const int64_t s = int64_t{a.v} + d;
    return SatKey{static_cast<int32_t>(
        s < -kKeyLimit ? -kKeyLimit : (s > kKeyLimit ? kKeyLimit : s))};
  }
};

using Payload = std::unique_ptr<uint64_t>;  // owns the element's id

enum Op : uint8_t {
  kPush,
  kPop,
  kCancel,
  kReschedule,
  kShiftAll,
  kTop,
  kQuery,
  kClear,
  kReserve,
  kMove,
  kSequenceNearWrap,
  kNumOps,
};

template <int Arity, typename P = Payload>
struct Subject {
  using Heap = TimerHeap<SatKey, P, std::less<SatKey>, Arity>;
  Heap heap;
  std::vector<typename Heap::Handle> handles;  // parallel to Model::records
};

// The element's id, from either kind of payload, and a payload for an id.
uint64_t IdOf(const Payload& p) { return *p; }
uint64_t IdOf(uint64_t p) { return p; }
template <typename P>
P MakePayload(uint64_t id) {
  if constexpr (std::is_same_v<P, Payload>) {
    return std::make_unique<uint64_t>(id);
  } else {
    return id;
  }
}

// Handles stay valid for the moved-to heap; the moved-from one is empty and
// usable.
template <int Arity, typename P>
void MoveAndBack(Subject<Arity, P>& s) {
  typename Subject<Arity, P>::Heap taken(std::move(s.heap));
  EVENTIDE_FUZZ_CHECK(s.heap.empty());
  s.heap = std::move(taken);
  EVENTIDE_FUZZ_CHECK(taken.empty());
  auto unused = taken.Push(SatKey{0}, MakePayload<P>(0));
  EVENTIDE_FUZZ_CHECK(taken.Cancel(unused));
}

struct Record {
  uint64_t id;
  bool live;
  int32_t key;
  uint64_t seq;
};

class Model {
 public:
  // (key, seq) -> index into records.
  std::map<std::pair<int32_t, uint64_t>, size_t> order;
  std::vector<Record> records;
  uint64_t next_seq = 0;
  uint64_t next_id = 1;
  size_t reserved = 0;
};

// Size and top after every operation; the O(n) internal invariants only
// when `full` (the caller decides how often, to keep executions fast).
template <int Arity, typename P>
void CheckHeap(const Subject<Arity, P>& s, const Model& m, bool full) {
  std::string why;
  if (full && !s.heap.VerifyInvariants(&why)) {
    eventide::fuzz::Fail(__FILE__, __LINE__, "VerifyInvariants", why);
  }
  EVENTIDE_FUZZ_CHECK_EQ(s.heap.size(), m.order.size());
  EVENTIDE_FUZZ_CHECK_EQ(s.heap.empty(), m.order.empty());
  if (!m.order.empty()) {
    const Record& r = m.records[m.order.begin()->second];
    EVENTIDE_FUZZ_CHECK_EQ(s.heap.TopKey().v, r.key);
    EVENTIDE_FUZZ_CHECK_EQ(IdOf(s.heap.TopPayload()), r.id);
    EVENTIDE_FUZZ_CHECK(s.heap.TopHandle() ==
                        s.handles[m.order.begin()->second]);
  }
}

// The documented memory bound: a heap drained by a removal is back to its
// floor (64 entries, or what Reserve() asked for).
template <int Arity, typename P>
void CheckDrained(const Subject<Arity, P>& s, const Model& m) {
  if (!s.heap.empty()) return;
  const size_t floor = m.reserved > 64 ? m.reserved : 64;
  EVENTIDE_FUZZ_CHECK_EQ(s.heap.slot_count(), size_t{0});
  EVENTIDE_FUZZ_CHECK(s.heap.heap_capacity() <= floor);
  EVENTIDE_FUZZ_CHECK(s.heap.slot_capacity() <= floor);
}

template <int Arity, typename P>
void CheckHandle(const Subject<Arity, P>& s, const Model& m, size_t i) {
  if (i == m.records.size()) {  // the default handle
    const typename Subject<Arity, P>::Heap::Handle none;
    EVENTIDE_FUZZ_CHECK(!s.heap.Contains(none));
    EVENTIDE_FUZZ_CHECK(s.heap.KeyOf(none) == nullptr);
    EVENTIDE_FUZZ_CHECK(s.heap.Get(none) == nullptr);
    return;
  }
  const Record& r = m.records[i];
  const auto h = s.handles[i];
  EVENTIDE_FUZZ_CHECK_EQ(s.heap.Contains(h), r.live);
  const SatKey* key = s.heap.KeyOf(h);
  const P* payload = s.heap.Get(h);
  if (r.live) {
    EVENTIDE_FUZZ_CHECK(key != nullptr && payload != nullptr);
    EVENTIDE_FUZZ_CHECK_EQ(key->v, r.key);
    EVENTIDE_FUZZ_CHECK_EQ(IdOf(*payload), r.id);
  } else {
    EVENTIDE_FUZZ_CHECK(key == nullptr && payload == nullptr);
  }
}

template <int Arity, typename P>
typename Subject<Arity, P>::Heap::Handle HandleAt(const Subject<Arity, P>& s,
                                                  size_t i) {
  return i < s.handles.size() ? s.handles[i]
                              : typename Subject<Arity, P>::Heap::Handle();
}

// Cancel as the event loop does: the call-free fast path, then the full one
// where it refuses. `hint` is the record the caller believes is h's; any
// value is allowed. `owner` is the payload the caller believes h's element
// has; `owner_right` says whether it is the element's id.
template <int Arity>
bool CancelLikeTheLoop(Subject<Arity, uint64_t>& s,
                       typename Subject<Arity, uint64_t>::Heap::Handle h,
                       uint32_t hint, uint64_t owner, bool owner_right) {
  const size_t size = s.heap.size();
  const bool was_live = s.heap.Contains(h);
  EVENTIDE_FUZZ_CHECK_EQ(s.heap.ContainsOwned(h, owner),
                         was_live && owner_right);
  if (s.heap.TryCancelLazilyByOwner(hint, owner)) {
    // Only what Cancel would have done: h was live, its hint and owner
    // right. (The owner alone names the element: another handle's record
    // holds another id.)
    EVENTIDE_FUZZ_CHECK(was_live);
    EVENTIDE_FUZZ_CHECK(owner_right);
    EVENTIDE_FUZZ_CHECK_EQ(hint, h.record_index());
    return true;
  }
  // Refused: nothing changed.
  EVENTIDE_FUZZ_CHECK_EQ(s.heap.size(), size);
  EVENTIDE_FUZZ_CHECK_EQ(s.heap.Contains(h), was_live);
  if (!owner_right && s.heap.TryCancelLazily(h, hint)) {
    // The owner was all that stopped it.
    EVENTIDE_FUZZ_CHECK(was_live);
    EVENTIDE_FUZZ_CHECK_EQ(hint, h.record_index());
    return true;
  }
  return s.heap.CancelWithRecord(h, hint);
}

// Runs one operation on both heaps and the model; false when the input is
// exhausted.
template <int A, int B, int C>
void Step(fuzz::FuzzInput& in, Subject<A>& a, Subject<B>& b,
          Subject<C, uint64_t>& c, Model& m, bool* wrapped, uint64_t step) {
  const uint8_t op = in.Byte() % kNumOps;
  switch (op) {
    case kPush: {
      if (m.records.size() >= kMaxHandles) break;
      const int32_t key =
          static_cast<int32_t>(in.Range(0, 2 * kKeyLimit)) - kKeyLimit;
      const uint64_t id = m.next_id++;
      a.handles.push_back(
          a.heap.Push(SatKey{key}, std::make_unique<uint64_t>(id)));
      b.handles.push_back(
          b.heap.Push(SatKey{key}, std::make_unique<uint64_t>(id)));
      c.handles.push_back(c.heap.Push(SatKey{key}, id));
      const uint64_t seq = m.next_seq++;
      m.order.emplace(std::make_pair(key, seq), m.records.size());
      m.records.push_back(Record{id, true, key, seq});
      break;
    }
    case kPop: {
      if (m.order.empty()) break;  // Pop on an empty heap aborts by contract
      const auto first = m.order.begin();
      Record& r = m.records[first->second];
      auto pa = a.heap.Pop();
      auto pb = b.heap.Pop();
      auto pc = c.heap.Pop();
      EVENTIDE_FUZZ_CHECK_EQ(pa.first.v, r.key);
      EVENTIDE_FUZZ_CHECK_EQ(pb.first.v, r.key);
      EVENTIDE_FUZZ_CHECK_EQ(pc.first.v, r.key);
      EVENTIDE_FUZZ_CHECK(pa.second != nullptr && pb.second != nullptr);
      EVENTIDE_FUZZ_CHECK_EQ(*pa.second, r.id);
      EVENTIDE_FUZZ_CHECK_EQ(*pb.second, r.id);
      EVENTIDE_FUZZ_CHECK_EQ(pc.second, r.id);
      r.live = false;
      m.order.erase(first);
      CheckDrained(a, m);
      CheckDrained(b, m);
      CheckDrained(c, m);
      break;
    }
    case kCancel: {
      const size_t i = in.Range(0, m.records.size());
      // c's record hint: usually the handle's own, else another handle's.
      const size_t j = in.Range(0, m.records.size());
      const bool live = i < m.records.size() && m.records[i].live;
      EVENTIDE_FUZZ_CHECK_EQ(a.heap.Cancel(HandleAt(a, i)), live);
      EVENTIDE_FUZZ_CHECK_EQ(b.heap.Cancel(HandleAt(b, i)), live);
      const auto hc = HandleAt(c, i);
      const uint32_t hint =
          j % 4 != 0 ? hc.record_index() : HandleAt(c, j).record_index();
      // c's owner: usually the element's id, sometimes one never issued.
      const bool owner_right = j % 3 != 1;
      const uint64_t id = i < m.records.size() ? m.records[i].id : 0;
      EVENTIDE_FUZZ_CHECK_EQ(
          CancelLikeTheLoop(c, hc, hint, owner_right ? id : ~id, owner_right),
          live);
      if (live) {
        Record& r = m.records[i];
        m.order.erase(std::make_pair(r.key, r.seq));
        r.live = false;
        CheckDrained(a, m);
        CheckDrained(b, m);
        CheckDrained(c, m);
      }
      CheckHandle(a, m, i);
      CheckHandle(b, m, i);
      CheckHandle(c, m, i);
      break;
    }
    case kReschedule: {
      const size_t i = in.Range(0, m.records.size());
      const int32_t key =
          static_cast<int32_t>(in.Range(0, 2 * kKeyLimit)) - kKeyLimit;
      const bool live = i < m.records.size() && m.records[i].live;
      EVENTIDE_FUZZ_CHECK_EQ(a.heap.Reschedule(HandleAt(a, i), SatKey{key}),
                             live);
      EVENTIDE_FUZZ_CHECK_EQ(b.heap.Reschedule(HandleAt(b, i), SatKey{key}),
                             live);
      EVENTIDE_FUZZ_CHECK_EQ(c.heap.Reschedule(HandleAt(c, i), SatKey{key}),
                             live);
      if (live) {
        Record& r = m.records[i];
        m.order.erase(std::make_pair(r.key, r.seq));
        r.key = key;
        r.seq = m.next_seq++;
        m.order.emplace(std::make_pair(r.key, r.seq), i);
      }
      CheckHandle(a, m, i);
      CheckHandle(b, m, i);
      CheckHandle(c, m, i);
      break;
    }
    case kShiftAll: {
      // Up to twice the key range either way: often clamps keys together.
      const int32_t offset =
          static_cast<int32_t>(in.Range(0, 8 * kKeyLimit)) - 4 * kKeyLimit;
      a.heap.ShiftAll(offset);
      b.heap.ShiftAll(offset);
      c.heap.ShiftAll(offset);
      std::map<std::pair<int32_t, uint64_t>, size_t> shifted;
      for (const auto& [key_seq, i] : m.order) {
        Record& r = m.records[i];
        r.key = (SatKey{r.key} + offset).v;
        shifted.emplace(std::make_pair(r.key, r.seq), i);
      }
      m.order.swap(shifted);
      break;
    }
    case kTop:
      break;  // CheckHeap() below compares the tops
    case kQuery: {
      const size_t i = in.Range(0, m.records.size());
      CheckHandle(a, m, i);
      CheckHandle(b, m, i);
      CheckHandle(c, m, i);
      break;
    }
    case kClear:
      a.heap.Clear();
      b.heap.Clear();
      c.heap.Clear();
      for (const auto& entry : m.order) m.records[entry.second].live = false;
      m.order.clear();
      CheckDrained(a, m);
      CheckDrained(b, m);
      CheckDrained(c, m);
      break;
    case kReserve:
      m.reserved = in.Range(0, 300);
      a.heap.Reserve(m.reserved);
      b.heap.Reserve(m.reserved);
      c.heap.Reserve(m.reserved);
      break;
    case kMove:
      MoveAndBack(a);
      MoveAndBack(b);  // b's and c's dead entries move with them
      MoveAndBack(c);
      break;
    case kSequenceNearWrap: {
      // The heap's 32-bit insertion counter only moves forward, and it is
      // at most the number of pushes and reschedules so far, so one jump per
      // input to just below the wrap is always allowed; the renumbering on
      // wrap then happens within the next few operations.
      if (*wrapped) break;
      *wrapped = true;
      const uint32_t next = UINT32_MAX - static_cast<uint32_t>(in.Range(0, 15));
      a.heap.SetNextSequenceForTesting(next);
      b.heap.SetNextSequenceForTesting(next);
      c.heap.SetNextSequenceForTesting(next);
      break;
    }
  }
  // Every step while the heap is small (where most bugs show), every 16th
  // once it is larger, and after every operation that reorders in bulk.
  const bool full = m.order.size() <= 32 || step % 16 == 0 || op == kShiftAll;
  CheckHeap(a, m, full);
  CheckHeap(b, m, full);
  CheckHeap(c, m, full);
}

}  // namespace
}  // namespace eventide

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  eventide::fuzz::FuzzInput in(data, size);
  eventide::Subject<4> a;
  eventide::Subject<3> b;
  eventide::Subject<4, uint64_t> c;
  // Inputs stay far below the heap's default lazy-cancel size (16384): b
  // and c cancel lazily from 2 entries on, a at once, and all must agree
  // with the model through every operation, ShiftAll's repair and moves too.
  b.heap.SetLazyCancelMinSizeForTesting(2);
  c.heap.SetLazyCancelMinSizeForTesting(2);
  eventide::Model m;
  bool wrapped = false;
  for (uint64_t step = 0; !in.empty(); ++step) {
    eventide::Step(in, a, b, c, m, &wrapped, step);
  }
  eventide::CheckHeap(a, m, /*full=*/true);
  eventide::CheckHeap(b, m, /*full=*/true);
  eventide::CheckHeap(c, m, /*full=*/true);
  // Every handle, live or stale, answers as the model says.
  for (size_t i = 0; i <= m.records.size(); ++i) {
    eventide::CheckHandle(a, m, i);
    eventide::CheckHandle(b, m, i);
    eventide::CheckHandle(c, m, i);
  }
  return 0;
}
