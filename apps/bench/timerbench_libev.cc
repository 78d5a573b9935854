// timerbench on libev 4.33 (epoll backend): ev_timer_start / ev_timer_stop.
//
// Timed sections (the ev_timer array is allocated and zeroed before timing;
// libev leaves watcher memory to the user):
//   add:    ev_timer_init (the callback and timeout are written into the
//           watcher, the counterpart of Eventide's callback object) plus
//           ev_timer_start, from inside a timer callback (ev_now cached).
//           Includes libev's own heap-array growth.
//   cancel: ev_timer_stop in the second order.
//   fire:   ev_run until the `count` due timers (after = 0, armed untimed)
//           have all run.
#include <ev.h>

#include "absl/status/status.h"
#include "apps/bench/timerbench_common.h"

namespace eventide_bench {
namespace {

struct LibevState {
  struct ev_loop* loop = nullptr;
  const TimerWorkload* w = nullptr;
  ev_timer* timers = nullptr;
  uint64_t wrong_fires = 0;
  uint64_t fired = 0;
  int64_t t0 = 0, t1 = 0, t2 = 0;
};

void WrongCb(struct ev_loop*, ev_timer* t, int) {
  ++static_cast<LibevState*>(t->data)->wrong_fires;
}

void FireCb(struct ev_loop*, ev_timer* t, int) {
  ++static_cast<LibevState*>(t->data)->fired;
}

void KickCb(struct ev_loop* loop, ev_timer* kick, int) {
  LibevState& s = *static_cast<LibevState*>(kick->data);
  const TimerWorkload& w = *s.w;
  ev_timer* timers = s.timers;
  SectionBegin();
  s.t0 = TimerbenchNowNs();
  for (size_t i = 0; i < w.count; ++i) {
    ev_timer_init(&timers[i], WrongCb, w.timeout_ms[i] * 1e-3, 0.);
    timers[i].data = &s;
    ev_timer_start(loop, &timers[i]);
  }
  s.t1 = TimerbenchNowNs();
  SectionEnd("add");
  SectionBegin();
  for (size_t j = 0; j < w.count; ++j) {
    ev_timer_stop(loop, &timers[w.cancel_order[j]]);
  }
  s.t2 = TimerbenchNowNs();
  SectionEnd("cancel");
}

}  // namespace

absl::StatusOr<TimerRepResult> RunLibevTimers(const TimerWorkload& w) {
  WatcherArray<ev_timer> timers(w);
  if (!timers.ok()) return CheckFailed("libev: cannot map the watcher array");
  struct ev_loop* loop = ev_loop_new(EVBACKEND_EPOLL);
  if (loop == nullptr) return CheckFailed("libev: ev_loop_new(epoll) failed");
  LibevState s;
  s.loop = loop;
  s.w = &w;
  s.timers = timers.get();

  ev_timer kick;
  ev_timer_init(&kick, KickCb, 0., 0.);
  kick.data = &s;
  ev_timer_start(loop, &kick);
  ev_run(loop, 0);
  const bool left_over =
      ev_pending_count(loop) != 0 || ev_run(loop, EVRUN_NOWAIT);

  for (size_t i = 0; i < w.count; ++i) {
    ev_timer_init(&timers[i], FireCb, 0., 0.);
    timers[i].data = &s;
    ev_timer_start(loop, &timers[i]);
  }
  SectionBegin();
  const int64_t t3 = TimerbenchNowNs();
  ev_run(loop, 0);
  const int64_t t4 = TimerbenchNowNs();
  SectionEnd("fire");
  ev_loop_destroy(loop);

  if (left_over) return CheckFailed("libev: watchers active after cancel");
  return FinishRepetition("libev", w, s.fired, s.wrong_fires,
                          {s.t0, s.t1, s.t2, t3, t4});
}

}  // namespace eventide_bench
