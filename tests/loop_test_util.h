// Helpers shared by the loop suites (loop_semantics_test.cc,
// loop_fault_test.cc).
//
// Thread safety: a SocketPair is owned by one thread; its fds may be used
// from any thread while it is alive.
//
// Usage:
//   SocketPair sp;                // AF_UNIX stream pair, non-blocking
//   write(sp.b(), "x", 1);        // makes sp.a() readable
//   sp.CloseB();                  // sp.a() now sees EOF
#ifndef EVENTIDE_TESTS_LOOP_TEST_UTIL_H_
#define EVENTIDE_TESTS_LOOP_TEST_UTIL_H_

namespace eventide {
namespace loop_test {

// A connected AF_UNIX stream socketpair, both ends non-blocking and
// close-on-exec. Owns both fds and closes those still open on destruction.
// A failed socketpair() is reported as a non-fatal test failure (fds -1).
class SocketPair {
 public:
  SocketPair();
  ~SocketPair();
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;

  int a() const { return a_; }
  int b() const { return b_; }
  // Close one end early (its fd becomes -1).
  void CloseA();
  void CloseB();

 private:
  int a_ = -1;
  int b_ = -1;
};

}  // namespace loop_test
}  // namespace eventide

#endif  // EVENTIDE_TESTS_LOOP_TEST_UTIL_H_
