// Store: the item storage of apps/cached, shared by every worker thread.
//
// Semantics are memcached 1.6's (checked by hand against memcached 1.6.18,
// see README.md):
//   - Items: binary-safe key (<= 250 bytes, checked by the caller) and value,
//     32-bit client flags, an exptime and a cas unique.
//   - exptime: 0 never expires; 1..2592000 (30 days) is relative to now;
//     larger values are absolute unix times; negative means already expired.
//     An item is expired from the second its exptime is reached.
//   - cas uniques come from one process-wide counter, incremented exactly
//     where memcached increments it (every successful store, every incr/decr,
//     every flush_all that takes effect now), so `gets` answers the same
//     numbers as memcached for the same request sequence.
//   - flush_all [delay]: items stored before the flush time become invalid;
//     a later flush_all with a delay in the future cancels a pending or past
//     flush for items that have not been reclaimed yet (memcached keeps one
//     oldest_live/oldest_cas pair, and so do we).
//   - incr/decr: the value must be a decimal uint64 (leading whitespace and a
//     '+' allowed, as strtoull); incr wraps at 2^64, decr floors at 0. When
//     the new number is not longer than the old value the value keeps its
//     length, right-padded with spaces (protocol.txt allows it and memcached
//     does it); a longer number grows the value.
//   - Time is memcached's: a relative clock in seconds ("current_time") that
//     starts at 62 when the store is created (memcached's process_started is
//     start-up time minus 62 s), read from an injectable UnixClock.
//
// Sharding and locking: the key's hash picks one of `num_shards` shards
// (a power of two); each shard has its own std::mutex, hash table and LRU
// list. No operation holds two shard locks at once.
//
// Memory: every item is accounted as key bytes + value bytes +
// kItemOverhead (our per-item header, the hash-table slot and one heap
// allocation header; see store.cc). The total is one atomic counter, and
// the limit is global: a store that pushes the total over the limit evicts
// from the tail of its own shard's LRU first, then from the other shards in
// turn. LRU order is exact within a shard (with num_shards = 1 it is exact);
// across shards it is approximate, as memcached's per-slab-class LRUs are.
// Every hit (get, gets, gat, gats, touch, incr/decr, a failed add) moves the
// item to the head of its shard's LRU. Evicting an expired or flushed item
// counts as `reclaimed`, any other as `evictions`; either counts as
// `*_unfetched` when the item was never read.
//
// Expiry: lazy (an expired or flushed item found by any operation is removed
// then) plus SweepExpired(), which the server calls from a periodic timer.
//
// Thread safety: every method may be called from any thread, concurrently.
// The visitor passed to Get()/GetAndTouch() runs while the shard lock is
// held: it must be short and must not call back into the store.
//
// Example:
//   eventide::FakeClock fake;
//   eventide::cached::MonotonicUnixClock clock(&fake, 1700000000);
//   eventide::cached::Store store(eventide::cached::StoreOptions(), &clock);
//   store.Put(StoreMode::kSet, "k", "v", /*flags=*/0, /*exptime=*/10,
//             /*cas_unique=*/0);
//   store.Get("k", [](const ItemView& item) { use(item.value); });

#ifndef EVENTIDE_APPS_CACHED_STORE_H_
#define EVENTIDE_APPS_CACHED_STORE_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "apps/cached/limits.h"
#include "apps/cached/unix_clock.h"

namespace eventide {
namespace cached {

struct StoreOptions {
  // -m: the accounted bytes the store may hold (see the header comment).
  size_t memory_limit = size_t{64} << 20;
  // -I: append/prepend results larger than this are NOT_STORED
  // (ItemSizeOk() in limits.h).
  size_t item_size_max = kDefaultItemSizeMax;
  // Rounded up to a power of two, at least 1.
  size_t num_shards = 64;
};

// The storage commands.
enum class StoreMode : uint8_t {
  kSet,
  kAdd,
  kReplace,
  kAppend,
  kPrepend,
  kCas
};

enum class StoreStatus : uint8_t {
  kStored,       // "STORED"
  kNotStored,    // "NOT_STORED"
  kExists,       // "EXISTS" (cas mismatch)
  kNotFound,     // "NOT_FOUND" (cas on a missing key)
  kOutOfMemory,  // "SERVER_ERROR out of memory storing object"
};

enum class DeltaStatus : uint8_t {
  kOk,          // the new value is in *result
  kNotFound,    // "NOT_FOUND"
  kNonNumeric,  // "CLIENT_ERROR cannot increment or decrement non-numeric
                // value"
};

// An item as Get() shows it; the views are valid only inside the visitor.
struct ItemView {
  absl::string_view key;
  absl::string_view value;
  uint32_t flags;
  uint64_t cas;
};

// Counters in memcached's `stats` vocabulary.
struct StoreStats {
  uint64_t curr_items = 0;
  uint64_t total_items = 0;
  uint64_t bytes = 0;
  uint64_t limit_maxbytes = 0;
  uint64_t cmd_get = 0;
  uint64_t cmd_set = 0;
  uint64_t cmd_flush = 0;
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
  uint64_t store_too_large = 0;
  uint64_t store_no_memory = 0;
  uint64_t expired_unfetched = 0;
  uint64_t evicted_unfetched = 0;
  uint64_t evictions = 0;
  uint64_t reclaimed = 0;
};

class Store {
 public:
  // Fixed accounting cost of one item beyond its key and value bytes.
  static const size_t kItemOverhead;

  // `clock` is not owned and must outlive the store.
  Store(const StoreOptions& options, UnixClock* clock);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Bytes one item is accounted for.
  static size_t ItemFootprint(size_t key_len, size_t value_len) {
    return key_len + value_len + kItemOverhead;
  }

  // set/add/replace/append/prepend/cas. `cas_unique` is only used by kCas.
  // append/prepend keep the old item's flags and exptime.
  StoreStatus Put(StoreMode mode, absl::string_view key,
                  absl::string_view value, uint32_t flags, int32_t exptime,
                  uint64_t cas_unique);

  // get/gets: on a hit calls `visit` (under the shard lock) and returns true.
  bool Get(absl::string_view key,
           absl::FunctionRef<void(const ItemView&)> visit);
  // gat/gats: like Get(), and sets the exptime of a hit.
  bool GetAndTouch(absl::string_view key, int32_t exptime,
                   absl::FunctionRef<void(const ItemView&)> visit);
  // touch: sets the exptime; true on a hit.
  bool Touch(absl::string_view key, int32_t exptime);
  // delete: true if a live item was removed.
  bool Delete(absl::string_view key);
  // incr (incr = true) or decr by `delta`.
  DeltaStatus Delta(absl::string_view key, bool incr, uint64_t delta,
                    uint64_t* result);
  // flush_all [delay]: `delay` <= 0 flushes now.
  void FlushAll(int32_t delay);

  // Removes `key` if present, live or not, without touching any counter
  // (memcached drops the old item this way when a `set` is refused as too
  // large, so a stale value does not survive a failed overwrite).
  void Discard(absl::string_view key);

  // Counts a storage command refused before it reached the store.
  void RecordTooLarge();      // store_too_large
  void RecordBadDataChunk();  // cmd_set (memcached counts those too)
  void RecordFlushCommand();  // cmd_flush for a flush_all that was refused

  // Checks up to about `max_items` items, oldest first, spread over all
  // shards, and removes the expired or flushed ones. Returns how many it
  // removed. Cheap enough to call from a timer every second.
  size_t SweepExpired(size_t max_items);

  StoreStats GetStats() const;
  // stats reset: zeroes the counters (not curr_items, bytes, limit_maxbytes).
  void ResetStats();

  size_t num_shards() const { return num_shards_; }
  size_t memory_limit() const { return memory_limit_; }
  // memcached's current_time: seconds since "process start" (62 at first).
  int64_t CurrentTime() const;

 private:
  struct Item;
  struct Shard;
  struct KeyRef;
  class Lookup;

  int64_t RealTime(int64_t exptime, int64_t now) const;
  uint64_t NextCas() { return cas_counter_.fetch_add(1) + 1; }
  Shard& ShardFor(size_t hash) const;
  bool IsFlushed(const Item& item, int64_t now) const;
  bool IsDead(const Item& item, int64_t now) const;
  // Returns the live item for `ref` in `shard` (locked) or nullptr, removing
  // a dead one it finds.
  Item* FindLive(Shard& shard, const KeyRef& ref, int64_t now);
  void Unlink(Shard& shard, Item* item);
  void Remove(Shard& shard, Item* item);
  // Moves `item` (in `shard`, locked) to a new block with room for
  // `capacity` bytes of key and value, keeping its header, its key and the
  // first `keep` bytes of its value (value_len becomes `keep`). The old
  // block is freed; returns the item's new address.
  Item* Reallocate(Shard& shard, Item* item, size_t capacity, size_t keep);
  // Replaces the value of `item` (in `shard`, locked), keeping the key.
  // Returns the item's address, which changes if it needed a new block.
  Item* SetValue(Shard& shard, Item* item, absl::string_view value);
  void EvictLocked(Shard& shard, const Item* keep, int64_t now);
  void EvictOthers(size_t home, int64_t now);
  void AddBytes(int64_t delta);
  bool OverLimit() const;

  const size_t memory_limit_;
  const size_t item_size_max_;
  const size_t num_shards_;
  UnixClock* const clock_;
  const int64_t process_started_;
  std::unique_ptr<Shard[]> shards_;

  // Written by every store, from every worker: padded to a cache line of
  // their own, so that sets do not take away the line of the fields above
  // (read by every request) or of the flush state below. Padding, not
  // alignas: a Store may live on the stack, and our ASan build put one at a
  // 32-byte boundary there (UBSan reported the misaligned Store).
  char pad_before_counters_[64];
  std::atomic<uint64_t> cas_counter_{0};
  std::atomic<int64_t> bytes_{0};
  char pad_after_counters_[64];
  // Read by every lookup (IsFlushed), written only by flush_all.
  std::atomic<int64_t> oldest_live_{0};
  std::atomic<uint64_t> oldest_cas_{0};
  char pad_after_flush_state_[64];
  // Rarely written.
  std::atomic<size_t> sweep_next_{0};
  std::atomic<uint64_t> cmd_flush_{0};
  std::atomic<uint64_t> store_too_large_{0};
  std::atomic<uint64_t> bad_chunks_{0};
  std::atomic<uint64_t> store_no_memory_{0};
};

}  // namespace cached
}  // namespace eventide

#endif  // EVENTIDE_APPS_CACHED_STORE_H_
