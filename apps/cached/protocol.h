// Incremental parser of memcached's classic text protocol (protocol.txt),
// reproducing memcached 1.6's replies to malformed input byte for byte.
//
// The caller keeps the unconsumed input in one contiguous buffer and calls
// ParseRequest() on it whenever bytes arrive. Each call looks at the first
// request only and says one of:
//   - kNeedMore: the request is incomplete. Nothing is consumed. `scanned`
//     bytes are known to hold no '\n' (pass it back as `scan_from` on the
//     next call so a long line is not searched again), and `need`, when not
//     0, is the total input size that completes the request (line + data).
//   - kRequest: `*request` is complete (for storage commands, the data block
//     too); drop `consumed` bytes once it has been executed. The views in
//     `*request` point into `input`.
//   - kReply: the parser answers the request itself (an error). Write
//     `reply` (empty when "noreply" suppressed it, as memcached does for
//     errors detected after it has seen "noreply"), drop `consumed` bytes,
//     then discard `swallow` more bytes, which may not have arrived yet (a
//     refused data block; this is what keeps the stream in sync). `error`
//     says which refusals have side effects the executor must apply.
//   - kClose: close the connection without a reply (memcached does this for
//     a line with no '\n' in its first kMaxLineLength + 1 bytes, except
//     get/gets lines, and for unknown commands ending in an "HTTP/..." token).
//
// The request line ends at '\n', with one '\r' before it stripped if the
// line has at least two bytes; the line ends at its first NUL; tokens are
// separated by runs of ' ' only (a '\t' is part of a token), and only the
// first kMaxTokens - 1 tokens are split (get keys continue after them).
// Keys are any bytes but ' ', '\n' and NUL, up to kMaxKeyLength: memcached
// 1.6.18 accepts control characters in keys over the text protocol, and so
// do we (see README.md).
//
// Line length: memcached closes the connection once more than 2048 bytes
// are buffered without a '\n' (unless they start with "get " or "gets "),
// so whether a longer line is refused depends on how the bytes arrive. Our
// rule depends on the bytes only: a line whose '\n' is not within the first
// kMaxLineLength + 1 bytes is refused, which is memcached's behaviour when
// the line arrives in pieces. get/gets lines may be up to
// limits.max_multiget_line bytes. No more than that is ever needed in the
// buffer to decide, so input cannot grow without bound.
//
// Thread safety: ParseRequest() is a pure function of its arguments.
//
// Example:
//   Request req;
//   ParseResult r = ParseRequest(buffer, ParserLimits(), &req);
//   switch (r.status) {
//     case ParseStatus::kNeedMore: /* read more */ break;
//     case ParseStatus::kRequest: Execute(req); Drop(r.consumed); break;
//     case ParseStatus::kReply: Write(r.reply); Drop(r.consumed);
//                               Swallow(r.swallow); break;
//     case ParseStatus::kClose: Close(); break;
//   }

#ifndef EVENTIDE_APPS_CACHED_PROTOCOL_H_
#define EVENTIDE_APPS_CACHED_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#include "absl/strings/string_view.h"
#include "apps/cached/limits.h"

namespace eventide {
namespace cached {

enum class Command : uint8_t {
  kGet,  // also memcached's undocumented "bget"
  kGets,
  kGat,
  kGats,
  kSet,
  kAdd,
  kReplace,
  kAppend,
  kPrepend,
  kCas,
  kDelete,
  kIncr,
  kDecr,
  kTouch,
  kFlushAll,
  kVersion,
  kVerbosity,
  kStats,
  kQuit,
};

// One parsed request. Which fields are set depends on `command`.
struct Request {
  Command command = Command::kVersion;
  // "noreply" was given: the executor must not write any reply.
  bool noreply = false;
  // Storage commands, delete, incr/decr, touch: the key (<= 250 bytes).
  absl::string_view key;
  // get/gets/gat/gats: the keys, separated by runs of ' ' (see NextKey()).
  // Keys longer than kMaxKeyLength are NOT checked here: memcached looks
  // the keys up in order and fails on the first long one, after the lookups
  // (and touches) of the keys before it.
  absl::string_view keys;
  // Storage commands: client flags (truncated to 32 bits, as memcached).
  uint32_t flags = 0;
  // Storage commands, touch, gat/gats: exptime; flush_all: the delay (0 if
  // none was given).
  int32_t exptime = 0;
  // cas: the unique to compare with.
  uint64_t cas_unique = 0;
  // incr/decr: the delta.
  uint64_t delta = 0;
  // Storage commands: the data block, without its "\r\n".
  absl::string_view data;
  // verbosity: the level as given (the executor caps it).
  uint32_t verbosity = 0;
  // stats: the tokens after "stats" ("" for plain stats), e.g. "reset".
  absl::string_view stats_args;
};

enum class ParseStatus : uint8_t { kNeedMore, kRequest, kReply, kClose };

// Refusals whose side effects the executor must apply (kReply only).
enum class ParseError : uint8_t {
  kNone,
  // A storage command whose item exceeds the item size limit: count
  // store_too_large, and for `set` remove the old item (memcached does, so
  // a stale value cannot survive a failed overwrite). `request->command`
  // and `request->key` are set.
  kTooLarge,
  // A data block not followed by "\r\n": memcached still counts it in
  // cmd_set. `request->command` and `request->key` are set.
  kBadDataChunk,
  // flush_all with an exptime that is not a number: memcached counts the
  // command in cmd_flush before it parses the argument.
  kFlushBadExptime,
  // Any other refusal (no side effect).
  kOther,
};

struct ParseResult {
  ParseStatus status = ParseStatus::kNeedMore;
  size_t consumed = 0;
  uint64_t swallow = 0;
  // Points to a static string, including the trailing "\r\n".
  absl::string_view reply;
  ParseError error = ParseError::kNone;
  size_t scanned = 0;
  size_t need = 0;
};

struct ParserLimits {
  // -I: items larger than this (counted as memcached does, ItemSizeOk())
  // are refused with "SERVER_ERROR object too large for cache".
  size_t item_size_max = kDefaultItemSizeMax;
  // The longest get/gets line accepted (see the header comment).
  size_t max_multiget_line = kDefaultMaxMultigetLineLength;
};

// Parses the first request of `input` (see the header comment). Bytes
// before `scan_from` must be known to hold no '\n' (0 is always safe).
ParseResult ParseRequest(absl::string_view input, const ParserLimits& limits,
                         Request* request, size_t scan_from = 0);

// Splits the next key off `*keys` (runs of ' ' separate keys). Returns false
// when no key is left.
inline bool NextKey(absl::string_view* keys, absl::string_view* key) {
  size_t i = 0;
  while (i < keys->size() && (*keys)[i] == ' ') ++i;
  if (i == keys->size()) {
    *keys = absl::string_view();
    return false;
  }
  size_t j = i;
  while (j < keys->size() && (*keys)[j] != ' ') ++j;
  *key = keys->substr(i, j - i);
  keys->remove_prefix(j);
  return true;
}

// Reply strings, shared with the session.
inline constexpr absl::string_view kReplyError = "ERROR\r\n";
inline constexpr absl::string_view kReplyBadFormat =
    "CLIENT_ERROR bad command line format\r\n";
inline constexpr absl::string_view kReplyBadDataChunk =
    "CLIENT_ERROR bad data chunk\r\n";
inline constexpr absl::string_view kReplyTooLarge =
    "SERVER_ERROR object too large for cache\r\n";
inline constexpr absl::string_view kReplyBadExptime =
    "CLIENT_ERROR invalid exptime argument\r\n";
inline constexpr absl::string_view kReplyBadDelta =
    "CLIENT_ERROR invalid numeric delta argument\r\n";
inline constexpr absl::string_view kReplyDeleteUsage =
    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
inline constexpr absl::string_view kReplyShutdownDisabled =
    "ERROR: shutdown not enabled\r\n";

}  // namespace cached
}  // namespace eventide

#endif  // EVENTIDE_APPS_CACHED_PROTOCOL_H_
