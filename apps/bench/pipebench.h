// pipebench: the classic event-library benchmark (libevent's test/bench.c,
// also behind libev's published comparison), one workload run by several
// implementations (Eventide on each backend, libevent, libev, libuv and a raw
// epoll loop with no library).
//
// Workload: N socketpairs, a persistent read watcher on each. Each iteration
//   1. re-registers every watcher (delete + add; with --timeout every watcher
//      also gets its idle timeout armed again) and runs the loop once,
//      non-blocking, untimed;
//   2. writes one byte into A pipes spaced N/A apart;
//   3. runs the loop non-blocking-once repeatedly until every byte written is
//      read. Each read callback reads its byte and, while the write budget W
//      lasts, writes one byte into the next pair (idx + 1 mod N). Only this
//      phase is timed. It must take exactly A + W callbacks.
//
// This header holds what every implementation shares: the workload state and
// the read callback's body (inline, so each library pays the same for it),
// and the small interface each implementation file fills in.
//
// Threads: everything runs on the main thread.
#ifndef EVENTIDE_APPS_BENCH_PIPEBENCH_H_
#define EVENTIDE_APPS_BENCH_PIPEBENCH_H_

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace eventide {
namespace pipebench {

// The state the read callbacks touch. Owned by the driver; implementations
// keep a pointer to it.
struct Workload {
  int pipes = 0;
  std::vector<int> read_fds;   // [i]: the end watched for pair i
  std::vector<int> write_fds;  // [i]: the end written to wake pair i
  // --timeout: every watcher's idle timeout, drawn once per pipe from a fixed
  // seed in [10 s, 11 s) with millisecond resolution (libuv's unit), so it
  // never fires during a run and every implementation gets the same values.
  bool with_timeout = false;
  std::vector<int64_t> timeout_ms;

  // Per iteration (reset by the driver).
  int64_t bytes_read = 0;   // the original's `count`
  int64_t fired = 0;        // bytes written: seeds + chain writes
  int64_t writes_left = 0;  // the write budget
  int64_t callbacks = 0;    // read callbacks run
  int64_t failures = 0;     // read/write that did not move one byte
  // Over the whole run: idle timeouts that fired (must stay 0).
  int64_t timeouts_fired = 0;

  // The body of every implementation's read callback for pair `idx`.
  void OnReadable(int idx) {
    ++callbacks;
    unsigned char ch;
    if (read(read_fds[idx], &ch, 1) == 1) {
      ++bytes_read;
    } else {
      ++failures;
    }
    if (writes_left > 0) {
      int next = idx + 1;
      if (next >= pipes) next -= pipes;
      if (write(write_fds[next], "e", 1) != 1) ++failures;
      --writes_left;
      ++fired;
    }
  }

  void OnTimeout() { ++timeouts_fired; }
};

// One event library driving the workload.
class Impl {
 public:
  virtual ~Impl() = default;
  // Creates the loop and one persistent read watcher per pipe (with an idle
  // timeout of workload->timeout_ms[i] when workload->with_timeout), active
  // or not. `workload` outlives the Impl. Errors: OutOfRange or Unavailable
  // mean "this implementation cannot run this configuration" (e.g. select
  // and fds >= FD_SETSIZE); anything else is a failure.
  virtual absl::Status Init(Workload* workload) = 0;
  // Untimed: stops and starts every watcher again (and re-arms its idle
  // timeout), as the original's event_del + event_set + event_add.
  virtual absl::Status Reregister() = 0;
  // One pass of the loop that never blocks.
  virtual absl::Status RunOnceNonBlocking() = 0;
};

// One factory per implementation file.
// `backend`: "epoll", "poll", "select" or "io_uring".
std::unique_ptr<Impl> MakeEventideImpl(const std::string& backend);
std::unique_ptr<Impl> MakeLibeventImpl();
std::unique_ptr<Impl> MakeLibevImpl();
std::unique_ptr<Impl> MakeLibuvImpl();
std::unique_ptr<Impl> MakeRawEpollImpl();

}  // namespace pipebench
}  // namespace eventide

#endif  // EVENTIDE_APPS_BENCH_PIPEBENCH_H_
