// Loop-level faults (issue 10): wall-clock jumps under load, signal bursts
// during heavy I/O, fork() with a busy loop, and callbacks that throw or
// block. The I/O cases run on every backend the kernel supports. Every loop
// in here is bounded in iterations and in real time; no assertion depends on
// how fast the machine is.
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clock/fake_clock.h"
#include "demux/registry.h"
#include "gtest/gtest.h"
#include "loop/event_loop.h"
#include "tests/loop_test_util.h"

namespace eventide {
namespace {

using loop_test::SocketPair;

LoopOptions OptionsFor(const std::string& backend) {
  LoopOptions options;
  options.backend.name = backend;
  options.backend.ignore_environment = true;
  return options;
}

std::unique_ptr<EventLoop> MakeLoop(const LoopOptions& options) {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create(options);
  EXPECT_TRUE(loop.ok()) << loop.status();
  if (!loop.ok()) return nullptr;
  return std::move(*loop);
}

// Reads whatever is there (non-blocking fd); returns the byte count.
int64_t DrainFd(int fd) {
  char buf[4096];
  int64_t total = 0;
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return total;
    total += n;
  }
}

// Writes all of `data` to a non-blocking fd, waiting up to 5 s for room.
bool WriteAll(int fd, const char* data, size_t size) {
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
    if (absl::Now() > give_up) return false;
    struct pollfd p = {fd, POLLOUT, 0};
    poll(&p, 1, 10);
  }
  return true;
}

class LoopFaultTest : public ::testing::TestWithParam<std::string> {};

// ------------------------------------------------------------ clock jumps --

// A wall clock under the test's control that can also step on a chosen read,
// so a jump can land inside the backend wait (the loop reads the source once
// before the wait and once after). Loop thread only.
class SteppedClock final : public TimeSource {
 public:
  MonoTime Now() override {
    ++reads_;
    if (reads_ == jump_at_read_) {
      fake_.Set(fake_.Peek() + jump_);
      jump_at_read_ = -1;
    }
    return fake_.Now();
  }
  bool is_monotonic() const override { return false; }

  // Steps by `jump` on the n-th read from now.
  void JumpAtRead(int n, absl::Duration jump) {
    jump_at_read_ = reads_ + n;
    jump_ = jump;
  }
  bool jump_pending() const { return jump_at_read_ >= 0; }
  FakeClock& fake() { return fake_; }

 private:
  FakeClock fake_;  // non-monotonic: a wall clock
  int64_t reads_ = 0;
  int64_t jump_at_read_ = -1;
  absl::Duration jump_;
};

// Hundreds of timers, periodic timers, an inactivity timeout and traffic on
// eight socketpairs, while the wall clock jumps backwards and forwards (by
// 10 s to 2 h) between RunOnce() calls, inside the backend wait and inside
// callbacks. `virt` is the real time that passed: only Advance() moves it,
// jumps do not. A timer armed for d at virt = v must not fire before
// virt = v + d; the loop may make it late (a correction can discard the
// moment of real time that passed together with a jump), never early.
TEST_P(LoopFaultTest, ClockJumpsUnderLoadNeverFireEarlyAndLoseNothing) {
  SteppedClock clock;
  LoopOptions options = OptionsFor(GetParam());
  options.time_source = &clock;
  std::unique_ptr<EventLoop> loop = MakeLoop(options);
  ASSERT_NE(loop, nullptr);
  std::mt19937 rng(12345);
  auto uniform = [&rng](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };

  absl::Duration virt = absl::ZeroDuration();
  int early = 0;
  std::string first_early;
  auto note_early = [&](const std::string& what) {
    if (early++ == 0) first_early = what;
  };

  // One-shot timers, each re-armed from its own callback kRearms times.
  struct OneShot {
    Timer timer;
    absl::Duration due;
    int arms = 0;
    int fires = 0;
  };
  constexpr int kOneShots = 300;
  constexpr int kRearms = 3;
  std::vector<OneShot> one_shots(kOneShots);  // never resized: captured
  for (int i = 0; i < kOneShots; ++i) {
    const absl::Duration delay = absl::Milliseconds(uniform(1, 1500));
    one_shots[i].due = virt + delay;
    one_shots[i].arms = 1;
    one_shots[i].timer = loop->AddTimer(delay, [&, i] {
      OneShot& self = one_shots[i];
      ++self.fires;
      if (virt < self.due) {
        note_early(absl::StrCat("one-shot ", i, " at ",
                                absl::FormatDuration(virt), " due ",
                                absl::FormatDuration(self.due)));
      }
      if (self.arms <= kRearms) {
        const absl::Duration again = absl::Milliseconds(uniform(1, 1500));
        self.due = virt + again;
        ++self.arms;
        self.timer.Reschedule(again);
      }
    });
  }

  struct Periodic {
    Timer timer;
    absl::Duration period;
    int ticks = 0;
  };
  constexpr int kPeriodics = 12;
  std::vector<Periodic> periodics(kPeriodics);
  for (int i = 0; i < kPeriodics; ++i) {
    periodics[i].period = absl::Milliseconds(5 + 7 * i);
    TimerOptions periodic;
    periodic.period = periodics[i].period;
    periodics[i].timer = loop->AddTimer(
        periodics[i].period,
        [&, i] {
          Periodic& self = periodics[i];
          ++self.ticks;
          // Tick n is due n periods after the start (virt was zero then).
          if (virt < self.period * self.ticks) {
            note_early(absl::StrCat("periodic ", i, " tick ", self.ticks,
                                    " at ", absl::FormatDuration(virt)));
          }
        },
        periodic);
  }

  // An fd that never becomes readable: only its inactivity timeout fires.
  SocketPair quiet;
  constexpr absl::Duration kIdleTimeout = absl::Milliseconds(200);
  absl::Duration quiet_since = virt;
  int idle_timeouts = 0;
  IoOptions with_timeout;
  with_timeout.timeout = kIdleTimeout;
  auto quiet_watch = loop->WatchIo(
      quiet.a(), kReadable,
      [&](const IoEvent& ev) {
        EXPECT_TRUE(ev.timed_out);
        ++idle_timeouts;
        if (virt - quiet_since < kIdleTimeout) {
          note_early(absl::StrCat("inactivity timeout at ",
                                  absl::FormatDuration(virt)));
        }
        quiet_since = virt;
      },
      with_timeout);
  ASSERT_TRUE(quiet_watch.ok()) << quiet_watch.status();

  // Traffic. The first I/O callback of an iteration performs a pending
  // "jump inside a callback".
  constexpr int kPairs = 8;
  std::vector<std::unique_ptr<SocketPair>> pairs;
  std::vector<IoWatcher> readers;
  int64_t bytes_written = 0;
  int64_t bytes_read = 0;
  int io_callbacks = 0;
  bool jump_in_callback = false;
  absl::Duration callback_jump;
  for (int k = 0; k < kPairs; ++k) {
    pairs.push_back(std::make_unique<SocketPair>());
    const int fd = pairs.back()->a();
    auto w = loop->WatchIo(fd, kReadable, [&, fd](const IoEvent& ev) {
      EXPECT_FALSE(ev.timed_out);
      ++io_callbacks;
      bytes_read += DrainFd(fd);
      if (jump_in_callback) {
        jump_in_callback = false;
        clock.fake().Set(clock.fake().Peek() + callback_jump);
      }
    });
    ASSERT_TRUE(w.ok()) << w.status();
    readers.push_back(std::move(*w));
  }
  auto send_traffic = [&] {
    const int writes = uniform(1, 3);
    for (int j = 0; j < writes; ++j) {
      std::string data(static_cast<size_t>(uniform(1, 4096)), 'x');
      const int fd = pairs[static_cast<size_t>(uniform(0, kPairs - 1))]->b();
      ASSERT_TRUE(WriteAll(fd, data.data(), data.size()));
      bytes_written += static_cast<int64_t>(data.size());
    }
  };

  // Load: 1 ms of real time per iteration, a jump every few iterations.
  uint64_t expected_backward = 0;
  uint64_t expected_forward = 0;
  constexpr int kLoadIterations = 3000;
  int io_iterations = 0;
  for (int it = 0; it < kLoadIterations; ++it) {
    send_traffic();
    if (HasFatalFailure()) return;
    clock.fake().Advance(absl::Milliseconds(1));
    virt += absl::Milliseconds(1);
    if (it % 7 == 3) {
      // Forward jumps must exceed timeout + tolerance to be told from a
      // real wait (clock/jump_detector.h); timeouts here are <= 1.5 s.
      const absl::Duration size = absl::Seconds(uniform(10, 7200));
      switch (uniform(0, 4)) {
        case 0:  // backwards while the caller was between RunOnce() calls
          clock.fake().JumpBackward(size);
          ++expected_backward;
          break;
        case 1:  // backwards inside the wait
          clock.JumpAtRead(2, -size);
          ++expected_backward;
          break;
        case 2:  // forwards inside the wait
          clock.JumpAtRead(2, size);
          ++expected_forward;
          break;
        case 3:  // backwards inside a callback
          jump_in_callback = true;
          callback_jump = -size;
          ++expected_backward;
          break;
        case 4:  // forwards inside a callback
          jump_in_callback = true;
          callback_jump = size;
          ++expected_forward;
          break;
      }
    }
    // Blocking waits too: traffic is pending, so they return at once.
    const int before = io_callbacks;
    ASSERT_TRUE(loop->RunOnce(/*block=*/it % 2 == 0).ok());
    if (io_callbacks > before) ++io_iterations;
    ASSERT_FALSE(clock.jump_pending()) << "iteration " << it;
    ASSERT_FALSE(jump_in_callback) << "no I/O callback ran in iteration " << it;
  }
  EXPECT_EQ(loop->stats().clock_jumps_backward, expected_backward);
  EXPECT_EQ(loop->stats().clock_jumps_forward, expected_forward);
  // Every iteration had traffic, and its callback ran in that iteration.
  EXPECT_EQ(io_iterations, kLoadIterations);
  EXPECT_GT(expected_backward, 100u);
  EXPECT_GT(expected_forward, 100u);

  // Quiet time, no more jumps: every armed timer fires (nothing was lost),
  // and the periodic timers and the inactivity timeout keep going.
  std::vector<int> ticks_after_load;
  for (const Periodic& p : periodics) ticks_after_load.push_back(p.ticks);
  const int idle_after_load = idle_timeouts;
  auto all_one_shots_done = [&] {
    for (const OneShot& t : one_shots) {
      if (t.arms != kRearms + 1 || t.fires != t.arms) return false;
    }
    return true;
  };
  const absl::Duration quiet_start = virt;
  for (int it = 0; it < 1000 && (it < 100 || !all_one_shots_done()); ++it) {
    clock.fake().Advance(absl::Milliseconds(10));
    virt += absl::Milliseconds(10);
    ASSERT_TRUE(loop->RunOnce(false).ok());
  }
  const absl::Duration quiet_time = virt - quiet_start;
  for (int i = 0; i < 100 && bytes_read < bytes_written; ++i) {
    ASSERT_TRUE(loop->RunOnce(false).ok());
  }

  EXPECT_EQ(early, 0) << "first: " << first_early;
  for (int i = 0; i < kOneShots; ++i) {
    EXPECT_EQ(one_shots[i].arms, kRearms + 1) << "one-shot " << i;
    EXPECT_EQ(one_shots[i].fires, one_shots[i].arms) << "one-shot " << i;
    EXPECT_FALSE(one_shots[i].timer.pending()) << "one-shot " << i;
  }
  // In quiet time a periodic timer ticks once per RunOnce at most (missed
  // ticks are skipped, not bursted): at least once per 10 ms step or period.
  for (int i = 0; i < kPeriodics; ++i) {
    const absl::Duration step =
        std::max(periodics[i].period, absl::Milliseconds(10));
    const int64_t floor_ticks = quiet_time / step;
    EXPECT_GE(periodics[i].ticks - ticks_after_load[i], floor_ticks / 2)
        << "periodic " << i << " stalled after the jumps";
    EXPECT_GE(periodics[i].ticks, ticks_after_load[i]);
    EXPECT_GT(ticks_after_load[i], 0) << "periodic " << i;
    EXPECT_TRUE(periodics[i].timer.pending());
  }
  EXPECT_GT(idle_after_load, 0);
  EXPECT_GT(idle_timeouts, idle_after_load);
  EXPECT_EQ(bytes_read, bytes_written);
  // Every readiness the loop collected reached its callback.
  EXPECT_EQ(loop->stats().io_events, static_cast<uint64_t>(io_callbacks));
}

// ---------------------------------------------------------- signal bursts --

class SignalBurstTest
    : public ::testing::TestWithParam<std::tuple<std::string, SignalMode>> {};

// A sender thread raises bursts of SIGUSR1/SIGUSR2 (kill() to the process and
// pthread_kill() to the loop thread) while a writer thread streams a byte
// pattern through four socketpairs into the loop. Bursts may coalesce (one
// callback for many raises of a signal); none may be lost: the sender waits,
// bounded, for a delivery of every signal of a burst, and for the loop to
// have read more traffic, before the next burst.
TEST_P(SignalBurstTest, BurstsDuringHeavyIoAreDeliveredAndIoKeepsFlowing) {
  const std::string backend = std::get<0>(GetParam());
  const SignalMode mode = std::get<1>(GetParam());
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not run an asynchronous signal's handler when the
  // signal lands: it queues it and runs it later, from the next libc call it
  // intercepts on that thread, with every signal blocked meanwhile. When a
  // second signal arrives while a queued handler runs, the libtsan that GCC 12
  // ships restores the wrong mask and leaves the thread with every signal
  // blocked for good (google/sanitizers#1855, fixed by llvm-project PR 138599
  // in 2025). Bursts of handled signals are exactly that pattern: in CI the
  // poll variant lost burst 52 of 60 this way, and the select variant after it
  // lost its first burst, because the loop thread still blocked everything.
  // Before that, io_uring lost a burst in 2 of 12 TSan runs. Plain (40/40)
  // and ASan (20/20) runs of the self-pipe variants never lost one. The
  // behaviour under test is the kernel's signal delivery, which TSan replaces;
  // the signalfd variants (no handler, so no queueing) still run here.
  if (mode == SignalMode::kSelfPipe) {
    GTEST_SKIP() << "TSan's deferred signal handlers; see the comment above";
  }
#endif
  LoopOptions options = OptionsFor(backend);
  options.signal_mode = mode;
  std::unique_ptr<EventLoop> loop = MakeLoop(options);
  ASSERT_NE(loop, nullptr);

  constexpr int kSignos[2] = {SIGUSR1, SIGUSR2};
  std::atomic<uint64_t> delivered[2] = {{0}, {0}};
  std::vector<SignalWatcher> signal_watchers;
  for (int s = 0; s < 2; ++s) {
    // With signalfd this blocks both signals in this thread; the threads
    // started below inherit the mask, as signal_source.h requires.
    auto w = loop->WatchSignal(kSignos[s], [&, s](int signo) {
      EXPECT_EQ(signo, kSignos[s]);
      delivered[s].fetch_add(1);
    });
    ASSERT_TRUE(w.ok()) << w.status();
    signal_watchers.push_back(std::move(*w));
  }

  // The loop side of the traffic: reads at most 64 KB per callback and
  // checks the pattern byte by byte.
  constexpr int kPairs = 4;
  auto pattern = [](int pair, int64_t offset) {
    return static_cast<char>((offset * 31 + pair * 7) & 0xff);
  };
  std::vector<std::unique_ptr<SocketPair>> pairs;
  std::vector<IoWatcher> readers;
  std::vector<int64_t> received(kPairs, 0);
  int64_t pattern_errors = 0;
  std::atomic<int64_t> bytes_read{0};
  std::atomic<int> io_stalls{0};
  int64_t signal_callbacks_seen = 0;
  for (int k = 0; k < kPairs; ++k) {
    pairs.push_back(std::make_unique<SocketPair>());
    const int fd = pairs.back()->a();
    auto w = loop->WatchIo(fd, kReadable, [&, fd, k](const IoEvent&) {
      char buf[65536];
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) return;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != pattern(k, received[k] + i)) ++pattern_errors;
      }
      received[k] += n;
      bytes_read.fetch_add(n);
    });
    ASSERT_TRUE(w.ok()) << w.status();
    readers.push_back(std::move(*w));
  }

  const pthread_t loop_thread = pthread_self();
  std::atomic<bool> sender_done{false};
  std::atomic<bool> writer_done{false};
  std::atomic<int64_t> bytes_written{0};
  std::atomic<int> lost_bursts{0};
  std::atomic<int> send_errors{0};
  uint64_t raised[2] = {0, 0};
  uint64_t bursts_with[2] = {0, 0};
  constexpr int kBursts = 60;

  std::thread writer([&] {
    std::vector<int64_t> sent(kPairs, 0);
    std::vector<char> chunk(16384);
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    // Keep writing until the sender is done, and at least 1 MB in all.
    for (int k = 0; !sender_done.load() || bytes_written.load() < (1 << 20);
         k = (k + 1) % kPairs) {
      if (absl::Now() > give_up) break;
      for (size_t i = 0; i < chunk.size(); ++i) {
        chunk[i] = pattern(k, sent[k] + static_cast<int64_t>(i));
      }
      if (!WriteAll(pairs[k]->b(), chunk.data(), chunk.size())) {
        send_errors.fetch_add(1);
        break;
      }
      sent[k] += static_cast<int64_t>(chunk.size());
      bytes_written.fetch_add(static_cast<int64_t>(chunk.size()));
    }
    writer_done.store(true);
  });

  std::thread sender([&] {
    std::mt19937 rng(777);
    int64_t read_before = bytes_read.load();
    for (int b = 0; b < kBursts; ++b) {
      // Interleave: each burst starts only once the loop has read more
      // traffic since the last one. The writer never stops before this
      // thread does, so a stall here means the signals starved the I/O.
      const absl::Time io_deadline = absl::Now() + absl::Seconds(5);
      while (bytes_read.load() == read_before && absl::Now() < io_deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      if (bytes_read.load() == read_before) {
        io_stalls.fetch_add(1);
        break;
      }
      read_before = bytes_read.load();
      uint64_t before[2] = {delivered[0].load(), delivered[1].load()};
      bool used[2] = {false, false};
      const int count = std::uniform_int_distribution<int>(1, 16)(rng);
      for (int i = 0; i < count; ++i) {
        const int s = static_cast<int>(rng() % 2);
        const bool to_thread = (rng() % 2) == 0;
        const int rc = to_thread ? pthread_kill(loop_thread, kSignos[s])
                                 : kill(getpid(), kSignos[s]);
        if (rc != 0) send_errors.fetch_add(1);
        used[s] = true;
        ++raised[s];
      }
      for (int s = 0; s < 2; ++s) bursts_with[s] += used[s] ? 1 : 0;
      const absl::Time give_up = absl::Now() + absl::Seconds(5);
      for (;;) {
        const bool acked = (!used[0] || delivered[0].load() > before[0]) &&
                           (!used[1] || delivered[1].load() > before[1]);
        if (acked) break;
        if (absl::Now() > give_up) {
          lost_bursts.fetch_add(1);
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      if (lost_bursts.load() > 0) break;
    }
    sender_done.store(true);
  });

  // The loop: stops once both threads are done and every byte is in.
  bool watchdog_fired = false;
  Timer watchdog = loop->AddTimer(absl::Seconds(20), [&] {
    watchdog_fired = true;
    loop->Stop();
  });
  TimerOptions every_2ms;
  every_2ms.period = absl::Milliseconds(2);
  Timer check = loop->AddTimer(
      absl::Milliseconds(2),
      [&] {
        if (sender_done.load() && writer_done.load() &&
            bytes_read.load() == bytes_written.load()) {
          loop->Stop();
        }
      },
      every_2ms);
  ASSERT_TRUE(loop->Run(EventLoop::RunMode::kUntilStopped).ok());
  sender.join();
  writer.join();
  // Signals sent to this thread are handled on its next return from the
  // kernel; run a few more iterations so none is left in flight.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop->RunOnce(false).ok());
  signal_callbacks_seen =
      static_cast<int64_t>(delivered[0].load() + delivered[1].load());

  EXPECT_FALSE(watchdog_fired) << "did not finish within 20 s";
  EXPECT_EQ(send_errors.load(), 0);
  EXPECT_EQ(lost_bursts.load(), 0) << "a burst was never delivered";
  for (int s = 0; s < 2; ++s) {
    // Each burst that raised a signal saw its own delivery of it, and
    // coalescing never invents one.
    EXPECT_GE(delivered[s].load(), bursts_with[s]) << strsignal(kSignos[s]);
    EXPECT_LE(delivered[s].load(), raised[s]) << strsignal(kSignos[s]);
    EXPECT_GT(bursts_with[s], 0u);
  }
  EXPECT_EQ(loop->stats().signals_delivered,
            static_cast<uint64_t>(signal_callbacks_seen));
  EXPECT_EQ(bytes_read.load(), bytes_written.load());
  EXPECT_GE(bytes_read.load(), 1 << 20);
  EXPECT_EQ(pattern_errors, 0);
  EXPECT_EQ(io_stalls.load(), 0) << "I/O starved while signals kept coming";
}

// --------------------------------------------------------------------- fork --

// Child exit codes: bits of the checks that failed (0: all passed).
enum ChildFailure : int {
  kChildReinit = 1 << 0,
  kChildEcho = 1 << 1,
  kChildTimers = 1 << 2,
  kChildPosts = 1 << 3,
  kChildSignal = 1 << 4,
  kChildRun = 1 << 5,
};

// A parent loop with traffic in the sockets, armed timers, a signal watcher
// and posted tasks not yet run, forks. The child reinitialises its copy of
// the loop and keeps using what it inherited; the parent keeps working.
// Each side owns one socketpair after the fork and stops watching the other.
TEST_P(LoopFaultTest, ForkWithABusyLoopBothSidesKeepWorking) {
  std::unique_ptr<EventLoop> loop = MakeLoop(OptionsFor(GetParam()));
  ASSERT_NE(loop, nullptr);
  SocketPair parent_pair, child_pair;
  int64_t echoed_parent = 0, echoed_child = 0;
  auto echo = [](int fd, int64_t* bytes) {
    return [fd, bytes](const IoEvent&) {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) {
        *bytes += n;
        // Small amounts only: the peer's buffer always has room.
        if (write(fd, buf, static_cast<size_t>(n)) != n)
          *bytes = -(int64_t{1} << 30);
      }
    };
  };
  auto parent_watch = loop->WatchIo(parent_pair.a(), kReadable,
                                    echo(parent_pair.a(), &echoed_parent));
  auto child_watch = loop->WatchIo(child_pair.a(), kReadable,
                                   echo(child_pair.a(), &echoed_child));
  ASSERT_TRUE(parent_watch.ok() && child_watch.ok());

  int ticks = 0;
  TimerOptions every_2ms;
  every_2ms.period = absl::Milliseconds(2);
  Timer periodic = loop->AddTimer(
      absl::Milliseconds(2), [&] { ++ticks; }, every_2ms);
  bool one_shot_fired = false;
  Timer one_shot =
      loop->AddTimer(absl::Milliseconds(30), [&] { one_shot_fired = true; });
  int signals = 0;
  auto sig = loop->WatchSignal(SIGUSR1, [&](int) { ++signals; });
  ASSERT_TRUE(sig.ok()) << sig.status();

  // Busy: a few iterations of traffic, then data left unread in both pairs
  // and posted tasks left in the queue at the moment of fork().
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(WriteAll(parent_pair.b(), "ping", 4));
    ASSERT_TRUE(WriteAll(child_pair.b(), "pong", 4));
    ASSERT_TRUE(loop->RunOnce(false).ok());
  }
  ASSERT_EQ(echoed_parent, 20);
  ASSERT_EQ(echoed_child, 20);
  constexpr int kPosts = 1000;
  int posts_ran = 0;
  std::thread poster([&] {
    for (int i = 0; i < kPosts; ++i) {
      ASSERT_TRUE(loop->Post([&posts_ran] { ++posts_ran; }).ok());
    }
  });
  poster.join();  // fork() with one thread only
  const std::string pending(100, 'p');
  ASSERT_TRUE(WriteAll(parent_pair.b(), pending.data(), pending.size()));
  ASSERT_TRUE(WriteAll(child_pair.b(), pending.data(), pending.size()));
  const int ticks_at_fork = ticks;
  ASSERT_EQ(posts_ran, 0);
  ASSERT_FALSE(one_shot_fired);

  // The parent waits until the child has reinitialised: that order is the
  // one that would expose any kernel object the two still share (the child
  // emptying the parent's wake-up fd, editing its epoll set).
  int reinit_done[2];
  ASSERT_EQ(pipe(reinit_done), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: no gtest assertions, the exit status is the verdict.
    if (!loop->ReinitAfterFork().ok()) _exit(kChildReinit);
    // Only after ReinitAfterFork: before it, removing an fd would edit the
    // epoll set the parent still uses.
    parent_watch->Release();
    if (write(reinit_done[1], "r", 1) != 1) _exit(kChildReinit);
    if (raise(SIGUSR1) != 0) _exit(kChildSignal);
    bool own_post_ran = false;
    if (!loop->Post([&own_post_ran] { own_post_ran = true; }).ok()) {
      _exit(kChildPosts);
    }
    bool own_timer_fired = false;
    Timer own =
        loop->AddTimer(absl::Milliseconds(5), [&] { own_timer_fired = true; });
    const int64_t want_echo = 20 + 100 + 200;  // before, pending, after fork
    auto done = [&] {
      return echoed_child >= want_echo && ticks - ticks_at_fork >= 5 &&
             one_shot_fired && own_timer_fired && posts_ran == kPosts &&
             own_post_ran && signals >= 1;
    };
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (!done() && absl::Now() < give_up) {
      if (!loop->RunOnce(true).ok()) _exit(kChildRun);
    }
    int failures = 0;
    if (echoed_child != want_echo) failures |= kChildEcho;
    if (ticks - ticks_at_fork < 5 || !one_shot_fired || !own_timer_fired) {
      failures |= kChildTimers;
    }
    if (posts_ran != kPosts || !own_post_ran) failures |= kChildPosts;
    if (signals < 1) failures |= kChildSignal;
    _exit(failures);
  }

  // The parent: the child's socket is the child's now.
  close(reinit_done[1]);
  struct pollfd sync = {reinit_done[0], POLLIN, 0};
  EXPECT_EQ(poll(&sync, 1, 10000), 1) << "child never reinitialised";
  close(reinit_done[0]);
  child_watch->Release();
  const std::string after(200, 'a');
  ASSERT_TRUE(WriteAll(child_pair.b(), after.data(), after.size()));
  ASSERT_TRUE(WriteAll(parent_pair.b(), after.data(), after.size()));
  ASSERT_EQ(raise(SIGUSR1), 0);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (absl::Now() < give_up &&
         !(echoed_parent >= 320 && ticks - ticks_at_fork >= 5 &&
           one_shot_fired && posts_ran == kPosts && signals >= 1)) {
    ASSERT_TRUE(loop->RunOnce(true).ok());
  }
  EXPECT_EQ(echoed_parent, 20 + 100 + 200);
  EXPECT_GE(ticks - ticks_at_fork, 5);
  EXPECT_TRUE(one_shot_fired);
  EXPECT_EQ(posts_ran, kPosts);  // the parent's copy of the queue, once
  EXPECT_GE(signals, 1);

  int status = 0;
  pid_t waited = 0;
  for (int i = 0; i < 1500 && waited == 0; ++i) {
    waited = waitpid(pid, &status, WNOHANG);
    if (waited == 0) usleep(10000);
  }
  if (waited == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "child did not exit within 15 s";
  }
  ASSERT_EQ(waited, pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died: " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "child failures (bits): reinit=1 echo=2 timers=4 posts=8 signal=16 "
         "run=32";
  // Everything the child's inherited watcher echoed came back here: the
  // 20 bytes of before the fork (the loop echoed them then), the 100 left
  // pending at fork() and the 200 written after it.
  int64_t echo_back = 0;
  const absl::Time read_until = absl::Now() + absl::Seconds(5);
  while (echo_back < 320 && absl::Now() < read_until) {
    struct pollfd p = {child_pair.b(), POLLIN, 0};
    poll(&p, 1, 10);
    echo_back += DrainFd(child_pair.b());
  }
  EXPECT_EQ(echo_back, 320);
}

// -------------------------------------------------------- slow callbacks --

TEST(SlowCallbackTest, CountedOnlyOverTheThresholdForEveryKind) {
  FakeClock clock(FakeClock::kDefaultStart, /*monotonic=*/true);
  LoopOptions options;
  options.time_source = &clock;
  options.slow_callback_threshold = absl::Milliseconds(10);
  std::unique_ptr<EventLoop> loop = MakeLoop(options);
  ASSERT_NE(loop, nullptr);
  // "Blocking" is the fake clock moving inside the callback: exact durations.
  auto blocks_for = [&clock](absl::Duration d) {
    return [&clock, d] { clock.Advance(d); };
  };
  std::vector<Timer> timers;
  for (int i = 0; i < 20; ++i) {
    timers.push_back(loop->AddTimer(absl::Milliseconds(1), [] {}));
  }
  timers.push_back(loop->AddTimer(absl::Milliseconds(1),
                                  blocks_for(absl::Milliseconds(50))));
  // At the threshold is not over it.
  timers.push_back(loop->AddTimer(absl::Milliseconds(1),
                                  blocks_for(absl::Milliseconds(10))));
  timers.push_back(
      loop->AddTimer(absl::Milliseconds(1), blocks_for(absl::Milliseconds(9))));
  ASSERT_TRUE(loop->Post(blocks_for(absl::Milliseconds(11))).ok());
  ASSERT_TRUE(loop->Post([] {}).ok());
  loop->Defer(blocks_for(absl::Milliseconds(30)));
  SocketPair sp;
  auto io = loop->WatchIo(sp.a(), kReadable, [&](const IoEvent&) {
    DrainFd(sp.a());
    clock.Advance(absl::Milliseconds(20));
  });
  ASSERT_TRUE(io.ok());
  ASSERT_TRUE(WriteAll(sp.b(), "x", 1));
  clock.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(loop->RunOnce(false).ok());
  // Slow: the 50 ms timer, the 11 ms post, the 30 ms deferred task and the
  // 20 ms io callback.
  EXPECT_EQ(loop->stats().slow_callbacks, 4u);
  EXPECT_EQ(loop->stats().longest_callback, absl::Milliseconds(50));
  EXPECT_EQ(loop->stats().callbacks_run, 20u + 3 + 2 + 1 + 1);
}

TEST(SlowCallbackTest, OffByDefaultAndThenFree) {
  FakeClock clock(FakeClock::kDefaultStart, /*monotonic=*/true);
  LoopOptions options;
  options.time_source = &clock;
  std::unique_ptr<EventLoop> loop = MakeLoop(options);
  ASSERT_NE(loop, nullptr);
  std::vector<Timer> timers;
  for (int i = 0; i < 10; ++i) {
    timers.push_back(loop->AddTimer(absl::Milliseconds(1), [&clock] {
      clock.Advance(absl::Milliseconds(50));
    }));
  }
  clock.Advance(absl::Milliseconds(1));
  const int64_t reads = clock.now_calls();
  ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_EQ(loop->stats().slow_callbacks, 0u);
  EXPECT_EQ(loop->stats().longest_callback, absl::ZeroDuration());
  // No clock read per callback: only the one of a polling iteration.
  EXPECT_EQ(clock.now_calls() - reads, 1);
}

TEST(SlowCallbackTest, ProfileCallbacksAloneCountsNoSlowOnes) {
  FakeClock clock(FakeClock::kDefaultStart, /*monotonic=*/true);
  LoopOptions options;
  options.time_source = &clock;
  options.profile_callbacks = true;
  std::unique_ptr<EventLoop> loop = MakeLoop(options);
  ASSERT_NE(loop, nullptr);
  Timer t = loop->AddTimer(absl::Milliseconds(1),
                           [&clock] { clock.Advance(absl::Seconds(2)); });
  clock.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(loop->RunOnce(false).ok());
  EXPECT_EQ(loop->stats().longest_callback, absl::Seconds(2));
  EXPECT_EQ(loop->stats().slow_callbacks, 0u);
}

// The same on the real clock: a callback that sleeps is counted. (Only the
// lower bound is asserted: a loaded machine may make other callbacks slow.)
TEST(SlowCallbackTest, ARealSleepIsCounted) {
  LoopOptions options;
  options.slow_callback_threshold = absl::Milliseconds(10);
  std::unique_ptr<EventLoop> loop = MakeLoop(options);
  ASSERT_NE(loop, nullptr);
  Timer t = loop->AddTimer(absl::ZeroDuration(), [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  });
  for (int i = 0; i < 10 && t.pending(); ++i) {
    ASSERT_TRUE(loop->RunOnce(true).ok());
  }
  EXPECT_FALSE(t.pending());
  EXPECT_GE(loop->stats().slow_callbacks, 1u);
  EXPECT_GE(loop->stats().longest_callback, absl::Milliseconds(50));
}

// ---------------------------------------------------- throwing callbacks --

// An exception escaping a callback aborts with one line naming the kind of
// callback and what(). Death tests re-run this binary ("threadsafe"), which
// also keeps them correct in the threaded sanitizer builds.
class ThrowingCallbackDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(ThrowingCallbackDeathTest, Timer) {
  EXPECT_DEATH(
      {
        auto loop = EventLoop::Create().value();
        Timer t = loop->AddTimer(absl::ZeroDuration(), [] {
          throw std::runtime_error("timer boom");
        });
        (void)loop->Run();
      },
      "uncaught exception in timer callback: timer boom; aborting");
}

TEST_F(ThrowingCallbackDeathTest, Io) {
  EXPECT_DEATH(
      {
        auto loop = EventLoop::Create().value();
        SocketPair sp;
        auto w = loop->WatchIo(sp.a(), kReadable, [](const IoEvent&) {
          throw std::logic_error("io boom");
        });
        (void)WriteAll(sp.b(), "x", 1);
        (void)loop->RunOnce(false);
      },
      "uncaught exception in io callback \\(fd [0-9]+\\): io boom; aborting");
}

TEST_F(ThrowingCallbackDeathTest, Signal) {
  EXPECT_DEATH(
      {
        auto loop = EventLoop::Create().value();
        auto w = loop->WatchSignal(
            SIGUSR2, [](int) { throw std::runtime_error("signal boom"); });
        raise(SIGUSR2);
        (void)loop->RunOnce(false);
      },
      "uncaught exception in signal callback \\(signal [0-9]+\\): signal boom");
}

TEST_F(ThrowingCallbackDeathTest, Idle) {
  EXPECT_DEATH(
      {
        auto loop = EventLoop::Create().value();
        IdleWatcher idle =
            loop->AddIdle([] { throw std::runtime_error("idle boom"); });
        (void)loop->RunOnce(false);
      },
      "uncaught exception in idle callback: idle boom");
}

TEST_F(ThrowingCallbackDeathTest, Posted) {
  EXPECT_DEATH(
      {
        auto loop = EventLoop::Create().value();
        (void)loop->Post([] { throw std::runtime_error("posted boom"); });
        (void)loop->RunOnce(false);
      },
      "uncaught exception in posted callback: posted boom");
}

TEST_F(ThrowingCallbackDeathTest, DeferredAndNotAStdException) {
  EXPECT_DEATH(
      {
        auto loop = EventLoop::Create().value();
        Timer t = loop->AddTimer(absl::ZeroDuration(),
                                 [&loop] { loop->Defer([] { throw 42; }); });
        (void)loop->Run();
      },
      "uncaught exception in deferred callback: unknown exception type");
}

// A callback that catches its own exception is fine: the loop goes on.
TEST(ThrowingCallbackTest, AnExceptionCaughtInsideTheCallbackIsHarmless) {
  auto loop = EventLoop::Create().value();
  int caught = 0;
  Timer t = loop->AddTimer(absl::ZeroDuration(), [&] {
    try {
      throw std::runtime_error("handled");
    } catch (const std::runtime_error&) {
      ++caught;
    }
  });
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(caught, 1);
}

// --------------------------------------------------------- instantiation --

INSTANTIATE_TEST_SUITE_P(AllBackends, LoopFaultTest,
                         ::testing::ValuesIn(UsableBackendNames()),
                         [](const auto& info) { return info.param; });

INSTANTIATE_TEST_SUITE_P(
    AllBackendsBothSources, SignalBurstTest,
    ::testing::Combine(::testing::ValuesIn(UsableBackendNames()),
                       ::testing::Values(SignalMode::kSelfPipe,
                                         SignalMode::kSignalFd)),
    [](const auto& info) {
      return std::get<0>(info.param) +
             (std::get<1>(info.param) == SignalMode::kSelfPipe ? "_selfpipe"
                                                               : "_signalfd");
    });

}  // namespace
}  // namespace eventide
