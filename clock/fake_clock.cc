#include "clock/fake_clock.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace eventide {
namespace {

// Misusing the fake is a bug in the test itself; stop loudly.
[[noreturn]] void Die(const char* message) {
  std::fprintf(stderr, "eventide::FakeClock: %s\n", message);
  std::abort();
}

}  // namespace

MonoTime FakeClock::Now() {
  std::lock_guard<std::mutex> lock(mu_);
  ++now_calls_;
  const MonoTime t = now_;
  now_ += auto_advance_;
  return t;
}

MonoTime FakeClock::Peek() const {
  std::lock_guard<std::mutex> lock(mu_);
  return now_;
}

void FakeClock::Advance(absl::Duration d) {
  if (d < absl::ZeroDuration()) {
    Die("Advance/JumpForward with a negative duration; use JumpBackward");
  }
  std::lock_guard<std::mutex> lock(mu_);
  now_ += d;
}

void FakeClock::JumpBackward(absl::Duration d) {
  if (d < absl::ZeroDuration()) {
    Die("JumpBackward with a negative duration; use JumpForward");
  }
  if (monotonic_ && d > absl::ZeroDuration()) {
    Die("JumpBackward on a monotonic FakeClock");
  }
  std::lock_guard<std::mutex> lock(mu_);
  now_ -= d;
}

void FakeClock::Set(MonoTime t) {
  std::lock_guard<std::mutex> lock(mu_);
  if (monotonic_ && t < now_) Die("Set() backwards on a monotonic FakeClock");
  now_ = t;
}

void FakeClock::SetAutoAdvance(absl::Duration step) {
  if (step < absl::ZeroDuration()) Die("SetAutoAdvance with a negative step");
  std::lock_guard<std::mutex> lock(mu_);
  auto_advance_ = step;
}

int64_t FakeClock::now_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return now_calls_;
}

}  // namespace eventide
