// Session: one client connection's side of the memcached text protocol.
//
// The transport (the server's connection over //loop:stream) owns the
// sockets and the buffers; the session turns buffered input into replies:
//
//   std::string out;
//   size_t used = session.Consume(buffered_input, &out);
//   // drop `used` bytes from the input buffer, write `out`,
//   // call Consume() again when more bytes arrive;
//   if (session.wants_close()) { /* flush `out`, then close */ }
//
// Consume() executes every complete request at the front of `input`,
// appends each reply to `*output` and returns the bytes consumed. The rest
// of `input` (an incomplete request) must be passed again, followed by the
// new bytes, on the next call. The session keeps the state that spans calls
// (a refused data block still being discarded, how far a partial line has
// been searched), so feeding the same stream in any split — one byte at a
// time or many pipelined requests at once — gives byte-identical output.
// next_read_hint() tells how many contiguous bytes the next request needs
// when that is known (a storage command waiting for its data block), so the
// transport can size or linearise its buffer.
//
// Output budget: a client may pipeline many `get`s of large values, or one
// `get` naming a large value thousands of times, in a few bytes of input.
// With an `output_budget`, Consume() starts no new request once `*output`
// holds that many bytes and stops a multi-key get between keys; the rest of
// the get is kept in the session (has_pending_output()) and continues, before
// any new request, on the next Consume() call, which the transport makes
// once it has sent what it holds (with the same or an empty input). So the
// reply bytes held per connection stay below the budget plus one item.
//
// wants_close() turns true after `quit` and after a request memcached
// answers by hanging up (a line too long, an HTTP request line). Later calls
// consume nothing. Replies already in `*output` are valid; write them before
// closing (memcached sends what precedes `quit`).
//
// stats: store counters come from the Store; process-wide values (pid,
// uptime, connections, threads, ...) from a ServerStatsSource the server
// implements. `version`, `verbosity`, `flush_all` are handled here too.
//
// Thread safety: a Session is used by one thread at a time (the worker that
// owns the connection). Many sessions on many threads share one Store, one
// ServerStatsSource and one verbosity atomic; those are thread-safe.

#ifndef EVENTIDE_APPS_CACHED_SESSION_H_
#define EVENTIDE_APPS_CACHED_SESSION_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "apps/cached/protocol.h"
#include "apps/cached/store.h"

namespace eventide {
namespace cached {

// What `stats` and `stats settings` report about the server process. The
// server fills it; tests fill it with known values.
struct ServerStats {
  int64_t pid = 0;
  int64_t uptime = 0;  // seconds since the server started
  int64_t time = 0;    // current unix time
  int64_t rusage_user_us = 0;
  int64_t rusage_system_us = 0;
  int64_t max_connections = 0;
  int64_t curr_connections = 0;
  int64_t total_connections = 0;
  int64_t rejected_connections = 0;
  int64_t threads = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  bool accepting_conns = true;
  // For `stats settings`.
  int64_t tcp_port = 0;
  std::string interface;
};

class ServerStatsSource {
 public:
  virtual ~ServerStatsSource() = default;
  // Called from any worker thread, concurrently.
  virtual ServerStats GetServerStats() const = 0;
};

// The version we announce: memcached's numbering (clients such as
// libmemcached parse "major.minor.micro" to decide which commands exist)
// plus our name.
inline constexpr absl::string_view kDefaultVersion = "1.6.18-eventide";

struct SessionConfig {
  // Required; not owned.
  Store* store = nullptr;
  // Optional; not owned. Without it `stats` reports zeros for server fields.
  const ServerStatsSource* server = nullptr;
  // Optional; not owned. `verbosity N` stores min(N, 2) here.
  std::atomic<int>* verbosity = nullptr;
  ParserLimits limits;
  // Must outlive the session (a literal, or a string the server keeps).
  absl::string_view version = kDefaultVersion;
};

class Session {
 public:
  // `config` is copied; the objects it points to must outlive the session.
  explicit Session(const SessionConfig& config);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // See the header comment. Returns the number of bytes of `input` consumed.
  // `output_budget` bounds the bytes Consume() leaves in `*output` (see
  // "Output budget" above; the default means no bound).
  size_t Consume(absl::string_view input, std::string* output,
                 size_t output_budget = SIZE_MAX);

  // A multi-key get stopped at the output budget; the next Consume() call
  // continues it, even with no new input.
  bool has_pending_output() const { return pending_get_; }

  bool wants_close() const { return wants_close_; }

  // Contiguous input bytes the pending request needs, 0 when unknown.
  size_t next_read_hint() const { return need_; }

  // Bytes of a refused data block still to be discarded from future input.
  uint64_t swallow_pending() const { return swallow_; }

 private:
  void Execute(const Request& req, std::string* out, size_t budget);
  void ExecuteGet(const Request& req, std::string* out, size_t budget);
  // Looks up `keys` in order, appending VALUE blocks, then "END". Stops
  // between keys once `*out` holds `budget` bytes and saves the rest in
  // pending_*.
  void RunGet(Command command, int32_t exptime, absl::string_view keys,
              std::string* out, size_t budget);
  // One key of a get/gets (Get) or gat/gats (GetAndTouch with `exptime`).
  void LookUp(Command command, int32_t exptime, absl::string_view key,
              absl::FunctionRef<void(const ItemView&)> visit);
  void ExecuteStats(const Request& req, std::string* out);
  void AppendGeneralStats(std::string* out);
  void AppendSettings(std::string* out);

  SessionConfig config_;
  uint64_t swallow_ = 0;
  size_t scanned_ = 0;
  size_t need_ = 0;
  // A get stopped at the output budget: its command, exptime (gat/gats) and
  // the keys not looked up yet.
  bool pending_get_ = false;
  Command pending_command_ = Command::kGet;
  int32_t pending_exptime_ = 0;
  std::string pending_keys_;
  bool wants_close_ = false;
};

}  // namespace cached
}  // namespace eventide

#endif  // EVENTIDE_APPS_CACHED_SESSION_H_
