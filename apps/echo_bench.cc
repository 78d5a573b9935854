// echo_bench: the same echo service written three ways, measured by the
// same client in one run.
//
//   eventide_<backend>  //loop:stream: Listener + Connection, echo by moving
//                       the input's blocks to the output (apps/echo_server)
//   blocking_threads    one blocking thread per connection: read, write back
//   libevent            libevent 2.1 bufferevents (evbuffer_add_buffer echo).
//                       Note: libevent 2.1's evbuffer_read reads at most 4 KiB
//                       per call (evbuffer_set_max_read only exists from
//                       2.2), which bounds its throughput here.
//
// Workloads (loopback, TCP_NODELAY everywhere):
//   BM_Throughput  one connection streams 4 MiB per iteration and reads the
//                  echo back concurrently; bytes_per_second = echo MB/s.
//   BM_PingPong    100 connections, each with one 1 KiB request in flight:
//                  send, wait for the whole 1 KiB answer, send again;
//                  items_per_second = requests per second.
//
// Each server runs on its own thread (started once, on first use); the client
// is the benchmark thread, a plain poll/epoll loop shared by all servers.
// Besides wall-clock rates, each reports the server's CPU time per MiB or per
// request (process CPU minus the client thread's), which is far less
// sensitive to a busy machine than the rates.
//
//   ./bazelw run --config=bench //apps:echo_bench --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   (one command line)
#include <benchmark/benchmark.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "loop/buffer.h"
#include "loop/connection.h"
#include "loop/event_loop.h"
#include "loop/listener.h"
#include "loop/socket.h"

namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "echo_bench: %s\n", what.c_str());
  std::exit(1);
}

void NoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// ------------------------------------------------------------- servers --

// Each Start* returns the port of a server that runs for the rest of the
// process on a detached thread. The server objects are never destroyed
// (their threads never stop), hence the deliberate leaks.

uint16_t StartEventide(const std::string& backend,
                       size_t max_read_per_event = 256 * 1024) {
  eventide::LoopOptions options;
  options.backend.name = backend;
  options.backend.ignore_environment = true;
  absl::StatusOr<std::unique_ptr<eventide::EventLoop>> loop =
      eventide::EventLoop::Create(options);
  if (!loop.ok()) Die(std::string(loop.status().message()));
  eventide::EventLoop* l = loop->release();
  absl::StatusOr<std::unique_ptr<eventide::Listener>> listener =
      eventide::Listener::Create(
          l, eventide::SocketAddress::Loopback4(0),
          [l, max_read_per_event](eventide::UniqueFd fd,
                                  const eventide::SocketAddress&) {
            eventide::Connection::Callbacks cb;
            cb.on_read = [](eventide::Connection& c, eventide::Buffer& in) {
              (void)c.Write(std::move(in));
            };
            eventide::ConnectionOptions options;
            options.max_read_per_event = max_read_per_event;
            (void)eventide::Connection::Adopt(l, std::move(fd), options,
                                              std::move(cb));
          });
  if (!listener.ok()) Die(std::string(listener.status().message()));
  const uint16_t port = (*listener)->port();
  eventide::Listener* kept = listener->release();
  (void)kept;
  std::thread([l] {
    (void)l->Run(eventide::EventLoop::RunMode::kUntilStopped);
  }).detach();
  return port;
}

uint16_t StartBlockingThreads() {
  absl::StatusOr<eventide::UniqueFd> fd =
      eventide::OpenListeningSocket(eventide::SocketAddress::Loopback4(0));
  if (!fd.ok()) Die(std::string(fd.status().message()));
  if (!eventide::SetNonBlocking(fd->get(), false).ok()) Die("fcntl");
  const uint16_t port = eventide::SocketAddress::LocalOf(fd->get())->port();
  std::thread([listen_fd = fd->release()] {
    for (;;) {
      const int c = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      NoDelay(c);
      std::thread([c] {
        std::vector<char> buf(64 * 1024);
        for (;;) {
          const ssize_t n = read(c, buf.data(), buf.size());
          if (n <= 0) break;
          for (ssize_t off = 0; off < n;) {
            const ssize_t w = write(c, buf.data() + off, n - off);
            if (w <= 0) {
              close(c);
              return;
            }
            off += w;
          }
        }
        close(c);
      }).detach();
    }
  }).detach();
  return port;
}

void LibeventRead(bufferevent* bev, void*) {
  evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

void LibeventEvent(bufferevent* bev, short events, void*) {
  if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev);
}

void LibeventAccept(evconnlistener* listener, evutil_socket_t fd, sockaddr*,
                    int, void*) {
  NoDelay(fd);
  bufferevent* bev = bufferevent_socket_new(evconnlistener_get_base(listener),
                                            fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(bev, LibeventRead, nullptr, LibeventEvent, nullptr);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

uint16_t StartLibevent() {
  event_base* base = event_base_new();
  if (base == nullptr) Die("event_base_new");
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  evconnlistener* listener = evconnlistener_new_bind(
      base, LibeventAccept, nullptr, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
      -1, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  if (listener == nullptr) Die("evconnlistener_new_bind");
  const uint16_t port =
      eventide::SocketAddress::LocalOf(evconnlistener_get_fd(listener))->port();
  std::thread([base] { event_base_dispatch(base); }).detach();
  return port;
}

uint16_t EventideEpoll() {
  static const uint16_t port = StartEventide("epoll");
  return port;
}
// The per-event read budget, measured: 64 KiB and 1 MiB against the
// default 256 KiB (throughput only).
uint16_t EventideEpollRead64k() {
  static const uint16_t port = StartEventide("epoll", 64 * 1024);
  return port;
}
uint16_t EventideEpollRead1m() {
  static const uint16_t port = StartEventide("epoll", 1024 * 1024);
  return port;
}
uint16_t EventideIoUring() {
  static const uint16_t port = StartEventide("io_uring");
  return port;
}
uint16_t BlockingThreads() {
  static const uint16_t port = StartBlockingThreads();
  return port;
}
uint16_t Libevent() {
  static const uint16_t port = StartLibevent();
  return port;
}

int ConnectTo(uint16_t port) {
  absl::StatusOr<eventide::UniqueFd> fd = eventide::ConnectWithTimeout(
      eventide::SocketAddress::Loopback4(port), absl::Seconds(5),
      /*nonblocking=*/true);
  if (!fd.ok()) Die(std::string(fd.status().message()));
  return fd->release();
}

// ------------------------------------------------------------- clients --

double CpuSeconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) +
         static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU time the server spent: the whole process's CPU time minus the client
// (benchmark) thread's. The other servers are idle meanwhile, so this is the
// measured server's cost, and unlike wall time it barely moves when the
// machine is busy with other work.
class ServerCpu {
 public:
  ServerCpu()
      : process_(CpuSeconds(CLOCK_PROCESS_CPUTIME_ID)),
        client_(CpuSeconds(CLOCK_THREAD_CPUTIME_ID)) {}
  double Seconds() const {
    return (CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - process_) -
           (CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - client_);
  }

 private:
  double process_;
  double client_;
};

constexpr size_t kStreamPerIteration = 4u << 20;
constexpr int kPingConnections = 100;
constexpr size_t kPingSize = 1024;

// Streams `total` bytes through `fd` and reads the same amount back.
void StreamOnce(int fd, size_t total) {
  static std::vector<char> out(256 * 1024, 'e');
  static std::vector<char> in(256 * 1024);
  size_t sent = 0;
  size_t received = 0;
  while (received < total) {
    pollfd p{fd, static_cast<short>(POLLIN | (sent < total ? POLLOUT : 0)), 0};
    if (poll(&p, 1, 5000) <= 0) Die("throughput: no progress for 5 s");
    if ((p.revents & POLLOUT) && sent < total) {
      const ssize_t w = send(fd, out.data(), std::min(out.size(), total - sent),
                             MSG_NOSIGNAL);
      if (w > 0)
        sent += static_cast<size_t>(w);
      else if (errno != EAGAIN)
        Die("throughput: send failed");
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t r = recv(fd, in.data(), in.size(), 0);
      if (r > 0)
        received += static_cast<size_t>(r);
      else if (r == 0 || errno != EAGAIN)
        Die("throughput: server closed");
    }
  }
}

void BM_Throughput(benchmark::State& state, uint16_t (*server)()) {
  const uint16_t port = server();
  const int fd = ConnectTo(port);
  StreamOnce(fd, kStreamPerIteration);  // warm up
  const ServerCpu cpu;
  for (auto _ : state) StreamOnce(fd, kStreamPerIteration);
  const double mib = static_cast<double>(state.iterations()) *
                     static_cast<double>(kStreamPerIteration) / (1 << 20);
  state.counters["server_cpu_us_per_MiB"] = cpu.Seconds() * 1e6 / mib;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(kStreamPerIteration));
  close(fd);
}

// 100 connections with one request each in flight; Run(n) returns after n
// answers. The client is level-triggered epoll, the same for every server.
class PingPongClient {
 public:
  explicit PingPongClient(uint16_t port) : epfd_(epoll_create1(EPOLL_CLOEXEC)) {
    request_.assign(kPingSize, 'p');
    for (int i = 0; i < kPingConnections; ++i) {
      const int fd = ConnectTo(port);
      fds_.push_back(fd);
      got_.push_back(0);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(i);
      epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
      Send(i);
    }
  }
  ~PingPongClient() {
    for (int fd : fds_) close(fd);
    close(epfd_);
  }

  void Run(int64_t answers) {
    epoll_event events[kPingConnections];
    char buf[kPingSize];
    while (answers > 0) {
      const int n = epoll_wait(epfd_, events, kPingConnections, 5000);
      if (n <= 0) Die("ping-pong: no progress for 5 s");
      for (int e = 0; e < n; ++e) {
        const int i = static_cast<int>(events[e].data.u32);
        const ssize_t r = recv(fds_[i], buf, kPingSize - got_[i], 0);
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN) continue;
          Die("ping-pong: server closed");
        }
        got_[i] += static_cast<size_t>(r);
        if (got_[i] == kPingSize) {
          got_[i] = 0;
          --answers;
          Send(i);
        }
      }
    }
  }

 private:
  void Send(int i) {
    // 1 KiB always fits an empty socket buffer: the previous answer is in.
    if (send(fds_[i], request_.data(), request_.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request_.size())) {
      Die("ping-pong: short send");
    }
  }

  int epfd_;
  std::string request_;
  std::vector<int> fds_;
  std::vector<size_t> got_;
};

void BM_PingPong(benchmark::State& state, uint16_t (*server)()) {
  PingPongClient client(server());
  client.Run(kPingConnections);  // warm up: every connection answered once
  const ServerCpu cpu;
  for (auto _ : state) client.Run(kPingConnections);
  state.counters["server_cpu_us_per_req"] =
      cpu.Seconds() * 1e6 /
      static_cast<double>(state.iterations() * kPingConnections);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) *
                          kPingConnections);
}

bool IoUringWorks() {
  eventide::LoopOptions options;
  options.backend.name = "io_uring";
  options.backend.ignore_environment = true;
  return eventide::EventLoop::Create(options).ok();
}

void Register() {
  struct Kind {
    const char* name;
    uint16_t (*server)();
  };
  std::vector<Kind> kinds = {{"eventide_epoll", EventideEpoll},
                             {"blocking_threads", BlockingThreads},
                             {"libevent", Libevent}};
  if (IoUringWorks()) kinds.push_back({"eventide_io_uring", EventideIoUring});
  std::vector<Kind> throughput_kinds = kinds;
  throughput_kinds.push_back({"eventide_epoll_read64k", EventideEpollRead64k});
  throughput_kinds.push_back({"eventide_epoll_read1m", EventideEpollRead1m});
  for (const Kind& k : throughput_kinds) {
    benchmark::RegisterBenchmark(
        (std::string("BM_Throughput/") + k.name).c_str(),
        [server = k.server](benchmark::State& s) { BM_Throughput(s, server); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (const Kind& k : kinds) {
    benchmark::RegisterBenchmark(
        (std::string("BM_PingPong/") + k.name).c_str(),
        [server = k.server](benchmark::State& s) { BM_PingPong(s, server); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

const bool registered = (Register(), true);

}  // namespace
