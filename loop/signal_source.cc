#include "loop/signal_source.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace eventide {
namespace {

// Linux numbers signals 1..NSIG-1 (64 with real-time signals).
constexpr int kSignalLimit = NSIG;

// Read by the handler, so lock-free atomics only. The write fd is stored plus
// one: zero-initialised static storage then means "no owner", not fd 0.
std::atomic<int> g_wake_fd_plus_one[kSignalLimit];
std::atomic<uint32_t> g_delivered[kSignalLimit];

struct Ownership {
  const SignalSource* owner = nullptr;
  struct sigaction previous;
};
std::mutex g_ownership_mu;
Ownership g_ownership[kSignalLimit];  // guarded by g_ownership_mu

void OnSignal(int signo) {
  const int saved_errno = errno;
  g_delivered[signo].fetch_add(1);
  const int fd = g_wake_fd_plus_one[signo].load() - 1;
  if (fd >= 0) {
    const char byte = 1;
    // EAGAIN: the pipe is full, so a wake-up is already pending.
    ssize_t ignored = write(fd, &byte, 1);
    (void)ignored;
  }
  errno = saved_errno;
}

absl::Status CheckSignal(int signo) {
  if (signo <= 0 || signo >= kSignalLimit || signo == SIGKILL ||
      signo == SIGSTOP) {
    return absl::InvalidArgumentError(
        absl::StrCat("signal ", signo, " cannot be watched"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SignalSource>> SignalSource::Create(Mode mode) {
  std::unique_ptr<SignalSource> source(new SignalSource(mode));
  sigemptyset(&source->mask_);
  absl::Status status = source->OpenFds();
  if (!status.ok()) return status;
  return source;
}

SignalSource::~SignalSource() {
  while (!owned_.empty()) Remove(owned_.back());
  CloseFds();
}

absl::Status SignalSource::OpenFds() {
  if (mode_ == Mode::kSelfPipe) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
      return absl::ErrnoToStatus(errno, "signal self-pipe: pipe2");
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    for (int signo : owned_) g_wake_fd_plus_one[signo].store(write_fd_ + 1);
    return absl::OkStatus();
  }
  read_fd_ = signalfd(-1, &mask_, SFD_NONBLOCK | SFD_CLOEXEC);
  if (read_fd_ < 0) return absl::ErrnoToStatus(errno, "signalfd");
  return absl::OkStatus();
}

void SignalSource::CloseFds() {
  if (read_fd_ >= 0) close(read_fd_);
  if (write_fd_ >= 0) close(write_fd_);
  read_fd_ = write_fd_ = -1;
}

absl::Status SignalSource::UpdateSignalFd() {
  if (signalfd(read_fd_, &mask_, SFD_NONBLOCK | SFD_CLOEXEC) < 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("signalfd update on fd ", read_fd_));
  }
  return absl::OkStatus();
}

absl::Status SignalSource::Add(int signo) {
  if (absl::Status s = CheckSignal(signo); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(g_ownership_mu);
  Ownership& entry = g_ownership[signo];
  if (entry.owner == this) {
    return absl::AlreadyExistsError(
        absl::StrCat("signal ", signo, " (", strsignal(signo),
                     ") is already watched by this loop"));
  }
  if (entry.owner != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("signal ", signo, " (", strsignal(signo),
                     ") is owned by another event loop in this process"));
  }

  if (mode_ == Mode::kSelfPipe) {
    g_delivered[signo].store(0);
    g_wake_fd_plus_one[signo].store(write_fd_ + 1);
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_handler = OnSignal;
    sigfillset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (sigaction(signo, &action, &entry.previous) != 0) {
      const int err = errno;
      g_wake_fd_plus_one[signo].store(0);
      return absl::ErrnoToStatus(err, absl::StrCat("sigaction(", signo, ")"));
    }
  } else {
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, signo);
    if (int err = pthread_sigmask(SIG_BLOCK, &one, &old); err != 0) {
      return absl::ErrnoToStatus(err, "pthread_sigmask");
    }
    if (sigismember(&old, signo)) was_blocked_.push_back(signo);
    sigaddset(&mask_, signo);
    if (absl::Status s = UpdateSignalFd(); !s.ok()) {
      sigdelset(&mask_, signo);
      if (!sigismember(&old, signo)) {
        pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
      } else {
        was_blocked_.pop_back();
      }
      return s;
    }
  }
  entry.owner = this;
  owned_.push_back(signo);
  return absl::OkStatus();
}

void SignalSource::Remove(int signo) {
  auto it = std::find(owned_.begin(), owned_.end(), signo);
  if (it == owned_.end()) return;
  owned_.erase(it);
  std::lock_guard<std::mutex> lock(g_ownership_mu);
  Ownership& entry = g_ownership[signo];
  if (mode_ == Mode::kSelfPipe) {
    sigaction(signo, &entry.previous, nullptr);
    g_wake_fd_plus_one[signo].store(0);
  } else {
    sigdelset(&mask_, signo);
    (void)UpdateSignalFd();
    auto was = std::find(was_blocked_.begin(), was_blocked_.end(), signo);
    if (was != was_blocked_.end()) {
      was_blocked_.erase(was);
    } else {
      // Discard instances still pending so unblocking does not run the
      // default action (termination for most signals) on the thread.
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, signo);
      const struct timespec zero = {0, 0};
      while (sigtimedwait(&one, nullptr, &zero) == signo) {
      }
      pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    }
  }
  entry.owner = nullptr;
}

void SignalSource::ReadPending(std::vector<int>* signos) {
  if (mode_ == Mode::kSelfPipe) {
    char buffer[256];
    while (read(read_fd_, buffer, sizeof(buffer)) > 0) {
    }
    // Drain first, then take the counters: a signal that lands after the
    // exchange writes a new byte and wakes the loop again.
    for (int signo : owned_) {
      if (g_delivered[signo].exchange(0) > 0) signos->push_back(signo);
    }
    return;
  }
  struct signalfd_siginfo info[16];
  for (;;) {
    const ssize_t n = read(read_fd_, info, sizeof(info));
    if (n <= 0) break;
    const size_t count = static_cast<size_t>(n) / sizeof(info[0]);
    for (size_t i = 0; i < count; ++i) {
      const int signo = static_cast<int>(info[i].ssi_signo);
      if (std::find(signos->begin(), signos->end(), signo) == signos->end()) {
        signos->push_back(signo);
      }
    }
  }
}

absl::Status SignalSource::ReinitAfterFork() {
  CloseFds();
  return OpenFds();
}

}  // namespace eventide
