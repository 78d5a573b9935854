// Copyright 2026 The Eventide Authors.
//
// The pieces every backend shares: feature bits, the readiness
// normalisation of the contract, error statuses and timeout rounding.

#include "demux/backend.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <climits>

#include "demux/internal/backend_util.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

namespace di = demux_internal;

TEST(FeaturesOf, EachCapabilityMapsToItsBit) {
  BackendCapabilities caps;
  caps.edge_triggered = false;
  caps.reports_once = true;
  caps.max_fd = 1023;
  caps.needs_reinit_after_fork = true;
  caps.timeout_resolution = absl::Milliseconds(1);
  caps.scalable = false;
  caps.reports_error_and_hangup = false;
  EXPECT_EQ(FeaturesOf(caps), 0u);

  caps.edge_triggered = true;
  EXPECT_EQ(FeaturesOf(caps), kFeatureEdgeTriggered);
  caps.max_fd = -1;
  caps.scalable = true;
  caps.needs_reinit_after_fork = false;
  caps.reports_error_and_hangup = true;
  caps.timeout_resolution = absl::Nanoseconds(1);
  caps.reports_once = false;
  EXPECT_EQ(FeaturesOf(caps),
            kFeatureEdgeTriggered | kFeatureUnlimitedFds | kFeatureScalable |
                kFeatureNoReinitAfterFork | kFeatureErrorAndHangup |
                kFeaturePreciseTimeout | kFeatureLevelTriggered);
}

TEST(FeatureNames, ListsNamesAndUnknownBits) {
  EXPECT_EQ(FeatureNames(0), "none");
  EXPECT_EQ(FeatureNames(kFeatureEdgeTriggered | kFeatureScalable),
            "edge-triggered|scalable");
  EXPECT_EQ(FeatureNames(kFeaturePreciseTimeout | (1u << 30)),
            "precise-timeout|0x40000000");
}

TEST(Normalize, KeepsOnlyWhatWasAskedForPlusErrorAndHangup) {
  EXPECT_EQ(di::Normalize(kReadable | kWritable, kReadable), kReadable);
  EXPECT_EQ(di::Normalize(kWritable, kReadable), 0u);
  EXPECT_EQ(di::Normalize(kReadable | kWritable, kReadable | kWritable),
            kReadable | kWritable);
  // Error/hang-up add the interest bits so a read/write handler runs.
  EXPECT_EQ(di::Normalize(kHangup, kReadable), kReadable | kHangup);
  EXPECT_EQ(di::Normalize(kError, kWritable), kWritable | kError);
  EXPECT_EQ(di::Normalize(kError | kHangup, kReadable | kWritable),
            kReadable | kWritable | kError | kHangup);
  // Interest 0 silences everything; flags in the interest do not count.
  EXPECT_EQ(di::Normalize(kError | kHangup | kReadable, 0), 0u);
  EXPECT_EQ(di::Normalize(kError, kEdgeTriggered | kHangup), 0u);
  EXPECT_EQ(di::Normalize(kReadable, kReadable | kEdgeTriggered), kReadable);
}

TEST(PollMasks, RoundTrip) {
  EXPECT_EQ(di::PollMaskFor(0), 0u);
  EXPECT_EQ(di::PollMaskFor(kReadable), unsigned{POLLIN | POLLRDHUP});
  EXPECT_EQ(di::PollMaskFor(kWritable), unsigned{POLLOUT});
  EXPECT_EQ(di::PollMaskFor(kWritable | kEdgeTriggered), unsigned{POLLOUT});
  EXPECT_EQ(di::EventsFromPollMask(POLLIN), kReadable);
  EXPECT_EQ(di::EventsFromPollMask(POLLOUT), kWritable);
  EXPECT_EQ(di::EventsFromPollMask(POLLERR), kError);
  EXPECT_EQ(di::EventsFromPollMask(POLLNVAL), kError);
  EXPECT_EQ(di::EventsFromPollMask(POLLHUP), kHangup);
  EXPECT_EQ(di::EventsFromPollMask(POLLRDHUP | POLLIN), kReadable | kHangup);
}

TEST(ValidateInterest, RejectsUnknownBitsAndUnsupportedEdge) {
  EXPECT_TRUE(
      di::ValidateInterest(kReadable | kWritable, false, "b", "Add", 3).ok());
  EXPECT_TRUE(di::ValidateInterest(0, false, "b", "Add", 3).ok());
  EXPECT_TRUE(
      di::ValidateInterest(kError | kHangup, false, "b", "Add", 3).ok());
  EXPECT_TRUE(
      di::ValidateInterest(kReadable | kEdgeTriggered, true, "b", "Add", 3)
          .ok());
  absl::Status s =
      di::ValidateInterest(kReadable | kEdgeTriggered, false, "b", "Add", 3);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_EQ(s.message(),
            "b: Add(fd=3): kEdgeTriggered is not supported by this backend");
  s = di::ValidateInterest(1u << 7, true, "b", "Modify", 4);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_EQ(s.message(), "b: Modify(fd=4): unknown interest bits 0x80");
}

TEST(ErrnoError, NamesBackendOpFdAndErrno) {
  absl::Status s = di::ErrnoError(EEXIST, "epoll", "Add", 7);
  EXPECT_TRUE(absl::IsAlreadyExists(s));
  EXPECT_EQ(s.message(), std::string("epoll: Add(fd=7): ") + strerror(EEXIST));
  // EBADF is the caller's bad argument.
  EXPECT_TRUE(absl::IsInvalidArgument(di::ErrnoError(EBADF, "x", "Add", 9)));
  EXPECT_TRUE(absl::IsNotFound(di::ErrnoError(ENOENT, "x", "Remove", 9)));
}

TEST(CheckFdOpen, OpenClosedAndNegative) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  EXPECT_TRUE(di::CheckFdOpen(fds[0], "x", "Add").ok());
  close(fds[0]);
  close(fds[1]);
  absl::Status s = di::CheckFdOpen(fds[0], "x", "Add");
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find(strerror(EBADF)), absl::string_view::npos);
  EXPECT_TRUE(absl::IsInvalidArgument(di::CheckFdOpen(-5, "x", "Add")));
}

TEST(TimeoutMillisRoundedUp, RoundsUpNeverDown) {
  EXPECT_EQ(di::TimeoutMillisRoundedUp(absl::InfiniteDuration()), -1);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(absl::ZeroDuration()), 0);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(-absl::Seconds(3)), 0);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(-absl::InfiniteDuration()), 0);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(absl::Nanoseconds(1)), 1);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(absl::Microseconds(400)), 1);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(absl::Milliseconds(1)), 1);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(absl::Microseconds(1001)), 2);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(absl::Seconds(2)), 2000);
  EXPECT_EQ(di::TimeoutMillisRoundedUp(absl::Hours(24 * 365)), INT_MAX);
}

TEST(IsFiniteBlockingWait, OnlyPositiveFiniteTimeouts) {
  EXPECT_TRUE(di::IsFiniteBlockingWait(absl::Nanoseconds(1)));
  EXPECT_TRUE(di::IsFiniteBlockingWait(absl::Hours(24 * 365)));
  EXPECT_FALSE(di::IsFiniteBlockingWait(absl::ZeroDuration()));
  EXPECT_FALSE(di::IsFiniteBlockingWait(-absl::Seconds(1)));
  EXPECT_FALSE(di::IsFiniteBlockingWait(absl::InfiniteDuration()));
  EXPECT_FALSE(di::IsFiniteBlockingWait(-absl::InfiniteDuration()));
}

TEST(TimeoutTimespec, ExactClampedAndInfinite) {
  struct timespec ts;
  EXPECT_FALSE(di::TimeoutTimespec(absl::InfiniteDuration(), &ts));
  ASSERT_TRUE(di::TimeoutTimespec(absl::Microseconds(400), &ts));
  EXPECT_EQ(ts.tv_sec, 0);
  EXPECT_EQ(ts.tv_nsec, 400000);
  ASSERT_TRUE(di::TimeoutTimespec(-absl::Seconds(1), &ts));
  EXPECT_EQ(ts.tv_sec, 0);
  EXPECT_EQ(ts.tv_nsec, 0);
  ASSERT_TRUE(di::TimeoutTimespec(absl::Hours(24 * 365 * 1000), &ts));
  EXPECT_EQ(ts.tv_sec, INT_MAX / 1000);
  EXPECT_EQ(ts.tv_nsec, (INT_MAX % 1000) * 1000000L);
}

}  // namespace
}  // namespace eventide
