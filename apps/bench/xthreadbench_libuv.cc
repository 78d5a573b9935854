// xthreadbench on libuv 1.44: MutexQueue + uv_async_send on the queue's
// empty -> non-empty transition; the uv_async_t callback drains.
#include <uv.h>

#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "apps/bench/xthreadbench_common.h"

namespace eventide_bench {
namespace {

class LibuvEndpoint : public Endpoint {
 public:
  LibuvEndpoint(Handler handler, void* context)
      : handler_(handler), context_(context) {}
  ~LibuvEndpoint() override {
    if (!initialised_) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  absl::Status Init() {
    int r = uv_loop_init(&loop_);
    if (r != 0) return absl::InternalError(absl::StrCat("uv_loop_init: ", r));
    r = uv_async_init(&loop_, &async_, &LibuvEndpoint::OnAsync);
    if (r != 0) {
      uv_loop_close(&loop_);
      return absl::InternalError(absl::StrCat("uv_async_init: ", r));
    }
    async_.data = this;
    initialised_ = true;
    return absl::OkStatus();
  }

  void Send(int64_t value) override {
    if (queue_.Push(value)) uv_async_send(&async_);
  }
  absl::Status Run() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    return absl::OkStatus();
  }
  void Stop() override { uv_stop(&loop_); }

 private:
  static void OnAsync(uv_async_t* handle) {
    auto* self = static_cast<LibuvEndpoint*>(handle->data);
    DrainMutexQueue(&self->queue_, &self->batch_, self->handler_,
                    self->context_);
  }

  uv_loop_t loop_;
  uv_async_t async_;
  bool initialised_ = false;
  Handler handler_;
  void* context_;
  MutexQueue queue_;
  std::deque<int64_t> batch_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Endpoint>> MakeLibuvEndpoint(
    Endpoint::Handler handler, void* context) {
  auto endpoint = std::make_unique<LibuvEndpoint>(handler, context);
  absl::Status s = endpoint->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<Endpoint>(std::move(endpoint));
}

}  // namespace eventide_bench
