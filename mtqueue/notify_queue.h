// NotifyQueue<T>: a multi-producer, single-consumer work queue that wakes its
// consumer through a file descriptor (memcached's threading model).
//
// Producers on any thread Push() items into a mutex-protected queue. The
// consumer watches fd() for readability with whatever loop it runs (ours,
// libevent, a plain poll(2)) and, when it is readable, calls Drain(), which
// takes the whole batch out under one lock acquisition and runs a callback
// on each item after releasing the lock.
//
// Guarantees
//   - Order: items from one producer thread are drained in the order that
//     thread pushed them. Items from different producers interleave in the
//     order their pushes took the lock.
//   - Exactly once: every successfully pushed item is handed to exactly one
//     Drain() callback, or destroyed with the queue if never drained. Nothing
//     is ever leaked: an item the callback does not move from is destroyed
//     right after the callback returns.
//   - No lost wake-up: after a successful push, fd() is or becomes readable
//     until a Drain() that returns that item has started.
//   - Coalescing: a push writes to the fd only when no wake-up is pending
//     (the first push after a Drain). A burst of any size between two drains
//     costs one write(2). Spurious wake-ups (fd readable, Drain() returns 0)
//     can happen and are harmless.
//   - Close(): later pushes fail with FailedPrecondition. Items pushed before
//     Close() stay in the queue and are handed out by Drain() as usual (they
//     are not returned to producers). From Close() on, fd() stays readable
//     for good, like a socket at EOF, so the consumer cannot miss it.
//   - Capacity (optional): at most `capacity` items wait in the queue. When
//     full, TryPush() returns false and keeps the item; Push() fails with
//     ResourceExhausted (FullPolicy::kFail) or blocks until a Drain() makes
//     room or Close() is called (FullPolicy::kBlock).
//
// Threads
//   - Push(), TryPush(), Close(), closed(), size(), blocked_pushers(),
//     fd(), notifications_written(): any thread.
//   - Drain(): the consumer, one thread at a time, never from inside its own
//     callback (checked in debug builds). The callback may Push() to this
//     queue (it lands in the next batch), Close() it, or touch other queues,
//     but must not destroy the queue, and with FullPolicy::kBlock it must not
//     Push() into a full queue (that would wait for itself; checked in debug
//     builds).
//   - Destruction: when no thread can start another call and none is
//     blocked in Push(). The consumer may destroy the queue as soon as a
//     Drain() has returned what it waited for (say, a "shutdown" item, or
//     everything after closed()): a producer or Close() still finishing its
//     wake-up write is waited for by the destructor. Pending items are
//     destroyed, not leaked.
//
// Ownership: the queue owns queued items; Push(T) takes its argument by
// value, so on failure the item is destroyed (for a move-only T use
// TryPush(T&), which leaves the item with the caller when it fails). The
// queue owns fd(): never close it, just stop watching it before destroying
// the queue.
//
// Example (consumer loop with poll(2)):
//   auto q = NotifyQueue<std::unique_ptr<Job>>::Create();
//   if (!q.ok()) return q.status();
//   // producers:  absl::Status s = (*q)->Push(std::make_unique<Job>(...));
//   pollfd p{(*q)->fd(), POLLIN, 0};
//   for (;;) {
//     poll(&p, 1, -1);
//     const bool was_closed = (*q)->closed();  // read before Drain()
//     (*q)->Drain([](std::unique_ptr<Job>&& job) { job->Run(); });
//     if (was_closed) break;  // that Drain() emptied the queue for good
//   }
#ifndef MTQUEUE_NOTIFY_QUEUE_H_
#define MTQUEUE_NOTIFY_QUEUE_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "mtqueue/notifier.h"

namespace eventide {

struct NotifyQueueOptions {
  // Which fd carries the wake-up: kAuto (eventfd, else a pipe), kEventFd or
  // kPipe. The values are those of NotifierKind (mtqueue/notifier.h).
  using Notifier = NotifierKind;
  Notifier notifier = Notifier::kAuto;

  // Maximum number of items waiting in the queue; 0 means unbounded.
  size_t capacity = 0;

  // What Push() does when the queue holds `capacity` items.
  enum class FullPolicy {
    kBlock,  // wait until Drain() makes room or Close() is called
    kFail,   // return ResourceExhausted at once
  };
  FullPolicy full_policy = FullPolicy::kFail;
};

namespace mtqueue_internal {
// Aborts with a message: the wake-up fd failed in a way that cannot happen
// while the queue owns it (e.g. EBADF), so an invariant is broken.
[[noreturn]] void DieOnNotifierError(const char* what,
                                     const absl::Status& status);
// Aborts with a message about a misuse of the threading contract.
[[noreturn]] void DieOnMisuse(const char* message);
}  // namespace mtqueue_internal

template <typename T>
class NotifyQueue {
  // Lets Create() use std::make_unique while the constructor stays private
  // in practice (explicit, so `{}` cannot conjure one outside the class).
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  using value_type = T;

  // Creates the queue and its wake-up fd. Fails with the notifier's error
  // (e.g. EMFILE, or Unimplemented for kEventFd where eventfd is missing).
  static absl::StatusOr<std::unique_ptr<NotifyQueue>> Create(
      NotifyQueueOptions options = {}) {
    absl::StatusOr<FdNotifier> notifier = FdNotifier::Create(options.notifier);
    if (!notifier.ok()) return notifier.status();
    return std::make_unique<NotifyQueue>(PrivateTag{}, *std::move(notifier),
                                         options);
  }

  NotifyQueue(PrivateTag, FdNotifier notifier, NotifyQueueOptions options)
      : options_(options),
        notifier_(std::move(notifier)),
        push_checks_(options.capacity != 0) {}
  NotifyQueue(const NotifyQueue&) = delete;
  NotifyQueue& operator=(const NotifyQueue&) = delete;
  NotifyQueue(NotifyQueue&&) = delete;
  NotifyQueue& operator=(NotifyQueue&&) = delete;

  ~NotifyQueue() {
    // Taking the lock waits out a Close() or Push() still inside its locked
    // section; then wait for producers still writing their wake-up after
    // the unlock (one write(2) each at most).
    std::lock_guard<std::mutex> lock(mu_);
#ifndef NDEBUG
    if (blocked_pushers_ != 0) {
      mtqueue_internal::DieOnMisuse(
          "NotifyQueue destroyed while a producer is blocked in Push()");
    }
#endif
    while (writers_in_flight_.load(std::memory_order_acquire) != 0) {
      std::this_thread::yield();
    }
    // items_ and spare_ destroy any pending items here.
  }

  // The fd to watch for readability. Owned by the queue.
  int fd() const { return notifier_.fd(); }

  // kEventFd or kPipe: the notifier actually in use.
  NotifierKind notifier_kind() const { return notifier_.kind(); }

  const NotifyQueueOptions& options() const { return options_; }

  // Enqueues `item`. Any thread. Returns
  //   - OK: queued; the consumer will see it in a Drain().
  //   - FailedPrecondition: the queue is closed (also when Close() releases
  //     a Push() blocked on a full queue).
  //   - ResourceExhausted: full and FullPolicy::kFail.
  // On failure `item` is destroyed when Push() returns (outside the lock).
  absl::Status Push(T item) { return Emplace(std::move(item)); }

  // As Push(), but constructs the item in the queue from `args` under the
  // lock, saving the move into Push()'s parameter (for a type-erased T such
  // as absl::AnyInvocable, a move is an indirect call). On failure nothing
  // is constructed and `args` are untouched.
  template <typename... Args>
  absl::Status Emplace(Args&&... args) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The hot path (an open, unbounded queue) is one test. The rest
      // (closed, bounded, waiting for room, the error statuses) is out of
      // line in MakeRoomLocked(): inlined here, it cost a stack-protected
      // 200-byte frame and a third more instructions per push.
      if (ABSL_PREDICT_FALSE(push_checks_)) {
        absl::Status room = MakeRoomLocked();
        if (!room.ok()) return room;
      }
      items_.emplace_back(std::forward<Args>(args)...);
      wake = StartWakeLocked();
    }
    if (ABSL_PREDICT_FALSE(wake)) FinishWake();
    return absl::OkStatus();
  }

  // Enqueues `item` if the queue is open and not full; never blocks. On
  // success `item` is moved from and true is returned. On failure (closed
  // or full) false is returned and `item` is untouched: a move-only item
  // stays with the caller. Use closed() to tell the two failures apart.
  bool TryPush(T& item) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_.load(std::memory_order_relaxed)) return false;
      if (options_.capacity != 0 && items_.size() >= options_.capacity) {
        return false;
      }
      items_.push_back(std::move(item));
      wake = StartWakeLocked();
    }
    if (wake) FinishWake();
    return true;
  }

  // Consumer only. Clears the pending wake-up, takes every queued item out
  // under one lock acquisition, then, with the lock released, calls `fn` on
  // each item in queue order. Returns the number of items handed to `fn`
  // (0 on a spurious wake-up). Never blocks except on the queue's mutex.
  //
  // If closed() was true before the call, this Drain() returns every item
  // that will ever be in the queue.
  //
  // `fn` is any callable taking T&& (an absl::FunctionRef works too). It is
  // a template parameter so the per-item call can be inlined: at hundreds
  // of items per wake-up, an indirect call per item is a measurable share
  // of the consumer's work.
  template <typename Fn>
  size_t Drain(Fn&& fn) {
    EnterDrain();
    std::vector<T> batch = std::move(spare_);
    spare_.clear();
    TakeBatch(&batch);
    const size_t n = batch.size();
    for (T& item : batch) fn(std::move(item));
    batch.clear();  // destroys whatever fn left behind
    // Keep the buffer for the next batch unless a burst left it much larger
    // than the traffic needs.
    if (batch.capacity() <= kKeptCapacity || n * 4 >= batch.capacity()) {
      spare_ = std::move(batch);
    }
    LeaveDrain();
    return n;
  }

  // Consumer only. As Drain(), but hands the whole batch over instead of
  // calling a function per item: appends every queued item to *out, in queue
  // order, and returns how many. When *out is empty (the usual case) this is
  // a swap: no item is moved, and *out's old buffer becomes the queue's, so
  // a consumer that keeps its vectors' capacity allocates nothing.
  size_t DrainTo(std::vector<T>* out) {
    EnterDrain();
    if (out->empty()) {
      TakeBatch(out);
      LeaveDrain();
      return out->size();
    }
    std::vector<T> batch = std::move(spare_);
    spare_.clear();
    TakeBatch(&batch);
    const size_t n = batch.size();
    for (T& item : batch) out->push_back(std::move(item));
    batch.clear();
    if (batch.capacity() <= kKeptCapacity || n * 4 >= batch.capacity()) {
      spare_ = std::move(batch);
    }
    LeaveDrain();
    return n;
  }

 private:
  // Consumer only: clears the pending wake-up and swaps the queued items
  // into *batch (which must be empty).
  void TakeBatch(std::vector<T>* batch) {
    // Order matters. The fd is emptied BEFORE the pending flag is reset
    // under the lock. A push that lands after our reset sets the flag again
    // and writes, so the fd is readable for it. A push that lands between
    // the read and the reset finds the flag still set and does not write,
    // but its item is already in the queue, so the swap below takes it.
    // Resetting first and reading afterwards could swallow the write of a
    // push made in between and strand its item (the stress test catches
    // that order). A producer that set the flag before our reset but writes
    // only after it (writes happen outside the lock) leaves a spurious
    // wake-up: harmless.
    //
    // After Close() the fd must stay readable, so it is not read any more.
    // If Close() ran between our read and our lock, our read may have eaten
    // its byte: re-arm.
    const bool closed_before = closed_.load(std::memory_order_acquire);
    if (!closed_before) {
      absl::Status s = notifier_.Clear();
      if (!s.ok()) mtqueue_internal::DieOnNotifierError("Drain: clear", s);
    }
    // The batch brings an empty buffer (the previous batch's, in steady
    // state) that becomes the queue's, so neither producers nor the
    // consumer allocate.
    bool rearm = false;
    bool release_pushers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      items_.swap(*batch);
      wake_pending_ = false;
      rearm = !closed_before && closed_.load(std::memory_order_relaxed);
      release_pushers = blocked_pushers_ != 0;
    }
    if (rearm) Wake();
    if (release_pushers) not_full_.notify_all();
  }

#ifndef NDEBUG
  // Marks this thread as the one inside Drain()/DrainTo(); aborts if another
  // is (concurrent consumers, or a Drain() from inside a Drain() callback).
  void EnterDrain() {
    if (drain_thread_.exchange(std::this_thread::get_id(),
                               std::memory_order_relaxed) !=
        std::thread::id()) {
      mtqueue_internal::DieOnMisuse(
          "NotifyQueue::Drain called while another Drain() runs (concurrent "
          "consumers, or Drain() from inside a Drain() callback)");
    }
  }
  void LeaveDrain() {
    drain_thread_.store(std::thread::id(), std::memory_order_relaxed);
  }
#else
  void EnterDrain() {}
  void LeaveDrain() {}
#endif

 public:
  // Any thread; idempotent. Rejects later pushes, releases producers blocked
  // in Push() (they get FailedPrecondition), and makes fd() readable for
  // good. Items already queued stay drainable.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_.load(std::memory_order_relaxed)) return;
    closed_.store(true, std::memory_order_release);
    push_checks_ = true;
    if (blocked_pushers_ != 0) not_full_.notify_all();
    // Unconditional, unlike a push: a pending wake-up could be consumed by a
    // Drain() that started before Close(); this write is never read. Close()
    // is rare, so it simply writes under the lock: once the lock is free,
    // Close() no longer touches the queue.
    Wake();
  }

  // Any thread. True once Close() has been called.
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  // Any thread. Items waiting to be drained (a snapshot).
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }

  // Any thread. Producers currently waiting in Push() on a full queue (a
  // snapshot, for tests and statistics).
  size_t blocked_pushers() const {
    std::lock_guard<std::mutex> lock(mu_);
    return blocked_pushers_;
  }

  // Any thread. Number of write(2) calls made on the wake-up fd so far
  // (pushes that found no wake-up pending, Close(), re-arms after Close()).
  // For tests and statistics.
  uint64_t notifications_written() const {
    return notifications_written_.load(std::memory_order_relaxed);
  }

 private:
  static constexpr size_t kKeptCapacity = 4096;

  // Emplace()'s slow path, with mu_ held: returns OK once the queue is open
  // and has room (after waiting, with FullPolicy::kBlock), or the error
  // Emplace() reports. Kept out of line; see Emplace().
  ABSL_ATTRIBUTE_NOINLINE absl::Status MakeRoomLocked() {
    for (;;) {
      if (closed_.load(std::memory_order_relaxed)) {
        return absl::FailedPreconditionError(
            "NotifyQueue::Push: the queue is closed");
      }
      if (options_.capacity == 0 || items_.size() < options_.capacity) {
        return absl::OkStatus();
      }
      if (options_.full_policy == NotifyQueueOptions::FullPolicy::kFail) {
        return absl::ResourceExhaustedError(
            absl::StrCat("NotifyQueue::Push: the queue is full (capacity ",
                         options_.capacity, ")"));
      }
#ifndef NDEBUG
      if (drain_thread_.load(std::memory_order_relaxed) ==
          std::this_thread::get_id()) {
        mtqueue_internal::DieOnMisuse(
            "NotifyQueue::Push would block forever: called from a Drain() "
            "callback on a full queue with FullPolicy::kBlock");
      }
#endif
      WaitNotFullLocked();
    }
  }

  // With mu_ held by the caller's lock_guard (a unique_lock's ownership
  // flag cost every push a store and a test): borrows the lock for the
  // wait and hands it back still held.
  void WaitNotFullLocked() {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    ++blocked_pushers_;
    not_full_.wait(lock);
    --blocked_pushers_;
    lock.release();
  }

  // Called with mu_ held, right after an item was added. Returns true when
  // this push is the one that must write the wake-up (no wake-up pending);
  // the caller then calls FinishWake() after releasing the lock.
  //
  // Why the write happens outside the lock: measured with
  // notify_queue_benchmark, writing under the lock doubled the ping-pong
  // latency (the woken consumer immediately blocks on the mutex the
  // producer still holds across its write(2)). The cost of writing late is
  // a lifetime question: the consumer may drain the item and destroy the
  // queue while the producer is still in write(2). writers_in_flight_
  // counts such producers and the destructor waits for them (libuv's
  // uv_close spins on pending uv_async_send calls for the same reason).
  bool StartWakeLocked() {
    if (wake_pending_) return false;
    wake_pending_ = true;
    writers_in_flight_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // Once per batch, not per push: out of line so the push path stays small.
  ABSL_ATTRIBUTE_NOINLINE void FinishWake() {
    Wake();
    // The last access to *this by this producer.
    writers_in_flight_.fetch_sub(1, std::memory_order_release);
  }

  void Wake() {
    notifications_written_.fetch_add(1, std::memory_order_relaxed);
    absl::Status s = notifier_.Notify();
    if (!s.ok()) mtqueue_internal::DieOnNotifierError("wake-up write", s);
  }

  const NotifyQueueOptions options_;
  FdNotifier notifier_;  // immutable after construction

  mutable std::mutex mu_;
  std::condition_variable not_full_;  // signalled by Drain() and Close()
  std::vector<T> items_;              // guarded by mu_
  bool wake_pending_ = false;         // guarded by mu_
  size_t blocked_pushers_ = 0;        // guarded by mu_
  // Guarded by mu_: a push must go through MakeRoomLocked() (the queue is
  // bounded or closed). One flag, so the common push tests one byte.
  bool push_checks_;
  // Written under mu_, read without it by closed() and Drain().
  std::atomic<bool> closed_{false};

  std::vector<T> spare_;  // consumer only: the previous batch's buffer
  std::atomic<uint64_t> notifications_written_{0};
  // Producers between StartWakeLocked() and the end of FinishWake().
  std::atomic<int> writers_in_flight_{0};
#ifndef NDEBUG
  // The thread inside Drain(), or id() when none: catches concurrent or
  // re-entrant Drain() and a kBlock Push() that would wait for itself.
  std::atomic<std::thread::id> drain_thread_{std::thread::id()};
#endif
};

}  // namespace eventide

#endif  // MTQUEUE_NOTIFY_QUEUE_H_
