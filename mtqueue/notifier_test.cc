#include "mtqueue/notifier.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace eventide {
namespace {

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  const int n = poll(&p, 1, 0);
  EXPECT_GE(n, 0);
  return n == 1 && (p.revents & POLLIN) != 0;
}

class FdNotifierTest : public ::testing::TestWithParam<NotifierKind> {};

TEST_P(FdNotifierTest, CreatesNonBlockingCloexecFd) {
  absl::StatusOr<FdNotifier> n = FdNotifier::Create(GetParam());
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_GE(n->fd(), 0);
  EXPECT_NE(n->kind(), NotifierKind::kAuto);
  if (GetParam() != NotifierKind::kAuto) {
    EXPECT_EQ(n->kind(), GetParam());
  }
  const int fl = fcntl(n->fd(), F_GETFL);
  ASSERT_GE(fl, 0);
  EXPECT_NE(fl & O_NONBLOCK, 0);
  const int fdfl = fcntl(n->fd(), F_GETFD);
  ASSERT_GE(fdfl, 0);
  EXPECT_NE(fdfl & FD_CLOEXEC, 0);
}

TEST_P(FdNotifierTest, NotifyMakesReadableAndClearEmpties) {
  absl::StatusOr<FdNotifier> n = FdNotifier::Create(GetParam());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_FALSE(Readable(n->fd()));
  EXPECT_TRUE(n->Clear().ok());  // clearing an empty notifier is fine
  EXPECT_FALSE(Readable(n->fd()));

  ASSERT_TRUE(n->Notify().ok());
  EXPECT_TRUE(Readable(n->fd()));
  ASSERT_TRUE(n->Clear().ok());
  EXPECT_FALSE(Readable(n->fd()));

  // Many notifications are cleared by one Clear().
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(n->Notify().ok());
  EXPECT_TRUE(Readable(n->fd()));
  ASSERT_TRUE(n->Clear().ok());
  EXPECT_FALSE(Readable(n->fd()));
}

TEST(FdNotifierPipeTest, FullPipeIsStillSuccess) {
  absl::StatusOr<FdNotifier> n = FdNotifier::Create(NotifierKind::kPipe);
  ASSERT_TRUE(n.ok()) << n.status();
  // Shrink the pipe to one page so it fills quickly; 4096 one-byte writes
  // then fill it and the next ones hit EAGAIN, which must count as success.
  const int size = fcntl(n->fd(), F_SETPIPE_SZ, 4096);
  ASSERT_GT(size, 0);
  for (int i = 0; i < size + 100; ++i) {
    absl::Status s = n->Notify();
    ASSERT_TRUE(s.ok()) << "write " << i << ": " << s;
  }
  EXPECT_TRUE(Readable(n->fd()));
  ASSERT_TRUE(n->Clear().ok());
  EXPECT_FALSE(Readable(n->fd()));
}

TEST(FdNotifierEventFdTest, SaturatedCounterIsStillSuccess) {
  absl::StatusOr<FdNotifier> n = FdNotifier::Create(NotifierKind::kEventFd);
  if (!n.ok() && absl::IsUnimplemented(n.status())) {
    GTEST_SKIP() << "no eventfd on this build";
  }
  ASSERT_TRUE(n.ok()) << n.status();
  // Bring the counter to its maximum, 2^64 - 2: the next increment cannot
  // fit and a non-blocking write fails with EAGAIN.
  const uint64_t max = UINT64_MAX - 1;
  ASSERT_EQ(write(n->fd(), &max, sizeof(max)), (ssize_t)sizeof(max));
  const uint64_t one = 1;
  ASSERT_EQ(write(n->fd(), &one, sizeof(one)), -1);
  ASSERT_EQ(errno, EAGAIN);
  EXPECT_TRUE(n->Notify().ok());
  ASSERT_TRUE(n->Clear().ok());
  EXPECT_FALSE(Readable(n->fd()));
}

TEST(FdNotifierOwnershipTest, MoveTransfersOwnership) {
  absl::StatusOr<FdNotifier> a = FdNotifier::Create(NotifierKind::kPipe);
  ASSERT_TRUE(a.ok()) << a.status();
  const int fd = a->fd();
  FdNotifier b = *std::move(a);
  EXPECT_EQ(b.fd(), fd);
  ASSERT_TRUE(b.Notify().ok());
  EXPECT_TRUE(Readable(fd));

  absl::StatusOr<FdNotifier> c = FdNotifier::Create(NotifierKind::kPipe);
  ASSERT_TRUE(c.ok()) << c.status();
  const int old_fd = c->fd();
  *c = std::move(b);  // closes c's old fds
  EXPECT_EQ(c->fd(), fd);
  EXPECT_EQ(fcntl(old_fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(FdNotifierOwnershipTest, DestructorClosesFds) {
  int fd;
  {
    absl::StatusOr<FdNotifier> n = FdNotifier::Create(NotifierKind::kPipe);
    ASSERT_TRUE(n.ok()) << n.status();
    fd = n->fd();
    ASSERT_GE(fcntl(fd, F_GETFD), 0);
  }
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

INSTANTIATE_TEST_SUITE_P(AllKinds, FdNotifierTest,
                         ::testing::Values(NotifierKind::kAuto,
                                           NotifierKind::kEventFd,
                                           NotifierKind::kPipe),
                         [](const ::testing::TestParamInfo<NotifierKind>& i) {
                           return std::string(NotifierKindName(i.param));
                         });

}  // namespace
}  // namespace eventide
