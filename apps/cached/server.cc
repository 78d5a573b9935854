#include "apps/cached/server.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "loop/connection.h"
#include "loop/socket.h"
#include "mtqueue/notify_queue.h"

namespace eventide {
namespace cached {
namespace {

// Reply bytes a connection may hold (queued in its output plus produced in
// one read callback, which may end one item above this) before its session
// stops starting new requests until the peer reads. Large enough that
// pipelined small requests never stop; small enough that 1,000 clients that
// never read hold a bounded amount.
constexpr size_t kOutputBudget = size_t{1} << 20;

}  // namespace

// One worker thread: its own loop, its own queue of accepted fds, and the
// connections it serves. Everything but Push()/Shutdown() runs on its thread.
class Worker {
 public:
  Worker(Server* server, std::unique_ptr<EventLoop> loop,
         std::unique_ptr<NotifyQueue<UniqueFd>> queue)
      : server_(server), loop_(std::move(loop)), queue_(std::move(queue)) {}

  ~Worker() {
    Shutdown();
    Join();
  }

  absl::Status Start() {
    absl::StatusOr<IoWatcher> watcher =
        loop_->WatchIo(queue_->fd(), kReadable, [this](const IoEvent&) {
          // Read closed() before draining: a drain after a close saw
          // everything that was pushed (mtqueue's contract).
          const bool closed = queue_->closed();
          queue_->Drain([this](UniqueFd&& fd) { Serve(std::move(fd)); });
          if (closed) BeginShutdown();
        });
    if (!watcher.ok()) return watcher.status();
    queue_watcher_ = std::move(*watcher);
    thread_ = std::thread([this] {
      absl::Status status = loop_->Run(EventLoop::RunMode::kUntilStopped);
      if (!status.ok()) {
        std::fprintf(stderr, "cached: worker loop failed: %s\n",
                     status.ToString().c_str());
      }
      // Release everything this thread owns while still on it.
      queue_watcher_.Release();
      shutdown_timer_.Release();
      connections_.clear();
    });
    return absl::OkStatus();
  }

  // Accept thread. False when the worker no longer takes connections.
  bool Push(UniqueFd fd) { return queue_->TryPush(fd); }

  // Any thread: stop taking connections, finish replies, then stop.
  void Shutdown() { queue_->Close(); }

  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  // For `stats`, from any thread.
  uint64_t bytes_read() const {
    return traffic_.read.load(std::memory_order_relaxed);
  }
  uint64_t bytes_written() const {
    return traffic_.written.load(std::memory_order_relaxed);
  }

 private:
  void Serve(UniqueFd fd) {
    if (shutting_down_) {
      server_->curr_connections_.fetch_sub(1);
      return;  // fd closes here
    }
    ConnectionOptions options;
    options.idle_timeout = server_->options_.idle_timeout;
    // A whole item must fit in the input buffer before the session can
    // parse it; beyond that, reading pauses (back-pressure).
    options.read_high_watermark = std::max<size_t>(
        size_t{4} << 20, server_->options_.item_size_max + (size_t{64} << 10));
    options.write_low_watermark = kOutputBudget / 2;
    auto session = std::make_shared<Session>(
        SessionConfig{server_->store_.get(), server_, &server_->verbosity_,
                      ParserLimits{server_->options_.item_size_max,
                                   kDefaultMaxMultigetLineLength},
                      kDefaultVersion});
    Connection::Callbacks callbacks;
    callbacks.on_read = [this, session](Connection& conn, Buffer& input) {
      OnRead(*session, conn, input);
    };
    // Replies stopped at the output budget continue once the peer has
    // taken what was sent.
    callbacks.on_drained = [this, session](Connection& conn) {
      OnRead(*session, conn, conn.input());
    };
    // The peer sends nothing more, but what it sent may not all be answered
    // yet (requests held back at the output budget): OnRead closes once the
    // session can do nothing more with its input.
    callbacks.on_peer_eof = [this, session](Connection& conn) {
      OnRead(*session, conn, conn.input());
    };
    callbacks.on_close = [this](Connection& conn, CloseReason,
                                const absl::Status&) {
      server_->curr_connections_.fetch_sub(1);
      connections_.erase(&conn);
      MaybeFinishShutdown();
    };
    absl::StatusOr<std::shared_ptr<Connection>> conn = Connection::Adopt(
        loop_.get(), std::move(fd), options, std::move(callbacks));
    if (!conn.ok()) {
      server_->curr_connections_.fetch_sub(1);
      if (server_->options_.verbosity > 0) {
        std::fprintf(stderr, "cached: cannot serve a connection: %s\n",
                     conn.status().ToString().c_str());
      }
      return;
    }
    connections_.emplace(conn->get(), std::move(*conn));
  }

  void OnRead(Session& session, Connection& conn, Buffer& input) {
    // Shutting down: replies in flight are flushed, no new request starts
    // (its reply could no longer be written).
    if (shutting_down_) return;
    // Replies already queued count against the budget: a client that
    // pipelines gets of large values but does not read its replies holds at
    // most the budget plus one item here; the rest of its requests wait in
    // the input buffer (bounded by the read watermark) until on_drained.
    const size_t queued = conn.output().size();
    if (queued >= kOutputBudget) return;
    // The session needs a contiguous view; it says how many bytes it needs
    // before the next request can complete, so a large value is pulled
    // together once, not on every read.
    if (!session.has_pending_output() &&
        input.size() < session.next_read_hint()) {
      // After the peer's EOF that request can never complete.
      if (conn.peer_eof()) conn.CloseAfterFlush();
      return;
    }
    output_.clear();
    const absl::string_view view = input.Pullup(input.size());
    const size_t consumed =
        session.Consume(view, &output_, kOutputBudget - queued);
    input.Consume(consumed);
    traffic_.Add(&traffic_.read, consumed);
    if (!output_.empty()) {
      traffic_.Add(&traffic_.written, output_.size());
      (void)conn.Write(absl::string_view(output_));
    }
    if (session.wants_close()) {
      conn.CloseAfterFlush();
      return;
    }
    // After the peer's EOF, close once every complete request is answered:
    // the session stopped short of the budget (so for want of a complete
    // request, not of room) with no get left half-answered. Closing
    // earlier made Write refuse the replies of requests still held back.
    if (conn.peer_eof() && !session.has_pending_output() &&
        output_.size() < kOutputBudget - queued) {
      conn.CloseAfterFlush();
    }
  }

  void BeginShutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    queue_watcher_.Release();
    // Finish what is in flight: stop reading, flush, close.
    std::vector<Connection*> open;
    open.reserve(connections_.size());
    for (auto& entry : connections_) open.push_back(entry.first);
    for (Connection* conn : open) conn->CloseAfterFlush();
    // A peer that never reads its replies must not hold the exit forever.
    shutdown_timer_ = loop_->AddTimer(server_->options_.drain_timeout, [this] {
      std::vector<std::shared_ptr<Connection>> left;
      for (auto& entry : connections_) left.push_back(entry.second);
      for (auto& conn : left) conn->Close();
      loop_->Stop();
    });
    MaybeFinishShutdown();
  }

  void MaybeFinishShutdown() {
    if (shutting_down_ && connections_.empty()) loop_->Stop();
  }

  Server* const server_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<NotifyQueue<UniqueFd>> queue_;
  IoWatcher queue_watcher_;
  Timer shutdown_timer_;
  bool shutting_down_ = false;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections_;
  std::string output_;  // reused reply buffer
  std::thread thread_;

  // Byte counters of this worker's connections. One pair per worker, on a
  // cache line of its own: counters shared by all workers would move
  // between cores on every request. Only this worker writes them, so a
  // plain load and store does (no locked read-modify-write); `stats` on any
  // thread sums the workers' pairs.
  struct alignas(64) Traffic {
    std::atomic<uint64_t> read{0};
    std::atomic<uint64_t> written{0};
    static void Add(std::atomic<uint64_t>* counter, uint64_t n) {
      counter->store(counter->load(std::memory_order_relaxed) + n,
                     std::memory_order_relaxed);
    }
  };
  Traffic traffic_;
};

namespace {

LoopOptions LoopOptionsFor(const ServerOptions& options) {
  LoopOptions loop_options;
  loop_options.backend.name = options.backend;
  return loop_options;
}

}  // namespace

Server::Server(ServerOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  if (options.threads < 1 || options.threads > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("-t must be between 1 and 256, got ", options.threads));
  }
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("-c must be at least 1");
  }
  std::unique_ptr<Server> server(new Server(std::move(options)));
  const ServerOptions& opts = server->options_;
  server->verbosity_.store(opts.verbosity);
  server->started_unix_ = static_cast<int64_t>(std::time(nullptr));
  server->wall_clock_ = MonotonicUnixClock::FromSystem();
  server->clock_ = std::make_unique<CachedUnixClock>(server->wall_clock_.get());
  StoreOptions store_options;
  store_options.memory_limit = opts.memory_limit;
  store_options.item_size_max = opts.item_size_max;
  server->store_ = std::make_unique<Store>(store_options, server->clock_.get());

  absl::StatusOr<std::unique_ptr<EventLoop>> loop =
      EventLoop::Create(LoopOptionsFor(opts));
  if (!loop.ok()) return loop.status();
  server->loop_ = std::move(*loop);

  absl::StatusOr<SocketAddress> address =
      SocketAddress::Parse(opts.bind, opts.port);
  if (!address.ok()) return address.status();
  Server* raw = server.get();
  absl::StatusOr<std::unique_ptr<Listener>> listener = Listener::Create(
      server->loop_.get(), *address, [raw](UniqueFd fd, const SocketAddress&) {
        raw->OnAccept(std::move(fd));
      });
  if (!listener.ok()) return listener.status();
  server->listener_ = std::move(*listener);
  server->port_ = server->listener_->port();

  for (int i = 0; i < opts.threads; ++i) {
    absl::StatusOr<std::unique_ptr<EventLoop>> worker_loop =
        EventLoop::Create(LoopOptionsFor(opts));
    if (!worker_loop.ok()) return worker_loop.status();
    absl::StatusOr<std::unique_ptr<NotifyQueue<UniqueFd>>> queue =
        NotifyQueue<UniqueFd>::Create();
    if (!queue.ok()) return queue.status();
    auto worker = std::make_unique<Worker>(raw, std::move(*worker_loop),
                                           std::move(*queue));
    absl::Status status = worker->Start();
    if (!status.ok()) return status;
    server->workers_.push_back(std::move(worker));
  }
  return server;
}

Server::~Server() {
  for (auto& worker : workers_) worker->Shutdown();
  for (auto& worker : workers_) worker->Join();
  workers_.clear();
  signals_.clear();
  maintenance_.Release();
  listener_.reset();
}

uint16_t Server::port() const { return port_; }

void Server::OnAccept(UniqueFd fd) {
  total_connections_.fetch_add(1, std::memory_order_relaxed);
  if (curr_connections_.load() >= options_.max_connections) {
    // memcached's answer above -c; best effort on a fresh socket.
    static constexpr char kTooMany[] = "ERROR Too many open connections\r\n";
    (void)!send(fd.get(), kTooMany, sizeof(kTooMany) - 1,
                MSG_NOSIGNAL | MSG_DONTWAIT);
    rejected_connections_.fetch_add(1, std::memory_order_relaxed);
    return;  // fd closes here
  }
  curr_connections_.fetch_add(1);
  Worker& worker = *workers_[next_worker_];
  next_worker_ = (next_worker_ + 1) % workers_.size();
  if (!worker.Push(std::move(fd))) curr_connections_.fetch_sub(1);
}

void Server::RefreshClock() { clock_->Refresh(); }

absl::Status Server::Run() {
  for (int signo : {SIGINT, SIGTERM}) {
    absl::StatusOr<SignalWatcher> watcher =
        loop_->WatchSignal(signo, [this](int) { Stop(); });
    if (!watcher.ok()) return watcher.status();
    signals_.push_back(std::move(*watcher));
  }
  // memcached's clock tick: refresh the cached second and reclaim a bounded
  // number of expired items per tick, so no request pays for a sweep.
  TimerOptions every_second;
  every_second.period = absl::Seconds(1);
  maintenance_ = loop_->AddTimer(
      absl::Seconds(1),
      [this] {
        RefreshClock();
        store_->SweepExpired(10000);
      },
      every_second);
  absl::Status status = loop_->Run(EventLoop::RunMode::kUntilStopped);
  // Stop accepting first, then let every worker finish its replies.
  listener_.reset();
  maintenance_.Release();
  signals_.clear();
  for (auto& worker : workers_) worker->Shutdown();
  for (auto& worker : workers_) worker->Join();
  return status;
}

void Server::Stop() { loop_->Stop(); }

ServerStats Server::GetServerStats() const {
  ServerStats stats;
  stats.pid = getpid();
  stats.time = clock_->NowUnixSeconds();
  stats.uptime = stats.time - started_unix_;
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    stats.rusage_user_us =
        int64_t{usage.ru_utime.tv_sec} * 1000000 + usage.ru_utime.tv_usec;
    stats.rusage_system_us =
        int64_t{usage.ru_stime.tv_sec} * 1000000 + usage.ru_stime.tv_usec;
  }
  stats.max_connections = options_.max_connections;
  stats.curr_connections = curr_connections_.load();
  stats.total_connections = total_connections_.load();
  stats.rejected_connections = rejected_connections_.load();
  stats.threads = options_.threads;
  // workers_ is fixed once Create() returns, before any connection exists.
  for (const auto& worker : workers_) {
    stats.bytes_read += worker->bytes_read();
    stats.bytes_written += worker->bytes_written();
  }
  stats.tcp_port = port_;
  stats.interface = options_.bind;
  return stats;
}

}  // namespace cached
}  // namespace eventide
