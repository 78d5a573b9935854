// Benchmarks for NotifyQueue. Build and run with --config=bench:
//   ./bazelw run --config=bench //mtqueue:notify_queue_benchmark --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// (one command line).
//
// Every benchmark runs its producers on their own std::threads and uses the
// benchmark's thread as the consumer, which waits with poll(2) as an event
// loop would. Times are wall-clock (UseRealTime): the work is spread over
// threads.
//
//   BM_Throughput<Kind>/producers:N  items/s from N producers to one
//                                    consumer, unbounded queue of uint64_t.
//   BM_PingPong<Kind>                one item there and back between two
//                                    threads through two queues: the wake-up
//                                    round-trip latency.
//   BM_Mode2Pipe*/bytes:S            the seed's mode (2): every S-byte message
//                                    written whole into a pipe (one write(2)
//                                    each). "BulkRead": the consumer reads up
//                                    to 64 KiB at once (the best case for the
//                                    pipe); "ReadEach": one read(2) per
//                                    message (a naive consumer).
//   BM_Mode3Queue/bytes:S            mode (3): the same messages pushed into a
//                                    NotifyQueue whose capacity equals the
//                                    pipe's 64 KiB buffer (FullPolicy::kBlock),
//                                    one wake-up byte per batch.
#include <benchmark/benchmark.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "mtqueue/notify_queue.h"

namespace eventide {
namespace {

struct EventFd {
  static constexpr NotifierKind kKind = NotifierKind::kEventFd;
};
struct Pipe {
  static constexpr NotifierKind kKind = NotifierKind::kPipe;
};

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "notify_queue_benchmark: %s: %s\n", what, strerror(errno));
  abort();
}

template <typename T>
std::unique_ptr<NotifyQueue<T>> MakeQueue(NotifyQueueOptions options) {
  auto q = NotifyQueue<T>::Create(options);
  if (!q.ok()) {
    fprintf(stderr, "NotifyQueue::Create: %s\n", q.status().ToString().c_str());
    abort();
  }
  return *std::move(q);
}

void WaitReadable(int fd) {
  pollfd p{fd, POLLIN, 0};
  while (poll(&p, 1, -1) < 0) {
    if (errno != EINTR) Die("poll");
  }
}

// Splits `total` items over `n` producers.
int64_t Share(int64_t total, int n, int i) {
  return total / n + (i < total % n ? 1 : 0);
}

// Starts producer threads that wait for `go` before running.
class Producers {
 public:
  template <typename Fn>
  Producers(int n, Fn fn) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, fn, i] {
        while (!go_.load(std::memory_order_acquire)) std::this_thread::yield();
        fn(i);
      });
    }
  }
  void Go() { go_.store(true, std::memory_order_release); }
  ~Producers() {
    Go();
    for (std::thread& t : threads_) t.join();
  }

 private:
  std::atomic<bool> go_{false};
  std::vector<std::thread> threads_;
};

template <typename Kind>
void BM_Throughput(benchmark::State& state) {
  const int producers = static_cast<int>(state.range(0));
  NotifyQueueOptions options;
  options.notifier = Kind::kKind;
  auto q = MakeQueue<uint64_t>(options);
  const int64_t total = static_cast<int64_t>(state.max_iterations);
  {
    Producers threads(producers, [&](int p) {
      const int64_t n = Share(total, producers, p);
      for (int64_t i = 0; i < n; ++i) {
        if (!q->Push(static_cast<uint64_t>(i)).ok()) abort();
      }
    });
    int64_t available = 0;
    size_t wakeups = 0;
    threads.Go();
    for (auto _ : state) {
      while (available == 0) {
        WaitReadable(q->fd());
        ++wakeups;
        available += static_cast<int64_t>(
            q->Drain([](uint64_t&& v) { benchmark::DoNotOptimize(v); }));
      }
      --available;
    }
    state.counters["items_per_wakeup"] =
        static_cast<double>(state.iterations()) / static_cast<double>(wakeups);
  }
  state.counters["writes_per_item"] =
      static_cast<double>(q->notifications_written()) /
      static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_Throughput, EventFd)
    ->ArgName("producers")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Throughput, Pipe)
    ->ArgName("producers")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();

template <typename Kind>
void BM_PingPong(benchmark::State& state) {
  NotifyQueueOptions options;
  options.notifier = Kind::kKind;
  auto ping = MakeQueue<uint64_t>(options);
  auto pong = MakeQueue<uint64_t>(options);
  std::thread echo([&] {
    for (;;) {
      WaitReadable(ping->fd());
      const bool was_closed = ping->closed();
      ping->Drain([&](uint64_t&& v) {
        if (!pong->Push(v).ok()) abort();
      });
      if (was_closed) return;
    }
  });
  uint64_t i = 0;
  for (auto _ : state) {
    if (!ping->Push(i).ok()) abort();
    uint64_t got = ~uint64_t{0};
    do {
      WaitReadable(pong->fd());
    } while (pong->Drain([&](uint64_t&& v) { got = v; }) == 0);
    if (got != i) abort();
    ++i;
  }
  ping->Close();
  echo.join();
}
BENCHMARK_TEMPLATE(BM_PingPong, EventFd)->UseRealTime();
BENCHMARK_TEMPLATE(BM_PingPong, Pipe)->UseRealTime();

// A message of S bytes whose first 8 hold a sequence number.
template <size_t S>
struct Message {
  static_assert(S >= sizeof(uint64_t), "room for the sequence number");
  char bytes[S];

  void Fill(uint64_t seq) {
    memset(bytes, static_cast<int>(seq & 0x7f), S);
    memcpy(bytes, &seq, sizeof(seq));
  }
  uint64_t seq() const {
    uint64_t v;
    memcpy(&v, bytes, sizeof(v));
    return v;
  }
};

constexpr size_t kPipeBuffer = 64 * 1024;  // Linux default pipe capacity

template <size_t S, bool kBulkRead>
void BM_Mode2Pipe(benchmark::State& state) {
  static_assert(S <= PIPE_BUF, "writes up to PIPE_BUF are atomic");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) Die("pipe2");
  // The consumer waits with poll, as a loop would; the producer blocks in
  // write(2) when the pipe is full.
  if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) Die("fcntl");
  const int64_t total = static_cast<int64_t>(state.max_iterations);
  // A multiple of S, so reads never split a message (each write is atomic
  // and the pipe therefore always holds whole messages).
  constexpr size_t kReadSize = kBulkRead ? (kPipeBuffer / S) * S : S;
  std::vector<char> buf(kReadSize);
  {
    Producers producer(1, [&](int) {
      Message<S> m;
      for (int64_t i = 0; i < total; ++i) {
        m.Fill(static_cast<uint64_t>(i));
        ssize_t n;
        do {
          n = write(fds[1], m.bytes, S);
        } while (n < 0 && errno == EINTR);
        if (n != static_cast<ssize_t>(S)) Die("write");
      }
    });
    uint64_t expected = 0;
    size_t available = 0;
    const char* next = nullptr;
    producer.Go();
    for (auto _ : state) {
      while (available == 0) {
        const ssize_t n = read(fds[0], buf.data(), buf.size());
        if (n > 0) {
          if (n % S != 0) Die("split message");
          available = static_cast<size_t>(n) / S;
          next = buf.data();
        } else if (n < 0 && errno == EAGAIN) {
          WaitReadable(fds[0]);
        } else if (n < 0 && errno != EINTR) {
          Die("read");
        }
      }
      Message<S> m;
      memcpy(m.bytes, next, S);  // hand the message to its handler
      if (m.seq() != expected) abort();
      benchmark::DoNotOptimize(m);
      ++expected;
      next += S;
      --available;
    }
  }
  close(fds[0]);
  close(fds[1]);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(S));
}
BENCHMARK_TEMPLATE(BM_Mode2Pipe, 16, true)
    ->Name("BM_Mode2PipeBulkRead/bytes:16")
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Mode2Pipe, 256, true)
    ->Name("BM_Mode2PipeBulkRead/bytes:256")
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Mode2Pipe, 16, false)
    ->Name("BM_Mode2PipeReadEach/bytes:16")
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Mode2Pipe, 256, false)
    ->Name("BM_Mode2PipeReadEach/bytes:256")
    ->UseRealTime();

template <size_t S>
void BM_Mode3Queue(benchmark::State& state) {
  NotifyQueueOptions options;
  options.notifier = NotifierKind::kAuto;
  options.capacity = kPipeBuffer / S;  // the same buffering as the pipe
  options.full_policy = NotifyQueueOptions::FullPolicy::kBlock;
  auto q = MakeQueue<Message<S>>(options);
  const int64_t total = static_cast<int64_t>(state.max_iterations);
  {
    Producers producer(1, [&](int) {
      Message<S> m;
      for (int64_t i = 0; i < total; ++i) {
        m.Fill(static_cast<uint64_t>(i));
        if (!q->Push(m).ok()) abort();
      }
    });
    uint64_t expected = 0;
    int64_t available = 0;
    producer.Go();
    for (auto _ : state) {
      while (available == 0) {
        WaitReadable(q->fd());
        available += static_cast<int64_t>(q->Drain([&](Message<S>&& m) {
          if (m.seq() != expected) abort();
          benchmark::DoNotOptimize(m);
          ++expected;
        }));
      }
      --available;
    }
  }
  state.counters["writes_per_item"] =
      static_cast<double>(q->notifications_written()) /
      static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(S));
}
BENCHMARK_TEMPLATE(BM_Mode3Queue, 16)
    ->Name("BM_Mode3Queue/bytes:16")
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Mode3Queue, 256)
    ->Name("BM_Mode3Queue/bytes:256")
    ->UseRealTime();

}  // namespace
}  // namespace eventide
