// xthreadbench (issue 9, part 3): cross-thread message passing into an event
// loop. Every implementation provides an Endpoint: a loop (or blocking wait)
// run by one thread, and a Send() that any other thread calls to hand it one
// integer. The endpoint calls its handler on the loop thread once per
// message, in send order.
//
// All the peers and the raw floor share one queue protocol so that only the
// wake-up mechanism differs: a std::mutex-protected std::deque<int64_t>
// (MutexQueue below); a producer that finds the queue empty notifies the
// loop (empty -> non-empty, one notification per batch), and the consumer
// swaps the whole batch out under the lock and handles it after unlocking.
// Eventide uses its own EventLoop::Post (mtqueue's NotifyQueue), which is the
// thing under test.
//
// Modes (xthreadbench_main.cc):
//   throughput: one producer thread sends 1..N; the loop thread sums them.
//   pingpong:   two endpoints on two threads bounce a counter R times.
#ifndef EVENTIDE_APPS_BENCH_XTHREADBENCH_COMMON_H_
#define EVENTIDE_APPS_BENCH_XTHREADBENCH_COMMON_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace eventide_bench {

class Endpoint {
 public:
  // Called on the loop thread for each message.
  using Handler = void (*)(void* context, int64_t value);

  virtual ~Endpoint() = default;
  // Any thread but the loop's (the loop thread never sends to itself here).
  virtual void Send(int64_t value) = 0;
  // The loop thread: runs the loop until Stop(); then returns.
  virtual absl::Status Run() = 0;
  // The loop thread, from inside the handler: Run() returns after the
  // current batch.
  virtual void Stop() = 0;
};

// Creates an endpoint whose handler is `handler(context, value)`. Called on
// the main thread before the loop thread starts.
using EndpointFactory = absl::StatusOr<std::unique_ptr<Endpoint>> (*)(
    Endpoint::Handler handler, void* context);

absl::StatusOr<std::unique_ptr<Endpoint>> MakeEventideEndpoint(
    Endpoint::Handler handler, void* context);
absl::StatusOr<std::unique_ptr<Endpoint>> MakeEventideQueueEndpoint(
    Endpoint::Handler handler, void* context);
absl::StatusOr<std::unique_ptr<Endpoint>> MakeLibeventEndpoint(
    Endpoint::Handler handler, void* context);
absl::StatusOr<std::unique_ptr<Endpoint>> MakeLibevEndpoint(
    Endpoint::Handler handler, void* context);
absl::StatusOr<std::unique_ptr<Endpoint>> MakeLibuvEndpoint(
    Endpoint::Handler handler, void* context);
absl::StatusOr<std::unique_ptr<Endpoint>> MakeRawEventfdEndpoint(
    Endpoint::Handler handler, void* context);

// The peers' queue: push reports whether the queue was empty (the caller
// then notifies); the consumer takes everything at once.
class MutexQueue {
 public:
  // Any thread. True when this push made the queue non-empty.
  bool Push(int64_t value) {
    std::lock_guard<std::mutex> lock(mu_);
    items_.push_back(value);
    return items_.size() == 1;
  }
  // Consumer thread: swaps the queued items into *batch (which must be
  // empty) and returns how many there are.
  size_t TakeAll(std::deque<int64_t>* batch) {
    std::lock_guard<std::mutex> lock(mu_);
    items_.swap(*batch);
    return batch->size();
  }

 private:
  std::mutex mu_;
  std::deque<int64_t> items_;
};

// Takes the queue's batch and hands every item to the handler; returns the
// number handled. `scratch` keeps its memory between calls.
inline size_t DrainMutexQueue(MutexQueue* queue, std::deque<int64_t>* scratch,
                              Endpoint::Handler handler, void* context) {
  const size_t n = queue->TakeAll(scratch);
  for (int64_t v : *scratch) handler(context, v);
  scratch->clear();
  return n;
}

}  // namespace eventide_bench

#endif  // EVENTIDE_APPS_BENCH_XTHREADBENCH_COMMON_H_
