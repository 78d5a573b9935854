// Copyright 2026 The Eventide Authors.
//
// epoll specifics the conformance suite does not reach: the epoll_pwait2
// probe and its fallback (played with a seccomp filter in a child), the
// growth of the event buffer (and that a small buffer starves no fd), the
// always-ready emulation for regular files with kEdgeTriggered, and the
// rebuild that drops the kernel's entry for a file closed before Remove
// while a dup() lives (checked against the kernel's own list in
// /proc/self/fdinfo).

#include "demux/epoll.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "demux/internal/seccomp_for_test.h"
#include "demux/internal/wait_dispatch_for_test.h"
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
  const int exit_code = demux_internal::ExitCodeOfChild([] {
    if (!demux_internal::FailSyscallForTest(SYS_epoll_pwait2, ENOSYS)) {
      return 10;
    }
    auto b = CreateEpollBackend();
    if (!b.ok()) return 11;
    Backend& backend = **b;
    if (backend.capabilities().timeout_resolution != absl::Milliseconds(1)) {
      return 12;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK) != 0) return 13;
    if (!backend.Add(fds[0], kReadable).ok()) return 14;
    std::vector<ReadyEvent> out;
    // 0.4ms is rounded up to 1ms, never down to a 0ms poll.
    const auto start = std::chrono::steady_clock::now();
    if (!backend.Wait(absl::Microseconds(400), &out).ok()) return 15;
    if (!out.empty()) return 16;
    if (std::chrono::steady_clock::now() - start <
        std::chrono::microseconds(400)) {
      return 17;
    }
    if (write(fds[1], "x", 1) != 1) return 18;
    if (!backend.Wait(absl::Seconds(2), &out).ok()) return 19;
    if (out.size() != 1 || out[0].fd != fds[0] || out[0].events != kReadable) {
      return 20;
    }
    return 0;
  });
  EXPECT_EQ(exit_code, 0);
#endif
}

// With epoll_pwait2 available, it serves only finite waits that may block
// (their nanoseconds matter); polls and infinite waits go to the cheaper
// epoll_wait. In a child, each system call in turn is made to fail after the
// backend was created: a wait that used it reports the error.
TEST(EpollBackend, PollsAndInfiniteWaitsUseEpollWait) {
#ifndef SYS_epoll_pwait2
  GTEST_SKIP() << "headers without SYS_epoll_pwait2";
#else
  if (!KernelHasEpollPwait2()) GTEST_SKIP() << "kernel without epoll_pwait2";
  for (const long blocked : {long{SYS_epoll_pwait2}, long{SYS_epoll_wait}}) {
    SCOPED_TRACE(blocked == SYS_epoll_wait ? "epoll_wait fails"
                                           : "epoll_pwait2 fails");
    EXPECT_EQ(
        demux_internal::WaitDispatchExitCode(
            [] { return CreateEpollBackend(); }, blocked, SYS_epoll_pwait2),
        0);
  }
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

// The fd numbers registered in this process's epoll sets, as the kernel lists
// them: one "tfd:" line per registration in the fdinfo of an epoll fd. The
// calling test must own no epoll set but its backend's.
std::multiset<int> KernelRegistrations() {
  std::multiset<int> tfds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return tfds;
  while (struct dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    char target[256];
    const std::string link = "/proc/self/fd/" + name;
    const ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (std::string(target) != "anon_inode:[eventpoll]") continue;
    FILE* info = fopen(("/proc/self/fdinfo/" + name).c_str(), "r");
    if (info == nullptr) continue;
    char line[512];
    while (fgets(line, sizeof(line), info) != nullptr) {
      int tfd;
      if (sscanf(line, "tfd: %d", &tfd) == 1) tfds.insert(tfd);
    }
    fclose(info);
  }
  closedir(dir);
  return tfds;
}

struct TestPipe {
  TestPipe() {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
      r = fds[0];
      w = fds[1];
    }
  }
  ~TestPipe() {
    if (r >= 0) close(r);
    if (w >= 0) close(w);
  }
  int r = -1;
  int w = -1;
};

// Milliseconds a Wait with `timeout` took; *out gets what it reported.
int64_t TimedWaitMs(Backend& backend, absl::Duration timeout,
                    std::vector<ReadyEvent>* out) {
  const absl::Time start = absl::Now();
  EXPECT_TRUE(backend.Wait(timeout, out).ok());
  return absl::ToInt64Milliseconds(absl::Now() - start);
}

// The caller error of backend.h (closed before Remove), with a dup() keeping
// the file open and readable: Remove's DEL finds the number closed, and the
// kernel keeps reporting the file under its old token. That must not wake
// every Wait for as long as the dup lives: the first wait learns of the
// entry and rebuilds the set, and from then on waits time out. The other
// registration survives the rebuild and still reports.
TEST(EpollBackend, ClosedBeforeRemoveWhileADupLivesStopsWakingWait) {
  for (const bool batch : {true, false}) {
    SCOPED_TRACE(batch ? "batched changes" : "immediate changes");
    BackendOptions options;
    options.epoll_batch_modify = batch;
    auto b = CreateEpollBackend(options);
    ASSERT_TRUE(b.ok()) << b.status();
    Backend& backend = **b;
    TestPipe p, other;
    ASSERT_GE(p.r, 0);
    ASSERT_GE(other.r, 0);
    const int dup_fd = dup(p.r);
    ASSERT_GE(dup_fd, 0);
    const int number = p.r;
    ASSERT_TRUE(backend.Add(number, kReadable).ok());
    ASSERT_TRUE(backend.Add(other.r, kReadable).ok());
    ASSERT_EQ(write(p.w, "x", 1), 1);  // never read: level-triggered ready
    close(p.r);
    p.r = -1;
    ASSERT_TRUE(backend.Remove(number).ok());
    EXPECT_EQ(KernelRegistrations(), (std::multiset<int>{number, other.r}))
        << "the kernel kept the closed number's entry";

    std::vector<ReadyEvent> out;
    TimedWaitMs(backend, absl::Milliseconds(50), &out);  // finds the entry
    EXPECT_TRUE(out.empty());
    for (int i = 0; i < 3; ++i) {
      EXPECT_GE(TimedWaitMs(backend, absl::Milliseconds(50), &out), 40)
          << "wait " << i << " woken by the closed file";
      EXPECT_TRUE(out.empty());
    }
    EXPECT_EQ(KernelRegistrations(), std::multiset<int>{other.r});

    ASSERT_EQ(write(other.w, "y", 1), 1);
    ASSERT_TRUE(backend.Wait(absl::Seconds(1), &out).ok());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].fd, other.r);
    EXPECT_TRUE(backend.Remove(other.r).ok());
    EXPECT_TRUE(KernelRegistrations().empty());
    close(dup_fd);
  }
}

// Two caller errors at once: fd `a` is closed without Remove and its number
// is reused by a new file that was never added; then another file, closed
// before Remove while a dup lives, forces the rebuild. The rebuild must not
// add the number `a` again: that would watch the new file and report its
// events as `a`'s. Without a dup of `a` the kernel forgets `a`'s entry;
// with one it still lists the entry under our token, and only the inode
// shows that the number names another file now.
TEST(EpollBackend, RebuildDoesNotAdoptAFileThatReusedAClosedNumber) {
  for (const bool dup_of_a : {false, true}) {
    SCOPED_TRACE(dup_of_a ? "a's file kept by a dup" : "a's file gone");
    auto b = CreateEpollBackend();
    ASSERT_TRUE(b.ok()) << b.status();
    Backend& backend = **b;
    TestPipe a, p2, p3;
    ASSERT_GE(a.r, 0);
    ASSERT_GE(p2.r, 0);
    ASSERT_GE(p3.r, 0);
    ASSERT_TRUE(backend.Add(a.r, kReadable).ok());
    ASSERT_TRUE(backend.Add(p2.r, kReadable).ok());
    const int dup_a = dup_of_a ? dup(a.r) : -1;
    const int dup_p2 = dup(p2.r);
    ASSERT_GE(dup_p2, 0);

    const int reused = a.r;
    close(a.r);
    a.r = -1;
    // The new file takes the closed number; it is never added.
    ASSERT_EQ(dup2(p3.r, reused), reused);
    close(p3.r);
    p3.r = reused;
    ASSERT_EQ(write(p3.w, "z", 1), 1);
    std::vector<ReadyEvent> out;
    ASSERT_TRUE(backend.Wait(absl::ZeroDuration(), &out).ok());
    EXPECT_TRUE(out.empty());

    const int number = p2.r;
    ASSERT_EQ(write(p2.w, "x", 1), 1);
    close(p2.r);
    p2.r = -1;
    ASSERT_TRUE(backend.Remove(number).ok());
    TimedWaitMs(backend, absl::Milliseconds(50), &out);  // finds the entry
    EXPECT_TRUE(out.empty());
    for (int i = 0; i < 2; ++i) {
      EXPECT_GE(TimedWaitMs(backend, absl::Milliseconds(50), &out), 40)
          << "wait " << i;
      EXPECT_TRUE(out.empty()) << "reported fd " << out[0].fd;
    }
    EXPECT_TRUE(KernelRegistrations().empty());
    // Still registered for the backend (a caller error it cannot see):
    // Remove drops the bookkeeping.
    EXPECT_TRUE(backend.Remove(reused).ok());
    if (dup_a >= 0) close(dup_a);
    close(dup_p2);
  }
}

}  // namespace
}  // namespace eventide
