// timerbench on Eventide: the EventLoop's Timer API on the epoll backend.
//
// Timed sections (handles allocated before timing, in a vector of empty
// Timer handles, so no first-touch page faults of ours land in them):
//   add:    loop.AddTimer(timeout, callback) for each timer, from inside a
//           loop callback (Now() is the cached instant), and the move of the
//           returned handle into its preallocated place. Includes whatever the
//           loop allocates (its slot table, the heap arrays): that is the
//           library's own memory, as libev's heap array is in its add.
//   cancel: Timer::Cancel() in the second order (the slot stays with the
//           handle, as a stopped ev_timer stays with its owner).
//   fire:   loop.Run() until the `count` due timers (AddTimer(0), armed
//           untimed after the phase-1 handles were released) have all run.
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "apps/bench/timerbench_common.h"
#include "loop/event_loop.h"

namespace eventide_bench {

absl::StatusOr<TimerRepResult> RunEventideTimers(const TimerWorkload& w) {
  eventide::LoopOptions options;
  options.backend.name = "epoll";
  options.backend.ignore_environment = true;
  absl::StatusOr<std::unique_ptr<eventide::EventLoop>> created =
      eventide::EventLoop::Create(std::move(options));
  if (!created.ok()) return created.status();
  eventide::EventLoop& loop = **created;

  std::vector<eventide::Timer> timers(w.count);
  uint64_t wrong_fires = 0;
  uint64_t fired = 0;
  int64_t t0 = 0, t1 = 0, t2 = 0;

  eventide::Timer kick = loop.AddTimer(absl::ZeroDuration(), [&] {
    SectionBegin();
    t0 = TimerbenchNowNs();
    for (size_t i = 0; i < w.count; ++i) {
      timers[i] = loop.AddTimer(absl::Milliseconds(w.timeout_ms[i]),
                                [&wrong_fires] { ++wrong_fires; });
    }
    t1 = TimerbenchNowNs();
    SectionEnd("add");
    SectionBegin();
    for (size_t j = 0; j < w.count; ++j) timers[w.cancel_order[j]].Cancel();
    t2 = TimerbenchNowNs();
    SectionEnd("cancel");
  });
  absl::Status status = loop.Run();
  if (!status.ok()) return status;
  if (loop.HasActiveWork()) {
    return CheckFailed("eventide: timers still pending after cancelling all");
  }

  // Releasing the phase-1 handles frees their slots for phase 3 to reuse.
  for (eventide::Timer& t : timers) t.Release();
  for (size_t i = 0; i < w.count; ++i) {
    timers[i] = loop.AddTimer(absl::ZeroDuration(), [&fired] { ++fired; });
  }
  SectionBegin();
  const int64_t t3 = TimerbenchNowNs();
  status = loop.Run();
  const int64_t t4 = TimerbenchNowNs();
  SectionEnd("fire");
  if (!status.ok()) return status;

  return FinishRepetition("eventide", w, fired, wrong_fires,
                          {t0, t1, t2, t3, t4});
}

}  // namespace eventide_bench
