// pipebench on libev 4.33 (Debian's libev-dev), epoll backend: one ev_io per
// pipe, and with --timeout one ev_timer per pipe in libev's idiom for
// resettable idle timeouts: `repeat` holds the timeout and every callback
// calls ev_timer_again (one heap adjustment, no stop/start).
#include <ev.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "apps/bench/pipebench.h"

namespace eventide {
namespace pipebench {
namespace {

struct PipeWatcher {
  ev_io io;
  ev_timer timer;
  Workload* workload;
  int index;
};

void ReadCallback(struct ev_loop* loop, ev_io* io, int /*revents*/) {
  auto* p = static_cast<PipeWatcher*>(io->data);
  if (p->workload->with_timeout) ev_timer_again(loop, &p->timer);
  p->workload->OnReadable(p->index);
}

void TimeoutCallback(struct ev_loop* /*loop*/, ev_timer* timer,
                     int /*revents*/) {
  static_cast<PipeWatcher*>(timer->data)->workload->OnTimeout();
}

class LibevImpl final : public Impl {
 public:
  ~LibevImpl() override {
    if (loop_ == nullptr) return;
    for (PipeWatcher& p : watchers_) {
      ev_io_stop(loop_, &p.io);
      ev_timer_stop(loop_, &p.timer);
    }
    ev_loop_destroy(loop_);
  }

  absl::Status Init(Workload* workload) override {
    w_ = workload;
    loop_ = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (loop_ == nullptr || ev_backend(loop_) != EVBACKEND_EPOLL) {
      return absl::UnavailableError("libev: no epoll loop");
    }
    // ev_io/ev_timer must not move once started: size the vector once.
    watchers_.resize(w_->pipes);
    for (int i = 0; i < w_->pipes; ++i) {
      PipeWatcher& p = watchers_[i];
      p.workload = w_;
      p.index = i;
      ev_io_init(&p.io, ReadCallback, w_->read_fds[i], EV_READ);
      p.io.data = &p;
      ev_init(&p.timer, TimeoutCallback);
      p.timer.repeat = static_cast<ev_tstamp>(w_->timeout_ms[i]) / 1000.0;
      p.timer.data = &p;
    }
    return absl::OkStatus();
  }

  absl::Status Reregister() override {
    for (int i = 0; i < w_->pipes; ++i) {
      PipeWatcher& p = watchers_[i];
      ev_io_stop(loop_, &p.io);
      ev_io_set(&p.io, w_->read_fds[i], EV_READ);
      ev_io_start(loop_, &p.io);
      if (w_->with_timeout) {
        ev_timer_stop(loop_, &p.timer);
        ev_timer_again(loop_, &p.timer);
      }
    }
    return absl::OkStatus();
  }

  absl::Status RunOnceNonBlocking() override {
    ev_run(loop_, EVRUN_NOWAIT | EVRUN_ONCE);
    return absl::OkStatus();
  }

 private:
  Workload* w_ = nullptr;
  struct ev_loop* loop_ = nullptr;
  std::vector<PipeWatcher> watchers_;
};

}  // namespace

std::unique_ptr<Impl> MakeLibevImpl() { return std::make_unique<LibevImpl>(); }

}  // namespace pipebench
}  // namespace eventide
