// The cached server: memcached's threading model on Eventide.
//
// One thread (the caller of Run()) owns the listener and accepts; N worker
// threads each run an EventLoop. An accepted fd reaches a worker through that
// worker's NotifyQueue (round-robin): the accept thread pushes, the queue
// writes one byte only when the worker has no wake-up pending, and the worker
// drains every queued fd when its loop sees the queue's fd readable. All
// workers share one Store (sharded, one lock per shard).
//
// Threads: Create() and Run() on one thread; Stop() and GetServerStats()
// from any thread.
#ifndef EVENTIDE_APPS_CACHED_SERVER_H_
#define EVENTIDE_APPS_CACHED_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "apps/cached/session.h"
#include "apps/cached/store.h"
#include "apps/cached/unix_clock.h"
#include "loop/event_loop.h"
#include "loop/listener.h"

namespace eventide {
namespace cached {

struct ServerOptions {
  std::string bind = "127.0.0.1";          // -l
  uint16_t port = 11211;                   // -p; 0 = the kernel picks
  int max_connections = 1024;              // -c
  size_t memory_limit = size_t{64} << 20;  // -m, in bytes
  size_t item_size_max = size_t{1} << 20;  // -I
  int threads = 4;                         // -t
  int verbosity = 0;                       // -v
  std::string backend;                     // --backend
  absl::Duration idle_timeout = absl::InfiniteDuration();  // --idle-timeout
  // How long SIGTERM/Stop() waits for in-flight replies to drain.
  absl::Duration drain_timeout = absl::Seconds(3);
};

class Worker;

class Server final : public ServerStatsSource {
 public:
  // Binds the listening socket (so the port is known) and starts the workers.
  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerOptions options);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;
  absl::string_view backend_name() const { return loop_->backend_name(); }

  // Accepts until Stop() or SIGINT/SIGTERM, then stops accepting, lets the
  // workers finish in-flight replies (up to drain_timeout) and joins them.
  absl::Status Run();
  void Stop();

  ServerStats GetServerStats() const override;

 private:
  friend class Worker;
  explicit Server(ServerOptions options);
  void OnAccept(UniqueFd fd);
  void RefreshClock();

  const ServerOptions options_;
  std::unique_ptr<MonotonicUnixClock> wall_clock_;
  std::unique_ptr<CachedUnixClock> clock_;
  std::unique_ptr<Store> store_;
  std::atomic<int> verbosity_{0};
  std::unique_ptr<EventLoop> loop_;  // the accept thread's loop
  std::unique_ptr<Listener> listener_;
  std::vector<std::unique_ptr<Worker>> workers_;
  size_t next_worker_ = 0;
  Timer maintenance_;
  std::vector<SignalWatcher> signals_;
  int64_t started_unix_ = 0;
  uint16_t port_ = 0;

  std::atomic<int64_t> curr_connections_{0};
  std::atomic<int64_t> total_connections_{0};
  std::atomic<int64_t> rejected_connections_{0};
};

}  // namespace cached
}  // namespace eventide

#endif  // EVENTIDE_APPS_CACHED_SERVER_H_
