// xthreadbench on Eventide, two ways:
//  - eventide-epoll: EventLoop::Post from the sending thread (what
//    RunInLoop does off the loop thread), i.e. mtqueue's NotifyQueue<Task>
//    with its eventfd wake-up, drained by the loop's epoll wait. The task
//    captures the endpoint and the value (16 bytes: stored inline in the
//    AnyInvocable, no allocation per message).
//  - eventide-mtqueue: the memcached model the library is built for: a
//    typed mtqueue::NotifyQueue<int64_t> whose fd the loop watches; the
//    watcher drains the batch. No closure per message, so this is the
//    number to hold against the peers' typed mutex queues.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <utility>

#include "absl/base/attributes.h"
#include "apps/bench/xthreadbench_common.h"
#include "loop/event_loop.h"
#include "mtqueue/notify_queue.h"

namespace eventide_bench {
namespace {

// Out of line, as the raw floor's error path is: formatting the message in
// Send() itself gave it a stack-protected frame and a dozen instructions per
// message that the peers do not pay.
[[noreturn]] ABSL_ATTRIBUTE_NOINLINE void DieOnSendError(
    const char* what, const absl::Status& status) {
  std::fprintf(stderr, "xthreadbench: eventide %s: %s\n", what,
               status.ToString().c_str());
  std::abort();
}

class EventideEndpoint : public Endpoint {
 public:
  EventideEndpoint(std::unique_ptr<eventide::EventLoop> loop, Handler handler,
                   void* context)
      : loop_(std::move(loop)), handler_(handler), context_(context) {}

  void Send(int64_t value) override {
    absl::Status s = loop_->Post([this, value] { handler_(context_, value); });
    if (!s.ok()) DieOnSendError("Post", s);
  }
  absl::Status Run() override {
    return loop_->Run(eventide::EventLoop::RunMode::kUntilStopped);
  }
  void Stop() override { loop_->Stop(); }

 private:
  std::unique_ptr<eventide::EventLoop> loop_;
  Handler handler_;
  void* context_;
};

class EventideQueueEndpoint : public Endpoint {
 public:
  EventideQueueEndpoint(std::unique_ptr<eventide::EventLoop> loop,
                        std::unique_ptr<eventide::NotifyQueue<int64_t>> queue,
                        Handler handler, void* context)
      : loop_(std::move(loop)),
        queue_(std::move(queue)),
        handler_(handler),
        context_(context) {}

  absl::Status Start() {
    absl::StatusOr<eventide::IoWatcher> watcher = loop_->WatchIo(
        queue_->fd(), eventide::kReadable, [this](const eventide::IoEvent&) {
          queue_->Drain([this](int64_t&& v) { handler_(context_, v); });
        });
    if (!watcher.ok()) return watcher.status();
    watcher_ = std::move(*watcher);
    return absl::OkStatus();
  }

  void Send(int64_t value) override {
    absl::Status s = queue_->Push(value);
    if (!s.ok()) DieOnSendError("NotifyQueue push", s);
  }
  absl::Status Run() override {
    absl::Status s = loop_->Run(eventide::EventLoop::RunMode::kUntilStopped);
    watcher_.Release();  // on the loop thread, before the queue goes
    return s;
  }
  void Stop() override { loop_->Stop(); }

 private:
  std::unique_ptr<eventide::EventLoop> loop_;
  std::unique_ptr<eventide::NotifyQueue<int64_t>> queue_;
  eventide::IoWatcher watcher_;
  Handler handler_;
  void* context_;
};

eventide::LoopOptions EpollOnly() {
  eventide::LoopOptions options;
  options.backend.name = "epoll";
  options.backend.ignore_environment = true;
  return options;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Endpoint>> MakeEventideQueueEndpoint(
    Endpoint::Handler handler, void* context) {
  absl::StatusOr<std::unique_ptr<eventide::EventLoop>> loop =
      eventide::EventLoop::Create(EpollOnly());
  if (!loop.ok()) return loop.status();
  absl::StatusOr<std::unique_ptr<eventide::NotifyQueue<int64_t>>> queue =
      eventide::NotifyQueue<int64_t>::Create();
  if (!queue.ok()) return queue.status();
  auto endpoint = std::make_unique<EventideQueueEndpoint>(
      *std::move(loop), *std::move(queue), handler, context);
  absl::Status started = endpoint->Start();
  if (!started.ok()) return started;
  return std::unique_ptr<Endpoint>(std::move(endpoint));
}

absl::StatusOr<std::unique_ptr<Endpoint>> MakeEventideEndpoint(
    Endpoint::Handler handler, void* context) {
  eventide::LoopOptions options;
  options.backend.name = "epoll";
  options.backend.ignore_environment = true;
  absl::StatusOr<std::unique_ptr<eventide::EventLoop>> loop =
      eventide::EventLoop::Create(std::move(options));
  if (!loop.ok()) return loop.status();
  return std::unique_ptr<Endpoint>(
      new EventideEndpoint(*std::move(loop), handler, context));
}

}  // namespace eventide_bench
