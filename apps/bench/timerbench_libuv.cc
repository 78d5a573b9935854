// timerbench on libuv 1.44: uv_timer_start / uv_timer_stop.
//
// Timed sections (the uv_timer_t array is allocated and zeroed before
// timing; libuv leaves handle memory to the user):
//   add:    uv_timer_init (binds the handle to the loop, the counterpart of
//           Eventide's slot) plus uv_timer_start(handle, cb, timeout, 0), from
//           inside a timer callback (uv_now cached). libuv's heap is
//           intrusive (the node is in the handle), so it allocates nothing.
//   cancel: uv_timer_stop in the second order.
//   fire:   uv_run until the `count` due timers (timeout 0, restarted untimed
//           on the same handles) have all run.
// The handles are uv_close()d after timing, as libuv requires before their
// memory goes.
#include <uv.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "apps/bench/timerbench_common.h"

namespace eventide_bench {
namespace {

struct LibuvState {
  uv_loop_t* loop = nullptr;
  const TimerWorkload* w = nullptr;
  uv_timer_t* timers = nullptr;
  uint64_t wrong_fires = 0;
  uint64_t fired = 0;
  int64_t t0 = 0, t1 = 0, t2 = 0;
};

void WrongCb(uv_timer_t* t) {
  ++static_cast<LibuvState*>(t->data)->wrong_fires;
}

void FireCb(uv_timer_t* t) { ++static_cast<LibuvState*>(t->data)->fired; }

void KickCb(uv_timer_t* kick) {
  LibuvState& s = *static_cast<LibuvState*>(kick->data);
  const TimerWorkload& w = *s.w;
  uv_timer_t* timers = s.timers;
  SectionBegin();
  s.t0 = TimerbenchNowNs();
  for (size_t i = 0; i < w.count; ++i) {
    uv_timer_init(s.loop, &timers[i]);
    timers[i].data = &s;
    uv_timer_start(&timers[i], WrongCb, static_cast<uint64_t>(w.timeout_ms[i]),
                   0);
  }
  s.t1 = TimerbenchNowNs();
  SectionEnd("add");
  SectionBegin();
  for (size_t j = 0; j < w.count; ++j) {
    uv_timer_stop(&timers[w.cancel_order[j]]);
  }
  s.t2 = TimerbenchNowNs();
  SectionEnd("cancel");
}

}  // namespace

absl::StatusOr<TimerRepResult> RunLibuvTimers(const TimerWorkload& w) {
  WatcherArray<uv_timer_t> timers(w);
  if (!timers.ok()) return CheckFailed("libuv: cannot map the watcher array");
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) return CheckFailed("libuv: uv_loop_init");
  LibuvState s;
  s.loop = &loop;
  s.w = &w;
  s.timers = timers.get();

  uv_timer_t kick;
  uv_timer_init(&loop, &kick);
  kick.data = &s;
  uv_timer_start(&kick, KickCb, 0, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  const bool left_over = uv_loop_alive(&loop) != 0;

  for (size_t i = 0; i < w.count; ++i) {
    uv_timer_start(&timers[i], FireCb, 0, 0);
  }
  SectionBegin();
  const int64_t t3 = TimerbenchNowNs();
  uv_run(&loop, UV_RUN_DEFAULT);
  const int64_t t4 = TimerbenchNowNs();
  SectionEnd("fire");

  for (size_t i = 0; i < w.count; ++i) {
    uv_close(reinterpret_cast<uv_handle_t*>(&timers[i]), nullptr);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&kick), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  const int closed = uv_loop_close(&loop);

  if (left_over) return CheckFailed("libuv: handles active after cancel");
  if (closed != 0) return CheckFailed("libuv: uv_loop_close failed");
  return FinishRepetition("libuv", w, s.fired, s.wrong_fires,
                          {s.t0, s.t1, s.t2, t3, t4});
}

}  // namespace eventide_bench
