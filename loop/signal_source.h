// SignalSource: turns POSIX signals into readiness of one fd, so a loop runs
// user code for a signal between callbacks, never inside a signal handler.
//
// Two mechanisms behind one small class:
// - self-pipe: a sigaction handler bumps a per-signal counter and writes one
//   byte to the owner's pipe (EAGAIN means a wake-up is already pending);
// - signalfd: the signal is blocked in the calling thread and read from a
//   signalfd. Every other thread must block it too.
//
// A signal has at most one owner in the process: its handler and counters are
// process-wide, so two owners would steal each other's deliveries. The
// ownership table is the one piece of process-wide mutable state here.
//
// Not thread-safe: use from the owning loop's thread.
#ifndef EVENTIDE_LOOP_SIGNAL_SOURCE_H_
#define EVENTIDE_LOOP_SIGNAL_SOURCE_H_

#include <csignal>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace eventide {

class SignalSource {
 public:
  enum class Mode { kSelfPipe, kSignalFd };

  static absl::StatusOr<std::unique_ptr<SignalSource>> Create(Mode mode);
  ~SignalSource();  // gives back every signal it owns
  SignalSource(const SignalSource&) = delete;
  SignalSource& operator=(const SignalSource&) = delete;

  Mode mode() const { return mode_; }
  // Readable when a signal arrived.
  int fd() const { return read_fd_; }

  // Takes ownership of signo: InvalidArgument for a signal that cannot be
  // caught (SIGKILL, SIGSTOP) or out of range, FailedPrecondition when
  // another SignalSource owns it.
  absl::Status Add(int signo);
  // Restores the previous disposition (and, for signalfd, the previous mask).
  void Remove(int signo);

  // Empties the fd and appends each signal delivered since the last call
  // (once, however often it arrived).
  void ReadPending(std::vector<int>* signos);

  // In a child after fork(): new fds, so the parent's wake-ups do not reach
  // the child and vice versa; signals stay owned.
  absl::Status ReinitAfterFork();

 private:
  explicit SignalSource(Mode mode) : mode_(mode) {}
  absl::Status OpenFds();
  void CloseFds();
  absl::Status UpdateSignalFd();

  Mode mode_;
  int read_fd_ = -1;
  int write_fd_ = -1;  // self-pipe only
  std::vector<int> owned_;
  sigset_t mask_;                 // signalfd: the signals this source reads
  std::vector<int> was_blocked_;  // signalfd: signals blocked before Add
};

}  // namespace eventide

#endif  // EVENTIDE_LOOP_SIGNAL_SOURCE_H_
