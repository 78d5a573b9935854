// pipebench on Eventide: one IoWatcher per pipe; with --timeout the watcher's
// own inactivity timeout (IoOptions::timeout, libevent's event_add with a
// timeout), which the loop pushes forward on every readiness.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "apps/bench/pipebench.h"
#include "loop/event_loop.h"

namespace eventide {
namespace pipebench {
namespace {

class EventideImpl final : public Impl {
 public:
  explicit EventideImpl(std::string backend) : backend_(std::move(backend)) {}

  absl::Status Init(Workload* workload) override {
    LoopOptions options;
    options.backend.name = backend_;
    options.backend.ignore_environment = true;
    options.backend.allow_opt_in = true;
    absl::StatusOr<std::unique_ptr<EventLoop>> loop =
        EventLoop::Create(std::move(options));
    if (!loop.ok()) return loop.status();
    loop_ = std::move(*loop);
    watchers_.reserve(workload->pipes);
    for (int i = 0; i < workload->pipes; ++i) {
      IoOptions io;
      io.persistent = true;
      if (workload->with_timeout) {
        io.timeout = absl::Milliseconds(workload->timeout_ms[i]);
      }
      absl::StatusOr<IoWatcher> watcher = loop_->WatchIo(
          workload->read_fds[i], kReadable,
          [workload, i](const IoEvent& event) {
            if (event.timed_out) {
              workload->OnTimeout();
            } else {
              workload->OnReadable(i);
            }
          },
          io);
      if (!watcher.ok()) return watcher.status();
      watchers_.push_back(std::move(*watcher));
    }
    return absl::OkStatus();
  }

  absl::Status Reregister() override {
    // Stop + Start is Eventide's event_del + event_add: the fd leaves and
    // re-enters the backend, and Start() re-arms the idle timeout.
    for (IoWatcher& w : watchers_) {
      w.Stop();
      absl::Status status = w.Start();
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status RunOnceNonBlocking() override { return loop_->RunOnce(false); }

 private:
  const std::string backend_;
  std::unique_ptr<EventLoop> loop_;
  std::vector<IoWatcher> watchers_;  // destroyed before loop_
};

}  // namespace

std::unique_ptr<Impl> MakeEventideImpl(const std::string& backend) {
  return std::make_unique<EventideImpl>(backend);
}

}  // namespace pipebench
}  // namespace eventide
