// Loop benchmarks (build with --config=bench):
//   BM_EmptyIteration    one RunOnce(false) with watchers registered but
//                        nothing ready: the fixed cost of an iteration.
//   BM_FireDueTimers     N already-due timers fired by one iteration,
//                        reported per timer.
//   BM_CrossThreadPost   a producer thread Post()s tasks, the loop runs them;
//                        items/s.
//   BM_PipeEcho          one byte bounced through a socketpair per iteration:
//                        readiness -> callback -> read, per round trip.
#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "loop/event_loop.h"

namespace eventide {
namespace {

std::unique_ptr<EventLoop> MakeLoop(const std::string& backend) {
  LoopOptions options;
  options.backend.name = backend;
  options.backend.ignore_environment = true;
  auto loop = EventLoop::Create(options);
  if (!loop.ok()) return nullptr;
  return std::move(*loop);
}

const char* BackendName(int index) {
  static const char* const kNames[] = {"epoll", "poll", "select", "io_uring"};
  return kNames[index];
}

void BM_EmptyIteration(benchmark::State& state) {
  auto loop = MakeLoop(BackendName(state.range(0)));
  if (!loop) {
    state.SkipWithError("backend unavailable");
    return;
  }
  state.SetLabel(BackendName(state.range(0)));
  int fds[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds);
  auto w = loop->WatchIo(fds[0], kReadable, [](const IoEvent&) {});
  Timer t = loop->AddTimer(absl::Hours(1), [] {});
  for (auto _ : state) {
    benchmark::DoNotOptimize(loop->RunOnce(false));
  }
  w->Release();
  close(fds[0]);
  close(fds[1]);
}
BENCHMARK(BM_EmptyIteration)->DenseRange(0, 3);

void BM_FireDueTimers(benchmark::State& state) {
  auto loop = MakeLoop("epoll");
  const int n = static_cast<int>(state.range(0));
  int64_t fired = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<Timer> timers;
    timers.reserve(n);
    const MonoTime due = loop->Now();
    for (int i = 0; i < n; ++i) {
      timers.push_back(loop->AddTimerAt(due, [&fired] { ++fired; }));
    }
    state.ResumeTiming();
    benchmark::DoNotOptimize(loop->RunOnce(false));
    state.PauseTiming();
    timers.clear();
    state.ResumeTiming();
  }
  if (fired != n * static_cast<int64_t>(state.iterations())) {
    state.SkipWithError("not every timer fired");
  }
  state.SetItemsProcessed(fired);
}
BENCHMARK(BM_FireDueTimers)
    ->Arg(1000)
    ->Arg(1000000)
    ->Unit(benchmark::kMillisecond);

constexpr int kPostBatch = 100000;

void BM_CrossThreadPost(benchmark::State& state) {
  auto loop = MakeLoop("epoll");
  for (auto _ : state) {
    int ran = 0;
    std::thread producer([&] {
      for (int i = 0; i < kPostBatch; ++i) {
        (void)loop->Post([&ran, &loop] {
          if (++ran == kPostBatch) loop->Stop();
        });
      }
    });
    (void)loop->Run(EventLoop::RunMode::kUntilStopped);
    producer.join();
  }
  state.SetItemsProcessed(state.iterations() * kPostBatch);
}
BENCHMARK(BM_CrossThreadPost)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PipeEcho(benchmark::State& state) {
  auto loop = MakeLoop(BackendName(state.range(0)));
  if (!loop) {
    state.SkipWithError("backend unavailable");
    return;
  }
  state.SetLabel(BackendName(state.range(0)));
  int fds[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds);
  int64_t reads = 0;
  auto w = loop->WatchIo(fds[0], kReadable, [&](const IoEvent&) {
    char c;
    if (read(fds[0], &c, 1) == 1) ++reads;
  });
  for (auto _ : state) {
    if (write(fds[1], "x", 1) != 1) state.SkipWithError("write failed");
    benchmark::DoNotOptimize(loop->RunOnce(true));
  }
  if (reads != static_cast<int64_t>(state.iterations())) {
    state.SkipWithError("a byte was not delivered");
  }
  w->Release();
  close(fds[0]);
  close(fds[1]);
}
BENCHMARK(BM_PipeEcho)->DenseRange(0, 3);

}  // namespace
}  // namespace eventide
