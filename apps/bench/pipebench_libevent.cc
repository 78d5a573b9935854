// pipebench on libevent 2.1 (Debian's libevent-dev), epoll backend: one
// persistent event per pipe, re-registered each iteration with event_del +
// event_add. With --timeout the event is added with its idle timeout; for a
// persistent event libevent itself re-adds the timeout relative to now each
// time the fd fires, so the callback has nothing to reset.
#include <event2/event.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "apps/bench/pipebench.h"

namespace eventide {
namespace pipebench {
namespace {

struct PipeEvent {
  struct event* ev = nullptr;
  Workload* workload = nullptr;
  int index = 0;
  struct timeval timeout = {};
};

void ReadCallback(evutil_socket_t /*fd*/, short what, void* arg) {
  auto* p = static_cast<PipeEvent*>(arg);
  if (what & EV_TIMEOUT) {
    p->workload->OnTimeout();
    return;
  }
  p->workload->OnReadable(p->index);
}

class LibeventImpl final : public Impl {
 public:
  ~LibeventImpl() override {
    for (PipeEvent& p : events_) {
      if (p.ev != nullptr) event_free(p.ev);
    }
    if (base_ != nullptr) event_base_free(base_);
  }

  absl::Status Init(Workload* workload) override {
    w_ = workload;
    struct event_config* config = event_config_new();
    if (config == nullptr) return absl::InternalError("libevent: no config");
    event_config_avoid_method(config, "select");
    event_config_avoid_method(config, "poll");
    base_ = event_base_new_with_config(config);
    event_config_free(config);
    if (base_ == nullptr) {
      return absl::UnavailableError("libevent: no epoll event_base");
    }
    const std::string method = event_base_get_method(base_);
    if (method != "epoll") {
      return absl::UnavailableError(
          absl::StrCat("libevent: backend is ", method, ", not epoll"));
    }
    events_.resize(w_->pipes);  // never resized again: callbacks hold &p
    for (int i = 0; i < w_->pipes; ++i) {
      PipeEvent& p = events_[i];
      p.workload = w_;
      p.index = i;
      p.timeout.tv_sec = w_->timeout_ms[i] / 1000;
      p.timeout.tv_usec = (w_->timeout_ms[i] % 1000) * 1000;
      p.ev = event_new(base_, w_->read_fds[i], EV_READ | EV_PERSIST,
                       ReadCallback, &p);
      if (p.ev == nullptr) return absl::InternalError("libevent: event_new");
    }
    return absl::OkStatus();
  }

  absl::Status Reregister() override {
    for (PipeEvent& p : events_) {
      event_del(p.ev);
      if (event_add(p.ev, w_->with_timeout ? &p.timeout : nullptr) != 0) {
        return absl::InternalError(
            absl::StrCat("libevent: event_add #", p.index));
      }
    }
    return absl::OkStatus();
  }

  absl::Status RunOnceNonBlocking() override {
    if (event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK) < 0) {
      return absl::InternalError("libevent: event_base_loop");
    }
    return absl::OkStatus();
  }

 private:
  Workload* w_ = nullptr;
  struct event_base* base_ = nullptr;
  std::vector<PipeEvent> events_;
};

}  // namespace

std::unique_ptr<Impl> MakeLibeventImpl() {
  return std::make_unique<LibeventImpl>();
}

}  // namespace pipebench
}  // namespace eventide
