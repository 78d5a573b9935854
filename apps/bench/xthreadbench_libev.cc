// xthreadbench on libev 4.33 (epoll backend): MutexQueue + ev_async_send on
// the queue's empty -> non-empty transition; the ev_async callback drains.
#include <ev.h>

#include <deque>
#include <memory>

#include "apps/bench/xthreadbench_common.h"

namespace eventide_bench {
namespace {

class LibevEndpoint : public Endpoint {
 public:
  LibevEndpoint(struct ev_loop* loop, Handler handler, void* context)
      : loop_(loop), handler_(handler), context_(context) {
    ev_async_init(&async_, &LibevEndpoint::OnAsync);
    async_.data = this;
    ev_async_start(loop_, &async_);
  }
  ~LibevEndpoint() override {
    ev_async_stop(loop_, &async_);
    ev_loop_destroy(loop_);
  }

  void Send(int64_t value) override {
    if (queue_.Push(value)) ev_async_send(loop_, &async_);
  }
  absl::Status Run() override {
    ev_run(loop_, 0);
    return absl::OkStatus();
  }
  void Stop() override { ev_break(loop_, EVBREAK_ALL); }

 private:
  static void OnAsync(struct ev_loop*, ev_async* w, int) {
    auto* self = static_cast<LibevEndpoint*>(w->data);
    DrainMutexQueue(&self->queue_, &self->batch_, self->handler_,
                    self->context_);
  }

  struct ev_loop* loop_;
  ev_async async_;
  Handler handler_;
  void* context_;
  MutexQueue queue_;
  std::deque<int64_t> batch_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Endpoint>> MakeLibevEndpoint(
    Endpoint::Handler handler, void* context) {
  struct ev_loop* loop = ev_loop_new(EVBACKEND_EPOLL);
  if (loop == nullptr) return absl::UnavailableError("libev: no epoll loop");
  return std::unique_ptr<Endpoint>(new LibevEndpoint(loop, handler, context));
}

}  // namespace eventide_bench
