// TimerHeap: an indexed min-heap of (deadline, payload) with stable handles.
//
// A priority queue for timers that also supports cancelling and
// rescheduling any element in O(log n), through a handle returned by Push().
// It depends on nothing else in Eventide and can be used alone, e.g. by a
// scheduler or a discrete-event simulator.
//
//   eventide::TimerHeap<int64_t, std::string> timers;
//   auto idle = timers.Push(/*deadline=*/300, "idle timeout");
//   timers.Push(100, "retransmit");
//   timers.Reschedule(idle, 900);        // activity: push the timeout out
//   while (!timers.empty() && timers.TopKey() <= now) {
//     auto [deadline, what] = timers.Pop();
//     ...
//   }
//   timers.Cancel(idle);                 // false if it already fired
//
// Guarantees
//  - Order: Pop()/Top*() yield the smallest key under `Compare`. Elements
//    with equal keys come out in insertion order (FIFO): the one pushed
//    first pops first. Reschedule() counts as a new insertion for this rule,
//    so a rescheduled timer goes behind every timer that already has its new
//    key. Users rely on this for equal timeouts set in the same iteration.
//  - Handles: Push() returns a Handle that stays valid until its element is
//    popped or cancelled. After that, the handle is stale: Cancel(),
//    Reschedule() return false, Contains() returns false, Get()/KeyOf()
//    return nullptr. Never undefined behaviour, even after the slot was
//    reused by a later Push() (a per-slot 32-bit generation tells them
//    apart, each reuse advancing it by 2; a stale handle could only be
//    mistaken for a live one after 2^31 reuses of its slot while it was
//    being kept). A default-constructed
//    Handle is never valid. Handles are only meaningful to the heap that
//    issued them.
//  - Costs: Push O(log n); Pop, Reschedule and Cancel O(log n) amortised;
//    Top*, Contains, Get, KeyOf O(1); ShiftAll O(n); PopDue of k elements
//    O(k log n), or O(n + k log k) when most of the heap is due. In a heap
//    of 16384 elements or more, Cancel only marks the entry dead (O(1));
//    a dead entry is dropped when it reaches the top (by a later Pop or
//    Reschedule), and all of them in one O(n) pass once they are half the
//    array or the array falls below 8192 entries: about one call in n/2
//    takes O(n).
//  - Memory follows the load: after a spike drains, every array is
//    reallocated down once it is less than 1/4 full (to twice what is in
//    use), so a drained heap is back to a few kilobytes. The slot table
//    behind the handles ends at the highest slot still in use (handles are
//    stable indices, so a long-lived element pushed during a spike keeps the
//    table that long until it goes); once the table is sparse, the lowest
//    free slots are reused first so that its tail drains. Reserve(n) sets a
//    floor under which nothing shrinks. All of it is amortised O(1) per
//    operation. Dead entries (see Cancel) hold at most as much again as
//    the live ones, and none are left once fewer than 8192 entries remain.
//  - Payload may be move-only. Key must be copyable (it is stored next to
//    the heap slot, see below) and `Compare` a strict weak ordering.
//  - References and pointers returned by TopKey(), TopPayload(), Get() and
//    KeyOf() are invalidated by any call that adds, removes or reorders
//    elements.
//  - Misuse that is a programming error (Top*/Pop on an empty heap, more
//    than 2^32 - 1 elements, live or dead) aborts with a message.
//
// Thread safety: none. A TimerHeap belongs to one thread at a time
// (typically its loop's); const methods may run concurrently with each
// other only.
//
// Layout (implementation notes, measured in timer_heap_benchmark.cc)
//  - The heap array holds {key, slot index, 32-bit sequence number}:
//    comparisons read only the array, never the payload (libev's ANHE
//    idea). The sequence number is the FIFO tie-break (libuv's start_id);
//    see NextSeq() for what happens when 32 bits run out. The array is
//    allocated so that each group of siblings starts a cache line.
//  - A slot table, indexed by handle, holds each element's current position
//    in the heap array (the back-index, updated on every move) and its
//    generation; payloads live in a parallel array and never move (a
//    trivially copyable payload bare, since the generation already says
//    whether it is alive; any other in a std::optional). A lazy Cancel
//    touches only the slot table (and the payload, if it needs
//    destroying): a dead entry is known by its slot's generation. Free
//    slots are listed in a separate array (free_), with room for the whole
//    table.
//  - The entry array, the slot table and the payloads, once 2 MB or more,
//    are placed on transparent huge pages (huge_pages.h): growing to a
//    million elements then faults their memory in 2 MB at a time instead
//    of 4 KB.
//  - `Arity` children per node. 4 is the default (faster than 2 in our
//    benchmarks: half the levels, and the children of a node are adjacent).

#ifndef EVENTIDE_TIMERHEAP_TIMER_HEAP_H_
#define EVENTIDE_TIMERHEAP_TIMER_HEAP_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "timerheap/huge_pages.h"

namespace eventide {
namespace timer_heap_internal {

[[noreturn]] inline void Fatal(const char* message) {
  std::fprintf(stderr, "eventide::TimerHeap: %s\n", message);
  std::abort();
}

// Allocates so that element 1 starts a 64-byte cache line. The children of
// heap node i are elements Arity*i+1 .. Arity*i+Arity, so with 16-byte
// entries and Arity 4 every group of siblings is exactly one cache line and
// a sift-down level touches one line instead of usually two.
template <typename T>
struct SiblingAlignedAllocator {
  using value_type = T;
  static constexpr size_t kLine = 64;
  static constexpr size_t kShift = (kLine - sizeof(T) % kLine) % kLine;

  SiblingAlignedAllocator() = default;
  template <typename U>
  SiblingAlignedAllocator(const SiblingAlignedAllocator<U>&) {}  // NOLINT

  T* allocate(size_t n) {
    if (n > (std::numeric_limits<size_t>::max() - kShift) / sizeof(T)) {
      Fatal("allocation size overflow");
    }
    const size_t bytes = n * sizeof(T) + kShift;
    // A huge page boundary is a cache line boundary too.
    void* raw = huge_pages::Wanted(bytes)
                    ? huge_pages::Allocate(bytes)
                    : ::operator new(bytes, std::align_val_t(kLine));
    return reinterpret_cast<T*>(static_cast<char*>(raw) + kShift);
  }
  void deallocate(T* p, size_t n) {
    const size_t bytes = n * sizeof(T) + kShift;
    char* raw = reinterpret_cast<char*>(p) - kShift;
    if (huge_pages::Wanted(bytes)) {
      huge_pages::Free(raw, bytes);
    } else {
      ::operator delete(raw, std::align_val_t(kLine));
    }
  }
  friend bool operator==(const SiblingAlignedAllocator&,
                         const SiblingAlignedAllocator&) {
    return true;
  }
  friend bool operator!=(const SiblingAlignedAllocator&,
                         const SiblingAlignedAllocator&) {
    return false;
  }
};

// Room for one trivially copyable T whose lifetime the owner tracks
// elsewhere. Trivial itself (no constructor runs), so arrays of it are
// copied and grown with memcpy.
template <typename T>
struct BareCell {
  static_assert(std::is_trivially_copyable<T>::value, "T must be trivial");
  T& get() { return *std::launder(reinterpret_cast<T*>(bytes)); }
  const T& get() const {
    return *std::launder(reinterpret_cast<const T*>(bytes));
  }
  alignas(T) unsigned char bytes[sizeof(T)];
};

// A growable array of a trivially copyable T: the subset of std::vector
// the heap uses, with the size and capacity kept as counts. std::vector
// keeps three pointers, so every size() is a subtraction and a shift, and
// its appends carry a reallocation path that GCC inlines around the heap's
// hot loops (or, under register pressure, calls out of line: ~30
// instructions per append). Push, on every timer, checks room once and
// then appends with bare stores (AppendUnchecked).
//
// Elements are copied with memcpy and never destroyed; a new element is
// whatever its constructor (or, for reserve, nothing) writes.
template <typename T, typename Alloc>
class PodArray {
  static_assert(std::is_trivially_copyable<T>::value, "T must be trivial");
  static_assert(std::is_trivially_destructible<T>::value, "T must be trivial");

 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  PodArray() = default;
  PodArray(const PodArray&) = delete;
  PodArray& operator=(const PodArray&) = delete;
  PodArray(PodArray&& other) noexcept { swap(other); }
  PodArray& operator=(PodArray&& other) noexcept {
    if (this != &other) {
      PodArray taken(std::move(other));
      swap(taken);
    }
    return *this;
  }
  ~PodArray() { Release(); }

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }

  template <typename... Args>
  T& emplace_back(Args&&... args) {
    if (size_ == capacity_) Grow(size_ + 1);
    return AppendUnchecked(std::forward<Args>(args)...);
  }
  void push_back(const T& x) { emplace_back(x); }
  // Only with room: size() < capacity().
  template <typename... Args>
  [[gnu::always_inline]] T& AppendUnchecked(Args&&... args) {
    T* p = ::new (static_cast<void*>(data_ + size_))
        T(std::forward<Args>(args)...);
    ++size_;
    return *p;
  }
  // Only with room: one more element, not written. The caller assigns it
  // before anything reads it (T is trivially copyable, so the assignment
  // is a plain copy of its bytes).
  [[gnu::always_inline]] void AppendUninitialized() { ++size_; }
  void pop_back() { --size_; }
  void clear() { size_ = 0; }

  // Exactly n when it grows, as std::vector::reserve.
  void reserve(size_t n) {
    if (n > capacity_) Reallocate(n);
  }
  // Only the tail: [first, end()).
  void erase(T* first, T* last) {
    if (last != end()) Fatal("PodArray::erase of a range not at the end");
    size_ = static_cast<size_t>(first - data_);
  }
  // Appends [first, last) at `pos`, which must be end().
  template <typename It>
  void insert(T* pos, It first, It last) {
    if (pos != end()) Fatal("PodArray::insert not at the end");
    const size_t n = static_cast<size_t>(std::distance(first, last));
    if (n > capacity_ - size_) Grow(size_ + n);
    for (T* out = data_ + size_; first != last; ++first, ++out) {
      ::new (static_cast<void*>(out)) T(*first);
    }
    size_ += n;
  }

  void swap(PodArray& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }
  friend void swap(PodArray& a, PodArray& b) noexcept { a.swap(b); }

 private:
  // Doubling, as std::vector's appends: amortised O(1).
  [[gnu::noinline]] void Grow(size_t need) {
    size_t capacity = std::max<size_t>(capacity_ * 2, 1);
    if (capacity < need) capacity = need;
    Reallocate(capacity);
  }
  void Reallocate(size_t capacity) {
    if (capacity > std::numeric_limits<size_t>::max() / sizeof(T)) {
      Fatal("allocation size overflow");
    }
    T* fresh = Alloc().allocate(capacity);
    if (size_ != 0) std::memcpy(fresh, data_, size_ * sizeof(T));
    Release();
    data_ = fresh;
    capacity_ = capacity;
  }
  void Release() {
    if (data_ != nullptr) Alloc().deallocate(data_, capacity_);
    data_ = nullptr;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// The heap's arrays: PodArray where the element allows it, else
// std::vector (a Key or payload with a constructor of its own).
template <typename T, typename Alloc>
using HeapArray =
    std::conditional_t<std::is_trivially_copyable<T>::value &&
                           std::is_trivially_destructible<T>::value,
                       PodArray<T, Alloc>, std::vector<T, Alloc>>;

}  // namespace timer_heap_internal

template <typename Key, typename Payload, typename Compare = std::less<Key>,
          int Arity = 4>
class TimerHeap {
  static_assert(Arity >= 2 && Arity <= 64, "Arity must be in [2, 64]");
  static_assert(std::is_copy_constructible<Key>::value, "Key must be copyable");

 public:
  using key_type = Key;
  using payload_type = Payload;
  static constexpr int kArity = Arity;

  // Identifies one pushed element. Cheap to copy (8 bytes), comparable,
  // hashable with absl::Hash.
  class Handle {
   public:
    constexpr Handle() = default;

    friend constexpr bool operator==(Handle a, Handle b) {
      return a.slot_ == b.slot_ && a.generation_ == b.generation_;
    }
    friend constexpr bool operator!=(Handle a, Handle b) { return !(a == b); }
    template <typename H>
    friend H AbslHashValue(H h, Handle x) {
      return H::combine(std::move(h), x.slot_, x.generation_);
    }

    // The index of the element's bookkeeping record: stable while the
    // handle is, reused after. Only meaningful as a PrefetchRecord() or
    // CancelWithRecord() hint.
    uint32_t record_index() const { return slot_; }

   private:
    friend class TimerHeap;
    constexpr Handle(uint32_t slot, uint32_t generation)
        : slot_(slot), generation_(generation) {}

    uint32_t slot_ = kNoSlot;
    uint32_t generation_ = 0;  // even: never a live generation
  };

  TimerHeap() = default;
  explicit TimerHeap(Compare compare) : less_(std::move(compare)) {}

  // Copying would duplicate payloads and make handles ambiguous; moving is
  // fine and keeps handles valid for the moved-to heap.
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;
  // The moved-from heap is left empty and usable.
  TimerHeap(TimerHeap&& other) noexcept { Swap(other); }
  TimerHeap& operator=(TimerHeap&& other) noexcept {
    if (this != &other) {
      TimerHeap taken(std::move(other));
      Swap(taken);
    }
    return *this;
  }
  ~TimerHeap() = default;

  // Live elements: cancelled ones still waiting in the array (see Cancel)
  // are not counted. The top entry is always live, so an array that holds
  // anything holds a live element.
  size_t size() const { return heap_.size() - dead_; }
  bool empty() const { return heap_.empty(); }

  // Adds an element; O(log n).
  //
  // Inline, and free of calls where nothing has to grow: a record from the
  // free list or the room past the table's end, the payload stored bare,
  // the entry sifted up. Everything rarer (an array at its capacity, a
  // free list to rebuild or holding trimmed indices, the sequence wrap, a
  // payload kept in std::optional) is PushSlow's. At a million timers the
  // out-of-line form spent ~110 instructions per push, half of them in
  // register saves and std::vector's size arithmetic around a sift that
  // usually stops after a level or two.
  [[gnu::always_inline]] Handle Push(Key deadline, Payload payload) {
    if constexpr (kInlinePush) {
      const size_t pos = heap_.size();
      uint32_t slot;
      uint32_t generation;
      if (__builtin_expect(pos != heap_.capacity() && next_seq_ != kLastSeq &&
                               TakeRecordFast(&slot, &generation),
                           1)) {
        const uint32_t seq = next_seq_++;
        // The new entry is sifted from registers into the room made here,
        // which SiftUp writes last (it never reads the hole).
        heap_.AppendUninitialized();
        SiftUp(pos, Entry(std::move(deadline), slot, seq));
        // Last, and as a Payload: a copy of the whole cell (a char array,
        // which may alias anything) made GCC reload the arrays' pointers
        // and counts for the sift.
        SetPayload(slot, Payload(payload));
        return Handle(slot, generation);
      }
    }
    return PushSlow(std::move(deadline), std::move(payload));
  }

  [[gnu::noinline]] Handle PushSlow(Key deadline, Payload payload) {
    const uint32_t slot = AllocateSlot();
    SetPayload(slot, std::move(payload));
    const uint32_t seq = NextSeq();
    const size_t pos = heap_.size();
    // A bigger heap array raises the size below which it is shrunk.
    if (pos == heap_.capacity()) RecheckShrinkOnNextRemoval();
    // The new entry is sifted from registers; the element appended here
    // only makes room (reading it back would stall on store forwarding).
    heap_.emplace_back(deadline, slot, seq);
    SiftUp(pos, Entry(std::move(deadline), slot, seq));
    return Handle(slot, meta_[slot].generation);
  }

  // Removes the element; destroys its payload. False (and no effect) for a
  // stale or default handle. O(log n) amortised.
  //
  // In a heap larger than the cache (kLazyCancelMinSize entries or more)
  // the entry is left in the array, dead: its slot's generation moves on,
  // so the handle is stale at once, but the slot stays reserved while the
  // entry is there, and the entry itself is not touched. A dead entry is
  // dropped when it reaches the top; all of them go in one O(n) pass
  // (partition, re-heapify) once they are over half the array, or once the
  // array has shrunk below half the lazy size. Removing a random element
  // of a large heap at once is a chain of dependent cache misses: its
  // record, its entry, then the parent it is compared with and the record
  // of the last entry, which moves into its place. Lazily it is the record
  // alone. The price: the arrays hold up to twice the live elements, and
  // about one cancel in every (array size / 2) runs the O(n) pass.
  bool Cancel(Handle h) {
    if (!Contains(h)) return false;
    CancelLive(h.slot_, meta_[h.slot_].pos);
    return true;
  }

  // Test hook: Cancel() leaves entries dead in the array only while it
  // holds at least `n` of them (default kLazyCancelMinSize), so that tests
  // can run the lazy path on small heaps.
  void SetLazyCancelMinSizeForTesting(size_t n) {
    lazy_cancel_min_size_ = std::max<size_t>(n, 1);
    MaybeDropAllDead();
  }

  // Gives the element a new key; for FIFO tie-breaking it counts as a fresh
  // insertion. The handle stays valid. False (and no effect) for a stale
  // handle. O(log n).
  bool Reschedule(Handle h, Key new_deadline) {
    if (!Contains(h)) return false;
    const uint32_t seq = NextSeq();
    const size_t pos = meta_[h.slot_].pos;
    Entry e = TakeEntry(pos);
    e.key = std::move(new_deadline);
    e.seq = seq;
    Restore(pos, std::move(e));
    // Moving the top down lifts one of its children, maybe a dead one.
    DropDeadTops();
    return true;
  }

  // Asks the cache for the bookkeeping record that Cancel() / Reschedule()
  // of the element read first, so a caller that knows it will cancel can
  // overlap that load with its own. Only a hint: any index is allowed
  // (stale, or past the table), and nothing observable changes.
  void PrefetchRecord(uint32_t record_index) const {
    if (record_index < meta_.size()) {
      __builtin_prefetch(&meta_[record_index], /*rw=*/1);
    }
  }

  // Cancel(h) for a caller that keeps h.record_index() apart from h, where
  // it is at hand before h itself has loaded (the event loop keeps it in
  // its Timer handle, and h in a slot that is usually a cache miss away).
  // The record is then addressed through `record_index`, so its cache miss
  // overlaps the caller's instead of following it. Same effect as Cancel(h)
  // for any `record_index`: a stale one only takes the plain path.
  bool CancelWithRecord(Handle h, uint32_t record_index) {
    if (record_index >= meta_.size()) return Cancel(h);
    const SlotMeta record = LoadRecordAhead(record_index);
    if (record_index != h.slot_) return Cancel(h);
    if (!NamesLive(record, h)) return false;
    CancelLive(record_index, record.pos);
    return true;
  }

  // Cancel's common case in a large heap, for callers whose cancel is hot
  // (the event loop's Timer::Cancel): if `h` is live, `record_index` is its
  // record, and Cancel would leave the entry dead in the array with nothing
  // more to do (no payload to destroy, no pass over the dead entries due),
  // cancels it that way and returns true. Otherwise returns false and
  // changes nothing: call CancelWithRecord, which handles every case.
  //
  // Calls nothing, so a caller can keep its own fast path free of the
  // register saves that any call on it would cost.
  [[gnu::always_inline]] bool TryCancelLazily(Handle h, uint32_t record_index) {
    return TryCancelLazilyIf</*kByOwner=*/false>(h, record_index, nullptr);
  }

  // Ownership, for a caller whose payloads say who holds each element (the
  // event loop stores the index of the watcher slot that armed it) and that
  // may keep a handle long after its element is gone. A generation has 32
  // bits: after 2^31 reuses of one record, which a record at the top of
  // the free list can see within minutes in a busy program, a stale handle
  // names a live element again, someone else's. Its payload tells them
  // apart.
  //
  // Contains(h), and h's payload equals `owner`.
  bool ContainsOwned(Handle h, const Payload& owner) const {
    return Contains(h) && PayloadOf(h.slot_) == owner;
  }
  // For a caller that never has two live elements with equal payloads (the
  // event loop: at most one per watcher slot), the owner names its element
  // without a handle, and a record index is enough to find it: if the
  // element in record `record_index` is live and its payload is `owner`,
  // does what TryCancelLazily(its handle, record_index) would. Any index is
  // allowed. The payload is read alongside the record, so its cache miss
  // overlaps the record's. Only for trivially copyable payloads (false
  // otherwise).
  [[gnu::always_inline]] bool TryCancelLazilyByOwner(uint32_t record_index,
                                                     const Payload& owner) {
    return TryCancelLazilyIf</*kByOwner=*/true>(Handle(), record_index, &owner);
  }

  bool Contains(Handle h) const {
    return h.slot_ < meta_.size() &&
           meta_[h.slot_].generation == h.generation_ && IsLive(h.slot_);
  }

  // The element's key / payload, or nullptr for a stale handle.
  const Key* KeyOf(Handle h) const {
    return Contains(h) ? &heap_[meta_[h.slot_].pos].key : nullptr;
  }
  Payload* Get(Handle h) { return Contains(h) ? &PayloadOf(h.slot_) : nullptr; }
  const Payload* Get(Handle h) const {
    return Contains(h) ? &PayloadOf(h.slot_) : nullptr;
  }

  // Calls f(handle, key, payload) for every live element, in no particular
  // order; cancelled entries still in the array are skipped. O(n). For
  // tests and diagnostics: f must not change the heap.
  template <typename F>
  void ForEachLive(F&& f) const {
    for (const Entry& e : heap_) {
      if (IsLive(e.slot)) {
        f(Handle(e.slot, meta_[e.slot].generation), e.key, PayloadOf(e.slot));
      }
    }
  }

  // The minimum element. The heap must not be empty (aborts otherwise).
  const Key& TopKey() const { return heap_[CheckedTop()].key; }
  Payload& TopPayload() { return PayloadOf(heap_[CheckedTop()].slot); }
  const Payload& TopPayload() const {
    return PayloadOf(heap_[CheckedTop()].slot);
  }
  Handle TopHandle() const {
    const uint32_t slot = heap_[CheckedTop()].slot;
    return Handle(slot, meta_[slot].generation);
  }

  // Removes the minimum element and returns its key and payload. The heap
  // must not be empty (aborts otherwise). O(log n).
  std::pair<Key, Payload> Pop() {
    CheckedTop();
    const uint32_t slot = heap_[0].slot;
    std::pair<Key, Payload> out(std::move(heap_[0].key),
                                std::move(PayloadOf(slot)));
    RemoveTop();
    FreeSlot(slot);
    if (dead_ != 0) AfterRemovalAmongDead();
    MaybeShrink();
    return out;
  }

  // Removes every element whose key is not above `limit` and appends them to
  // *out as (key, payload), in exactly the order repeated Pop() calls would
  // give (smallest key first, FIFO among equal keys). Returns how many.
  //
  // Cost: k due elements are popped one by one, O(k log n), while they are a
  // small part of the heap. Once they look like a large part (the last array
  // element is due, or k grows past an eighth of what is left), the rest
  // is taken in one pass instead: partition the array, sort the due part
  // (skipped when it already lies in order, as timers armed in turn for the
  // same instant do), re-heapify what stays: O(n + k log k). A descent to a
  // leaf per element (~10 levels at 1M) becomes a few operations per element.
  // Any work done by one-by-one pops before the switch is at least an eighth
  // of the scan, so a wrong guess costs a constant factor at most.
  size_t PopDue(const Key& limit, std::vector<std::pair<Key, Payload>>* out) {
    size_t popped = 0;
    while (!heap_.empty() && !less_(limit, heap_[0].key)) {
      if (heap_.size() >= kBulkMinSize &&
          (!less_(limit, heap_.back().key) ||
           (popped >= kBulkMinSize && popped * 8 >= heap_.size()))) {
        return popped + PopDueBulk(limit, out);
      }
      out->push_back(Pop());
      ++popped;
    }
    return popped;
  }

  // Adds `offset` to every key (`key = key + offset`) in O(n), keeping the
  // heap order: used to correct every deadline after a clock jump. If the
  // addition is not strictly order-preserving (e.g. a saturating key type
  // clamps several keys to the same value), the heap is repaired in O(n), so
  // the order guarantees hold for the shifted keys, FIFO among ties
  // included.
  template <class Delta>
  void ShiftAll(const Delta& offset) {
    for (Entry& e : heap_) e.key = e.key + offset;
    for (size_t i = 1; i < heap_.size(); ++i) {
      if (Less(heap_[i], heap_[Parent(i)])) {
        Heapify();
        DropDeadTops();
        break;
      }
    }
  }

  // Removes every element (destroying payloads); every handle becomes
  // stale. Memory goes back down to the Reserve() floor. O(n).
  void Clear() {
    for (const Entry& e : heap_) {
      const uint32_t slot = e.slot;
      if (IsLive(slot)) {
        DropPayload(slot);
        ++meta_[slot].generation;
      }
      meta_[slot].pos = kNoSlot;
    }
    heap_.clear();
    dead_ = 0;
    TrimFreeTail();  // every slot is free now: the table empties
    AfterTrim();
    RebuildFreeList(std::max(kMinCapacity, reserved_));
    MaybeShrink();
  }

  // Pre-allocates room for `n` elements and keeps at least that much
  // through later shrinking.
  void Reserve(size_t n) {
    RecheckShrinkOnNextRemoval();
    reserved_ = n;
    heap_.reserve(n);
    meta_.reserve(n);
    payloads_.reserve(n);
    free_.reserve(n);
  }

  // Observability for tests and memory accounting.
  size_t heap_capacity() const { return heap_.capacity(); }
  size_t slot_count() const { return meta_.size(); }
  size_t slot_capacity() const { return meta_.capacity(); }
  size_t MemoryBytes() const {
    return heap_.capacity() * sizeof(Entry) +
           meta_.capacity() * sizeof(SlotMeta) +
           payloads_.capacity() * sizeof(PayloadCell) +
           free_.capacity() * sizeof(uint32_t);
  }

  // Test hook: continue numbering insertions at `next`, which must not be
  // below the current counter (aborts otherwise). Lets tests cross the
  // 32-bit sequence wrap without 4 billion pushes.
  void SetNextSequenceForTesting(uint32_t next) {
    if (next < next_seq_) timer_heap_internal::Fatal("sequence moved back");
    next_seq_ = next;
  }

  // Test hook: the generation a brand-new record starts after (even; aborts
  // otherwise), as the records trimmed so far would leave it. Lets tests
  // reach the wrap of 2^31 Push + Pop cycles without them.
  void SetNewRecordGenerationForTesting(uint32_t even_generation) {
    if ((even_generation & 1) != 0) {
      timer_heap_internal::Fatal("a new-record generation must be even");
    }
    new_slot_generation_ = even_generation;
  }

  // Test hook: the record of `stale`, which must be free (aborts
  // otherwise), hands out `stale`'s generation again on its next use, as
  // 2^31 reuses would (generations are 32 bits). Lets tests reach that
  // wrap without them.
  void RewindGenerationForTesting(Handle stale) {
    if (stale.slot_ >= meta_.size() || !IsFree(stale.slot_) ||
        (stale.generation_ & 1) == 0) {
      timer_heap_internal::Fatal("rewind of a record that is not free");
    }
    meta_[stale.slot_].generation = stale.generation_ - 1;  // even: free
  }

  // Checks every internal invariant (heap order, back-index, generations,
  // free list) in O(n). For tests; returns false and explains in `why`.
  bool VerifyInvariants(std::string* why = nullptr) const;

 private:
  static constexpr uint32_t kNoSlot = std::numeric_limits<uint32_t>::max();
  // Below this many entries the arrays are never shrunk.
  static constexpr size_t kMinCapacity = 64;
  // From this many entries (256 KiB of 16-byte entries, past L1/L2) Pop
  // prefetches the level below the next one.
  static constexpr size_t kPrefetchMinSize = 16384;
  // PopDue takes the one-pass path only from this heap size (and after at
  // least this many single pops when it switches midway).
  static constexpr size_t kBulkMinSize = 64;
  // Cancel leaves dead entries (see there) only in an array of at least
  // this many entries (256 KiB): below it the heap lives in the cache,
  // where removing at once costs little and keeps memory exact.
  static constexpr size_t kLazyCancelMinSize = 16384;

  // 16 bytes for an 8-byte key: four siblings fill one cache line.
  struct Entry {
    Key key;
    uint32_t slot;  // index into meta_ / payloads_
    uint32_t seq;   // insertion order: the FIFO tie-break

    // Constructors (rather than aggregate braces) let emplace_back write the
    // fields in place instead of copying a temporary built piecewise on the
    // stack, whose 16-byte reload stalls on store forwarding (Push measured
    // ~1.5x slower at 1000 elements with the temporary).
    Entry(Key k, uint32_t sl, uint32_t sq)
        : key(std::move(k)), slot(sl), seq(sq) {}
  };

  // A slot is live (odd generation, its entry at `pos`), dead (even
  // generation, its cancelled entry still at `pos`) or free (even
  // generation, pos == kNoSlot).
  struct SlotMeta {
    // Position of the slot's entry in heap_, kNoSlot once it has none.
    uint32_t pos;
    // Odd while the slot is live, even otherwise; bumped on every change.
    uint32_t generation;

    // Trivial (a defaulted default constructor): the slot table then grows
    // with memcpy instead of a loop over its elements.
    SlotMeta() = default;
    SlotMeta(uint32_t p, uint32_t g) : pos(p), generation(g) {}
  };

  void Swap(TimerHeap& other) noexcept {
    using std::swap;
    swap(heap_, other.heap_);
    swap(meta_, other.meta_);
    swap(payloads_, other.payloads_);
    swap(free_, other.free_);
    swap(frees_since_rebuild_, other.frees_since_rebuild_);
    swap(free_list_pending_, other.free_list_pending_);
    swap(dead_, other.dead_);
    swap(lazy_cancel_min_size_, other.lazy_cancel_min_size_);
    swap(reserved_, other.reserved_);
    swap(shrink_check_below_, other.shrink_check_below_);
    swap(next_seq_, other.next_seq_);
    swap(new_slot_generation_, other.new_slot_generation_);
    swap(less_, other.less_);
  }

  // The sequence number for a push or reschedule. 32 bits keep the entry at
  // 16 bytes; when they run out (after 2^32 pushes and reschedules) the live
  // sequence numbers are replaced by their ranks, which keeps every
  // tie-break as it was: O(n log n) once per ~4 billion operations.
  static constexpr uint32_t kLastSeq = std::numeric_limits<uint32_t>::max();
  uint32_t NextSeq() {
    if (next_seq_ == kLastSeq) {
      RenumberSequences();
    }
    return next_seq_++;
  }

  void RenumberSequences() {
    std::vector<uint32_t> seqs;
    seqs.reserve(heap_.size());
    for (const Entry& e : heap_) seqs.push_back(e.seq);
    std::sort(seqs.begin(), seqs.end());
    for (Entry& e : heap_) {
      e.seq = static_cast<uint32_t>(
          std::lower_bound(seqs.begin(), seqs.end(), e.seq) - seqs.begin());
    }
    next_seq_ = static_cast<uint32_t>(heap_.size());
  }

  static constexpr size_t Parent(size_t i) { return (i - 1) / Arity; }
  static constexpr size_t FirstChild(size_t i) { return i * Arity + 1; }

  bool IsLive(uint32_t slot) const { return (meta_[slot].generation & 1) != 0; }
  bool IsFree(uint32_t slot) const {
    return !IsLive(slot) && meta_[slot].pos == kNoSlot;
  }

  bool Less(const Entry& a, const Entry& b) const {
    if (less_(a.key, b.key)) return true;
    if (less_(b.key, a.key)) return false;
    return a.seq < b.seq;
  }

  size_t CheckedTop() const {
    if (heap_.empty()) timer_heap_internal::Fatal("Top/Pop on an empty heap");
    return 0;
  }

  Entry TakeEntry(size_t pos) {
    Entry& x = heap_[pos];
    return Entry(std::move(x.key), x.slot, x.seq);
  }

  void Place(size_t pos, Entry&& e) {
    meta_[e.slot].pos = static_cast<uint32_t>(pos);
    heap_[pos] = std::move(e);
  }

  // Moves the hole at `hole` up until `e` fits, then puts `e` there.
  void SiftUp(size_t hole, Entry&& e) {
    while (hole > 0) {
      const size_t parent = Parent(hole);
      if (!Less(e, heap_[parent])) break;
      Place(hole, std::move(heap_[parent]));
      hole = parent;
    }
    Place(hole, std::move(e));
  }

  // Index of the smallest child of `i`; `first` = FirstChild(i) < n.
  size_t MinChild(size_t first, size_t n) const {
    size_t best = first;
    if (first + Arity <= n) {
      // All children present: a fixed trip count, unrolled. Branches, not
      // conditional moves: on a heap larger than the cache, speculation
      // past a predicted branch starts the next level's load early, and a
      // branch-free version measured ~1.5x slower at 1M elements.
#pragma GCC unroll 64
      for (size_t c = first + 1; c < first + Arity; ++c) {
        if (Less(heap_[c], heap_[best])) best = c;
      }
    } else {
      for (size_t c = first + 1; c < n; ++c) {
        if (Less(heap_[c], heap_[best])) best = c;
      }
    }
    return best;
  }

  // Restore's rare upward move (the entry moved into a hole is usually the
  // last leaf, among the latest keys). Out of line, its loop no longer
  // takes the registers of the inlined Cancel path, which then kept the
  // moved entry and the vector bounds on the stack (~7 instructions per
  // cancel at a million timers).
  [[gnu::noinline]] void SiftUpOutOfLine(size_t hole, Entry&& e) {
    SiftUp(hole, std::move(e));
  }

  // Moves the hole at `hole` down until `e` fits, then puts `e` there.
  // kIndexed: keep the moved entries' records up to date (Heapify writes
  // them all afterwards instead).
  template <bool kIndexed = true>
  void SiftDown(size_t hole, Entry&& e) {
    const size_t n = heap_.size();
    for (;;) {
      const size_t first = FirstChild(hole);
      if (first >= n) break;
      const size_t best = MinChild(first, n);
      if (!Less(heap_[best], e)) break;
      MoveTo<kIndexed>(hole, std::move(heap_[best]));
      hole = best;
    }
    MoveTo<kIndexed>(hole, std::move(e));
  }
  template <bool kIndexed>
  void MoveTo(size_t pos, Entry&& e) {
    if constexpr (kIndexed) {
      Place(pos, std::move(e));
    } else {
      heap_[pos] = std::move(e);
    }
  }

  // Puts `e` into the hole at `pos`, moving it up or down as its key needs.
  void Restore(size_t pos, Entry&& e) {
    if (pos > 0 && Less(e, heap_[Parent(pos)])) {
      SiftUpOutOfLine(pos, std::move(e));
    } else if (FirstChild(pos) >= heap_.size()) {
      // A leaf, as most positions are (three in four of a 4-ary heap's):
      // placed here, without the out-of-line SiftDown's call and register
      // saves (~10 instructions per cancel at a million timers).
      Place(pos, std::move(e));
    } else {
      SiftDown(pos, std::move(e));
    }
  }

  // meta_[record_index], loaded on every path before anything of a handle
  // is compared with it: once a caller has found record_index equal to
  // h.slot_, the compiler could otherwise address the record through
  // whichever register holds h, and the load would wait for h after all.
  // (An empty asm on record_index was not enough: its input may be h's
  // register.)
  [[gnu::always_inline]] SlotMeta LoadRecordAhead(uint32_t record_index) {
    const SlotMeta record = meta_[record_index];
#if defined(__GNUC__)
    asm volatile("" : : "r"(record.pos), "r"(record.generation));
#endif
    return record;
  }

  // kByOwner: `owner` instead of `h` names the element (see
  // TryCancelLazilyByOwner).
  template <bool kByOwner>
  [[gnu::always_inline]] bool TryCancelLazilyIf(Handle h, uint32_t record_index,
                                                const Payload* owner) {
    // A payload with a destructor would be a call; one that is not bare
    // cannot be read before the record says it is alive.
    if constexpr (!kKeepDeadPayloads || (kByOwner && !kBarePayloads)) {
      return false;
    } else {
      if (record_index >= meta_.size()) return false;
      const SlotMeta record = LoadRecordAhead(record_index);
      if constexpr (kByOwner) {
        // Every record in the table has held a payload since its first
        // push, and a bare one is kept when dead: always an object to read.
        if (!(PayloadOf(record_index) == *owner) ||
            (record.generation & 1) == 0) {
          return false;
        }
      } else if (record_index != h.slot_ || !NamesLive(record, h)) {
        return false;
      }
      if (!CancelsLazily(record.pos) || 2 * (dead_ + 1) > heap_.size()) {
        return false;
      }
      MarkDead(record_index);
      return true;
    }
  }

  // Whether `record` (h's own) says h is live.
  static bool NamesLive(SlotMeta record, Handle h) {
    return record.generation == h.generation_ && (record.generation & 1) != 0;
  }

  // Whether Cancel leaves the entry at `pos` dead in the array. At once
  // instead: a heap small enough to live in the cache, the top (its
  // successor must be live), or the last entry (nothing moves).
  bool CancelsLazily(size_t pos) const {
    return heap_.size() >= lazy_cancel_min_size_ && pos != 0 &&
           pos + 1 < heap_.size();
  }

  // The lazy cancel of the live element in `slot`: its entry stays, dead.
  void MarkDead(uint32_t slot) {
    DropPayload(slot);
    ++meta_[slot].generation;  // odd -> even: stale handles now fail
    ++dead_;
  }

  // Cancel of the live element in `slot`, whose entry is at `pos`.
  [[gnu::always_inline]] void CancelLive(uint32_t slot, size_t pos) {
    if (CancelsLazily(pos)) {
      MarkDead(slot);
      if (2 * dead_ > heap_.size()) DropAllDead();
      return;
    }
    RemoveAt(pos);
    FreeSlot(slot);
    if (dead_ != 0) AfterRemovalAmongDead();
    MaybeShrink();
  }

  // After a removal from an array that holds dead entries: one may have
  // reached the top, and they may now be past their bound. Out of line:
  // without dead entries (always, below the lazy size) removals only test
  // dead_.
  [[gnu::noinline]] void AfterRemovalAmongDead() {
    DropDeadTops();
    MaybeDropAllDead();
  }

  // Removes the entry at `pos` (its slot is freed by the caller).
  void RemoveAt(size_t pos) {
    Entry last = std::move(heap_.back());
    heap_.pop_back();
    if (pos < heap_.size()) Restore(pos, std::move(last));
  }

  // Keeps the top entry live: removes dead entries that reached it.
  void DropDeadTops() {
    if (dead_ != 0 && !heap_.empty() && !IsLive(heap_[0].slot)) {
      DropDeadTopsSlow();
    }
  }
  [[gnu::noinline]] void DropDeadTopsSlow() {
    while (!heap_.empty() && !IsLive(heap_[0].slot)) {
      const uint32_t slot = heap_[0].slot;
      RemoveTop();
      --dead_;
      meta_[slot].pos = kNoSlot;
      ReleaseSlot(slot);
    }
    MaybeDropAllDead();
    // Reschedule and ShiftAll get here without a shrink check of their own.
    MaybeShrink();
  }

  // Bounds what dead entries cost: at most half the array, and none once
  // the array is below half the lazy-cancel size (where Cancel makes no
  // new ones, so a few left from a larger heap would otherwise pin its
  // slots for as long as they wait to reach the top).
  void MaybeDropAllDead() {
    if (dead_ != 0 && (2 * dead_ > heap_.size() ||
                       2 * heap_.size() < lazy_cancel_min_size_)) {
      DropAllDead();
    }
  }

  // Drops every dead entry in one pass and rebuilds the heap over the
  // rest, O(n). Each cancel that left a dead entry pays O(1) of it: the
  // pass runs once they are half the array, or once the array has fallen
  // below half the smallest size at which one can be made.
  [[gnu::noinline]] void DropAllDead() {
    size_t kept;
    if constexpr (std::is_trivially_copyable<Entry>::value) {
      kept = KeepLiveWithoutBranches();
    } else {
      kept = 0;
      const size_t n = heap_.size();
      for (size_t i = 0; i < n; ++i) {
        if (!IsLive(heap_[i].slot)) {
          ReleaseDeadInBulk(heap_[i].slot);
        } else {
          if (kept != i) heap_[kept] = std::move(heap_[i]);
          ++kept;
        }
      }
    }
    heap_.erase(heap_.begin() + static_cast<std::ptrdiff_t>(kept), heap_.end());
    dead_ = 0;
    Heapify();
    TrimFreeTail();
    AfterTrim();
    MaybeShrink();
  }

  // DropAllDead's first step for trivially copyable entries: moves the live
  // entries to the front in their order, releases the slots of the dead
  // ones (as ReleaseDeadInBulk), and returns how many entries it kept.
  //
  // Without a branch on liveness. The array is in heap order and cancels
  // come in any order, so live and dead entries follow no pattern and
  // about every other test would be mispredicted; each misprediction also
  // discards the record loads already started for the entries after it, and in
  // a heap large enough to make dead entries those are cache misses. At a
  // million timers (timerbench's cancel) the branchy loop took ~7 ns per entry,
  // this one ~5, and ~3 with the records prefetched 64 entries ahead (32: ~3.7,
  // 128 and 256: no better). So every entry is copied, counted as live or
  // freed, and has its record's pos set to kNoSlot: Heapify, which always
  // follows, sets the pos of every entry kept.
  static constexpr size_t kKeepLiveAhead = 64;
  size_t KeepLiveWithoutBranches() {
    const size_t n = heap_.size();
    const bool list_free = !free_list_pending_;
    // The dead entries' slots go onto free_ through a small batch on the
    // stack: every entry's slot is written at the batch's next place and
    // only a dead one's is kept there. (A fresh array for all of them
    // faulted in megabytes per pass, and writing into free_ past what the
    // plain loop would have pushed changes its capacity.) Room first, for
    // the dead_ slots this pass frees: nothing in it can throw once
    // entries have started to move.
    if (list_free) ReserveFreeAsPushBacksWould(free_.size() + dead_);
    constexpr size_t kBatch = 1024;
    uint32_t batch[kBatch];
    size_t batched = 0;
    Entry* const entries = heap_.data();
    SlotMeta* const meta = meta_.data();
    size_t kept = 0;
    for (size_t i = 0; i < n; ++i) {
      // The records are read in no order: ask for the one kKeepLiveAhead
      // entries on (into L2) so that many misses overlap, more than the
      // out-of-order window alone keeps in flight.
      if (i + kKeepLiveAhead < n) {
        __builtin_prefetch(&meta[entries[i + kKeepLiveAhead].slot], /*rw=*/1,
                           /*locality=*/2);
      }
      const Entry e = entries[i];
      const size_t live = meta[e.slot].generation & 1;
      meta[e.slot].pos = kNoSlot;
      entries[kept] = e;
      kept += live;
      if (list_free) {
        batch[batched] = e.slot;
        batched += live ^ 1;
        if (batched == kBatch) {  // once per kBatch dead entries
          free_.insert(free_.end(), batch, batch + kBatch);
          batched = 0;
        }
      }
    }
    frees_since_rebuild_ += n - kept;
    if (list_free) free_.insert(free_.end(), batch, batch + batched);
    return kept;
  }

  // Gives free_ room for `need` slots, its capacity growing exactly as it
  // would under push_backs up to that size (doubling): the branch-free pass
  // then leaves free_ as the plain loop does, and its capacity is part of
  // MemoryBytes and of when AfterTrim shrinks it.
  void ReserveFreeAsPushBacksWould(size_t need) {
    size_t capacity = free_.capacity();
    if (need <= capacity) return;
    while (capacity < need) capacity = capacity == 0 ? 1 : 2 * capacity;
    free_.reserve(capacity);
  }

  // Removes heap_[0]. Bottom-up (Floyd): the hole left by the root goes all
  // the way down along the smaller children without comparing against the
  // last element, which then bubbles up from the leaf. The last element is
  // usually one of the latest deadlines and lands near the bottom, so this
  // saves one comparison per level over the classic sift-down.
  void RemoveTop() {
    Entry last = std::move(heap_.back());
    heap_.pop_back();
    const size_t n = heap_.size();
    if (n == 0) return;
    size_t hole = 0;
    for (;;) {
      const size_t first = FirstChild(hole);
      if (first >= n) break;
      if (n >= kPrefetchMinSize) PrefetchGrandchildren(first, n);
      const size_t best = MinChild(first, n);
      Place(hole, std::move(heap_[best]));
      hole = best;
    }
    SiftUp(hole, std::move(last));
  }

  // The children of the siblings first .. first+Arity-1 are contiguous
  // (Arity * Arity entries: 4 cache lines for the 4-ary heap). Fetching them
  // while this level is compared hides most of the next level's miss. Only
  // worth it once the heap outgrows the caches: below kPrefetchMinSize it
  // measured slower.
  void PrefetchGrandchildren(size_t first, size_t n) const {
    const size_t grand = FirstChild(first);
    if (grand >= n) return;
    const char* p = reinterpret_cast<const char*>(heap_.data() + grand);
    const size_t bytes =
        std::min(n - grand, size_t{Arity} * Arity) * sizeof(Entry);
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
  }

  // PopDue's one-pass path; see there.
  size_t PopDueBulk(const Key& limit,
                    std::vector<std::pair<Key, Payload>>* out) {
    std::vector<Entry> due;
    // Room for the worst case: untouched pages cost nothing, regrowth would
    // copy every due entry about twice.
    due.reserve(heap_.size());
    size_t kept = 0;
    // Telling a dead entry from a live one reads its slot record, a cache
    // miss per entry in a large heap: only when there are dead entries.
    const bool any_dead = dead_ != 0;
    for (size_t i = 0; i < heap_.size(); ++i) {
      if (any_dead && !IsLive(heap_[i].slot)) {
        ReleaseDeadInBulk(heap_[i].slot);
      } else if (!less_(limit, heap_[i].key)) {
        due.push_back(std::move(heap_[i]));
      } else {
        if (kept != i) heap_[kept] = std::move(heap_[i]);
        ++kept;
      }
    }
    heap_.erase(heap_.begin() + static_cast<std::ptrdiff_t>(kept), heap_.end());
    dead_ = 0;
    const auto less = [this](const Entry& a, const Entry& b) {
      return Less(a, b);
    };
    if (!std::is_sorted(due.begin(), due.end(), less)) {
      std::sort(due.begin(), due.end(), less);
    }
    out->reserve(out->size() + due.size());
    // FreeSlot() per element would run the trim bookkeeping with the heap
    // and the slot table out of step (the heap is already cut down); free
    // them in bulk, then trim and shrink once.
    for (Entry& e : due) {
      out->emplace_back(std::move(e.key), std::move(PayloadOf(e.slot)));
      DropPayload(e.slot);
      ++meta_[e.slot].generation;  // odd -> even: stale handles now fail
      meta_[e.slot].pos = kNoSlot;
      if (!free_list_pending_) free_.push_back(e.slot);
    }
    frees_since_rebuild_ += due.size();
    Heapify();
    TrimFreeTail();
    AfterTrim();
    MaybeShrink();
    return due.size();
  }

  // Floyd's O(n) heap construction over the current array, then every
  // record's position. The sifts move entries without writing records (a
  // random store each, ~1.3 per entry with the leaves that stay put); one
  // pass in array order then writes each record once.
  void Heapify() {
    const size_t n = heap_.size();
    if (n >= 2) {
      for (size_t i = Parent(n - 1) + 1; i-- > 0;) {
        SiftDown</*kIndexed=*/false>(i, TakeEntry(i));
      }
    }
    for (size_t i = 0; i < n; ++i) {
      meta_[heap_[i].slot].pos = static_cast<uint32_t>(i);
    }
  }

  // Push's record, where it needs no call: the free list's top, when it
  // names a free slot, or a new slot inside the table's capacity. Its
  // payload cell is not written: Push stores the payload last. False, with
  // nothing changed, for everything else (AllocateSlot's cases).
  [[gnu::always_inline]] bool TakeRecordFast(uint32_t* slot,
                                             uint32_t* generation) {
    const size_t records = meta_.size();
    if (!free_.empty()) {
      const uint32_t top = free_.back();
      if (top >= records || !IsFree(top)) return false;
      free_.pop_back();
      *generation = ++meta_[top].generation;  // even -> odd: live
      *slot = top;
      return true;
    }
    // payloads_ grows and shrinks with meta_ (GrowSlotTable, Reserve,
    // the shrinks), so it has room where meta_ has (VerifyInvariants).
    if (free_list_pending_ || records == meta_.capacity() ||
        records >= kNoSlot) {
      return false;
    }
    *slot = static_cast<uint32_t>(records);
    *generation = new_slot_generation_ + 1;
    // Its position is written when the sift places the entry.
    meta_.AppendUnchecked(kNoSlot, *generation);
    payloads_.AppendUninitialized();
    return true;
  }

  uint32_t AllocateSlot() {
    // free_ may hold indices of slots trimmed off the table since they were
    // freed; they are dropped here, each once. (A slot index is only
    // recreated by push_back below once free_ is empty, so an index in free_
    // that is inside the table always names a free slot.)
    for (;;) {
      while (!free_.empty()) {
        const uint32_t slot = free_.back();
        free_.pop_back();
        if (slot < meta_.size() && IsFree(slot)) {
          ++meta_[slot].generation;  // even -> odd: live
          return slot;
        }
      }
      // An unlisted free slot must be found before a new one is made.
      if (!free_list_pending_) break;
      RebuildFreeList(std::max(kMinCapacity, reserved_));
    }
    if (meta_.size() >= kNoSlot) {
      timer_heap_internal::Fatal("more than 2^32 - 1 elements");
    }
    if (meta_.size() == meta_.capacity()) GrowSlotTable();
    const uint32_t slot = static_cast<uint32_t>(meta_.size());
    meta_.emplace_back(kNoSlot, new_slot_generation_ + 1);
    payloads_.emplace_back();
    return slot;
  }

  // Grows the slot arrays and gives free_ room for every slot at the same
  // time: free_ then never grows inside Cancel or Pop, where a doubling
  // copied the whole list (~15 instructions per cancel while draining a
  // million timers). Growing here is a fresh allocation: free_ is empty
  // while the table is dense.
  void GrowSlotTable() {
    const size_t capacity = std::max(kMinCapacity, 2 * meta_.size());
    meta_.reserve(capacity);
    payloads_.reserve(capacity);
    free_.reserve(capacity);
  }

  // A trivially destructible payload is left in place when its slot is
  // freed (the next Push overwrites it; nothing reads a dead slot's
  // payload): that keeps Cancel and Pop off the payload array, one cache
  // miss less per cancel of a large heap (a third of the wall time of
  // timerbench's cancel at 1M).
  static constexpr bool kKeepDeadPayloads =
      std::is_trivially_destructible<Payload>::value;
  void DropPayload(uint32_t slot) {
    if constexpr (!kKeepDeadPayloads) payloads_[slot].reset();
  }

  // A slot's payload is alive exactly while the slot is (odd generation),
  // so a trivially copyable payload needs no engaged flag of its own: it is
  // stored bare, in 4 bytes for the loop's uint32_t where std::optional took
  // 8, and the array grows with memcpy (std::optional is not trivial, so it
  // grew element by element). Any other payload keeps std::optional, whose
  // flag makes its moves and destruction follow the slot's life.
  static constexpr bool kBarePayloads =
      std::is_trivially_copyable<Payload>::value;
  using PayloadCell =
      std::conditional_t<kBarePayloads, timer_heap_internal::BareCell<Payload>,
                         std::optional<Payload>>;

  // Push's call-free path needs bare payloads and arrays with
  // AppendUnchecked (PodArray: a trivially copyable Key).
  static constexpr bool kInlinePush =
      kBarePayloads && std::is_trivially_copyable<Key>::value &&
      std::is_trivially_destructible<Key>::value;

  Payload& PayloadOf(uint32_t slot) {
    if constexpr (kBarePayloads) {
      return payloads_[slot].get();
    } else {
      return *payloads_[slot];
    }
  }
  const Payload& PayloadOf(uint32_t slot) const {
    if constexpr (kBarePayloads) {
      return payloads_[slot].get();
    } else {
      return *payloads_[slot];
    }
  }
  void SetPayload(uint32_t slot, Payload&& payload) {
    if constexpr (kBarePayloads) {
      ::new (static_cast<void*>(payloads_[slot].bytes))
          Payload(std::move(payload));
    } else {
      payloads_[slot].emplace(std::move(payload));
    }
  }

  // A dead entry's slot, freed by a pass that trims the table once at its
  // end.
  void ReleaseDeadInBulk(uint32_t slot) {
    meta_[slot].pos = kNoSlot;
    ++frees_since_rebuild_;
    if (!free_list_pending_) free_.push_back(slot);
  }

  void FreeSlot(uint32_t slot) {
    DropPayload(slot);
    ++meta_[slot].generation;  // odd -> even: stale handles now fail
    meta_[slot].pos = kNoSlot;
    ReleaseSlot(slot);
  }

  // Frees a slot that is neither live nor in the heap any more (pos is
  // kNoSlot): for reuse, or trimmed off the table's end.
  void ReleaseSlot(uint32_t slot) {
    ++frees_since_rebuild_;
    if (slot + size_t{1} == meta_.size()) {
      TrimFreeTail();
      AfterTrim();
    } else if (!free_list_pending_) {
      free_.push_back(slot);
    }
  }

  // Keeps the table ending at its highest slot in use (live or dead):
  // O(number trimmed), each slot trimmed at most once per time it was
  // freed.
  //
  // Finds the new end first, then cuts both arrays once. A pop_back of each
  // per trimmed slot, with the member stores between them, cost ~17
  // instructions per slot, and a heap drained in random order trims nearly
  // every slot once: that was ~17 instructions per cancel or pop.
  void TrimFreeTail() {
    const SlotMeta* const meta = meta_.data();
    size_t end = meta_.size();
    // A slot recreated later at a trimmed index must not reissue a
    // generation that a stale handle to the trimmed slot still carries.
    // Compared modulo 2^32 (as serial numbers): a record reused 2^31 times
    // wraps to small generations, which std::max took for old. Then the
    // high-water mark stayed at 0xFFFFFFFE for good, every record recreated
    // at a trimmed index got 0xFFFFFFFF again, and a stale handle to one
    // passed for the next after a single reuse (a lone timer re-armed after
    // each expiry gets there after 2^31 expiries).
    uint32_t newest = new_slot_generation_;
    while (end > 0 && (meta[end - 1].generation & 1) == 0 &&
           meta[end - 1].pos == kNoSlot) {
      const uint32_t g = meta[end - 1].generation;
      if (static_cast<int32_t>(g - newest) > 0) newest = g;
      --end;
    }
    new_slot_generation_ = newest;
    const auto cut = static_cast<std::ptrdiff_t>(end);
    meta_.erase(meta_.begin() + cut, meta_.end());
    payloads_.erase(payloads_.begin() + cut, payloads_.end());
  }

  // Gives memory back once an array is less than a quarter full, down to
  // twice what is in use (so an immediate regrowth does not reallocate
  // again). Each reallocation copies at most a quarter of the capacity,
  // which the removals since the last resize have paid for.
  //
  // Called after every removal, so the common case is one inline compare
  // against shrink_check_below_, a size under which ShrinkSparse() may have
  // work (see ShrinkAndRearm). Working that out from the capacities on every
  // removal, out of line, cost ~23 of the ~170 instructions of a cancel
  // while draining a million timers. (The slot table's own capacity and the
  // entries of trimmed slots only change when slots are trimmed, and are
  // handled there: AfterTrim().)
  void MaybeShrink() {
    if (heap_.size() < shrink_check_below_) ShrinkAndRearm();
  }

  // For whatever may raise a threshold of ShrinkSparse (a bigger heap array,
  // the free list listed again, a lower Reserve floor): the next removal
  // recomputes shrink_check_below_.
  void RecheckShrinkOnNextRemoval() {
    shrink_check_below_ = std::numeric_limits<size_t>::max();
  }

  // Out of line: the removal paths keep only the compare.
  [[gnu::noinline]] void ShrinkAndRearm() {
    ShrinkSparse();
    // ShrinkSparse acts only below these sizes: the heap array below a
    // quarter of its capacity; the free list, once the heap holds less than
    // a quarter of the table (it also waits for half a table of frees,
    // which removals below that line bring, each checked). They rise only
    // where RecheckShrinkOnNextRemoval is called: heap growth in Push, the
    // free list listed again (RebuildFreeList), Reserve. A new slot grows
    // the table too, but only when every slot is live (free slots are all
    // listed unless the list is pending, and a pending list is rebuilt
    // first), so the table is no bigger than the heap array, whose quarter
    // is already the threshold. VerifyInvariants checks all of this.
    const size_t floor = std::max(kMinCapacity, reserved_);
    size_t below = heap_.capacity() > floor ? heap_.capacity() / 4 : 0;
    if (!free_list_pending_ && meta_.size() > floor) {
      below = std::max(below, meta_.size() / 4);
    }
    shrink_check_below_ = below;
  }

  void ShrinkSparse() {
    const size_t floor = std::max(kMinCapacity, reserved_);
    if (heap_.capacity() > floor && heap_.size() < heap_.capacity() / 4) {
      ReallocateTo(heap_, std::max(floor, 2 * heap_.size()));
    }
    // A sparse table: the free list is to be rebuilt lowest-first (see
    // RebuildFreeList), at most once per half a table of frees so the
    // O(table) scan costs O(1) per free. The scan waits for the next slot
    // allocation, the first to need the order: a heap that is draining
    // never pays it. Until then free_ is dropped and frees go unlisted
    // (the scan finds them), which also keeps Cancel and Pop off free_.
    if (free_list_pending_) return;
    const size_t slots = meta_.size();
    if (slots > floor && heap_.size() < slots / 4 &&
        frees_since_rebuild_ >= slots / 2) {
      free_list_pending_ = true;
      free_.clear();
      ReallocateTo(free_, floor);
    }
  }

  void AfterTrim() {
    const size_t floor = std::max(kMinCapacity, reserved_);
    if (meta_.capacity() > floor && meta_.size() < meta_.capacity() / 4) {
      ReallocateTo(meta_, std::max(floor, 2 * meta_.size()));
      ReallocateTo(payloads_, std::max(floor, 2 * meta_.size()));
    }
    // free_ was given room for the whole table when it grew
    // (GrowSlotTable), so it follows the table down too.
    if (free_.capacity() > floor &&
        std::max(meta_.size(), free_.size()) < free_.capacity() / 4) {
      ReallocateTo(free_,
                   std::max(floor, 2 * std::max(meta_.size(), free_.size())));
    }
    // Entries of trimmed slots are skipped when popped; once they outnumber
    // the table, drop them (the scan is paid for by the trims that made
    // them).
    // (A pending rebuild has dropped free_ already.)
    if (free_list_pending_) return;
    const size_t slots = meta_.size();
    const size_t stale = free_.size() - (slots - heap_.size());
    if (stale > slots + kMinCapacity) RebuildFreeList(floor);
  }

  // Lists exactly the free slots of the table, lowest index on top so they
  // are reused first: new elements then fill the bottom of the table, and
  // slots near its end, once freed, get trimmed instead of reused. Without
  // this, LIFO reuse after a spike would keep a few timers spread over the
  // whole old table and pin its memory.
  void RebuildFreeList(size_t floor) {
    RecheckShrinkOnNextRemoval();
    free_list_pending_ = false;
    frees_since_rebuild_ = 0;
    free_.clear();
    for (size_t i = meta_.size(); i-- > 0;) {
      if (IsFree(static_cast<uint32_t>(i))) {
        free_.push_back(static_cast<uint32_t>(i));
      }
    }
    if (free_.capacity() > floor && free_.size() < free_.capacity() / 4) {
      ReallocateTo(free_, std::max(floor, 2 * free_.size()));
    }
  }

  template <typename Vector>
  static void ReallocateTo(Vector& v, size_t capacity) {
    if (v.capacity() <= capacity) return;
    Vector fresh;
    fresh.reserve(capacity);
    // One bulk move (a memcpy for trivially copyable elements), not a
    // push_back per element.
    fresh.insert(fresh.end(), std::make_move_iterator(v.begin()),
                 std::make_move_iterator(v.end()));
    v.swap(fresh);
  }

  timer_heap_internal::HeapArray<
      Entry, timer_heap_internal::SiblingAlignedAllocator<Entry>>
      heap_;
  timer_heap_internal::HeapArray<SlotMeta, huge_pages::Allocator<SlotMeta>>
      meta_;
  // Indexed like meta_; see PayloadCell.
  timer_heap_internal::HeapArray<PayloadCell,
                                 huge_pages::Allocator<PayloadCell>>
      payloads_;
  // Indices of free slots, most recently freed on top; may also hold
  // indices >= meta_.size() of slots trimmed since (skipped on reuse).
  // Empty, and not kept up, while free_list_pending_.
  timer_heap_internal::PodArray<uint32_t, std::allocator<uint32_t>> free_;
  size_t frees_since_rebuild_ = 0;
  // Entries of cancelled elements still in heap_ (see Cancel).
  size_t dead_ = 0;
  size_t lazy_cancel_min_size_ = kLazyCancelMinSize;
  // The free list is due for a lowest-first rebuild (ShrinkSparse), done
  // by the next AllocateSlot.
  bool free_list_pending_ = false;
  size_t reserved_ = 0;
  // MaybeShrink() has nothing to do while heap_.size() is not below this.
  size_t shrink_check_below_ = 0;
  // Every entry's seq is below this.
  uint32_t next_seq_ = 0;
  // Even; a brand-new slot starts one above it, so it never repeats a
  // generation of a trimmed slot with the same index.
  uint32_t new_slot_generation_ = 0;
  Compare less_;
};

template <typename Key, typename Payload, typename Compare, int Arity>
bool TimerHeap<Key, Payload, Compare, Arity>::VerifyInvariants(
    std::string* why) const {
  auto fail = [why](std::string message) {
    if (why != nullptr) *why = std::move(message);
    return false;
  };
  if (meta_.size() != payloads_.size()) return fail("slot arrays differ");
  // Push's fast path checks the room of meta_ alone.
  if (payloads_.capacity() < meta_.capacity()) {
    return fail("payload array has less room than the slot table");
  }
  if ((new_slot_generation_ & 1) != 0) return fail("odd new-slot generation");
  size_t live = 0;
  size_t dead = 0;
  for (size_t s = 0; s < meta_.size(); ++s) {
    const bool is_live = IsLive(static_cast<uint32_t>(s));
    if constexpr (!kBarePayloads) {
      if (is_live ? !payloads_[s].has_value()
                  : (!kKeepDeadPayloads && payloads_[s].has_value())) {
        return fail("payload presence disagrees with generation at slot " +
                    std::to_string(s));
      }
    }
    if (is_live) {
      ++live;
      if (meta_[s].pos == kNoSlot) return fail("a live slot has no entry");
    } else if (!IsFree(static_cast<uint32_t>(s))) {
      ++dead;
    }
  }
  if (dead != dead_) return fail("dead slot count != dead entry count");
  if (live + dead != heap_.size()) {
    return fail("live and dead slots != heap size");
  }
  if (dead_ != 0 &&
      (2 * dead_ > heap_.size() || 2 * heap_.size() < lazy_cancel_min_size_)) {
    return fail("dead entries past their bound");
  }
  if (!heap_.empty() && !IsLive(heap_[0].slot)) {
    return fail("the top entry is dead");
  }
  // MaybeShrink() would skip a shrink that is due.
  const size_t floor = std::max(kMinCapacity, reserved_);
  if (heap_.capacity() > floor && shrink_check_below_ < heap_.capacity() / 4) {
    return fail("shrink threshold below a quarter of the heap array");
  }
  if (!free_list_pending_ && meta_.size() > floor &&
      shrink_check_below_ < meta_.size() / 4) {
    return fail("shrink threshold below a quarter of the slot table");
  }
  for (size_t i = 0; i < heap_.size(); ++i) {
    const Entry& e = heap_[i];
    const uint32_t slot = e.slot;
    if (slot >= meta_.size() || IsFree(slot)) {
      return fail("entry " + std::to_string(i) + " points at a free slot");
    }
    if (meta_[slot].pos != i) {
      return fail("back-index of entry " + std::to_string(i) + " is wrong");
    }
    if (e.seq >= next_seq_) return fail("sequence number from the future");
    if (i > 0 && Less(e, heap_[Parent(i)])) {
      return fail("heap order broken at " + std::to_string(i));
    }
  }
  if (!meta_.empty() && IsFree(static_cast<uint32_t>(meta_.size() - 1))) {
    return fail("the slot table ends with a free slot");
  }
  std::vector<bool> listed(meta_.size(), false);
  size_t free_listed = 0;
  for (uint32_t slot : free_) {
    if (slot >= meta_.size()) continue;  // trimmed since it was freed
    if (!IsFree(slot)) return fail("a slot in use is on the free list");
    if (listed[slot]) return fail("a slot is twice on the free list");
    listed[slot] = true;
    ++free_listed;
  }
  if (free_list_pending_) {
    if (!free_.empty()) return fail("a pending free list is not empty");
  } else if (free_listed + live + dead != meta_.size()) {
    return fail("free list does not cover every free slot");
  }
  return true;
}

}  // namespace eventide

#endif  // EVENTIDE_TIMERHEAP_TIMER_HEAP_H_
