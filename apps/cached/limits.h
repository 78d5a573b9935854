// Protocol limits of the memcached text protocol, shared by the parser, the
// store and the session of apps/cached.
//
// The numbers are memcached 1.6's, so that a client sees the same refusals
// from both servers. ItemSizeOk() reproduces memcached's exact "object too
// large" boundary (verified against memcached 1.6.18: with the default 1 MiB
// limit, a 1-byte key with flags 0 accepts at most 1048516 value bytes, with
// non-zero flags 1048512; see README.md).
//
// Header-only, no state: usable from any thread.

#ifndef EVENTIDE_APPS_CACHED_LIMITS_H_
#define EVENTIDE_APPS_CACHED_LIMITS_H_

#include <stddef.h>
#include <stdint.h>

namespace eventide {
namespace cached {

// Longest key in bytes (memcached's KEY_MAX_LENGTH).
inline constexpr size_t kMaxKeyLength = 250;

// A request line whose first kMaxLineLength + 1 bytes hold no '\n' is refused
// by closing the connection, unless it is a "get "/"gets " line (memcached's
// try_read_command_ascii: multigets may be longer).
inline constexpr size_t kMaxLineLength = 2048;

// Our own bound for those multiget lines (memcached has none): a longer one
// closes the connection, so a client cannot grow a buffer without bound.
inline constexpr size_t kDefaultMaxMultigetLineLength = size_t{1} << 20;

// Default -I: the largest item, counted as memcached counts it (below).
inline constexpr size_t kDefaultItemSizeMax = size_t{1} << 20;

// memcached tokenizes a command line into at most kMaxTokens - 1 tokens plus
// a terminal one; commands with more tokens than they allow answer "ERROR".
inline constexpr int kMaxTokens = 24;

// Relative exptimes go up to 30 days; larger values are absolute unix times.
inline constexpr int64_t kRealtimeMaxDelta = 60 * 60 * 24 * 30;

// memcached caps "verbosity N" at this level.
inline constexpr int kMaxVerbosityLevel = 2;

// sizeof(item) in memcached 1.6 on a 64-bit build; used only to reproduce its
// size limit, not for our own memory accounting.
inline constexpr size_t kMemcachedItemHeaderSize = 48;

// True if memcached would accept an item with a key of `key_len` bytes,
// client flags `flags` and a value of `value_len` bytes under an item size
// limit of `item_size_max` (memcached's item_size_ok(): header, key + NUL,
// 4 bytes of flags unless they are 0, value + "\r\n", 8 bytes of cas).
constexpr bool ItemSizeOk(size_t key_len, uint32_t flags, uint64_t value_len,
                          size_t item_size_max) {
  const uint64_t total = kMemcachedItemHeaderSize + key_len + 1 +
                         (flags != 0 ? 4 : 0) + value_len + 2 + 8;
  return total <= item_size_max;
}

}  // namespace cached
}  // namespace eventide

#endif  // EVENTIDE_APPS_CACHED_LIMITS_H_
