// Copyright 2026 The Eventide Authors.
//
// Test-only: checks which system call a backend's Wait uses for a poll, a
// short finite wait and an infinite wait, by making one call fail (seccomp)
// in a forked child. epoll and poll both keep their nanosecond call
// (epoll_pwait2, ppoll) for finite waits only.

#ifndef EVENTIDE_DEMUX_INTERNAL_WAIT_DISPATCH_FOR_TEST_H_
#define EVENTIDE_DEMUX_INTERNAL_WAIT_DISPATCH_FOR_TEST_H_

#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "absl/time/time.h"
#include "demux/backend.h"
#include "demux/internal/seccomp_for_test.h"

namespace eventide {
namespace demux_internal {

// Runs `body` in a forked child, so that a seccomp filter it installs stays
// there, and returns the child's exit code (body's return value), or -1 if
// the child did not exit normally.
template <typename Body>
int ExitCodeOfChild(Body body) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) _exit(body());
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// In a child: creates a backend with `create` (a callable returning
// absl::StatusOr<std::unique_ptr<Backend>>), then makes syscall `blocked`
// fail and waits three ways. `finite_call` is the call that must serve the
// finite wait; the poll and the infinite wait must use the other one. Returns
// 0, or the number of the step that went wrong.
template <typename Create>
int WaitDispatchExitCode(Create create, long blocked, long finite_call) {
  return ExitCodeOfChild([&] {
    auto b = create();
    if (!b.ok()) return 10;
    Backend& backend = **b;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK) != 0) return 11;
    if (!backend.Add(fds[0], kReadable).ok()) return 12;
    if (!FailSyscallForTest(blocked, EPERM)) return 13;
    const bool finite_blocked = blocked == finite_call;
    std::vector<ReadyEvent> out;
    // A poll with nothing ready.
    if (backend.Wait(absl::ZeroDuration(), &out).ok() != finite_blocked) {
      return 14;
    }
    // A finite wait that times out, below a millisecond.
    if (backend.Wait(absl::Microseconds(300), &out).ok() == finite_blocked) {
      return 15;
    }
    // An infinite wait, with the pipe ready so that it returns.
    if (write(fds[1], "x", 1) != 1) return 16;
    if (backend.Wait(absl::InfiniteDuration(), &out).ok() != finite_blocked) {
      return 17;
    }
    if (finite_blocked && (out.size() != 1 || out[0].fd != fds[0])) {
      return 18;
    }
    return 0;
  });
}

}  // namespace demux_internal
}  // namespace eventide

#endif  // EVENTIDE_DEMUX_INTERNAL_WAIT_DISPATCH_FOR_TEST_H_
