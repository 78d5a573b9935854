// Copyright 2026 The Eventide Authors.
//
// poll specifics the conformance suite does not reach: which system call
// serves which wait (played with a seccomp filter in a child).

#include "demux/poll.h"

#include <sys/syscall.h>

#include "demux/internal/wait_dispatch_for_test.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

// ppoll serves only finite waits that may block (their nanoseconds
// matter); polls and infinite waits go to the cheaper poll. Each system
// call in turn is made to fail in a child; the exit code names the step
// that went wrong (wait_dispatch_for_test.h).
TEST(PollBackend, PollsAndInfiniteWaitsUsePoll) {
#if !defined(SYS_poll) || !defined(SYS_ppoll)
  GTEST_SKIP() << "no separate poll and ppoll system calls here";
#else
  for (const long blocked : {long{SYS_ppoll}, long{SYS_poll}}) {
    SCOPED_TRACE(blocked == SYS_poll ? "poll fails" : "ppoll fails");
    EXPECT_EQ(demux_internal::WaitDispatchExitCode(
                  [] { return CreatePollBackend(); }, blocked, SYS_ppoll),
              0);
  }
#endif
}

}  // namespace
}  // namespace eventide
