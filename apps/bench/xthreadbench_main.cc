// xthreadbench: messages from other threads into an event loop.
//
//   xthreadbench --list
//   xthreadbench --impl=libuv --mode=throughput [--messages=1000000]
//   xthreadbench --impl=libuv --mode=pingpong [--round-trips=100000]
//   common: [--repetitions=5] [--timeout-s=120]
//
// throughput: the main thread is the producer. It first sends a warm-up
// message and waits until the loop thread has handled it (so the loop is
// running), then sends 1..N as fast as it can. Timed from just before the
// first Send to the handler of the last message; the loop thread sums the
// values and the run fails unless it saw N messages summing to N(N+1)/2.
//
// pingpong: endpoints A and B on two threads. A sends k to B, B's handler
// sends k back to A, A's handler checks it got k and sends k+1. The first
// 1,000 round trips warm up; each of the next R is timed on A (one clock
// read per round trip). Reports mean, median, min and p99 in µs.
//
// One JSON line per run; each statistic is the median over repetitions
// (with "_min" / "_max" and "_runs"). Exits 1 with a reason on stderr when a
// check fails or the run exceeds --timeout-s, 2 on bad flags.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "apps/bench/bench_util.h"
#include "apps/bench/xthreadbench_common.h"

namespace eventide_bench {
namespace {

struct Impl {
  const char* name;
  EndpointFactory make;
};

constexpr Impl kImpls[] = {
    {"eventide-epoll", MakeEventideEndpoint},
    {"eventide-mtqueue", MakeEventideQueueEndpoint},
    {"libevent", MakeLibeventEndpoint},
    {"libev", MakeLibevEndpoint},
    {"libuv", MakeLibuvEndpoint},
    {"raw-eventfd", MakeRawEventfdEndpoint},
};

constexpr int64_t kWarmupRoundTrips = 1000;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr char kProgram[] = "xthreadbench";

[[noreturn]] void Fail(const std::string& why) {
  std::fprintf(stderr, "xthreadbench: %s\n", why.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

// Kills the process if a run takes longer than the limit (a lost message
// would otherwise hang both threads forever).
class Watchdog {
 public:
  Watchdog(int64_t seconds, std::string what)
      : thread_([this, seconds, what] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, std::chrono::seconds(seconds),
                            [this] { return done_; })) {
            Fail(absl::StrCat(what, ": no completion within ", seconds,
                              " s (lost message?)"));
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// ------------------------------------------------------------ throughput --

struct ThroughputState {
  Endpoint* endpoint = nullptr;
  uint64_t expected = 0;
  std::atomic<bool> ready{false};
  uint64_t count = 0;  // loop thread only, until joined
  int64_t sum = 0;
  int64_t end_ns = 0;
};

void OnThroughputMessage(void* context, int64_t value) {
  auto* s = static_cast<ThroughputState*>(context);
  if (value < 0) {  // warm-up
    s->ready.store(true, std::memory_order_release);
    return;
  }
  s->sum += value;
  if (++s->count == s->expected) {
    s->end_ns = NowNs();
    s->endpoint->Stop();
  }
}

// Returns messages per second.
double RunThroughput(const Impl& impl, uint64_t messages, int64_t timeout_s) {
  ThroughputState state;
  state.expected = messages;
  absl::StatusOr<std::unique_ptr<Endpoint>> endpoint =
      impl.make(&OnThroughputMessage, &state);
  if (!endpoint.ok()) {
    Fail(absl::StrCat(impl.name, ": ", endpoint.status().ToString()));
  }
  state.endpoint = endpoint->get();
  Watchdog watchdog(timeout_s, absl::StrCat(impl.name, " throughput"));
  absl::Status loop_status;
  std::thread loop_thread([&] { loop_status = state.endpoint->Run(); });
  state.endpoint->Send(-1);
  while (!state.ready.load(std::memory_order_acquire)) {
    std::this_thread::yield();
  }
  const int64_t start_ns = NowNs();
  for (uint64_t v = 1; v <= messages; ++v) {
    state.endpoint->Send(static_cast<int64_t>(v));
  }
  loop_thread.join();
  if (!loop_status.ok()) {
    Fail(absl::StrCat(impl.name, ": loop failed: ", loop_status.ToString()));
  }
  const int64_t want = static_cast<int64_t>(messages * (messages + 1) / 2);
  if (state.count != messages || state.sum != want) {
    Fail(absl::StrCat(impl.name, ": consumed ", state.count, " messages, sum ",
                      state.sum, "; expected ", messages, ", sum ", want));
  }
  return messages * 1e9 / static_cast<double>(state.end_ns - start_ns);
}

// -------------------------------------------------------------- pingpong --

struct PingPongState {
  Endpoint* a = nullptr;
  Endpoint* b = nullptr;
  int64_t total = 0;  // warm-up + timed round trips
  int64_t expected = 0;
  int64_t last_ns = 0;
  std::vector<int64_t> rtt_ns;
  std::string error;    // A's thread only
  int64_t b_count = 0;  // B's thread only
};

constexpr int64_t kStart = -1;
constexpr int64_t kStop = -2;

void OnPing(void* context, int64_t value) {  // A
  auto* s = static_cast<PingPongState*>(context);
  const int64_t now = NowNs();
  if (value == kStart) {
    s->last_ns = now;
    s->b->Send(0);
    return;
  }
  if (value != s->expected) {
    s->error = absl::StrCat("A got ", value, ", expected ", s->expected);
    s->a->Stop();
    s->b->Send(kStop);
    return;
  }
  if (value >= kWarmupRoundTrips) s->rtt_ns.push_back(now - s->last_ns);
  s->last_ns = now;
  ++s->expected;
  if (s->expected == s->total) {
    s->a->Stop();
    s->b->Send(kStop);
  } else {
    s->b->Send(s->expected);
  }
}

void OnPong(void* context, int64_t value) {  // B
  auto* s = static_cast<PingPongState*>(context);
  if (value == kStop) {
    s->b->Stop();
    return;
  }
  ++s->b_count;
  s->a->Send(value);
}

struct PingPongResult {
  double mean_us, median_us, min_us, p99_us;
};

PingPongResult RunPingPong(const Impl& impl, int64_t round_trips,
                           int64_t timeout_s) {
  PingPongState state;
  state.total = kWarmupRoundTrips + round_trips;
  state.rtt_ns.reserve(static_cast<size_t>(round_trips));
  absl::StatusOr<std::unique_ptr<Endpoint>> a = impl.make(&OnPing, &state);
  if (!a.ok()) Fail(absl::StrCat(impl.name, ": ", a.status().ToString()));
  absl::StatusOr<std::unique_ptr<Endpoint>> b = impl.make(&OnPong, &state);
  if (!b.ok()) Fail(absl::StrCat(impl.name, ": ", b.status().ToString()));
  state.a = a->get();
  state.b = b->get();
  Watchdog watchdog(timeout_s, absl::StrCat(impl.name, " pingpong"));
  absl::Status a_status, b_status;
  std::thread b_thread([&] { b_status = state.b->Run(); });
  std::thread a_thread([&] { a_status = state.a->Run(); });
  state.a->Send(kStart);
  a_thread.join();
  b_thread.join();
  if (!a_status.ok() || !b_status.ok()) {
    Fail(absl::StrCat(impl.name, ": loop failed: ", a_status.ToString(), " / ",
                      b_status.ToString()));
  }
  if (!state.error.empty()) Fail(absl::StrCat(impl.name, ": ", state.error));
  if (static_cast<int64_t>(state.rtt_ns.size()) != round_trips ||
      state.b_count != state.total) {
    Fail(absl::StrCat(impl.name, ": timed ", state.rtt_ns.size(), " of ",
                      round_trips, " round trips; B echoed ", state.b_count,
                      " of ", state.total));
  }
  std::vector<int64_t>& v = state.rtt_ns;
  double sum = 0;
  for (int64_t x : v) sum += static_cast<double>(x);
  std::sort(v.begin(), v.end());
  PingPongResult r;
  r.mean_us = sum / static_cast<double>(v.size()) / 1e3;
  r.median_us = v[v.size() / 2] / 1e3;
  r.min_us = v.front() / 1e3;
  r.p99_us = v[std::min(v.size() - 1, v.size() * 99 / 100)] / 1e3;
  return r;
}

// ------------------------------------------------------------------ main --

std::string Stats(absl::string_view key, const std::vector<double>& v) {
  return JsonStats(key, v, JsonStatsFields::kWithMax);
}

int Main(int argc, char** argv) {
  std::string impl_name, mode;
  uint64_t messages = 1000000, round_trips = 100000, repetitions = 5;
  uint64_t timeout_s = 120;
  ParseKeyValueFlags(
      argc, argv, kProgram, ImplNames(kImpls),
      [&](absl::string_view key, absl::string_view value) {
        bool ok = true;
        if (key == "--impl") {
          impl_name = std::string(value);
        } else if (key == "--mode") {
          mode = std::string(value);
          ok = mode == "throughput" || mode == "pingpong";
        } else if (key == "--messages") {
          ok = absl::SimpleAtoi(value, &messages) && messages > 0 &&
               messages < (uint64_t{1} << 31);
        } else if (key == "--round-trips") {
          ok = absl::SimpleAtoi(value, &round_trips) && round_trips > 0 &&
               round_trips < (uint64_t{1} << 31);
        } else if (key == "--repetitions") {
          ok = absl::SimpleAtoi(value, &repetitions) && repetitions > 0;
        } else if (key == "--timeout-s") {
          ok = absl::SimpleAtoi(value, &timeout_s) && timeout_s > 0;
        } else {
          return FlagResult::kUnknown;
        }
        return ok ? FlagResult::kOk : FlagResult::kBadValue;
      });
  if (mode.empty()) {
    UsageError(kProgram, "--mode=throughput or --mode=pingpong is required");
  }
  const Impl* impl = &FindImpl(kImpls, impl_name, kProgram);

  std::string json =
      absl::StrCat("{\"bench\":\"xthreadbench\",\"impl\":\"", impl->name,
                   "\",\"mode\":\"", mode, "\",\"repetitions\":", repetitions);
  const auto timeout = static_cast<int64_t>(timeout_s);
  if (mode == "throughput") {
    std::vector<double> rate, ns;
    for (uint64_t rep = 0; rep < repetitions; ++rep) {
      rate.push_back(RunThroughput(*impl, messages, timeout));
      ns.push_back(1e9 / rate.back());
    }
    absl::StrAppend(&json, ",\"messages\":", messages,
                    ",\"consumed\":", messages * repetitions,
                    ",\"sum_checked\":true,", Stats("msgs_per_s", rate), ",",
                    Stats("ns_per_msg", ns), "}");
  } else {
    std::vector<double> mean, median, min, p99;
    for (uint64_t rep = 0; rep < repetitions; ++rep) {
      const PingPongResult r =
          RunPingPong(*impl, static_cast<int64_t>(round_trips), timeout);
      mean.push_back(r.mean_us);
      median.push_back(r.median_us);
      min.push_back(r.min_us);
      p99.push_back(r.p99_us);
    }
    absl::StrAppend(&json, ",\"round_trips\":", round_trips,
                    ",\"warmup_round_trips\":", kWarmupRoundTrips,
                    ",\"completed\":", round_trips * repetitions, ",",
                    Stats("mean_us", mean), ",", Stats("median_us", median),
                    ",", Stats("min_us", min), ",", Stats("p99_us", p99), "}");
  }
  std::printf("%s\n", json.c_str());
  return 0;
}

}  // namespace
}  // namespace eventide_bench

int main(int argc, char** argv) { return eventide_bench::Main(argc, argv); }
