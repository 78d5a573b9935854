// xthreadbench floor, no library: MutexQueue (std::mutex + std::deque) and
// an eventfd written on the queue's empty -> non-empty transition; the
// consumer thread blocks in epoll_wait on the eventfd, reads it, then swaps
// the batch out.
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "apps/bench/xthreadbench_common.h"

namespace eventide_bench {
namespace {

class RawEventfdEndpoint : public Endpoint {
 public:
  RawEventfdEndpoint(int efd, int epfd, Handler handler, void* context)
      : efd_(efd), epfd_(epfd), handler_(handler), context_(context) {}
  ~RawEventfdEndpoint() override {
    close(epfd_);
    close(efd_);
  }

  void Send(int64_t value) override {
    if (!queue_.Push(value)) return;
    const uint64_t one = 1;
    // EAGAIN: the counter is saturated, so a wake-up is pending anyway.
    if (write(efd_, &one, sizeof one) < 0 && errno != EAGAIN) {
      std::fprintf(stderr, "xthreadbench: raw eventfd write: %s\n",
                   strerror(errno));
      std::abort();
    }
  }

  absl::Status Run() override {
    stop_ = false;
    while (!stop_) {
      epoll_event ev;
      const int n = epoll_wait(epfd_, &ev, 1, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::ErrnoToStatus(errno, "epoll_wait");
      }
      uint64_t count;
      if (read(efd_, &count, sizeof count) < 0 && errno != EAGAIN) {
        return absl::ErrnoToStatus(errno, "eventfd read");
      }
      DrainMutexQueue(&queue_, &batch_, handler_, context_);
    }
    return absl::OkStatus();
  }
  void Stop() override { stop_ = true; }

 private:
  const int efd_;
  const int epfd_;
  Handler handler_;
  void* context_;
  MutexQueue queue_;
  std::deque<int64_t> batch_;
  bool stop_ = false;  // loop thread only
};

}  // namespace

absl::StatusOr<std::unique_ptr<Endpoint>> MakeRawEventfdEndpoint(
    Endpoint::Handler handler, void* context) {
  const int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return absl::ErrnoToStatus(errno, "eventfd");
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    const int err = errno;
    close(efd);
    return absl::ErrnoToStatus(err, "epoll_create1");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = efd;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev) < 0) {
    const int err = errno;
    close(epfd);
    close(efd);
    return absl::ErrnoToStatus(err, absl::StrCat("epoll_ctl ADD fd ", efd));
  }
  return std::unique_ptr<Endpoint>(
      new RawEventfdEndpoint(efd, epfd, handler, context));
}

}  // namespace eventide_bench
