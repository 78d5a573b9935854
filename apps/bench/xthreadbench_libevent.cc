// xthreadbench on libevent 2.1 (epoll backend, evthread_use_pthreads):
// MutexQueue + event_active() from the producer on the queue's empty ->
// non-empty transition. libevent has no async watcher; with threading on,
// event_active from another thread is its documented cross-thread idiom:
// it takes the base's lock and wakes the loop through the base's own notify
// fd (an eventfd on Linux). The event is never event_add()ed, so the loop
// runs with EVLOOP_NO_EXIT_ON_EMPTY.
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/thread.h>
#include <string.h>

#include <deque>
#include <memory>
#include <mutex>

#include "apps/bench/bench_util.h"
#include "apps/bench/xthreadbench_common.h"

namespace eventide_bench {
namespace {

class LibeventEndpoint : public Endpoint {
 public:
  LibeventEndpoint(event_base* base, Handler handler, void* context)
      : base_(base), handler_(handler), context_(context) {
    event_assign(&event_, base_, -1, 0, &LibeventEndpoint::OnActive, this);
  }
  ~LibeventEndpoint() override {
    event_del(&event_);
    event_base_free(base_);
  }

  void Send(int64_t value) override {
    if (queue_.Push(value)) event_active(&event_, EV_READ, 0);
  }
  absl::Status Run() override {
    if (event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY) < 0) {
      return absl::InternalError("libevent: event_base_loop failed");
    }
    return absl::OkStatus();
  }
  void Stop() override { event_base_loopbreak(base_); }

 private:
  static void OnActive(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<LibeventEndpoint*>(arg);
    DrainMutexQueue(&self->queue_, &self->batch_, self->handler_,
                    self->context_);
  }

  event_base* base_;
  event event_;
  Handler handler_;
  void* context_;
  MutexQueue queue_;
  std::deque<int64_t> batch_;
};

// Debian's libev.so also exports libevent's API; see the BUILD file.
bool BoundToRealLibevent() {
  return SymbolFromLibrary(reinterpret_cast<void*>(&event_base_new),
                           "libevent");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Endpoint>> MakeLibeventEndpoint(
    Endpoint::Handler handler, void* context) {
  if (!BoundToRealLibevent()) {
    return absl::FailedPreconditionError(
        "libevent: event_base_new is not libevent's (libev's emulation linked "
        "first?)");
  }
  static std::once_flag threads_once;
  static int threads_status = 0;
  std::call_once(threads_once,
                 [] { threads_status = evthread_use_pthreads(); });
  if (threads_status != 0) {
    return absl::InternalError("libevent: evthread_use_pthreads failed");
  }
  event_config* config = event_config_new();
  event_config_avoid_method(config, "select");
  event_config_avoid_method(config, "poll");
  event_base* base = event_base_new_with_config(config);
  event_config_free(config);
  if (base == nullptr) {
    return absl::UnavailableError("libevent: no epoll event_base");
  }
  if (strcmp(event_base_get_method(base), "epoll") != 0) {
    event_base_free(base);
    return absl::UnavailableError("libevent: backend is not epoll");
  }
  return std::unique_ptr<Endpoint>(
      new LibeventEndpoint(base, handler, context));
}

}  // namespace eventide_bench
