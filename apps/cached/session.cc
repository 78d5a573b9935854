#include "apps/cached/session.h"

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <string>

#include "absl/strings/string_view.h"
#include "apps/cached/limits.h"
#include "apps/cached/numbers.h"
#include "apps/cached/protocol.h"
#include "apps/cached/store.h"

namespace eventide {
namespace cached {
namespace {

// Appending through a stack buffer keeps replies free of heap allocations
// beyond the growth of `out` itself.
void AppendUint(std::string* out, uint64_t v) {
  char buf[20];
  out->append(buf, FormatUint64(v, buf));
}

void AppendInt(std::string* out, int64_t v) {
  if (v < 0) {
    out->push_back('-');
    AppendUint(out, uint64_t{0} - static_cast<uint64_t>(v));
  } else {
    AppendUint(out, static_cast<uint64_t>(v));
  }
}

void StatUint(std::string* out, absl::string_view name, uint64_t v) {
  out->append("STAT ");
  out->append(name.data(), name.size());
  out->push_back(' ');
  AppendUint(out, v);
  out->append("\r\n");
}

void StatInt(std::string* out, absl::string_view name, int64_t v) {
  out->append("STAT ");
  out->append(name.data(), name.size());
  out->push_back(' ');
  AppendInt(out, v);
  out->append("\r\n");
}

void StatStr(std::string* out, absl::string_view name, absl::string_view v) {
  out->append("STAT ");
  out->append(name.data(), name.size());
  out->push_back(' ');
  out->append(v.data(), v.size());
  out->append("\r\n");
}

// memcached prints rusage as "%ld.%06ld" seconds.
void StatMicros(std::string* out, absl::string_view name, int64_t us) {
  if (us < 0) us = 0;
  out->append("STAT ");
  out->append(name.data(), name.size());
  out->push_back(' ');
  AppendUint(out, static_cast<uint64_t>(us / 1000000));
  out->push_back('.');
  char buf[20];
  const size_t n = FormatUint64(static_cast<uint64_t>(us % 1000000), buf);
  out->append(6 - n, '0');
  out->append(buf, n);
  out->append("\r\n");
}

void AppendReply(std::string* out, bool noreply, absl::string_view reply) {
  if (!noreply) out->append(reply.data(), reply.size());
}

StoreMode ModeOf(Command c) {
  switch (c) {
    case Command::kAdd:
      return StoreMode::kAdd;
    case Command::kReplace:
      return StoreMode::kReplace;
    case Command::kAppend:
      return StoreMode::kAppend;
    case Command::kPrepend:
      return StoreMode::kPrepend;
    case Command::kCas:
      return StoreMode::kCas;
    default:
      return StoreMode::kSet;
  }
}

}  // namespace

Session::Session(const SessionConfig& config) : config_(config) {}

size_t Session::Consume(absl::string_view input, std::string* output,
                        size_t output_budget) {
  size_t done = 0;
  if (pending_get_) {
    // Replies go out in request order: finish the stopped get first.
    std::string keys;
    keys.swap(pending_keys_);
    pending_get_ = false;
    RunGet(pending_command_, pending_exptime_, keys, output, output_budget);
    if (pending_get_) return 0;
  }
  while (!wants_close_) {
    if (swallow_ > 0) {
      const uint64_t avail = input.size() - done;
      const uint64_t n = std::min(swallow_, avail);
      swallow_ -= n;
      done += static_cast<size_t>(n);
      if (swallow_ > 0) break;
    }
    if (done == input.size()) break;
    if (output->size() >= output_budget) break;  // the rest waits for a flush
    Request req;
    const ParseResult r =
        ParseRequest(input.substr(done), config_.limits, &req, scanned_);
    if (r.status == ParseStatus::kNeedMore) {
      scanned_ = r.scanned;
      need_ = r.need;
      break;
    }
    scanned_ = 0;
    need_ = 0;
    switch (r.status) {
      case ParseStatus::kClose:
        wants_close_ = true;
        break;
      case ParseStatus::kReply:
        if (r.error == ParseError::kTooLarge) {
          config_.store->RecordTooLarge();
          if (req.command == Command::kSet) config_.store->Discard(req.key);
        } else if (r.error == ParseError::kBadDataChunk) {
          config_.store->RecordBadDataChunk();
        } else if (r.error == ParseError::kFlushBadExptime) {
          config_.store->RecordFlushCommand();
        }
        output->append(r.reply.data(), r.reply.size());
        done += r.consumed;
        swallow_ = r.swallow;
        break;
      case ParseStatus::kRequest:
        Execute(req, output, output_budget);
        done += r.consumed;
        break;
      case ParseStatus::kNeedMore:
        break;  // handled above
    }
  }
  return done;
}

void Session::Execute(const Request& req, std::string* out, size_t budget) {
  Store& store = *config_.store;
  switch (req.command) {
    case Command::kGet:
    case Command::kGets:
    case Command::kGat:
    case Command::kGats:
      ExecuteGet(req, out, budget);
      return;
    case Command::kSet:
    case Command::kAdd:
    case Command::kReplace:
    case Command::kAppend:
    case Command::kPrepend:
    case Command::kCas: {
      const StoreStatus s = store.Put(ModeOf(req.command), req.key, req.data,
                                      req.flags, req.exptime, req.cas_unique);
      absl::string_view reply;
      switch (s) {
        case StoreStatus::kStored:
          reply = "STORED\r\n";
          break;
        case StoreStatus::kNotStored:
          reply = "NOT_STORED\r\n";
          break;
        case StoreStatus::kExists:
          reply = "EXISTS\r\n";
          break;
        case StoreStatus::kNotFound:
          reply = "NOT_FOUND\r\n";
          break;
        case StoreStatus::kOutOfMemory:
          reply = "SERVER_ERROR out of memory storing object\r\n";
          break;
      }
      AppendReply(out, req.noreply, reply);
      return;
    }
    case Command::kDelete:
      AppendReply(out, req.noreply,
                  store.Delete(req.key) ? "DELETED\r\n" : "NOT_FOUND\r\n");
      return;
    case Command::kIncr:
    case Command::kDecr: {
      uint64_t value = 0;
      switch (store.Delta(req.key, req.command == Command::kIncr, req.delta,
                          &value)) {
        case DeltaStatus::kOk:
          if (!req.noreply) {
            AppendUint(out, value);
            out->append("\r\n");
          }
          return;
        case DeltaStatus::kNotFound:
          AppendReply(out, req.noreply, "NOT_FOUND\r\n");
          return;
        case DeltaStatus::kNonNumeric:
          AppendReply(out, req.noreply,
                      "CLIENT_ERROR cannot increment or decrement "
                      "non-numeric value\r\n");
          return;
      }
      return;
    }
    case Command::kTouch:
      AppendReply(
          out, req.noreply,
          store.Touch(req.key, req.exptime) ? "TOUCHED\r\n" : "NOT_FOUND\r\n");
      return;
    case Command::kFlushAll:
      store.FlushAll(req.exptime);
      AppendReply(out, req.noreply, "OK\r\n");
      return;
    case Command::kVersion:
      out->append("VERSION ");
      out->append(config_.version.data(), config_.version.size());
      out->append("\r\n");
      return;
    case Command::kVerbosity:
      if (config_.verbosity != nullptr) {
        config_.verbosity->store(static_cast<int>(std::min<uint32_t>(
                                     req.verbosity, kMaxVerbosityLevel)),
                                 std::memory_order_relaxed);
      }
      AppendReply(out, req.noreply, "OK\r\n");
      return;
    case Command::kStats:
      ExecuteStats(req, out);
      return;
    case Command::kQuit:
      wants_close_ = true;
      return;
  }
}

void Session::ExecuteGet(const Request& req, std::string* out, size_t budget) {
  // memcached looks the keys up in order and, at the first key longer than
  // 250 bytes, drops this command's VALUE lines and answers only the error.
  // Finding that key first lets the lookups before it still happen (hits,
  // touches) without producing output, so a normal get can stream its VALUE
  // blocks under the output budget instead of holding the whole reply.
  absl::string_view scan = req.keys;
  absl::string_view key;
  while (NextKey(&scan, &key)) {
    if (key.size() <= kMaxKeyLength) continue;
    absl::string_view before =
        req.keys.substr(0, static_cast<size_t>(key.data() - req.keys.data()));
    absl::string_view k;
    while (NextKey(&before, &k)) {
      LookUp(req.command, req.exptime, k, [](const ItemView&) {});
    }
    out->append(kReplyBadFormat.data(), kReplyBadFormat.size());
    return;
  }
  RunGet(req.command, req.exptime, req.keys, out, budget);
}

void Session::RunGet(Command command, int32_t exptime, absl::string_view keys,
                     std::string* out, size_t budget) {
  const bool with_cas = command == Command::kGets || command == Command::kGats;
  const auto visit = [out, with_cas](const ItemView& item) {
    out->append("VALUE ");
    out->append(item.key.data(), item.key.size());
    out->push_back(' ');
    AppendUint(out, item.flags);
    out->push_back(' ');
    AppendUint(out, item.value.size());
    if (with_cas) {
      out->push_back(' ');
      AppendUint(out, item.cas);
    }
    out->append("\r\n");
    out->append(item.value.data(), item.value.size());
    out->append("\r\n");
  };
  absl::string_view key;
  while (NextKey(&keys, &key)) {
    LookUp(command, exptime, key, visit);
    if (out->size() >= budget) {
      absl::string_view rest = keys;
      absl::string_view next;
      if (NextKey(&rest, &next)) {
        pending_get_ = true;
        pending_command_ = command;
        pending_exptime_ = exptime;
        pending_keys_.assign(keys.data(), keys.size());
        return;
      }
    }
  }
  out->append("END\r\n");
}

void Session::LookUp(Command command, int32_t exptime, absl::string_view key,
                     absl::FunctionRef<void(const ItemView&)> visit) {
  if (command == Command::kGat || command == Command::kGats) {
    config_.store->GetAndTouch(key, exptime, visit);
  } else {
    config_.store->Get(key, visit);
  }
}

void Session::ExecuteStats(const Request& req, std::string* out) {
  absl::string_view args = req.stats_args;
  absl::string_view sub;
  if (!NextKey(&args, &sub)) {
    AppendGeneralStats(out);
    out->append("END\r\n");
    return;
  }
  absl::string_view arg;
  const bool has_arg = NextKey(&args, &arg);
  if (sub == "reset") {
    config_.store->ResetStats();
    out->append("RESET\r\n");
  } else if (sub == "settings") {
    AppendSettings(out);
    out->append("END\r\n");
  } else if (sub == "detail") {
    // Per-prefix statistics are not collected; accept the switches.
    if (has_arg && (arg == "on" || arg == "off")) {
      out->append("OK\r\n");
    } else if (has_arg && arg == "dump") {
      out->append("END\r\n");
    } else {
      out->append("CLIENT_ERROR usage: stats detail on|off|dump\r\n");
    }
  } else if (sub == "items" || sub == "conns") {
    // No slab classes, and connections belong to the server: empty lists.
    out->append("END\r\n");
  } else if (sub == "slabs") {
    StatUint(out, "active_slabs", 0);
    StatUint(out, "total_malloced", config_.store->GetStats().bytes);
    out->append("END\r\n");
  } else if (sub == "sizes") {
    StatStr(out, "sizes_status", "disabled");
    out->append("END\r\n");
  } else {
    out->append(kReplyError.data(), kReplyError.size());
  }
}

void Session::AppendGeneralStats(std::string* out) {
  ServerStats server;
  if (config_.server != nullptr) server = config_.server->GetServerStats();
  const StoreStats s = config_.store->GetStats();
  // memcached's order, limited to the fields that mean something here.
  StatInt(out, "pid", server.pid);
  StatInt(out, "uptime", server.uptime);
  StatInt(out, "time", server.time);
  StatStr(out, "version", config_.version);
  StatUint(out, "pointer_size", sizeof(void*) * 8);
  StatMicros(out, "rusage_user", server.rusage_user_us);
  StatMicros(out, "rusage_system", server.rusage_system_us);
  StatInt(out, "max_connections", server.max_connections);
  StatInt(out, "curr_connections", server.curr_connections);
  StatInt(out, "total_connections", server.total_connections);
  StatInt(out, "rejected_connections", server.rejected_connections);
  StatUint(out, "cmd_get", s.cmd_get);
  StatUint(out, "cmd_set", s.cmd_set);
  StatUint(out, "cmd_flush", s.cmd_flush);
  StatUint(out, "cmd_touch", s.cmd_touch);
  StatUint(out, "cmd_meta", 0);
  StatUint(out, "get_hits", s.get_hits);
  StatUint(out, "get_misses", s.get_misses);
  StatUint(out, "get_expired", s.get_expired);
  StatUint(out, "get_flushed", s.get_flushed);
  StatUint(out, "delete_misses", s.delete_misses);
  StatUint(out, "delete_hits", s.delete_hits);
  StatUint(out, "incr_misses", s.incr_misses);
  StatUint(out, "incr_hits", s.incr_hits);
  StatUint(out, "decr_misses", s.decr_misses);
  StatUint(out, "decr_hits", s.decr_hits);
  StatUint(out, "cas_misses", s.cas_misses);
  StatUint(out, "cas_hits", s.cas_hits);
  StatUint(out, "cas_badval", s.cas_badval);
  StatUint(out, "touch_hits", s.touch_hits);
  StatUint(out, "touch_misses", s.touch_misses);
  StatUint(out, "store_too_large", s.store_too_large);
  StatUint(out, "store_no_memory", s.store_no_memory);
  StatUint(out, "auth_cmds", 0);
  StatUint(out, "auth_errors", 0);
  StatUint(out, "bytes_read", server.bytes_read);
  StatUint(out, "bytes_written", server.bytes_written);
  StatUint(out, "limit_maxbytes", s.limit_maxbytes);
  StatUint(out, "accepting_conns", server.accepting_conns ? 1 : 0);
  StatInt(out, "threads", server.threads);
  StatUint(out, "bytes", s.bytes);
  StatUint(out, "curr_items", s.curr_items);
  StatUint(out, "total_items", s.total_items);
  StatUint(out, "expired_unfetched", s.expired_unfetched);
  StatUint(out, "evicted_unfetched", s.evicted_unfetched);
  StatUint(out, "evictions", s.evictions);
  StatUint(out, "reclaimed", s.reclaimed);
}

void Session::AppendSettings(std::string* out) {
  ServerStats server;
  if (config_.server != nullptr) server = config_.server->GetServerStats();
  StatUint(out, "maxbytes", config_.store->memory_limit());
  StatInt(out, "maxconns", server.max_connections);
  StatInt(out, "tcpport", server.tcp_port);
  StatUint(out, "udpport", 0);
  StatStr(
      out, "inter",
      server.interface.empty() ? absl::string_view("NULL") : server.interface);
  StatInt(out, "verbosity",
          config_.verbosity != nullptr
              ? config_.verbosity->load(std::memory_order_relaxed)
              : 0);
  StatStr(out, "evictions", "on");
  StatInt(out, "num_threads", server.threads);
  StatStr(out, "cas_enabled", "yes");
  StatUint(out, "item_size_max", config_.limits.item_size_max);
  StatStr(out, "flush_enabled", "yes");
}

}  // namespace cached
}  // namespace eventide
