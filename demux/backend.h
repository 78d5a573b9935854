// Copyright 2026 The Eventide Authors.
//
// The I/O multiplexing interface: one abstract `Backend` with one
// implementation per kernel mechanism (epoll, poll, select, io_uring). It is
// the C++ form of libevent's `eventop` table: construction is `init`,
// destruction is `dealloc`, `Add`/`Modify`/`Remove` are `add`/`del`, `Wait` is
// `dispatch`, and `capabilities().needs_reinit_after_fork` is `need_reinit`.
//
// Vocabulary: an fd, an interest bitmask and readiness bits of our own. No
// epoll/poll/io_uring type appears here, so the loop is written once for all
// backends. Pick a backend with //demux:registry (`CreateBackend`), or create
// one directly with its factory (e.g. `CreateEpollBackend`).
//
// Guarantees every backend gives (checked by tests/demux_conformance_test.cc):
//  - Level-triggered by default: an fd whose interest is satisfied is reported
//    by every `Wait` until the condition goes away (data read, buffer drained,
//    interest changed). With `kEdgeTriggered` (only where
//    `capabilities().edge_triggered`), an fd is reported once per new readiness
//    (a new wake-up from the kernel), and again after `Modify`.
//  - At most one `ReadyEvent` per fd per `Wait`; `events` is never 0.
//  - Reported bits: `kReadable`/`kWritable` only if asked for. `kError` and
//    `kHangup` whenever they hold and the fd has a non-zero interest (where
//    `capabilities().reports_error_and_hangup`; select cannot tell them apart
//    from readiness). On error or hang-up the fd is also reported with each of
//    its interest bits, so a handler that only looks at kReadable/kWritable
//    still runs and sees EOF or the error from read()/write().
//  - `kHangup` means the peer will send nothing more: a pipe whose writers are
//    all closed, a socket whose peer shut down its sending side or that was
//    reset. It is only requested (as RDHUP) while kReadable is in the interest,
//    so a write-only watcher is not woken by a half-close.
//  - Interest 0 is allowed: the fd stays registered (Add again fails, Modify
//    re-enables it) but nothing at all is reported for it, not even an error.
//  - A regular file (or anything the kernel cannot poll) is always ready for
//    its interest, as poll(2) defines it; epoll, which refuses such fds, fakes
//    that.
//  - `Remove` takes effect at once: no event for the removed fd is reported by
//    a later `Wait`, even if the same fd number is added again meanwhile.
//  - Remove an fd *before* closing it. Closing a registered fd is a caller
//    error: `Wait` still succeeds and `Remove` still works afterwards, but what
//    is reported in between differs: epoll forgets the fd (unless the file
//    was dup()ed: then it may go on reporting it until Remove; the kernel
//    entry that Remove can no longer delete is dropped by the next Wait,
//    which rebuilds the epoll set),
//    io_uring's poll keeps the file open until Remove, poll and select report
//    kError.
//
// Errors are `absl::Status` naming the backend, the operation and the fd, with
// the errno text where there is one:
//   InvalidArgument  fd < 0, fd not open (EBADF), unknown interest bits,
//                    kEdgeTriggered on a backend without it
//   AlreadyExists    Add of an fd that is already registered
//   NotFound         Modify/Remove of an fd that is not registered
//   OutOfRange       fd above capabilities().max_fd (select: >= FD_SETSIZE)
//   Unavailable      (factories) the kernel refuses the mechanism
//
// Threads: a backend is not thread-safe. All calls on one backend must come
// from one thread at a time (the loop's thread); different backends are
// independent. The backend owns its kernel object (epoll fd, io_uring ring);
// it never owns or closes the fds registered with it.
//
// Example:
//   absl::StatusOr<eventide::BackendSelection> s = eventide::CreateBackend();
//   if (!s.ok()) return s.status();
//   eventide::Backend& b = *s->backend;
//   RETURN_IF_ERROR(b.Add(sock, eventide::kReadable));
//   std::vector<eventide::ReadyEvent> ready;
//   RETURN_IF_ERROR(b.Wait(absl::Milliseconds(10), &ready));
//   for (const eventide::ReadyEvent& e : ready) { ... e.fd, e.events ... }

#ifndef EVENTIDE_DEMUX_BACKEND_H_
#define EVENTIDE_DEMUX_BACKEND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace eventide {

// Interest and readiness bits.
enum : uint32_t {
  kReadable = 1u << 0,  // interest and readiness
  kWritable = 1u << 1,  // interest and readiness
  kError = 1u << 2,     // readiness only; accepted (and ignored) in an interest
  kHangup = 1u << 3,    // readiness only; accepted (and ignored) in an interest
  // Interest flag: report each readiness once (see above). Backends without
  // `capabilities().edge_triggered` reject it with InvalidArgument.
  kEdgeTriggered = 1u << 4,
};

// Every bit Add/Modify accept; anything else is InvalidArgument.
inline constexpr uint32_t kAllInterestBits =
    kReadable | kWritable | kError | kHangup | kEdgeTriggered;

struct ReadyEvent {
  int fd;
  uint32_t events;  // kReadable | kWritable | kError | kHangup
};

struct BackendCapabilities {
  // kEdgeTriggered accepted.
  bool edge_triggered = false;
  // true: the mechanism reports each readiness once and cannot keep reporting
  // it; false: level-triggered, keeps reporting while ready. False for every
  // backend here (io_uring emulates level-triggering on top of multishot
  // poll); a future kqueue-like backend without level mode would say true.
  bool reports_once = false;
  // Largest fd number Add accepts; -1 = no limit beyond RLIMIT_NOFILE.
  int max_fd = -1;
  // The kernel object is shared with a child after fork(): the child must
  // destroy its copy of the backend (that only releases the child's
  // references; the parent is unaffected) and create a new one, adding its
  // fds again. When false the child may go on using the copy it inherited.
  bool needs_reinit_after_fork = false;
  // Timeouts are rounded up to a multiple of this (1ms for epoll_wait, 1ns
  // for epoll_pwait2, ppoll, pselect and io_uring).
  absl::Duration timeout_resolution = absl::Milliseconds(1);
  // Wait's cost grows with the number of ready fds, not registered ones.
  bool scalable = false;
  // kError and kHangup are reported as such (false: select, which only sees
  // "readable"/"writable" for them).
  bool reports_error_and_hangup = true;
};

// Features a caller can require from the registry (BackendOptions::
// required_features); each is a test on BackendCapabilities.
enum BackendFeature : uint32_t {
  kFeatureEdgeTriggered = 1u << 0,      // capabilities().edge_triggered
  kFeatureUnlimitedFds = 1u << 1,       // max_fd == -1
  kFeatureScalable = 1u << 2,           // scalable
  kFeatureNoReinitAfterFork = 1u << 3,  // !needs_reinit_after_fork
  kFeatureErrorAndHangup = 1u << 4,     // reports_error_and_hangup
  kFeaturePreciseTimeout = 1u << 5,     // timeout_resolution < 1ms
  kFeatureLevelTriggered = 1u << 6,     // !reports_once
};

// The BackendFeature bits that `caps` satisfies.
uint32_t FeaturesOf(const BackendCapabilities& caps);
// "edge-triggered|scalable" (for messages).
std::string FeatureNames(uint32_t features);

// How to choose and configure a backend. The selection fields are read by
// //demux:registry; the tuning fields by the backend they name. A default
// constructed BackendOptions is right for almost everyone.
struct BackendOptions {
  // --- selection (registry) ---
  // Explicit choice ("epoll", "poll", "select", "io_uring"); "" = the first in
  // order of preference that initialises and fits the rest.
  std::string name;
  // Names never to use (libevent's event_config_avoid_method).
  std::vector<std::string> avoid;
  // BackendFeature bits the backend must have.
  uint32_t required_features = 0;
  // Do not read EVENTIDE_BACKEND. (It is never read in a setuid/setgid
  // process either.)
  bool ignore_environment = false;
  // Let the registry pick opt-in backends (io_uring) without naming them.
  bool allow_opt_in = false;

  // --- tuning (backends) ---
  // epoll: initial size of the epoll_wait buffer; it doubles while full, up
  // to epoll_max_events. Any number of ready fds is reported eventually (the
  // rest come on the next Wait).
  int epoll_initial_events = 64;
  int epoll_max_events = 4096;
  // epoll: use epoll_pwait2 (ns timeouts) when the kernel has it. Off = always
  // epoll_wait (ms timeouts); for tests and broken kernels.
  bool epoll_use_pwait2 = true;
  // epoll: defer Modify to the next Wait and apply only the net change
  // (libevent's changelist, for Modify only: Add and Remove are applied at
  // once so errors are immediate and close() after Remove is safe).
  bool epoll_batch_modify = true;
  // io_uring: submission queue entries (the completion queue is larger, see
  // io_uring.cc).
  unsigned io_uring_entries = 256;
};

// The interface. See the contract at the top of this file.
class Backend {
 public:
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  Backend(Backend&&) = delete;
  Backend& operator=(Backend&&) = delete;
  // Releases the kernel object. Never touches registered fds. Safe to call in
  // a forked child on the copy inherited from the parent.
  virtual ~Backend() = default;

  // "epoll", "poll", "select", "io_uring".
  virtual absl::string_view name() const = 0;
  virtual BackendCapabilities capabilities() const = 0;

  // Starts watching `fd` for `interest` (kReadable | kWritable, optionally
  // kEdgeTriggered; 0 = registered but silent).
  virtual absl::Status Add(int fd, uint32_t interest) = 0;
  // Replaces the interest of a registered fd.
  virtual absl::Status Modify(int fd, uint32_t interest) = 0;
  // Stops watching `fd`. Call it before close(fd).
  virtual absl::Status Remove(int fd) = 0;

  // Clears *out, waits up to `timeout` for readiness (absl::ZeroDuration() or
  // negative: poll without blocking; absl::InfiniteDuration(): block), and
  // appends the ready fds. Returns early with zero events on EINTR (OkStatus;
  // a real signal, or the spurious one Linux delivers to a thread after it
  // closed an io_uring ring) or when a timeout above ~24 days is clamped, so
  // callers recompute their deadline and wait again. Timeouts are rounded up
  // to `capabilities().timeout_resolution`, never down.
  virtual absl::Status Wait(absl::Duration timeout,
                            std::vector<ReadyEvent>* out) = 0;
};

}  // namespace eventide

#endif  // EVENTIDE_DEMUX_BACKEND_H_
