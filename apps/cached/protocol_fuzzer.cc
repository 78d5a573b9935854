// Fuzz target: the memcached text protocol (parser + Session + Store) on
// arbitrary bytes, split at arbitrary points.
//
// Input: a 3-byte header, then the request stream.
//   byte 0: configuration. Bits 0-1: how the stream is split (1-byte pieces,
//           1..3, 1..64, 1..2048 bytes); bit 2: 1 or 4 store shards; bit 3:
//           a store memory limit that forces evictions (8 KiB) or not; bits
//           4-5: item size limit (-I) 512, 1024, 2048 or 4096 bytes.
//   bytes 1-2: the seed of the piece sizes.
// The stream (seeds: testdata/protocol_fuzzer_corpus/, real request streams
// for every command and error path) runs twice, each on a fresh Store with
// the same fixed FakeClock: once in one piece, once in pieces as a socket
// would deliver them (with spurious extra Consume() calls between pieces).
//
// Checked:
//  - no crash, no sanitizer report, no leak;
//  - the split feed's output is byte-identical to the one-piece feed's, and
//    so are wants_close(), the unconsumed rest, next_read_hint(),
//    swallow_pending(), the verbosity and every store counter;
//  - a Consume() with no new bytes consumes and answers nothing;
//  - bounded memory: after every Consume() the bytes the transport still
//    buffers are below the line limit plus one item (or the multiget line
//    limit), and next_read_hint() stays within that bound;
//  - afterwards, both stores hold the same items (every token of the stream
//    that could be a key is looked up in both), and the store's accounting
//    adds up (bytes within the memory limit, equal to the footprints of the
//    items when all of them were found).

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "apps/cached/limits.h"
#include "apps/cached/session.h"
#include "apps/cached/store.h"
#include "apps/cached/unix_clock.h"
#include "clock/fake_clock.h"
#include "tools/fuzz/fuzz_check.h"

namespace eventide {
namespace cached {
namespace {

constexpr size_t kHeader = 3;
constexpr size_t kMaxMultigetLine = 3000;
constexpr size_t kMaxKeysChecked = 256;

class FixedServer : public ServerStatsSource {
 public:
  ServerStats GetServerStats() const override {
    ServerStats s;
    s.pid = 4242;
    s.uptime = 10;
    s.time = 1700000010;
    s.threads = 4;
    s.max_connections = 1024;
    s.curr_connections = 1;
    return s;
  }
};

struct Config {
  int split_mode;
  size_t num_shards;
  size_t memory_limit;
  size_t item_size_max;
};

// What a run leaves behind, compared between the two runs.
struct Outcome {
  std::string output;
  std::string rest;  // bytes the transport still buffers
  bool closed = false;
  size_t hint = 0;
  uint64_t swallow = 0;
  int verbosity = 0;
};

// splitmix64: piece sizes from the 16-bit seed in the header.
uint64_t Next(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

// The most a transport ever has to buffer for this session (see
// protocol.h): a request line without its '\n' of at most kMaxLineLength
// bytes (a get/gets line: max_multiget_line), or a complete storage line
// (<= kMaxLineLength + 1 bytes with its '\n') plus a data block that fits
// the item size limit and its "\r\n".
size_t BufferBound(const Config& c) {
  return std::max(kMaxMultigetLine, kMaxLineLength + 1 + c.item_size_max + 2);
}

void CheckBounded(const Config& c, const Session& session, size_t buffered) {
  const size_t bound = BufferBound(c);
  if (buffered > bound) {
    fuzz::Fail(__FILE__, __LINE__, "buffered <= BufferBound(config)",
               std::to_string(buffered) + " bytes buffered, bound " +
                   std::to_string(bound));
  }
  if (session.next_read_hint() != 0 && !session.wants_close()) {
    EVENTIDE_FUZZ_CHECK(session.next_read_hint() > buffered);
    EVENTIDE_FUZZ_CHECK(session.next_read_hint() <= bound);
  }
  EVENTIDE_FUZZ_CHECK(session.swallow_pending() <=
                      uint64_t{INT32_MAX} + 2);  // a data block, at most
}

// One session on a fresh store, at a fixed time.
struct Run {
  explicit Run(const Config& c)
      : clock(&fake, 1700000000),
        store(Options(c), &clock),
        session(SessionOptions(c, &store, &server, &verbosity)) {}

  static StoreOptions Options(const Config& c) {
    StoreOptions o;
    o.memory_limit = c.memory_limit;
    o.item_size_max = c.item_size_max;
    o.num_shards = c.num_shards;
    return o;
  }

  static SessionConfig SessionOptions(const Config& c, Store* store,
                                      const ServerStatsSource* server,
                                      std::atomic<int>* verbosity) {
    SessionConfig sc;
    sc.store = store;
    sc.server = server;
    sc.verbosity = verbosity;
    sc.limits.item_size_max = c.item_size_max;
    sc.limits.max_multiget_line = kMaxMultigetLine;
    return sc;
  }

  FakeClock fake;
  MonotonicUnixClock clock;
  Store store;
  FixedServer server;
  std::atomic<int> verbosity{0};
  Session session;
};

Outcome Finish(Run& run, std::string output, std::string rest) {
  Outcome o;
  o.output = std::move(output);
  o.rest = std::move(rest);
  o.closed = run.session.wants_close();
  o.hint = run.session.next_read_hint();
  o.swallow = run.session.swallow_pending();
  o.verbosity = run.verbosity.load();
  return o;
}

Outcome RunWhole(const Config& c, Run& run, absl::string_view stream) {
  std::string out;
  const size_t used = run.session.Consume(stream, &out);
  EVENTIDE_FUZZ_CHECK(used <= stream.size());
  if (!run.session.wants_close()) {
    CheckBounded(c, run.session, stream.size() - used);
  }
  return Finish(run, std::move(out), std::string(stream.substr(used)));
}

Outcome RunSplit(const Config& c, Run& run, absl::string_view stream,
                 uint64_t seed) {
  static constexpr size_t kMaxPiece[] = {1, 3, 64, 2048};
  const size_t max_piece = kMaxPiece[c.split_mode];
  std::string buffer;
  std::string out;
  size_t pos = 0;
  while (pos < stream.size() && !run.session.wants_close()) {
    const uint64_t r = Next(&seed);
    const size_t piece =
        std::min<size_t>(stream.size() - pos, 1 + r % max_piece);
    buffer.append(stream.data() + pos, piece);
    pos += piece;
    buffer.erase(0, run.session.Consume(buffer, &out));
    if (run.session.wants_close()) break;
    CheckBounded(c, run.session, buffer.size());
    if ((r >> 32) % 4 == 0) {
      // A spurious wake-up: no new bytes, so nothing to do.
      const size_t out_size = out.size();
      EVENTIDE_FUZZ_CHECK_EQ(run.session.Consume(buffer, &out), size_t{0});
      EVENTIDE_FUZZ_CHECK_EQ(out.size(), out_size);
    }
  }
  return Finish(run, std::move(out), std::move(buffer));
}

// Tokens of the stream that could be keys: what any command may have
// stored under.
std::set<std::string> CandidateKeys(absl::string_view stream) {
  std::set<std::string> keys;
  size_t i = 0;
  while (i < stream.size() && keys.size() < kMaxKeysChecked) {
    while (i < stream.size() &&
           (stream[i] == ' ' || stream[i] == '\n' || stream[i] == '\0')) {
      ++i;
    }
    size_t j = i;
    while (j < stream.size() && stream[j] != ' ' && stream[j] != '\n' &&
           stream[j] != '\0') {
      ++j;
    }
    absl::string_view token = stream.substr(i, j - i);
    if (!token.empty() && token.size() <= kMaxKeyLength) keys.emplace(token);
    // A line's last token may end with the '\r' the parser strips.
    if (token.size() > 1 && token.back() == '\r') {
      token.remove_suffix(1);
      if (token.size() <= kMaxKeyLength) keys.emplace(token);
    }
    i = j;
  }
  return keys;
}

struct Seen {
  bool found = false;
  std::string value;
  uint32_t flags = 0;
  uint64_t cas = 0;
};

Seen Lookup(Store& store, absl::string_view key) {
  Seen s;
  s.found = store.Get(key, [&s](const ItemView& item) {
    s.value.assign(item.value.data(), item.value.size());
    s.flags = item.flags;
    s.cas = item.cas;
  });
  return s;
}

void CheckStatsEqual(const StoreStats& a, const StoreStats& b) {
#define EVENTIDE_SAME(field) EVENTIDE_FUZZ_CHECK_EQ(a.field, b.field)
  EVENTIDE_SAME(curr_items);
  EVENTIDE_SAME(total_items);
  EVENTIDE_SAME(bytes);
  EVENTIDE_SAME(cmd_get);
  EVENTIDE_SAME(cmd_set);
  EVENTIDE_SAME(cmd_flush);
  EVENTIDE_SAME(cmd_touch);
  EVENTIDE_SAME(get_hits);
  EVENTIDE_SAME(get_misses);
  EVENTIDE_SAME(get_expired);
  EVENTIDE_SAME(get_flushed);
  EVENTIDE_SAME(delete_misses);
  EVENTIDE_SAME(delete_hits);
  EVENTIDE_SAME(incr_misses);
  EVENTIDE_SAME(incr_hits);
  EVENTIDE_SAME(decr_misses);
  EVENTIDE_SAME(decr_hits);
  EVENTIDE_SAME(cas_misses);
  EVENTIDE_SAME(cas_hits);
  EVENTIDE_SAME(cas_badval);
  EVENTIDE_SAME(touch_hits);
  EVENTIDE_SAME(touch_misses);
  EVENTIDE_SAME(store_too_large);
  EVENTIDE_SAME(store_no_memory);
  EVENTIDE_SAME(expired_unfetched);
  EVENTIDE_SAME(evicted_unfetched);
  EVENTIDE_SAME(evictions);
  EVENTIDE_SAME(reclaimed);
#undef EVENTIDE_SAME
}

// Both stores saw the same requests: same items, and accounting that adds
// up.
void CheckStores(const Config& c, Store& whole, Store& split,
                 absl::string_view stream) {
  const StoreStats before = whole.GetStats();
  CheckStatsEqual(before, split.GetStats());
  EVENTIDE_FUZZ_CHECK(before.bytes <= c.memory_limit);
  EVENTIDE_FUZZ_CHECK_EQ(before.curr_items == 0, before.bytes == 0);
  EVENTIDE_FUZZ_CHECK(before.bytes >= before.curr_items * Store::kItemOverhead);
  uint64_t found = 0;
  uint64_t footprint = 0;
  for (const std::string& key : CandidateKeys(stream)) {
    const Seen a = Lookup(whole, key);
    const Seen b = Lookup(split, key);
    EVENTIDE_FUZZ_CHECK_EQ(a.found, b.found);
    if (!a.found) continue;
    EVENTIDE_FUZZ_CHECK_EQ(a.value, b.value);
    EVENTIDE_FUZZ_CHECK_EQ(a.flags, b.flags);
    EVENTIDE_FUZZ_CHECK_EQ(a.cas, b.cas);
    ++found;
    footprint += Store::ItemFootprint(key.size(), a.value.size());
  }
  // A fixed clock: no item expires between the stats and the lookups.
  const StoreStats after = whole.GetStats();
  EVENTIDE_FUZZ_CHECK(found <= after.curr_items);
  EVENTIDE_FUZZ_CHECK(footprint <= after.bytes);
  if (found == after.curr_items) EVENTIDE_FUZZ_CHECK_EQ(footprint, after.bytes);
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < kHeader) return;
  static constexpr size_t kItemSizeMax[] = {512, 1024, 2048, 4096};
  Config c;
  c.split_mode = data[0] & 3;
  c.num_shards = (data[0] & 4) ? 4 : 1;
  c.memory_limit = (data[0] & 8) ? 8 * 1024 : 1024 * 1024;
  c.item_size_max = kItemSizeMax[(data[0] >> 4) & 3];
  const uint64_t seed = uint64_t{data[1]} | uint64_t{data[2]} << 8;
  const absl::string_view stream(reinterpret_cast<const char*>(data) + kHeader,
                                 size - kHeader);

  Run whole_run(c);
  const Outcome whole = RunWhole(c, whole_run, stream);
  Run split_run(c);
  const Outcome split = RunSplit(c, split_run, stream, seed);

  EVENTIDE_FUZZ_CHECK_EQ(split.output, whole.output);
  EVENTIDE_FUZZ_CHECK_EQ(split.closed, whole.closed);
  EVENTIDE_FUZZ_CHECK_EQ(split.verbosity, whole.verbosity);
  if (!whole.closed) {
    EVENTIDE_FUZZ_CHECK_EQ(split.rest, whole.rest);
    EVENTIDE_FUZZ_CHECK_EQ(split.hint, whole.hint);
    EVENTIDE_FUZZ_CHECK_EQ(split.swallow, whole.swallow);
  }
  CheckStores(c, whole_run.store, split_run.store, stream);
}

}  // namespace
}  // namespace cached
}  // namespace eventide

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  eventide::cached::FuzzOne(data, size);
  return 0;
}
