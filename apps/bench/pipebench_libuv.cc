// pipebench on libuv 1.44 (Debian's libuv1-dev): one uv_poll_t per pipe and,
// with --timeout, one uv_timer_t per pipe restarted by every callback
// (uv_timer_start on an active timer moves it: libuv's idle-timeout idiom).
// uv_run(UV_RUN_NOWAIT) is one non-blocking pass.
#include <uv.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "apps/bench/pipebench.h"

namespace eventide {
namespace pipebench {
namespace {

struct PipeHandles {
  uv_poll_t poll;
  uv_timer_t timer;
  Workload* workload;
  int index;
};

void TimeoutCallback(uv_timer_t* timer) {
  static_cast<PipeHandles*>(timer->data)->workload->OnTimeout();
}

void PollCallback(uv_poll_t* poll, int /*status*/, int /*events*/) {
  auto* p = static_cast<PipeHandles*>(poll->data);
  if (p->workload->with_timeout) {
    uv_timer_start(&p->timer, TimeoutCallback,
                   static_cast<uint64_t>(p->workload->timeout_ms[p->index]), 0);
  }
  p->workload->OnReadable(p->index);
}

absl::Status UvError(int code, const char* what, int index) {
  return absl::InternalError(
      absl::StrCat("libuv: ", what, " #", index, ": ", uv_strerror(code)));
}

class LibuvImpl final : public Impl {
 public:
  ~LibuvImpl() override {
    if (!initialized_) return;
    for (PipeHandles& p : handles_) {
      uv_close(reinterpret_cast<uv_handle_t*>(&p.poll), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&p.timer), nullptr);
    }
    uv_run(&loop_, UV_RUN_DEFAULT);  // runs the close callbacks
    uv_loop_close(&loop_);
  }

  absl::Status Init(Workload* workload) override {
    w_ = workload;
    if (int rc = uv_loop_init(&loop_); rc != 0) {
      return UvError(rc, "uv_loop_init", 0);
    }
    initialized_ = true;
    handles_.resize(w_->pipes);  // handles must not move once initialised
    for (int i = 0; i < w_->pipes; ++i) {
      PipeHandles& p = handles_[i];
      p.workload = w_;
      p.index = i;
      if (int rc = uv_poll_init(&loop_, &p.poll, w_->read_fds[i]); rc != 0) {
        return UvError(rc, "uv_poll_init", i);
      }
      p.poll.data = &p;
      if (int rc = uv_timer_init(&loop_, &p.timer); rc != 0) {
        return UvError(rc, "uv_timer_init", i);
      }
      p.timer.data = &p;
    }
    return absl::OkStatus();
  }

  absl::Status Reregister() override {
    for (int i = 0; i < w_->pipes; ++i) {
      PipeHandles& p = handles_[i];
      uv_poll_stop(&p.poll);
      if (int rc = uv_poll_start(&p.poll, UV_READABLE, PollCallback); rc != 0) {
        return UvError(rc, "uv_poll_start", i);
      }
      if (w_->with_timeout) {
        uv_timer_stop(&p.timer);
        uv_timer_start(&p.timer, TimeoutCallback,
                       static_cast<uint64_t>(w_->timeout_ms[i]), 0);
      }
    }
    return absl::OkStatus();
  }

  absl::Status RunOnceNonBlocking() override {
    uv_run(&loop_, UV_RUN_NOWAIT);
    return absl::OkStatus();
  }

 private:
  Workload* w_ = nullptr;
  bool initialized_ = false;
  uv_loop_t loop_;
  std::vector<PipeHandles> handles_;
};

}  // namespace

std::unique_ptr<Impl> MakeLibuvImpl() { return std::make_unique<LibuvImpl>(); }

}  // namespace pipebench
}  // namespace eventide
