// timerbench on libevent 2.1 (epoll backend, no threading):
// event_add with a timeout / event_del, on the default min-heap (no
// common-timeout queues: the timeouts are all different).
//
// Timed sections (the struct event array is allocated and zeroed before
// timing; event_assign binds preallocated memory, as ev_timer_init does):
//   add:    event_assign (callback, base) plus event_add(&ev, &timeout), from
//           inside an event callback (libevent's time cache is set). Includes
//           libevent's own min-heap growth.
//   cancel: event_del in the second order.
//   fire:   event_base_dispatch until the `count` due timers (timeout 0,
//           armed untimed) have all run.
#include <event2/event.h>
#include <event2/event_struct.h>
#include <string.h>

#include "absl/status/status.h"
#include "apps/bench/bench_util.h"
#include "apps/bench/timerbench_common.h"

namespace eventide_bench {
namespace {

struct LibeventState {
  event_base* base = nullptr;
  const TimerWorkload* w = nullptr;
  event* events = nullptr;
  uint64_t wrong_fires = 0;
  uint64_t fired = 0;
  int64_t t0 = 0, t1 = 0, t2 = 0;
};

void WrongCb(evutil_socket_t, short, void* arg) {
  ++static_cast<LibeventState*>(arg)->wrong_fires;
}

void FireCb(evutil_socket_t, short, void* arg) {
  ++static_cast<LibeventState*>(arg)->fired;
}

void KickCb(evutil_socket_t, short, void* arg) {
  LibeventState& s = *static_cast<LibeventState*>(arg);
  const TimerWorkload& w = *s.w;
  event* events = s.events;
  SectionBegin();
  s.t0 = TimerbenchNowNs();
  for (size_t i = 0; i < w.count; ++i) {
    event_assign(&events[i], s.base, -1, 0, WrongCb, &s);
    const timeval tv{static_cast<time_t>(w.timeout_ms[i] / 1000),
                     static_cast<suseconds_t>(w.timeout_ms[i] % 1000 * 1000)};
    event_add(&events[i], &tv);
  }
  s.t1 = TimerbenchNowNs();
  SectionEnd("add");
  SectionBegin();
  for (size_t j = 0; j < w.count; ++j) event_del(&events[w.cancel_order[j]]);
  s.t2 = TimerbenchNowNs();
  SectionEnd("cancel");
}

// Debian's libev.so exports libevent's API too (its emulation layer); if it
// comes first in the link, event_add & co. silently bind to libev and the
// program crashes or measures the wrong library. Refuse to run then.
bool BoundToRealLibevent() {
  return SymbolFromLibrary(reinterpret_cast<void*>(&event_base_new),
                           "libevent");
}

}  // namespace

absl::StatusOr<TimerRepResult> RunLibeventTimers(const TimerWorkload& w) {
  if (!BoundToRealLibevent()) {
    return CheckFailed(
        "libevent: event_base_new is not libevent's (libev's "
        "emulation linked first?)");
  }
  WatcherArray<event> events(w);
  if (!events.ok()) {
    return CheckFailed("libevent: cannot map the watcher array");
  }
  event_config* config = event_config_new();
  event_config_avoid_method(config, "select");
  event_config_avoid_method(config, "poll");
  event_base* base = event_base_new_with_config(config);
  event_config_free(config);
  if (base == nullptr) return CheckFailed("libevent: no epoll event_base");
  if (strcmp(event_base_get_method(base), "epoll") != 0) {
    event_base_free(base);
    return CheckFailed("libevent: backend is not epoll");
  }
  LibeventState s;
  s.base = base;
  s.w = &w;
  s.events = events.get();

  event kick;
  event_assign(&kick, base, -1, 0, KickCb, &s);
  const timeval zero{0, 0};
  event_add(&kick, &zero);
  event_base_dispatch(base);
  // 1: no events left, so nothing was left registered by the cancel phase.
  const bool left_over = event_base_loop(base, EVLOOP_NONBLOCK) != 1;

  for (size_t i = 0; i < w.count; ++i) {
    event_assign(&events[i], base, -1, 0, FireCb, &s);
    event_add(&events[i], &zero);
  }
  SectionBegin();
  const int64_t t3 = TimerbenchNowNs();
  event_base_dispatch(base);
  const int64_t t4 = TimerbenchNowNs();
  SectionEnd("fire");
  event_base_free(base);

  if (left_over) return CheckFailed("libevent: events left after cancel");
  return FinishRepetition("libevent", w, s.fired, s.wrong_fires,
                          {s.t0, s.t1, s.t2, t3, t4});
}

}  // namespace eventide_bench
