// pipebench on raw level-triggered epoll with no library: the floor. The
// epoll_event carries the pair index; one epoll_wait(timeout 0) per pass.
//
// --timeout: a per-pipe deadline array. Each callback stores now + timeout
// (one store; now is read once per pass, right after epoll_wait, as the
// libraries cache it). Expiry is checked by a lazy sweep: deadlines only move
// forward, so the smallest deadline seen by the last sweep is a lower bound
// for all of them and nothing can expire before it; the array is scanned only
// once that instant has passed. This is the cheapest correct idle timeout for
// a fixed set of fds, not a general timer structure.
#include <errno.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "apps/bench/pipebench.h"

namespace eventide {
namespace pipebench {
namespace {

constexpr int kMaxEvents = 4096;

int64_t NowMillis() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

class RawEpollImpl final : public Impl {
 public:
  ~RawEpollImpl() override {
    if (epfd_ >= 0) close(epfd_);
  }

  absl::Status Init(Workload* workload) override {
    w_ = workload;
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0)
      return absl::ErrnoToStatus(errno, "raw-epoll: epoll_create1");
    events_.resize(kMaxEvents);
    deadline_ms_.assign(w_->pipes, std::numeric_limits<int64_t>::max());
    return absl::OkStatus();
  }

  absl::Status Reregister() override {
    const int64_t now = w_->with_timeout ? NowMillis() : 0;
    for (int i = 0; i < w_->pipes; ++i) {
      const int fd = w_->read_fds[i];
      struct epoll_event ev = {};
      if (registered_ && epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev) != 0) {
        return absl::ErrnoToStatus(errno,
                                   absl::StrCat("raw-epoll: DEL fd ", fd));
      }
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(i);
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        return absl::ErrnoToStatus(errno,
                                   absl::StrCat("raw-epoll: ADD fd ", fd));
      }
      if (w_->with_timeout) deadline_ms_[i] = now + w_->timeout_ms[i];
    }
    registered_ = true;
    if (w_->with_timeout) {
      next_sweep_ms_ =
          *std::min_element(deadline_ms_.begin(), deadline_ms_.end());
    }
    return absl::OkStatus();
  }

  absl::Status RunOnceNonBlocking() override {
    const int n = epoll_wait(epfd_, events_.data(), kMaxEvents, 0);
    if (n < 0) {
      if (errno == EINTR) return absl::OkStatus();
      return absl::ErrnoToStatus(errno, "raw-epoll: epoll_wait");
    }
    if (!w_->with_timeout) {
      for (int i = 0; i < n; ++i) w_->OnReadable(events_[i].data.u32);
      return absl::OkStatus();
    }
    const int64_t now = NowMillis();
    for (int i = 0; i < n; ++i) {
      const uint32_t idx = events_[i].data.u32;
      deadline_ms_[idx] = now + w_->timeout_ms[idx];
      w_->OnReadable(idx);
    }
    if (now >= next_sweep_ms_) Sweep(now);
    return absl::OkStatus();
  }

 private:
  void Sweep(int64_t now) {
    int64_t next = std::numeric_limits<int64_t>::max();
    for (int i = 0; i < w_->pipes; ++i) {
      if (deadline_ms_[i] <= now) {
        deadline_ms_[i] = now + w_->timeout_ms[i];
        w_->OnTimeout();
      }
      next = std::min(next, deadline_ms_[i]);
    }
    next_sweep_ms_ = next;
  }

  Workload* w_ = nullptr;
  int epfd_ = -1;
  bool registered_ = false;
  std::vector<struct epoll_event> events_;
  std::vector<int64_t> deadline_ms_;
  int64_t next_sweep_ms_ = std::numeric_limits<int64_t>::max();
};

}  // namespace

std::unique_ptr<Impl> MakeRawEpollImpl() {
  return std::make_unique<RawEpollImpl>();
}

}  // namespace pipebench
}  // namespace eventide
