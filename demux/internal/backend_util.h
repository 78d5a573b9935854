// Copyright 2026 The Eventide Authors.
//
// Private helpers shared by the backends in //demux: error statuses in one
// format, interest validation, the readiness normalisation every backend
// applies, poll(2) mask conversions and timeout rounding. Not a public API.

#ifndef EVENTIDE_DEMUX_INTERNAL_BACKEND_UTIL_H_
#define EVENTIDE_DEMUX_INTERNAL_BACKEND_UTIL_H_

#include <time.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "demux/backend.h"

namespace eventide {
namespace demux_internal {

// Longest wait handed to the kernel: INT_MAX ms (~24.8 days), the epoll_wait
// and poll limit, used by every backend so they behave alike. Longer waits
// return early with zero events.
inline constexpr absl::Duration kMaxWait = absl::Milliseconds(INT_MAX);

// "<backend>: <op>(fd=<fd>): <strerror(err)>" with the absl code for `err`.
absl::Status ErrnoError(int err, absl::string_view backend,
                        absl::string_view op, int fd);
// Same, for calls without an fd ("epoll_create1").
absl::Status ErrnoError(int err, absl::string_view backend,
                        absl::string_view op);

// InvalidArgument unless `fd` is an open descriptor (fd < 0, EBADF).
absl::Status CheckFdOpen(int fd, absl::string_view backend,
                         absl::string_view op);

// InvalidArgument for unknown bits, or kEdgeTriggered when !edge_supported.
absl::Status ValidateInterest(uint32_t interest, bool edge_supported,
                              absl::string_view backend, absl::string_view op,
                              int fd);

absl::Status AlreadyRegistered(absl::string_view backend, int fd);

// The checks every backend's Add makes before it touches its tables, in one
// order so that every backend names the same first problem: unknown interest
// bits (or edge-triggered where unsupported), a negative fd, an fd above
// `max_fd` (-1: no limit; OutOfRange), an fd already registered
// (`is_registered` is asked only for 0 <= fd <= max_fd), a closed fd.
absl::Status CheckAdd(int fd, uint32_t interest, bool edge_supported,
                      int max_fd, absl::FunctionRef<bool(int)> is_registered,
                      absl::string_view backend);

// Grows a table indexed by fd (doubling, so a run of Adds with rising fds
// stays amortised O(1)) and returns the fd's element.
template <typename T>
T& GrowFor(std::vector<T>& table, int fd) {
  const size_t need = static_cast<size_t>(fd) + 1;
  if (need > table.size()) {
    table.resize(std::max(need, table.size() * 2));
  }
  return table[static_cast<size_t>(fd)];
}

absl::Status NotRegistered(absl::string_view backend, absl::string_view op,
                           int fd);

// The bits of `interest` that select what is reported.
inline uint32_t ReadWriteBits(uint32_t interest) {
  return interest & (kReadable | kWritable);
}

// Applies the reporting contract of backend.h to raw readiness `ready`:
// keep what was asked for plus error/hang-up, and on error/hang-up add the
// interest bits so a read/write handler runs and sees EOF or the error.
// Returns 0 when nothing is to be reported (including interest 0).
inline uint32_t Normalize(uint32_t ready, uint32_t interest) {
  const uint32_t rw = ReadWriteBits(interest);
  if (rw == 0) return 0;
  uint32_t out = ready & (rw | kError | kHangup);
  if (out & (kError | kHangup)) out |= rw;
  return out;
}

// poll(2)/io_uring poll masks. RDHUP is only requested with kReadable (a
// write-only watcher must not be woken, level-triggered, by a half-close).
uint32_t PollMaskFor(uint32_t interest);
// POLLIN/POLLPRI -> kReadable, POLLOUT -> kWritable, POLLERR/POLLNVAL ->
// kError, POLLHUP/POLLRDHUP -> kHangup.
uint32_t EventsFromPollMask(uint32_t revents);

// Milliseconds for epoll_wait/poll: -1 for infinite, 0 for <= 0, otherwise
// rounded up (0.4ms -> 1ms, never 0) and clamped to kMaxWait.
int TimeoutMillisRoundedUpSlow(absl::Duration timeout);
inline int TimeoutMillisRoundedUp(absl::Duration timeout) {
  // A poll, the loop's non-blocking pass, without a call and Duration
  // arithmetic.
  if (timeout == absl::ZeroDuration()) return 0;
  return TimeoutMillisRoundedUpSlow(timeout);
}
// A wait that may block for a finite time: the only kind whose nanoseconds
// matter. Zero (a poll) and infinite waits mean the same to the millisecond
// calls (epoll_wait, poll), which are cheaper than their timespec variants.
inline bool IsFiniteBlockingWait(absl::Duration timeout) {
  return timeout > absl::ZeroDuration() && timeout != absl::InfiniteDuration();
}
// Exact timespec for ppoll/pselect/epoll_pwait2/io_uring. Returns false for
// an infinite timeout (pass NULL); negative becomes zero; clamped to kMaxWait.
bool TimeoutTimespec(absl::Duration timeout, struct timespec* ts);

}  // namespace demux_internal
}  // namespace eventide

#endif  // EVENTIDE_DEMUX_INTERNAL_BACKEND_UTIL_H_
