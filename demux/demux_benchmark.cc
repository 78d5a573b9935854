// Copyright 2026 The Eventide Authors.
//
// One wait-and-dispatch round over N registered fds with K of them ready,
// for every backend, plus the cost of Add/Remove and Modify. Build and run:
//   ./bazelw run --config=bench //demux:demux_benchmark --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// (one command line)
// Compare ratios within one run (the machine is shared and noisy).
//
// fds are eventfds (one fd each, readable while the counter is non-zero).
//  BM_Wait         K fds stay ready; each round is Wait(0) + a dispatch loop
//                  over the results (level-triggered steady state).
//  BM_WaitConsume  each round makes K fds ready (write), waits, and the
//                  dispatch reads each reported fd: the usual reactor cycle,
//                  and the case io_uring's multishot poll is built for. The
//                  2K write/read calls are the same for every backend.
//  BM_WaitConsumeEdge  the same with kEdgeTriggered (epoll, io_uring).
//  BM_AddRemove    Add + Remove of one fd next to 1,000 registered ones.
//  BM_ModifyToggle Modify(R|W), Modify(R), Wait(0): the net change is zero
//                  (what epoll's Modify batching saves).
//  BM_ModifyOnce   one real Modify per Wait(0) (what batching costs).
// "epoll_unbatched" is epoll with BackendOptions::epoll_batch_modify off.

#include <benchmark/benchmark.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "demux/backend.h"
#include "demux/registry.h"

namespace eventide {
namespace {

struct Variant {
  std::string label;
  BackendOptions options;
};

std::vector<Variant> Variants(bool with_unbatched) {
  std::vector<Variant> variants;
  for (const std::string& name : AvailableBackendNames()) {
    Variant v;
    v.label = name;
    v.options.name = name;
    v.options.ignore_environment = true;
    variants.push_back(v);
    if (name == "epoll" && with_unbatched) {
      v.label = "epoll_unbatched";
      v.options.epoll_batch_modify = false;
      variants.push_back(v);
    }
  }
  return variants;
}

std::unique_ptr<Backend> MakeBackend(const BackendOptions& options) {
  absl::StatusOr<BackendSelection> s =
      CreateBackend(options, SelectionEnvironment{});
  if (!s.ok()) return nullptr;
  return std::move(s->backend);
}

// N registered eventfds; closes them on destruction.
class FdSet {
 public:
  FdSet(Backend& backend, int n, uint32_t interest) {
    fds_.reserve(n);
    for (int i = 0; i < n; ++i) {
      const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (fd < 0) {
        ok_ = false;
        return;
      }
      fds_.push_back(fd);
      const int max_fd = backend.capabilities().max_fd;
      if ((max_fd != -1 && fd > max_fd) || !backend.Add(fd, interest).ok()) {
        ok_ = false;
        return;
      }
    }
  }
  ~FdSet() {
    for (int fd : fds_) close(fd);
  }
  bool ok() const { return ok_; }
  int operator[](int i) const { return fds_[i]; }

 private:
  std::vector<int> fds_;
  bool ok_ = true;
};

// Spread the K active fds over the N registered ones.
int ActiveIndex(int i, int n, int k) {
  return static_cast<int>(static_cast<int64_t>(i) * n / k);
}

void BM_Wait(benchmark::State& state, BackendOptions options) {
  const int n = static_cast<int>(state.range(0));
  const int k = static_cast<int>(state.range(1));
  std::unique_ptr<Backend> backend = MakeBackend(options);
  if (backend == nullptr) return state.SkipWithError("backend unavailable");
  FdSet fds(*backend, n, kReadable);
  if (!fds.ok()) return state.SkipWithError("cannot register N fds");
  const uint64_t one = 1;
  for (int i = 0; i < k; ++i) {
    if (write(fds[ActiveIndex(i, n, k)], &one, sizeof(one)) != 8) {
      return state.SkipWithError("write");
    }
  }
  std::vector<ReadyEvent> out;
  // Warm up (io_uring arms its polls, epoll grows its buffer).
  for (int i = 0; i < 8; ++i) (void)backend->Wait(absl::ZeroDuration(), &out);
  for (auto _ : state) {
    (void)backend->Wait(absl::ZeroDuration(), &out);
    int64_t sum = 0;
    for (const ReadyEvent& e : out) sum += e.fd + e.events;
    benchmark::DoNotOptimize(sum);
    if (static_cast<int>(out.size()) != k) {
      return state.SkipWithError("wrong number of ready fds");
    }
  }
  state.SetItemsProcessed(state.iterations() * k);
}

void WaitConsume(benchmark::State& state, BackendOptions options,
                 uint32_t interest) {
  const int n = static_cast<int>(state.range(0));
  const int k = static_cast<int>(state.range(1));
  std::unique_ptr<Backend> backend = MakeBackend(options);
  if (backend == nullptr) return state.SkipWithError("backend unavailable");
  if ((interest & kEdgeTriggered) && !backend->capabilities().edge_triggered) {
    return state.SkipWithError("no edge-triggered mode");
  }
  FdSet fds(*backend, n, interest);
  if (!fds.ok()) return state.SkipWithError("cannot register N fds");
  std::vector<ReadyEvent> out;
  const uint64_t one = 1;
  uint64_t value;
  (void)backend->Wait(absl::ZeroDuration(), &out);
  for (auto _ : state) {
    for (int i = 0; i < k; ++i) {
      (void)!write(fds[ActiveIndex(i, n, k)], &one, sizeof(one));
    }
    int seen = 0;
    // Usually one Wait; a backend may need more to report all K.
    for (int tries = 0; seen < k && tries < 16; ++tries) {
      (void)backend->Wait(absl::ZeroDuration(), &out);
      for (const ReadyEvent& e : out) {
        (void)!read(e.fd, &value, sizeof(value));
        ++seen;
      }
    }
    if (seen != k) return state.SkipWithError("lost readiness");
  }
  state.SetItemsProcessed(state.iterations() * k);
}

void BM_WaitConsume(benchmark::State& state, BackendOptions options) {
  WaitConsume(state, options, kReadable);
}

void BM_WaitConsumeEdge(benchmark::State& state, BackendOptions options) {
  WaitConsume(state, options, kReadable | kEdgeTriggered);
}

void BM_AddRemove(benchmark::State& state, BackendOptions options) {
  std::unique_ptr<Backend> backend = MakeBackend(options);
  if (backend == nullptr) return state.SkipWithError("backend unavailable");
  FdSet background(*backend, 1000, kReadable);
  if (!background.ok()) return state.SkipWithError("cannot register fds");
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::vector<ReadyEvent> out;
  (void)backend->Wait(absl::ZeroDuration(), &out);
  for (auto _ : state) {
    if (!backend->Add(fd, kReadable).ok() || !backend->Remove(fd).ok()) {
      return state.SkipWithError("Add/Remove failed");
    }
  }
  // Leave nothing queued (io_uring) before the fd goes away.
  (void)backend->Wait(absl::ZeroDuration(), &out);
  close(fd);
}

void ModifyBench(benchmark::State& state, BackendOptions options, bool toggle) {
  std::unique_ptr<Backend> backend = MakeBackend(options);
  if (backend == nullptr) return state.SkipWithError("backend unavailable");
  FdSet fds(*backend, 100, kReadable);
  if (!fds.ok()) return state.SkipWithError("cannot register fds");
  std::vector<ReadyEvent> out;
  (void)backend->Wait(absl::ZeroDuration(), &out);
  bool write_on = false;
  const int fd = fds[50];
  // An eventfd is always writable: with kWritable it is reported, so the
  // rounds that end with write interest also pay for one event.
  for (auto _ : state) {
    if (toggle) {
      (void)backend->Modify(fd, kReadable | kWritable);
      (void)backend->Modify(fd, kReadable);
    } else {
      write_on = !write_on;
      (void)backend->Modify(fd, write_on ? kReadable | kWritable : kReadable);
    }
    (void)backend->Wait(absl::ZeroDuration(), &out);
    benchmark::DoNotOptimize(out.size());
  }
}

void BM_ModifyToggle(benchmark::State& state, BackendOptions options) {
  ModifyBench(state, options, true);
}

void BM_ModifyOnce(benchmark::State& state, BackendOptions options) {
  ModifyBench(state, options, false);
}

void RegisterAll() {
  const std::vector<std::pair<int, int>> sizes = {
      {100, 1},     {100, 100}, {1000, 1},    {1000, 100},
      {1000, 1000}, {10000, 1}, {10000, 100}, {10000, 1000}};
  for (const Variant& v : Variants(false)) {
    for (const auto& [n, k] : sizes) {
      if (v.label == "select" && n > 1000) continue;  // FD_SETSIZE
      benchmark::RegisterBenchmark(("BM_Wait/" + v.label).c_str(), BM_Wait,
                                   v.options)
          ->Args({n, k})
          ->ArgNames({"N", "K"});
      benchmark::RegisterBenchmark(("BM_WaitConsume/" + v.label).c_str(),
                                   BM_WaitConsume, v.options)
          ->Args({n, k})
          ->ArgNames({"N", "K"});
      if (v.label == "epoll" || v.label == "io_uring") {
        benchmark::RegisterBenchmark(("BM_WaitConsumeEdge/" + v.label).c_str(),
                                     BM_WaitConsumeEdge, v.options)
            ->Args({n, k})
            ->ArgNames({"N", "K"});
      }
    }
  }
  for (const Variant& v : Variants(true)) {
    benchmark::RegisterBenchmark(("BM_AddRemove/" + v.label).c_str(),
                                 BM_AddRemove, v.options);
    benchmark::RegisterBenchmark(("BM_ModifyToggle/" + v.label).c_str(),
                                 BM_ModifyToggle, v.options);
    benchmark::RegisterBenchmark(("BM_ModifyOnce/" + v.label).c_str(),
                                 BM_ModifyOnce, v.options);
  }
}

}  // namespace
}  // namespace eventide

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  eventide::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
