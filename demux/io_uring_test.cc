// Copyright 2026 The Eventide Authors.
//
// io_uring specifics the conformance suite does not reach: the graceful
// "unavailable" when the kernel refuses io_uring_setup (played with a seccomp
// filter in a child), the registry's reaction to it, and completion-queue
// overflow (more ready fds than CQ entries).

#include "demux/io_uring.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "demux/internal/seccomp_for_test.h"
#include "demux/registry.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

// Runs `body` in a child where io_uring_setup fails with `err`; returns the
// child's exit code (0 = all checks passed).
template <typename Body>
int InChildWithoutIoUring(int err, Body body) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (!demux_internal::FailSyscallForTest(SYS_io_uring_setup, err)) _exit(90);
    _exit(body());
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -2;
  return WEXITSTATUS(status);
}

TEST(IoUringBackend, RefusedSetupIsUnavailable) {
  for (int err : {EPERM, ENOSYS}) {
    EXPECT_EQ(InChildWithoutIoUring(err,
                                    [] {
                                      auto b = CreateIoUringBackend();
                                      if (!absl::IsUnavailable(b.status())) {
                                        return 1;
                                      }
                                      if (!absl::StrContains(
                                              b.status().message(),
                                              "io_uring_setup refused")) {
                                        return 2;
                                      }
                                      return 0;
                                    }),
              0)
        << "errno " << err;
  }
}

TEST(IoUringBackend, RegistryFallsBackWhenRefused) {
  EXPECT_EQ(InChildWithoutIoUring(
                EPERM,
                [] {
                  // Named: the Unavailable comes through.
                  BackendOptions named;
                  named.name = "io_uring";
                  auto s = CreateBackend(named, SelectionEnvironment{});
                  if (!absl::IsUnavailable(s.status())) {
                    return 1;
                  }
                  // Allowed among others: the next one.
                  BackendOptions any;
                  any.allow_opt_in = true;
                  any.avoid = {"epoll", "poll"};
                  any.required_features = 0;
                  auto t = CreateBackend(any, SelectionEnvironment{});
                  if (!t.ok()) return 2;
                  if (t->backend->name() != "select") {
                    return 3;
                  }
                  return 0;
                }),
            0);
}

TEST(IoUringBackend, SurvivesCompletionQueueOverflow) {
  auto created = CreateIoUringBackend();
  if (absl::IsUnavailable(created.status())) {
    GTEST_SKIP() << created.status();
  }
  ASSERT_TRUE(created.ok()) << created.status();
  Backend& backend = **created;
  // More ready fds than CQ entries (8192): the first Wait's arming posts
  // more completions than fit; none may be lost.
  constexpr int kFds = 10000;
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < kFds + 64) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, kFds + 64);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < kFds + 64) GTEST_SKIP() << "RLIMIT_NOFILE too low";
  std::vector<int> fds;
  for (int i = 0; i < kFds; ++i) {
    const int fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);  // readable
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    ASSERT_TRUE(backend.Add(fd, kReadable).ok());
  }
  for (int round = 0; round < 2; ++round) {
    std::set<int> seen;
    std::vector<ReadyEvent> out;
    for (int i = 0; i < 20 && seen.size() < fds.size(); ++i) {
      ASSERT_TRUE(backend.Wait(absl::Milliseconds(100), &out).ok());
      for (const ReadyEvent& e : out) {
        EXPECT_EQ(e.events, kReadable);
        seen.insert(e.fd);
      }
    }
    EXPECT_EQ(seen.size(), fds.size()) << "round " << round;
  }
  for (int fd : fds) {
    ASSERT_TRUE(backend.Remove(fd).ok());
    close(fd);
  }
}

}  // namespace
}  // namespace eventide
