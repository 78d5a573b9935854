#include "apps/cached/store.h"

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "apps/cached/limits.h"
#include "apps/cached/numbers.h"

namespace eventide {
namespace cached {
namespace {

// memcached's process_started is start-up time minus ITEM_UPDATE_INTERVAL
// (60) minus 2, so its relative clock starts at 62. Keeping the same origin
// keeps its exptime and flush_all arithmetic (including its edge cases, such
// as an absolute time at or before process start) identical.
constexpr int64_t kProcessStartOffset = 62;

// What one item's block can hold (Item keeps lengths in 32 and 16 bits).
// Far above anything the server stores: -I is at most 1 GiB and keys at
// most kMaxKeyLength bytes.
constexpr size_t kMaxItemBytes = std::numeric_limits<uint32_t>::max();
constexpr size_t kMaxStoredKeyLength = std::numeric_limits<uint16_t>::max();

size_t RoundUpToPowerOfTwo(size_t n) {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// memcached's EXPTIME_TO_POSITIVE_TIME: a negative exptime becomes an
// absolute time in 1970, which realtime() turns into "already expired".
int64_t ToPositiveTime(int32_t exptime) {
  return exptime < 0 ? kRealtimeMaxDelta + 1 : exptime;
}

// memcpy of `src` to `dst`. An empty string_view may have no data pointer,
// and memcpy from a null pointer is undefined even for 0 bytes.
void CopyBytes(char* dst, absl::string_view src) {
  if (!src.empty()) std::memcpy(dst, src.data(), src.size());
}

}  // namespace

// One cached item in one heap block: this 64-byte header, then the key,
// then the value. A lookup compares the key right after the header it
// has just read, and a hit copies the value from the same block, instead of
// following the header to a separate buffer (one dependent cache miss less
// per request, and one malloc chunk less per item). A value that outgrows
// its block, or would leave it more than twice too large, moves the item to
// a new block (Store::Reallocate).
struct Store::Item {
  Item* newer = nullptr;  // towards the LRU head (most recently used)
  Item* older = nullptr;  // towards the LRU tail (next to evict)
  size_t hash = 0;        // absl::Hash of the key, kept for rehashing
  uint64_t cas = 0;
  int64_t exptime = 0;  // relative time (CurrentTime() scale), 0 = never
  int64_t time = 0;     // relative time of the last store (for flush_all)
  uint32_t flags = 0;
  uint32_t value_len = 0;
  uint32_t capacity = 0;  // bytes after the header, for key and value
  uint16_t key_len = 0;
  bool fetched = false;  // read at least once (for *_unfetched counters)

  char* bytes() { return reinterpret_cast<char*>(this + 1); }
  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
  absl::string_view key() const { return {bytes(), key_len}; }
  absl::string_view value() const { return {bytes() + key_len, value_len}; }
  char* value_data() { return bytes() + key_len; }
  size_t footprint() const { return ItemFootprint(key_len, value_len); }

  struct Deleter {
    void operator()(Item* item) const {
      item->~Item();
      ::operator delete(item);
    }
  };
  using Ptr = std::unique_ptr<Item, Deleter>;

  // A block with room for `capacity` bytes of key and value after a fresh
  // header. capacity <= kMaxItemBytes.
  static Ptr Allocate(size_t capacity) {
    static_assert(sizeof(Item) == 64, "the header stays 64 bytes");
    static_assert(std::is_trivially_copyable<Item>::value,
                  "Reallocate copies the header");
    // The header is built in raw storage sized for the bytes after it; the
    // Ptr owns the block from here on.
    Item* item = new (::operator new(sizeof(Item) + capacity)) Item();
    item->capacity = static_cast<uint32_t>(capacity);
    return Ptr(item);
  }
};

// Our per-item cost: the Item header, its slot (an Item::Ptr) and control
// byte in the hash table, and one malloc chunk header.
const size_t Store::kItemOverhead =
    sizeof(Store::Item) + sizeof(Store::Item::Ptr) + 1 + 16;

struct Store::KeyRef {
  absl::string_view key;
  size_t hash;
};

struct alignas(64) Store::Shard {
  // Transparent hash and equality, so lookups by KeyRef neither allocate nor
  // hash the key a second time.
  struct Hash {
    using is_transparent = void;
    size_t operator()(const Item::Ptr& item) const { return item->hash; }
    size_t operator()(const KeyRef& ref) const { return ref.hash; }
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(const Item::Ptr& a, const Item::Ptr& b) const {
      return a->key() == b->key();
    }
    bool operator()(const Item::Ptr& a, const KeyRef& b) const {
      return a->key() == b.key;
    }
    bool operator()(const KeyRef& a, const Item::Ptr& b) const {
      return a.key == b->key();
    }
  };

  struct Counters {
    uint64_t curr_items = 0;
    uint64_t total_items = 0;
    uint64_t cmd_get = 0;
    uint64_t cmd_set = 0;
    uint64_t cmd_touch = 0;
    uint64_t get_hits = 0;
    uint64_t get_misses = 0;
    uint64_t get_expired = 0;
    uint64_t get_flushed = 0;
    uint64_t delete_misses = 0;
    uint64_t delete_hits = 0;
    uint64_t incr_misses = 0;
    uint64_t incr_hits = 0;
    uint64_t decr_misses = 0;
    uint64_t decr_hits = 0;
    uint64_t cas_misses = 0;
    uint64_t cas_hits = 0;
    uint64_t cas_badval = 0;
    uint64_t touch_hits = 0;
    uint64_t touch_misses = 0;
    uint64_t expired_unfetched = 0;
    uint64_t evicted_unfetched = 0;
    uint64_t evictions = 0;
    uint64_t reclaimed = 0;
  };

  std::mutex mu;
  absl::flat_hash_set<Item::Ptr, Hash, Eq> items;
  Item* head = nullptr;  // most recently used
  Item* tail = nullptr;  // least recently used
  // Next item SweepExpired() looks at (walking from tail to head); nullptr
  // means "start again at the tail".
  Item* sweep_cursor = nullptr;
  Counters counters;

  void LinkHead(Item* item) {
    item->newer = nullptr;
    item->older = head;
    if (head != nullptr) head->newer = item;
    head = item;
    if (tail == nullptr) tail = item;
  }
  void UnlinkLru(Item* item) {
    if (sweep_cursor == item) sweep_cursor = item->newer;
    if (item->newer != nullptr) {
      item->newer->older = item->older;
    } else {
      head = item->older;
    }
    if (item->older != nullptr) {
      item->older->newer = item->newer;
    } else {
      tail = item->newer;
    }
    item->newer = item->older = nullptr;
  }
  void Bump(Item* item) {
    if (head == item) return;
    UnlinkLru(item);
    LinkHead(item);
  }
  // `to` (a copy of `from`'s header) takes `from`'s place in the list.
  void ReplaceInLru(Item* from, Item* to) {
    if (from->newer != nullptr) {
      from->newer->older = to;
    } else {
      head = to;
    }
    if (from->older != nullptr) {
      from->older->newer = to;
    } else {
      tail = to;
    }
    if (sweep_cursor == from) sweep_cursor = to;
  }
};

// The key's hash is computed once per request and reused for the shard
// choice (top bits) and the table lookup (all bits).
class Store::Lookup {
 public:
  explicit Lookup(absl::string_view key)
      : ref_{key, absl::Hash<absl::string_view>{}(key)} {}
  const KeyRef& ref() const { return ref_; }
  size_t shard_bits() const { return static_cast<size_t>(ref_.hash >> 40); }

 private:
  KeyRef ref_;
};

Store::Store(const StoreOptions& options, UnixClock* clock)
    : memory_limit_(options.memory_limit),
      item_size_max_(options.item_size_max),
      num_shards_(RoundUpToPowerOfTwo(std::max<size_t>(1, options.num_shards))),
      clock_(clock),
      process_started_(clock->NowUnixSeconds() - kProcessStartOffset),
      shards_(std::make_unique<Shard[]>(num_shards_)) {}

Store::~Store() = default;

int64_t Store::CurrentTime() const {
  return clock_->NowUnixSeconds() - process_started_;
}

// memcached's realtime(): converts a protocol exptime (already made
// non-negative) into the relative clock. 0 stays "never".
int64_t Store::RealTime(int64_t exptime, int64_t now) const {
  if (exptime == 0) return 0;
  if (exptime > kRealtimeMaxDelta) {
    // Absolute unix time. At or before process start: 1, i.e. long expired
    // (and never 0, which would mean "never expires").
    if (exptime <= process_started_) return 1;
    return exptime - process_started_;
  }
  return exptime + now;
}

Store::Shard& Store::ShardFor(size_t bits) const {
  return shards_[bits & (num_shards_ - 1)];
}

// memcached's item_is_flushed().
bool Store::IsFlushed(const Item& item, int64_t now) const {
  const int64_t oldest_live = oldest_live_.load(std::memory_order_relaxed);
  if (oldest_live == 0 || oldest_live > now) return false;
  const uint64_t oldest_cas = oldest_cas_.load(std::memory_order_relaxed);
  return item.time <= oldest_live ||
         (oldest_cas != 0 && item.cas != 0 && item.cas < oldest_cas);
}

bool Store::IsDead(const Item& item, int64_t now) const {
  return IsFlushed(item, now) || (item.exptime != 0 && item.exptime <= now);
}

void Store::AddBytes(int64_t delta) {
  bytes_.fetch_add(delta, std::memory_order_relaxed);
}

bool Store::OverLimit() const {
  return bytes_.load(std::memory_order_relaxed) >
         static_cast<int64_t>(memory_limit_);
}

void Store::Remove(Shard& shard, Item* item) {
  shard.UnlinkLru(item);
  AddBytes(-static_cast<int64_t>(item->footprint()));
  --shard.counters.curr_items;
  auto it = shard.items.find(KeyRef{item->key(), item->hash});
  shard.items.erase(it);  // destroys *item
}

Store::Item* Store::Reallocate(Shard& shard, Item* item, size_t capacity,
                               size_t keep) {
  Item::Ptr fresh = Item::Allocate(capacity);
  Item* moved = fresh.get();
  *moved = *item;
  moved->capacity = static_cast<uint32_t>(capacity);
  moved->value_len = static_cast<uint32_t>(keep);
  std::memcpy(moved->bytes(), item->bytes(), item->key_len + keep);
  shard.ReplaceInLru(item, moved);
  // The new block takes the old one's slot in the table: same key, same
  // hash, so the set's invariants hold. Swapping in place (instead of an
  // erase and an insert) cannot rehash, and so cannot fail once the block
  // is allocated. A set hands out its elements as const; the slot itself is
  // not a const object.
  auto it = shard.items.find(KeyRef{item->key(), item->hash});
  std::swap(const_cast<Item::Ptr&>(*it), fresh);
  return moved;  // `fresh` now owns the old block and frees it here
}

Store::Item* Store::SetValue(Shard& shard, Item* item,
                             absl::string_view value) {
  // Reuse the block unless it is too small or would stay more than twice as
  // large as needed (so a 1 MiB value overwritten by a 10-byte one does not
  // keep its megabyte).
  const size_t need = item->key_len + value.size();
  if (need > item->capacity || item->capacity > 2 * need + 64) {
    item = Reallocate(shard, item, need, /*keep=*/0);
  }
  CopyBytes(item->value_data(), value);
  item->value_len = static_cast<uint32_t>(value.size());
  return item;
}

Store::Item* Store::FindLive(Shard& shard, const KeyRef& ref, int64_t now) {
  // Asks for the probe's control bytes and slots at once, so that the slot
  // load (which find() would issue only after the control bytes arrive)
  // overlaps the first miss: 6% less per request at memcaslap's working
  // set (store_benchmark, 125,000 keys). Under the lock: the table may be
  // resized by another thread otherwise.
  shard.items.prefetch(ref);
  auto it = shard.items.find(ref);
  if (it == shard.items.end()) return nullptr;
  Item* item = it->get();
  // memcached's do_item_get(): flushed first, then expired.
  if (IsFlushed(*item, now)) {
    ++shard.counters.get_flushed;
    Remove(shard, item);
    return nullptr;
  }
  if (item->exptime != 0 && item->exptime <= now) {
    ++shard.counters.get_expired;
    Remove(shard, item);
    return nullptr;
  }
  return item;
}

void Store::EvictLocked(Shard& shard, const Item* keep, int64_t now) {
  while (OverLimit()) {
    Item* victim = shard.tail;
    // `keep` sits at the head, so reaching it means it is the only item.
    if (victim == nullptr || victim == keep) return;
    if (IsDead(*victim, now)) {
      ++shard.counters.reclaimed;
      if (!victim->fetched) ++shard.counters.expired_unfetched;
    } else {
      ++shard.counters.evictions;
      if (!victim->fetched) ++shard.counters.evicted_unfetched;
    }
    Remove(shard, victim);
  }
}

void Store::EvictOthers(size_t home, int64_t now) {
  for (size_t i = 1; i < num_shards_ && OverLimit(); ++i) {
    Shard& shard = ShardFor(home + i);
    std::lock_guard<std::mutex> lock(shard.mu);
    EvictLocked(shard, nullptr, now);
  }
}

StoreStatus Store::Put(StoreMode mode, absl::string_view key,
                       absl::string_view value, uint32_t flags, int32_t exptime,
                       uint64_t cas_unique) {
  const int64_t now = CurrentTime();
  const Lookup lookup(key);
  Shard& shard = ShardFor(lookup.shard_bits());

  if (ItemFootprint(key.size(), value.size()) > memory_limit_ ||
      key.size() > kMaxStoredKeyLength ||
      key.size() + value.size() > kMaxItemBytes) {
    // memcached fails the allocation before it reads the data; a failed
    // `set` also drops the old value so that it cannot be read as current.
    store_no_memory_.fetch_add(1, std::memory_order_relaxed);
    if (mode == StoreMode::kSet) Discard(key);
    return StoreStatus::kOutOfMemory;
  }

  std::unique_lock<std::mutex> lock(shard.mu);
  ++shard.counters.cmd_set;
  Item* item = FindLive(shard, lookup.ref(), now);
  if (item != nullptr) {
    // memcached's do_store_item() against an existing item.
    const bool cas_match = cas_unique != 0 && cas_unique == item->cas;
    switch (mode) {
      case StoreMode::kAdd:
        shard.Bump(item);  // add promotes the existing item
        return StoreStatus::kNotStored;
      case StoreMode::kCas:
        if (!cas_match) {
          ++shard.counters.cas_badval;
          return StoreStatus::kExists;
        }
        ++shard.counters.cas_hits;
        [[fallthrough]];
      case StoreMode::kSet:
      case StoreMode::kReplace: {
        const int64_t old_size = static_cast<int64_t>(item->footprint());
        item = SetValue(shard, item, value);
        AddBytes(static_cast<int64_t>(item->footprint()) - old_size);
        item->flags = flags;
        item->exptime = RealTime(ToPositiveTime(exptime), now);
        break;
      }
      case StoreMode::kAppend:
      case StoreMode::kPrepend: {
        if (cas_unique != 0 && !cas_match) return StoreStatus::kExists;
        const size_t old_len = item->value_len;
        const size_t new_len = old_len + value.size();
        if (!ItemSizeOk(key.size(), item->flags, new_len, item_size_max_) ||
            ItemFootprint(key.size(), new_len) > memory_limit_ ||
            key.size() + new_len > kMaxItemBytes) {
          return StoreStatus::kNotStored;
        }
        const size_t need = key.size() + new_len;
        if (need > item->capacity) {
          // Room for a few more appends of the same size, so that a value
          // built by many appends is not copied on every one.
          const size_t room = std::min(need + need / 4, kMaxItemBytes);
          item = Reallocate(shard, item, room, old_len);
        }
        char* v = item->value_data();
        if (mode == StoreMode::kAppend) {
          CopyBytes(v + old_len, value);
        } else {
          std::memmove(v + value.size(), v, old_len);
          CopyBytes(v, value);
        }
        item->value_len = static_cast<uint32_t>(new_len);
        AddBytes(static_cast<int64_t>(value.size()));
        break;  // flags and exptime stay the old item's
      }
    }
    // What memcached's item_replace() + do_item_link() give the new item.
    item->time = now;
    item->fetched = false;
    item->cas = NextCas();
    shard.Bump(item);
  } else {
    switch (mode) {
      case StoreMode::kCas:
        ++shard.counters.cas_misses;
        return StoreStatus::kNotFound;
      case StoreMode::kReplace:
      case StoreMode::kAppend:
      case StoreMode::kPrepend:
        return StoreStatus::kNotStored;
      case StoreMode::kSet:
      case StoreMode::kAdd:
        break;
    }
    Item::Ptr fresh = Item::Allocate(key.size() + value.size());
    fresh->hash = lookup.ref().hash;
    fresh->key_len = static_cast<uint16_t>(key.size());
    fresh->value_len = static_cast<uint32_t>(value.size());
    CopyBytes(fresh->bytes(), key);
    CopyBytes(fresh->value_data(), value);
    fresh->flags = flags;
    fresh->exptime = RealTime(ToPositiveTime(exptime), now);
    fresh->time = now;
    fresh->cas = NextCas();
    item = fresh.get();
    shard.items.insert(std::move(fresh));
    shard.LinkHead(item);
    ++shard.counters.curr_items;
    AddBytes(static_cast<int64_t>(item->footprint()));
  }
  ++shard.counters.total_items;
  if (OverLimit()) {
    EvictLocked(shard, item, now);
    lock.unlock();
    if (OverLimit()) EvictOthers(lookup.shard_bits(), now);
  }
  return StoreStatus::kStored;
}

bool Store::Get(absl::string_view key,
                absl::FunctionRef<void(const ItemView&)> visit) {
  const int64_t now = CurrentTime();
  const Lookup lookup(key);
  Shard& shard = ShardFor(lookup.shard_bits());
  std::lock_guard<std::mutex> lock(shard.mu);
  ++shard.counters.cmd_get;
  Item* item = FindLive(shard, lookup.ref(), now);
  if (item == nullptr) {
    ++shard.counters.get_misses;
    return false;
  }
  ++shard.counters.get_hits;
  item->fetched = true;
  shard.Bump(item);
  visit(ItemView{item->key(), item->value(), item->flags, item->cas});
  return true;
}

bool Store::GetAndTouch(absl::string_view key, int32_t exptime,
                        absl::FunctionRef<void(const ItemView&)> visit) {
  const int64_t now = CurrentTime();
  const Lookup lookup(key);
  Shard& shard = ShardFor(lookup.shard_bits());
  std::lock_guard<std::mutex> lock(shard.mu);
  ++shard.counters.cmd_touch;
  Item* item = FindLive(shard, lookup.ref(), now);
  if (item == nullptr) {
    ++shard.counters.touch_misses;
    return false;
  }
  ++shard.counters.touch_hits;
  item->exptime = RealTime(ToPositiveTime(exptime), now);
  item->fetched = true;
  shard.Bump(item);
  visit(ItemView{item->key(), item->value(), item->flags, item->cas});
  return true;
}

bool Store::Touch(absl::string_view key, int32_t exptime) {
  // memcached counts touch and gat alike (cmd_touch, touch_hits/misses).
  return GetAndTouch(key, exptime, [](const ItemView&) {});
}

bool Store::Delete(absl::string_view key) {
  const int64_t now = CurrentTime();
  const Lookup lookup(key);
  Shard& shard = ShardFor(lookup.shard_bits());
  std::lock_guard<std::mutex> lock(shard.mu);
  Item* item = FindLive(shard, lookup.ref(), now);
  if (item == nullptr) {
    ++shard.counters.delete_misses;
    return false;
  }
  ++shard.counters.delete_hits;
  Remove(shard, item);
  return true;
}

DeltaStatus Store::Delta(absl::string_view key, bool incr, uint64_t delta,
                         uint64_t* result) {
  const int64_t now = CurrentTime();
  const Lookup lookup(key);
  Shard& shard = ShardFor(lookup.shard_bits());
  std::unique_lock<std::mutex> lock(shard.mu);
  Item* item = FindLive(shard, lookup.ref(), now);
  if (item == nullptr) {
    ++(incr ? shard.counters.incr_misses : shard.counters.decr_misses);
    return DeltaStatus::kNotFound;
  }
  const absl::string_view old_value = item->value();
  uint64_t value;
  // An empty value is refused before parsing (memcached: nbytes <= 2).
  if (old_value.empty() || !SafeStrtoull(old_value, &value)) {
    return DeltaStatus::kNonNumeric;
  }
  if (incr) {
    value += delta;  // wraps modulo 2^64, as memcached
  } else {
    value = delta > value ? 0 : value - delta;
  }
  ++(incr ? shard.counters.incr_hits : shard.counters.decr_hits);

  char digits[20];
  const size_t n = FormatUint64(value, digits);
  bool grew = false;
  if (n <= old_value.size()) {
    // In place, padded with spaces to the old length (memcached's in-place
    // path; protocol.txt allows the padding).
    char* dst = item->value_data();
    std::memcpy(dst, digits, n);
    std::memset(dst + n, ' ', old_value.size() - n);
  } else {
    AddBytes(static_cast<int64_t>(n - old_value.size()));
    item = SetValue(shard, item, absl::string_view(digits, n));
    ++shard.counters.total_items;  // memcached links a new item here
    grew = true;
  }
  item->cas = NextCas();
  shard.Bump(item);
  *result = value;
  if (grew && OverLimit()) {
    EvictLocked(shard, item, now);
    lock.unlock();
    if (OverLimit()) EvictOthers(lookup.shard_bits(), now);
  }
  return DeltaStatus::kOk;
}

void Store::FlushAll(int32_t delay) {
  cmd_flush_.fetch_add(1, std::memory_order_relaxed);
  const int64_t now = CurrentTime();
  // memcached's process_flush_all_command() with cas enabled.
  const int64_t new_oldest = delay > 0 ? RealTime(delay, now) : now;
  const int64_t oldest_live = new_oldest - 1;
  if (oldest_live <= now) {
    oldest_cas_.store(NextCas(), std::memory_order_relaxed);
  }
  oldest_live_.store(oldest_live, std::memory_order_relaxed);
}

void Store::Discard(absl::string_view key) {
  const Lookup lookup(key);
  Shard& shard = ShardFor(lookup.shard_bits());
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.items.find(lookup.ref());
  if (it != shard.items.end()) Remove(shard, it->get());
}

void Store::RecordTooLarge() {
  store_too_large_.fetch_add(1, std::memory_order_relaxed);
}

void Store::RecordBadDataChunk() {
  bad_chunks_.fetch_add(1, std::memory_order_relaxed);
}

void Store::RecordFlushCommand() {
  cmd_flush_.fetch_add(1, std::memory_order_relaxed);
}

size_t Store::SweepExpired(size_t max_items) {
  if (max_items == 0) return 0;
  const int64_t now = CurrentTime();
  const size_t per_shard =
      std::max<size_t>(1, (max_items + num_shards_ - 1) / num_shards_);
  size_t removed = 0;
  for (size_t i = 0; i < num_shards_; ++i) {
    Shard& shard =
        ShardFor(sweep_next_.fetch_add(1, std::memory_order_relaxed));
    std::lock_guard<std::mutex> lock(shard.mu);
    bool restarted = false;
    for (size_t checked = 0; checked < per_shard; ++checked) {
      Item* item = shard.sweep_cursor;
      if (item == nullptr) {
        // Back to the oldest item, at most once per call.
        if (restarted || shard.tail == nullptr) break;
        restarted = true;
        item = shard.tail;
      }
      shard.sweep_cursor = item->newer;
      if (!IsDead(*item, now)) continue;
      ++shard.counters.reclaimed;
      if (!item->fetched && !IsFlushed(*item, now)) {
        ++shard.counters.expired_unfetched;
      }
      Remove(shard, item);
      ++removed;
    }
  }
  return removed;
}

StoreStats Store::GetStats() const {
  StoreStats s;
  for (size_t i = 0; i < num_shards_; ++i) {
    Shard& shard = shards_[i];
    std::lock_guard<std::mutex> lock(shard.mu);
    const Shard::Counters& c = shard.counters;
    s.curr_items += c.curr_items;
    s.total_items += c.total_items;
    s.cmd_get += c.cmd_get;
    s.cmd_set += c.cmd_set;
    s.cmd_touch += c.cmd_touch;
    s.get_hits += c.get_hits;
    s.get_misses += c.get_misses;
    s.get_expired += c.get_expired;
    s.get_flushed += c.get_flushed;
    s.delete_misses += c.delete_misses;
    s.delete_hits += c.delete_hits;
    s.incr_misses += c.incr_misses;
    s.incr_hits += c.incr_hits;
    s.decr_misses += c.decr_misses;
    s.decr_hits += c.decr_hits;
    s.cas_misses += c.cas_misses;
    s.cas_hits += c.cas_hits;
    s.cas_badval += c.cas_badval;
    s.touch_hits += c.touch_hits;
    s.touch_misses += c.touch_misses;
    s.expired_unfetched += c.expired_unfetched;
    s.evicted_unfetched += c.evicted_unfetched;
    s.evictions += c.evictions;
    s.reclaimed += c.reclaimed;
  }
  s.cmd_set += bad_chunks_.load(std::memory_order_relaxed);
  s.cmd_flush = cmd_flush_.load(std::memory_order_relaxed);
  s.store_too_large = store_too_large_.load(std::memory_order_relaxed);
  s.store_no_memory = store_no_memory_.load(std::memory_order_relaxed);
  s.bytes = static_cast<uint64_t>(
      std::max<int64_t>(0, bytes_.load(std::memory_order_relaxed)));
  s.limit_maxbytes = memory_limit_;
  return s;
}

void Store::ResetStats() {
  for (size_t i = 0; i < num_shards_; ++i) {
    Shard& shard = shards_[i];
    std::lock_guard<std::mutex> lock(shard.mu);
    const uint64_t curr_items = shard.counters.curr_items;
    shard.counters = Shard::Counters();
    shard.counters.curr_items = curr_items;
  }
  cmd_flush_.store(0, std::memory_order_relaxed);
  store_too_large_.store(0, std::memory_order_relaxed);
  bad_chunks_.store(0, std::memory_order_relaxed);
  store_no_memory_.store(0, std::memory_order_relaxed);
}

}  // namespace cached
}  // namespace eventide
