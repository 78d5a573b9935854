// The loop runs a pass's readiness and due timers straight from the
// backend's and the heap's lists when nothing can reorder them (direct
// batches, loop/README.md step 4), and through its pending queues otherwise.
// Both must behave alike. Each case here runs one random program twice, once
// as it is and once with a far-off periodic timer added, which sends every
// pass with a timer due through the queues, and requires the two runs to
// log the same events: every callback, and every timer's pending() and
// deadline() after each pass.
//
// The callbacks cancel, reschedule, release, replace and move timers (due
// ones that have not run yet among them), create periodic, prioritised and
// loop-owned timers, start, stop, replace and time out io watchers, and post
// and defer work; the clock steps forward, and on a non-monotonic source
// sometimes back.

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "clock/fake_clock.h"
#include "gtest/gtest.h"
#include "loop/event_loop.h"
#include "tests/loop_test_util.h"

namespace eventide {
namespace {

using loop_test::SocketPair;

struct ProgramShape {
  uint32_t seed = 1;
  bool monotonic = true;
  int timers = 40;
  int passes = 60;
  // The heap's lazy-cancel floor; 0 keeps the default (16384 entries, more
  // than any program here has, so cancels are eager).
  size_t lazy_cancel_min_size = 0;
};

class RandomProgram {
 public:
  RandomProgram(const ProgramShape& shape, bool force_queued)
      : shape_(shape),
        clock_(FakeClock::kDefaultStart, shape.monotonic),
        rng_(shape.seed),
        timers_(shape.timers) {
    LoopOptions options;
    options.time_source = &clock_;
    absl::StatusOr<std::unique_ptr<EventLoop>> loop =
        EventLoop::Create(options);
    EXPECT_TRUE(loop.ok()) << loop.status();
    if (!loop.ok()) return;
    loop_ = std::move(*loop);
    if (shape.lazy_cancel_min_size != 0) {
      loop_->SetLazyCancelMinSizeForTesting(shape.lazy_cancel_min_size);
    }
    if (force_queued) {
      TimerOptions periodic;
      periodic.period = absl::Hours(100);
      far_ = loop_->AddTimer(
          absl::Hours(100), [] {}, periodic);
    }
  }

  std::vector<std::string> Run() {
    if (loop_ == nullptr) return {};
    for (int j = 0; j < shape_.timers; ++j) ArmPlain(j);
    for (int pass = 0; pass < shape_.passes; ++pass) {
      if (!shape_.monotonic && Pick(7) == 0) {
        clock_.JumpBackward(absl::Microseconds(Pick(5000)));
        Log("clock back");
      } else {
        clock_.Advance(absl::Microseconds(Pick(1500)));
      }
      if (Pick(3) == 0) {
        EXPECT_TRUE(loop_
                        ->Post([this, pass] {
                          Log(absl::StrCat("posted ", pass));
                          Act(1000 + pass);
                        })
                        .ok());
      }
      if (Pick(3) == 0) {
        loop_->Defer([this, pass] {
          Log(absl::StrCat("deferred ", pass));
          Act(2000 + pass);
        });
      }
      for (int k = 0; k < kPairs; ++k) {
        if (Pick(3) == 0) {
          EXPECT_EQ(write(pairs_[k].b(), "x", 1), 1);
        }
      }
      Log(absl::StrCat("pass ", pass));
      EXPECT_TRUE(loop_->RunOnce(false).ok());
      CheckBookkeeping("after the pass");
      for (int j = 0; j < shape_.timers; ++j) {
        Log(absl::StrCat("  timer ", j, ": ", State(timers_[j])));
      }
    }
    return std::move(trace_);
  }

 private:
  static constexpr int kPairs = 4;

  uint32_t Pick(uint32_t n) { return rng_() % n; }

  // Once per failure kind is enough: the trace comparison reports the rest.
  void CheckBookkeeping(const char* when) {
    if (bookkeeping_failed_) return;
    const absl::Status status = loop_->CheckTimerBookkeepingForTesting();
    if (!status.ok()) {
      bookkeeping_failed_ = true;
      ADD_FAILURE() << "seed " << shape_.seed << ", " << when << ": " << status;
    }
  }
  void Log(std::string line) { trace_.push_back(std::move(line)); }

  // pending() and the time left to deadline(), or "-" when disarmed.
  std::string State(const Timer& t) const {
    if (!t.pending()) {
      return t.deadline() == MonoTime::Max() ? "-" : "disarmed with deadline";
    }
    return absl::StrCat(absl::ToInt64Microseconds(t.deadline() - loop_->Now()),
                        " us");
  }

  void ArmPlain(int j) {
    timers_[j] = loop_->AddTimer(absl::Microseconds(Pick(3000)), [this, j] {
      Log(absl::StrCat("timer ", j, " fires, pending ", timers_[j].pending()));
      Act(j);
    });
  }

  void ArmSpecial(int j) {
    TimerOptions options;
    if (Pick(2) == 0) {
      options.period = absl::Microseconds(300 + Pick(2000));
    } else {
      options.priority = Pick(2) == 0 ? Priority::kHigh : Priority::kLow;
    }
    timers_[j] = loop_->AddTimer(
        absl::Microseconds(Pick(3000)),
        [this, j] {
          Log(absl::StrCat("special timer ", j, " fires, pending ",
                           timers_[j].pending()));
          Act(j);
        },
        options);
  }

  void WatchPair(int k) {
    ios_[k].Release();
    IoOptions options;
    if (Pick(5) == 0) options.timeout = absl::Microseconds(500 + Pick(3000));
    absl::StatusOr<IoWatcher> w = loop_->WatchIo(
        pairs_[k].a(), kReadable,
        [this, k](const IoEvent& event) {
          char buf[16];
          while (read(pairs_[k].a(), buf, sizeof buf) > 0) {
          }
          Log(absl::StrCat("io ", k, event.timed_out ? " timed out" : ""));
          Act(3000 + k);
        },
        options);
    ASSERT_TRUE(w.ok()) << w.status();
    ios_[k] = std::move(*w);
  }

  // Up to three random operations, logged with the caller's tag.
  void Act(int who) {
    const int n = Pick(4);
    for (int i = 0; i < n; ++i) {
      const int j = Pick(shape_.timers);
      const int k = Pick(kPairs);
      switch (Pick(14)) {
        case 0:
          timers_[j].Cancel();
          Log(absl::StrCat(who, " cancels ", j));
          break;
        case 1: {
          const uint32_t us = Pick(3000);
          timers_[j].Reschedule(absl::Microseconds(us));
          Log(absl::StrCat(who, " moves ", j, " to +", us, " us"));
          break;
        }
        case 2:
          timers_[j].Release();
          Log(absl::StrCat(who, " releases ", j));
          break;
        case 3:
        case 4:
          ArmPlain(j);
          Log(absl::StrCat(who, " replaces ", j));
          break;
        case 5:
          Log(absl::StrCat(who, " sees ", j, ": ", State(timers_[j])));
          break;
        case 6:
          if (Pick(2) == 0) {
            // A loop-owned timer that owns a handle: freeing it after it
            // runs releases that timer, maybe one due in the same pass.
            loop_->RunAfter(
                absl::Microseconds(Pick(2000)),
                [this, j, owned = std::move(timers_[j])]() mutable {
                  Log(absl::StrCat("owner of ", j, " runs, pending ",
                                   owned.pending()));
                });
            Log(absl::StrCat(who, " hands ", j, " to a RunAfter"));
          } else {
            const uint32_t tag = Pick(1000);
            loop_->RunAfter(absl::Microseconds(Pick(2000)), [this, tag] {
              Log(absl::StrCat("run-after ", tag));
            });
          }
          break;
        case 7:
          timers_[j] = Timer();
          Log(absl::StrCat(who, " empties ", j));
          break;
        case 8: {
          const int from = Pick(shape_.timers);
          timers_[j] = std::move(timers_[from]);
          Log(absl::StrCat(who, " moves handle ", from, " to ", j));
          break;
        }
        case 9:
        case 10:
          if (Pick(6) == 0) {
            ArmSpecial(j);
            Log(absl::StrCat(who, " makes ", j, " special"));
          } else {
            timers_[j].Cancel();
            Log(absl::StrCat(who, " cancels ", j));
          }
          break;
        case 11:
          WatchPair(k);
          Log(absl::StrCat(who, " watches pair ", k));
          break;
        case 12:
          ios_[k].Release();
          Log(absl::StrCat(who, " releases pair ", k));
          break;
        case 13:
          if (ios_[k].valid()) {
            if (Pick(2) == 0) {
              ios_[k].Stop();
            } else {
              EXPECT_TRUE(ios_[k].Start().ok());
            }
          }
          Log(absl::StrCat(who, " stops or starts pair ", k));
          break;
      }
    }
    // Inside a pass too: a direct batch has taken its due timers out of
    // the heap, and the callbacks change what is left.
    CheckBookkeeping("after a callback's changes");
  }

  const ProgramShape shape_;
  bool bookkeeping_failed_ = false;
  FakeClock clock_;
  std::mt19937 rng_;
  SocketPair pairs_[kPairs];
  std::vector<std::string> trace_;
  std::unique_ptr<EventLoop> loop_;
  // Handles after the loop: destroyed first.
  Timer far_;
  std::vector<Timer> timers_;
  IoWatcher ios_[kPairs];
};

// Line by line, so that a failure names the first line that differs.
void ExpectEqualTraces(const ProgramShape& shape,
                       const std::vector<std::string>& want,
                       const std::vector<std::string>& got) {
  ASSERT_FALSE(want.empty());
  const size_t n = std::min(want.size(), got.size());
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(want[i], got[i])
        << "seed " << shape.seed << (shape.monotonic ? "" : " (wall clock)")
        << ", line " << i;
  }
  ASSERT_EQ(want.size(), got.size()) << "seed " << shape.seed;
}

void ExpectSameTrace(const ProgramShape& shape) {
  ExpectEqualTraces(shape, RandomProgram(shape, false).Run(),
                    RandomProgram(shape, true).Run());
}

TEST(DirectBatchTest, SmallProgramsBehaveAsThroughTheQueues) {
  for (const bool monotonic : {true, false}) {
    for (uint32_t seed = 1; seed <= 150; ++seed) {
      ProgramShape shape;
      shape.seed = seed;
      shape.monotonic = monotonic;
      ExpectSameTrace(shape);
      if (HasFatalFailure()) return;
    }
  }
}

// Hundreds of timers due at once take the heap's bulk pop, and cancelling
// most of them lets it shrink its record table under live handles.
TEST(DirectBatchTest, LargeProgramsBehaveAsThroughTheQueues) {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    ProgramShape shape;
    shape.seed = seed;
    shape.timers = 600;
    shape.passes = 40;
    ExpectSameTrace(shape);
    if (HasFatalFailure()) return;
  }
}

// With the heap's lazy-cancel floor at one entry, every cancel the heap
// can leave in place is lazy, and Timer::Cancel takes its heap-only path
// (the slot keeps a stale armed flag that every reader checks against the
// heap). Nothing a program can see may change: the same trace as with
// eager cancels, direct and queued alike, and the bookkeeping checked
// after every callback's changes.
TEST(DirectBatchTest, LazyCancelsChangeNothingAProgramSees) {
  for (const bool monotonic : {true, false}) {
    for (uint32_t seed = 1; seed <= 60; ++seed) {
      ProgramShape eager;
      eager.seed = seed;
      eager.monotonic = monotonic;
      eager.timers = seed % 3 == 0 ? 300 : 40;
      ProgramShape lazy = eager;
      lazy.lazy_cancel_min_size = 1;
      ExpectEqualTraces(lazy, RandomProgram(eager, false).Run(),
                        RandomProgram(lazy, false).Run());
      if (HasFatalFailure()) return;
      ExpectSameTrace(lazy);
      if (HasFatalFailure()) return;
    }
  }
}

}  // namespace
}  // namespace eventide
