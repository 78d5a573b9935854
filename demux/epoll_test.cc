// Copyright 2026 The Eventide Authors.
//
// epoll specifics the conformance suite does not reach: the epoll_pwait2
// probe and its fallback (played with a seccomp filter in a child), the
// growth of the event buffer (and that a small buffer starves no fd), and
// the always-ready emulation for regular files with kEdgeTriggered.

#include "demux/epoll.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "demux/internal/seccomp_for_test.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

bool KernelHasEpollPwait2() {
#ifdef SYS_epoll_pwait2
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev;
  struct timespec zero = {0, 0};
  const bool ok =
      syscall(SYS_epoll_pwait2, epfd, &ev, 1, &zero, nullptr, 0) >= 0;
  close(epfd);
  return ok;
#else
  return false;
#endif
}

TEST(EpollBackend, UsesEpollPwait2WhenTheKernelHasIt) {
  auto b = CreateEpollBackend();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(
      (*b)->capabilities().timeout_resolution,
      KernelHasEpollPwait2() ? absl::Nanoseconds(1) : absl::Milliseconds(1));
  BackendOptions off;
  off.epoll_use_pwait2 = false;
  b = CreateEpollBackend(off);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->capabilities().timeout_resolution, absl::Milliseconds(1));
}

// A kernel (or seccomp profile) without epoll_pwait2: init falls back to
// epoll_wait, timeouts are rounded up to whole milliseconds, and readiness
// still works. Checked in a child; exit codes tell the parent what failed.
TEST(EpollBackend, FallsBackToEpollWaitWithoutPwait2) {
#ifndef SYS_epoll_pwait2
  GTEST_SKIP() << "headers without SYS_epoll_pwait2";
#else
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!demux_internal::FailSyscallForTest(SYS_epoll_pwait2, ENOSYS)) {
      _exit(10);
    }
    auto b = CreateEpollBackend();
    if (!b.ok()) _exit(11);
    Backend& backend = **b;
    if (backend.capabilities().timeout_resolution != absl::Milliseconds(1)) {
      _exit(12);
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK) != 0) _exit(13);
    if (!backend.Add(fds[0], kReadable).ok()) _exit(14);
    std::vector<ReadyEvent> out;
    // 0.4ms is rounded up to 1ms, never down to a 0ms poll.
    const auto start = std::chrono::steady_clock::now();
    if (!backend.Wait(absl::Microseconds(400), &out).ok()) _exit(15);
    if (!out.empty()) _exit(16);
    if (std::chrono::steady_clock::now() - start <
        std::chrono::microseconds(400)) {
      _exit(17);
    }
    if (write(fds[1], "x", 1) != 1) _exit(18);
    if (!backend.Wait(absl::Seconds(2), &out).ok()) _exit(19);
    if (out.size() != 1 || out[0].fd != fds[0] || out[0].events != kReadable) {
      _exit(20);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
#endif
}

// With a one-entry buffer that may grow to 8, 1,000 ready fds are all
// reported within a bounded number of waits: epoll rotates its ready list,
// so no fd is starved by a small buffer.
TEST(EpollBackend, SmallEventBufferGrowsAndStarvesNoFd) {
  BackendOptions options;
  options.epoll_initial_events = 1;
  options.epoll_max_events = 8;
  auto b = CreateEpollBackend(options);
  ASSERT_TRUE(b.ok()) << b.status();
  Backend& backend = **b;
  std::vector<int> fds;
  for (int i = 0; i < 1000; ++i) {
    fds.push_back(eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC));
    ASSERT_GE(fds.back(), 0);
    ASSERT_TRUE(backend.Add(fds.back(), kReadable).ok());
  }
  std::set<int> seen;
  std::vector<ReadyEvent> out;
  size_t largest = 0;
  for (int i = 0; i < 400 && seen.size() < fds.size(); ++i) {
    ASSERT_TRUE(backend.Wait(absl::ZeroDuration(), &out).ok());
    largest = std::max(largest, out.size());
    for (const ReadyEvent& e : out) seen.insert(e.fd);
  }
  EXPECT_EQ(seen.size(), fds.size());
  EXPECT_EQ(largest, 8u);
  for (int fd : fds) {
    EXPECT_TRUE(backend.Remove(fd).ok());
    close(fd);
  }
}

// epoll refuses regular files (EPERM); the backend reports them always
// ready. Edge-triggered: once after Add and after each Modify.
TEST(EpollBackend, RegularFileEdgeTriggeredReportsOncePerModify) {
  auto b = CreateEpollBackend();
  ASSERT_TRUE(b.ok()) << b.status();
  Backend& backend = **b;
  const char* dir = getenv("TEST_TMPDIR");
  std::string path = std::string(dir ? dir : "/tmp") + "/epoll_file_XXXXXX";
  const int fd = mkstemp(path.data());
  ASSERT_GE(fd, 0);
  unlink(path.c_str());
  ASSERT_TRUE(backend.Add(fd, kReadable | kEdgeTriggered).ok());
  std::vector<ReadyEvent> out;
  ASSERT_TRUE(backend.Wait(absl::Seconds(1), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].events, kReadable);
  ASSERT_TRUE(backend.Wait(absl::Milliseconds(10), &out).ok());
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(backend.Modify(fd, kWritable | kEdgeTriggered).ok());
  ASSERT_TRUE(backend.Wait(absl::Seconds(1), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].events, kWritable);
  ASSERT_TRUE(backend.Wait(absl::Milliseconds(10), &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(backend.Remove(fd).ok());
  close(fd);
}

}  // namespace
}  // namespace eventide
