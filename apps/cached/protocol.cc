#include "apps/cached/protocol.h"

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "apps/cached/limits.h"
#include "apps/cached/numbers.h"

namespace eventide {
namespace cached {
namespace {

// memcached's tokenize_command(): at most kMaxTokens - 1 tokens split on
// runs of ' '; memcached's `ntokens` also counts a terminal token, so the
// arity checks below compare ntokens() with memcached's constants.
struct Tokens {
  absl::string_view tok[kMaxTokens];
  size_t n = 0;  // real tokens
  size_t ntokens() const { return n + 1; }
  absl::string_view last() const { return tok[n - 1]; }
};

void Tokenize(absl::string_view line, Tokens* t) {
  t->n = 0;
  size_t s = 0;
  size_t e = 0;
  for (; e < line.size(); ++e) {
    if (line[e] != ' ') continue;
    if (s != e) {
      t->tok[t->n++] = line.substr(s, e - s);
      if (t->n == static_cast<size_t>(kMaxTokens) - 1) {
        // The rest of the line stays unsplit (only get keys look at it).
        return;
      }
    }
    s = e + 1;
  }
  if (s != e) t->tok[t->n++] = line.substr(s, e - s);
}

// memcached's set_noreply_maybe(): the last token is exactly "noreply".
bool NoreplyMaybe(const Tokens& t) { return t.last() == "noreply"; }

// memcached's fast path for a long line without '\n': only a multiget may
// be that long (at most 100 leading spaces, then "get " or "gets ").
bool IsMultigetPrefix(absl::string_view in) {
  size_t i = 0;
  while (i < in.size() && in[i] == ' ') ++i;
  if (i > 100) return false;
  const absl::string_view rest = in.substr(i);
  return absl::StartsWith(rest, "get ") || absl::StartsWith(rest, "gets ");
}

ParseResult Reply(absl::string_view reply, size_t consumed, bool noreply,
                  ParseError error = ParseError::kOther) {
  ParseResult r;
  r.status = ParseStatus::kReply;
  r.consumed = consumed;
  r.reply = noreply ? absl::string_view() : reply;
  r.error = error;
  return r;
}

ParseResult Complete(size_t consumed) {
  ParseResult r;
  r.status = ParseStatus::kRequest;
  r.consumed = consumed;
  return r;
}

ParseResult ParseGet(const Tokens& t, absl::string_view line, size_t consumed,
                     Command command, Request* req) {
  req->command = command;
  size_t first_key = 1;
  if (command == Command::kGat || command == Command::kGats) {
    if (!SafeStrtol(t.tok[1], &req->exptime)) {
      return Reply(kReplyBadExptime, consumed, false);
    }
    first_key = 2;
  }
  // The keys run from the first key token to the end of the line, past the
  // tokens memcached splits at first (it re-tokenizes the rest).
  if (first_key < t.n) {
    req->keys =
        line.substr(static_cast<size_t>(t.tok[first_key].data() - line.data()));
  }
  return Complete(consumed);
}

ParseResult ParseStorage(absl::string_view in, const Tokens& t, size_t line_end,
                         size_t consumed, Command command,
                         const ParserLimits& limits, Request* req) {
  const bool noreply = NoreplyMaybe(t);
  req->command = command;
  if (t.tok[1].size() > kMaxKeyLength) {
    return Reply(kReplyBadFormat, consumed, noreply);
  }
  req->key = t.tok[1];
  int32_t vlen = 0;
  if (!(SafeStrtoul(t.tok[2], &req->flags) &&
        SafeStrtol(t.tok[3], &req->exptime) && SafeStrtol(t.tok[4], &vlen))) {
    return Reply(kReplyBadFormat, consumed, noreply);
  }
  if (command == Command::kCas && !SafeStrtoull(t.tok[5], &req->cas_unique)) {
    return Reply(kReplyBadFormat, consumed, noreply);
  }
  if (vlen < 0 || vlen > std::numeric_limits<int32_t>::max() - 2) {
    return Reply(kReplyBadFormat, consumed, noreply);
  }
  const uint64_t block = static_cast<uint64_t>(vlen) + 2;
  if (!ItemSizeOk(req->key.size(), req->flags, static_cast<uint64_t>(vlen),
                  limits.item_size_max)) {
    ParseResult r =
        Reply(kReplyTooLarge, consumed, noreply, ParseError::kTooLarge);
    r.swallow = block;  // the data block never reaches the parser
    return r;
  }
  req->noreply = noreply;
  const size_t total = consumed + static_cast<size_t>(block);
  if (in.size() < total) {
    ParseResult r;
    r.status = ParseStatus::kNeedMore;
    r.scanned = line_end;  // the line is complete: its '\n' is found at once
    r.need = total;
    return r;
  }
  req->data = in.substr(consumed, static_cast<size_t>(vlen));
  if (in.substr(consumed + static_cast<size_t>(vlen), 2) != "\r\n") {
    return Reply(kReplyBadDataChunk, total, noreply, ParseError::kBadDataChunk);
  }
  return Complete(total);
}

ParseResult ParseLine(absl::string_view in, absl::string_view line,
                      size_t line_end, size_t consumed,
                      const ParserLimits& limits, Request* req) {
  Tokens t;
  Tokenize(line, &t);
  const size_t ntokens = t.ntokens();
  const auto error = [consumed] { return Reply(kReplyError, consumed, false); };
  // No valid command is shorter than two bytes.
  if (ntokens < 2 || t.tok[0].size() < 2) return error();
  const absl::string_view cmd = t.tok[0];
  const char first = cmd[0];

  // The dispatch follows memcached's process_command_ascii() order, because
  // it decides which arity check and which error a malformed line gets.
  if (first == 'm' && cmd.size() == 2) {
    return error();  // meta commands: not supported (see README.md)
  }
  if (first == 'g') {
    if (ntokens < 3) return error();
    if (cmd == "get") return ParseGet(t, line, consumed, Command::kGet, req);
    if (cmd == "gets") return ParseGet(t, line, consumed, Command::kGets, req);
    if (cmd == "gat") return ParseGet(t, line, consumed, Command::kGat, req);
    if (cmd == "gats") return ParseGet(t, line, consumed, Command::kGats, req);
    return error();
  }
  if (first == 's') {
    if (cmd == "set") {
      if (ntokens != 6 && ntokens != 7) return error();
      return ParseStorage(in, t, line_end, consumed, Command::kSet, limits,
                          req);
    }
    if (cmd == "stats") {
      req->command = Command::kStats;
      if (t.n > 1) {
        req->stats_args =
            line.substr(static_cast<size_t>(t.tok[1].data() - line.data()));
      }
      return Complete(consumed);
    }
    if (cmd == "shutdown") {
      // memcached answers this unless started with -A, which we lack.
      return Reply(kReplyShutdownDisabled, consumed, false);
    }
    return error();  // includes "slabs" (not supported)
  }
  if (first == 'a') {
    const bool add = cmd == "add";
    if (add || cmd == "append") {
      if (ntokens != 6 && ntokens != 7) return error();
      return ParseStorage(in, t, line_end, consumed,
                          add ? Command::kAdd : Command::kAppend, limits, req);
    }
    return error();
  }
  if (first == 'c') {
    if (cmd == "cas") {
      if (ntokens != 7 && ntokens != 8) return error();
      return ParseStorage(in, t, line_end, consumed, Command::kCas, limits,
                          req);
    }
    return error();  // includes "cache_memlimit" (not supported)
  }
  if (first == 'i' || (first == 'd' && cmd == "decr")) {
    if (cmd != "incr" && cmd != "decr") return error();
    if (ntokens != 4 && ntokens != 5) return error();
    const bool noreply = NoreplyMaybe(t);
    req->command = cmd == "incr" ? Command::kIncr : Command::kDecr;
    if (t.tok[1].size() > kMaxKeyLength) {
      return Reply(kReplyBadFormat, consumed, noreply);
    }
    if (!SafeStrtoull(t.tok[2], &req->delta)) {
      return Reply(kReplyBadDelta, consumed, noreply);
    }
    req->key = t.tok[1];
    req->noreply = noreply;
    return Complete(consumed);
  }
  if (first == 'd') {
    if (cmd != "delete") return error();
    if (ntokens < 3 || ntokens > 5) return error();
    bool noreply = false;
    if (ntokens > 3) {
      // memcached still accepts the obsolete "delete <key> 0".
      const bool hold_is_zero = t.tok[2] == "0";
      noreply = NoreplyMaybe(t);
      const bool valid = (ntokens == 4 && (hold_is_zero || noreply)) ||
                         (ntokens == 5 && hold_is_zero && noreply);
      if (!valid) return Reply(kReplyDeleteUsage, consumed, noreply);
    }
    req->command = Command::kDelete;
    if (t.tok[1].size() > kMaxKeyLength) {
      return Reply(kReplyBadFormat, consumed, noreply);
    }
    req->key = t.tok[1];
    req->noreply = noreply;
    return Complete(consumed);
  }
  if (first == 't') {
    if (cmd != "touch") return error();
    if (ntokens != 4 && ntokens != 5) return error();
    const bool noreply = NoreplyMaybe(t);
    req->command = Command::kTouch;
    if (t.tok[1].size() > kMaxKeyLength) {
      return Reply(kReplyBadFormat, consumed, noreply);
    }
    if (!SafeStrtol(t.tok[2], &req->exptime)) {
      return Reply(kReplyBadExptime, consumed, noreply);
    }
    req->key = t.tok[1];
    req->noreply = noreply;
    return Complete(consumed);
  }
  if (cmd == "replace" || cmd == "prepend") {
    if (ntokens != 6 && ntokens != 7) return error();
    return ParseStorage(
        in, t, line_end, consumed,
        cmd == "replace" ? Command::kReplace : Command::kPrepend, limits, req);
  }
  if (cmd == "bget") {
    if (ntokens < 3) return error();
    return ParseGet(t, line, consumed, Command::kGet, req);
  }
  if (cmd == "flush_all") {
    if (ntokens < 2 || ntokens > 4) return error();
    const bool noreply = NoreplyMaybe(t);
    req->command = Command::kFlushAll;
    req->exptime = 0;
    if (ntokens != (noreply ? 3u : 2u) &&
        !SafeStrtol(t.tok[1], &req->exptime)) {
      return Reply(kReplyBadExptime, consumed, noreply,
                   ParseError::kFlushBadExptime);
    }
    req->noreply = noreply;
    return Complete(consumed);
  }
  if (cmd == "version") {
    req->command = Command::kVersion;
    return Complete(consumed);
  }
  if (cmd == "quit") {
    req->command = Command::kQuit;
    return Complete(consumed);
  }
  if (cmd == "verbosity") {
    if (ntokens != 3 && ntokens != 4) return error();
    const bool noreply = NoreplyMaybe(t);
    req->command = Command::kVerbosity;
    if (!SafeStrtoul(t.tok[1], &req->verbosity)) {
      return Reply(kReplyBadFormat, consumed, noreply);
    }
    req->noreply = noreply;
    return Complete(consumed);
  }
  if (cmd == "lru_crawler" || cmd == "watch" || cmd == "lru") {
    return error();  // memcached administration commands: not supported
  }
  // An HTTP request line: memcached hangs up instead of answering.
  if (absl::StartsWith(t.last(), "HTTP/")) {
    ParseResult r;
    r.status = ParseStatus::kClose;
    return r;
  }
  return error();
}

}  // namespace

ParseResult ParseRequest(absl::string_view input, const ParserLimits& limits,
                         Request* request, size_t scan_from) {
  *request = Request();
  // How many bytes may precede the '\n'. Whether a longer line is a
  // multiget only matters once more than kMaxLineLength bytes are buffered,
  // and by then the prefix that decides it is there.
  size_t max_line = kMaxLineLength;
  if (input.size() > kMaxLineLength && IsMultigetPrefix(input)) {
    max_line = std::max(kMaxLineLength, limits.max_multiget_line);
  }
  const size_t window = std::min(input.size(), max_line + 1);
  const size_t from = std::min(scan_from, window);
  const void* nl = std::memchr(input.data() + from, '\n', window - from);
  if (nl == nullptr) {
    ParseResult r;
    if (input.size() > max_line) {
      r.status = ParseStatus::kClose;
    } else {
      r.status = ParseStatus::kNeedMore;
      r.scanned = window;
    }
    return r;
  }
  const size_t line_end =
      static_cast<size_t>(static_cast<const char*>(nl) - input.data());
  size_t len = line_end;
  // memcached strips one '\r' before the '\n', but not when it is the only
  // byte of the line.
  if (len > 1 && input[len - 1] == '\r') --len;
  absl::string_view line = input.substr(0, len);
  // memcached works on a C string: the line ends at its first NUL.
  if (const void* nul = std::memchr(line.data(), '\0', line.size())) {
    line = line.substr(
        0, static_cast<size_t>(static_cast<const char*>(nul) - line.data()));
  }
  return ParseLine(input, line, line_end, line_end + 1, limits, request);
}

}  // namespace cached
}  // namespace eventide
