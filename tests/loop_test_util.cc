#include "tests/loop_test_util.h"

#include <sys/socket.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace eventide {
namespace loop_test {

SocketPair::SocketPair() {
  int fds[2] = {-1, -1};
  EXPECT_EQ(
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds),
      0);
  a_ = fds[0];
  b_ = fds[1];
}

SocketPair::~SocketPair() {
  if (a_ >= 0) close(a_);
  if (b_ >= 0) close(b_);
}

void SocketPair::CloseA() {
  close(a_);
  a_ = -1;
}

void SocketPair::CloseB() {
  close(b_);
  b_ = -1;
}

}  // namespace loop_test
}  // namespace eventide
