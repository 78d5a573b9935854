// Helpers for the fault and load suites (issue 10): watch a server process
// from outside through /proc (CPU time, resident memory, open fds), start it
// with a low RLIMIT_NOFILE, push bytes at it while draining its replies, and
// close a socket abortively (RST).
//
// Every wait here is bounded by a deadline. Functions that read /proc answer
// an error status when the process is gone or the file cannot be parsed.
//
// Thread safety: the /proc readers and RandomBytes() may be called from any
// thread. SetChildSanitizerOptions() and RaiseNofileLimit() change process
// state: call them from the test's main thread before starting any thread.
//
// Usage:
//   RaiseNofileLimit(4096);
//   auto server = StartWithNofileLimit(64, cached_path, {"-p", "0", ...});
//   absl::StatusOr<double> share = CpuShareOver((*server)->pid(),
//                                               absl::Seconds(1));
//   absl::StatusOr<int64_t> rss_kb = RssKb((*server)->pid());
#ifndef EVENTIDE_TESTS_FAULT_TEST_UTIL_H_
#define EVENTIDE_TESTS_FAULT_TEST_UTIL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/cached_test_util.h"

namespace eventide {
namespace fault_test {

// How this test binary was built. The servers in its runfiles are built
// the same way (one --config for the whole build).
bool UnderAsan();
bool UnderTsan();
inline bool UnderSanitizer() { return UnderAsan() || UnderTsan(); }

// A memory bound in KiB stated for a plain build, scaled for this build:
// ASan adds redzones and 1/8 shadow (x2); TSan's shadow is several times the
// application memory it covers (x5).
int64_t ScaledKb(int64_t kb);

// Under ASan, appends quarantine_size_mb=16 to ASAN_OPTIONS so that server
// children started afterwards do not hold up to 256 MB of freed memory in
// quarantine, which would make RSS bounds meaningless. No-op otherwise.
void SetChildSanitizerOptions();

// Raises this process's soft RLIMIT_NOFILE to min(want, hard limit) if it is
// lower; children inherit it. Returns the soft limit now in force.
uint64_t RaiseNofileLimit(uint64_t want);

// An integer from the environment, or `fallback` if unset or not a number.
int64_t EnvInt(const char* name, int64_t fallback);

// CPU time (user + system) the process has used so far.
absl::StatusOr<absl::Duration> CpuTime(pid_t pid);
// CPU time used during `window` divided by `window` (1.0 = one core busy).
absl::StatusOr<double> CpuShareOver(pid_t pid, absl::Duration window);
// Resident set size (VmRSS) in KiB.
absl::StatusOr<int64_t> RssKb(pid_t pid);
// Number of open file descriptors (entries of /proc/<pid>/fd).
absl::StatusOr<int> OpenFdCount(pid_t pid);

// `n` pseudo-random bytes, the same for the same seed (std::mt19937_64).
std::string RandomBytes(size_t n, uint64_t seed);

// Closes the first `n` clients whose entry in `served` is true (in index
// order), freeing their connections in the server. Returns how many it
// closed.
int CloseServed(std::vector<cached_test::Client>& clients,
                const std::vector<bool>& served, int n);

// Sets SO_LINGER {on, 0} and closes: the kernel sends RST instead of FIN and
// discards unsent data.
void AbortiveClose(cached_test::Client& client);

// Starts `path` with `args` through //tests:with_nofile_limit, so that its
// soft RLIMIT_NOFILE is `limit` (the test's data must list
// //tests:with_nofile_limit). The program must print a "listening on" line
// as for ServerProcess::StartListening.
absl::StatusOr<std::unique_ptr<cached_test::ServerProcess>>
StartWithNofileLimit(int limit, const std::string& path,
                     const std::vector<std::string>& args);

// The outcome of Pump().
struct PumpResult {
  size_t sent = 0;       // bytes of `data` the kernel took
  std::string received;  // the first `keep` bytes received
  size_t received_total = 0;
  bool closed_by_peer = false;  // EOF, ECONNRESET or EPIPE seen
  bool timed_out = false;       // the deadline came first
  std::string error;            // another socket error, if any
};

// Writes `data` on the non-blocking socket `fd` in pieces of at most `piece`
// bytes (0: as much as the kernel takes) while reading whatever comes back,
// so that a server whose replies fill the socket never deadlocks the
// writer. Returns once everything is sent and at least `want_received`
// bytes arrived, or the peer closed, or at `deadline`. Keeps the first
// `keep` received bytes.
PumpResult Pump(int fd, absl::string_view data, size_t piece,
                size_t want_received, absl::Time deadline,
                size_t keep = 1 << 20);

// Polls `pred` every `step` until it is true or `timeout` passes; returns
// its last answer.
template <typename Pred>
bool WaitFor(Pred pred, absl::Duration timeout,
             absl::Duration step = absl::Milliseconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(step);
  }
}

// Calls `count` now and then every `step` until two answers in a row agree
// or `timeout` passes; returns its last answer. For "wait until the server
// stops making progress", e.g. until it has run out of fds and no further
// client gets served.
template <typename Count>
int WaitUntilStable(Count count, absl::Duration timeout,
                    absl::Duration step = absl::Milliseconds(500)) {
  int last = -1;
  int now = count();
  const absl::Time deadline = absl::Now() + timeout;
  while (now != last && absl::Now() < deadline) {
    absl::SleepFor(step);
    last = now;
    now = count();
  }
  return now;
}

}  // namespace fault_test
}  // namespace eventide

#endif  // EVENTIDE_TESTS_FAULT_TEST_UTIL_H_
