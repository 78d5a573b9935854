// EventLoop: the reactor. It composes the leaves: a demux backend waits for
// I/O, a TimerHeap orders deadlines, a CachedClock gives every callback of one
// iteration the same "now" for free, and a NotifyQueue carries work from other
// threads.
//
// One iteration:
//   1. compute the wait timeout from the nearest timer (zero when deferred or
//      idle work is pending, infinite when only I/O is watched);
//   2. clear the time cache, wait on the backend, set the cache to "now";
//      on a non-monotonic source, correct a clock jump by shifting every
//      deadline (the heap order does not change);
//   3. collect: ready fds, expired timers, signals, posted tasks;
//   4. invoke the collected callbacks, high priority first, then deferred
//      callbacks; every priority level runs in every iteration, so low-priority
//      work waits at most one iteration's worth of higher-priority callbacks.
//
// Threads: an EventLoop and its watchers belong to the thread that runs it.
// Only Stop(), Post(), RunInLoop() and IsInLoopThread() may be called from
// other threads. Until its first RunOnce() or Run(), the loop belongs to the
// thread that created it (which sets up its watchers), and RunInLoop() there
// runs fn at once. A loop created on one thread to be run on another should
// get its work by Post() until that thread runs it, or be created there.
//
// Exceptions: the library itself throws none. An exception that escapes a
// callback (io, timer, signal, idle, posted or deferred) is a fatal error: the
// loop catches it at the dispatch boundary, writes one line to stderr naming
// the kind of callback and what(), and calls std::abort(). It never unwinds
// out of Run()/RunOnce() and never continues with a half-finished iteration.
// Catch inside the callback what you mean to handle.
//
// Lifetime: watchers are move-only handles. Destroying or Release()-ing a
// handle stops the watcher at once, even from inside any callback (its own
// included): a stopped watcher never fires again, and its callback object is
// destroyed only after it has returned. Callbacks are never run for a watcher
// stopped earlier in the same batch. Handles may outlive the loop (they become
// inert), but a callback must not outlive the objects it captures.
//
// Usage:
//   auto loop = eventide::EventLoop::Create().value();
//   eventide::Timer t = loop->AddTimer(absl::Milliseconds(5), [&] {
//     loop->Stop();
//   });
//   absl::Status s = loop->Run();
#ifndef EVENTIDE_LOOP_EVENT_LOOP_H_
#define EVENTIDE_LOOP_EVENT_LOOP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clock/cached_clock.h"
#include "clock/mono_time.h"
#include "clock/time_source.h"
#include "demux/backend.h"
#include "demux/registry.h"
#include "mtqueue/notify_queue.h"
#include "timerheap/timer_heap.h"

namespace eventide {

class EventLoop;
class SignalSource;

// Urgent work runs first within each iteration.
enum class Priority : uint8_t { kHigh = 0, kNormal = 1, kLow = 2 };
inline constexpr int kNumPriorities = 3;

struct IoEvent {
  int fd = -1;
  // kReadable | kWritable | kError | kHangup as reported by the backend;
  // 0 when the watcher's inactivity timeout fired instead.
  uint32_t events = 0;
  bool timed_out = false;
};

using IoCallback = absl::AnyInvocable<void(const IoEvent&)>;
using Task = absl::AnyInvocable<void()>;
using SignalCallback = absl::AnyInvocable<void(int signo)>;

struct IoOptions {
  // A persistent watcher stays registered after it fires; a one-shot watcher
  // is stopped before its callback runs (Start() re-arms it).
  bool persistent = true;
  // Inactivity timeout (libevent's event_add with a timeout): fires the
  // callback with timed_out = true when the fd shows no readiness for this
  // long. Readiness pushes the deadline forward. Infinite = none.
  absl::Duration timeout = absl::InfiniteDuration();
  Priority priority = Priority::kNormal;
};

struct TimerOptions {
  // Zero: one-shot. Otherwise the timer re-arms at deadline + period (not
  // now + period), so it does not drift; if the loop fell behind by several
  // periods it fires once and skips to the next deadline in the future.
  absl::Duration period = absl::ZeroDuration();
  Priority priority = Priority::kNormal;
};

enum class SignalMode {
  // sigaction handler that sets a flag and writes one byte to a pipe. Works in
  // any process, threaded or not.
  kSelfPipe,
  // signalfd(2): the loop blocks the signal in its own thread. Every other
  // thread of the process must block it too (e.g. block it before creating
  // threads), or the kernel may deliver it elsewhere with its default action.
  kSignalFd,
};

struct LoopOptions {
  BackendOptions backend;
  // Not owned; must outlive the loop. nullptr: the process's system source.
  TimeSource* time_source = nullptr;
  // On a non-monotonic source, a wait that lasted longer than its timeout by
  // more than this, or callbacks of one iteration that together took longer
  // than this, are taken as a forward clock jump.
  absl::Duration forward_jump_tolerance = absl::Seconds(1);
  SignalMode signal_mode = SignalMode::kSelfPipe;
  // Time every callback to fill LoopStats::longest_callback (two clock reads
  // per callback). Off: only whole dispatch phases are timed.
  bool profile_callbacks = false;
  // A callback (of any kind, posted and deferred tasks included) that runs
  // longer than this is counted in LoopStats::slow_callbacks. Finite turns on
  // per-callback timing as profile_callbacks does (and fills
  // longest_callback); infinite (the default) costs nothing.
  absl::Duration slow_callback_threshold = absl::InfiniteDuration();
  // Deferred callbacks that defer more work run in rounds; after this many
  // rounds the rest waits for the next iteration so I/O is not starved.
  int max_deferred_rounds = 16;
};

struct LoopStats {
  uint64_t iterations = 0;
  uint64_t callbacks_run = 0;
  uint64_t io_events = 0;
  uint64_t timers_fired = 0;
  uint64_t signals_delivered = 0;
  uint64_t clock_jumps_backward = 0;
  uint64_t clock_jumps_forward = 0;
  // Time in the backend's wait, and time between waits (callbacks, and
  // whatever the caller does between RunOnce calls). On a monotonic clock
  // a poll (RunOnce(false)) cannot block and counts as running time.
  absl::Duration time_waiting = absl::ZeroDuration();
  absl::Duration time_running = absl::ZeroDuration();
  // The longest single dispatch phase (all callbacks of one iteration, plus
  // the next poll, as above).
  absl::Duration longest_dispatch = absl::ZeroDuration();
  // The longest single callback; only measured with profile_callbacks or a
  // finite slow_callback_threshold.
  absl::Duration longest_callback = absl::ZeroDuration();
  // Callbacks that ran longer than LoopOptions::slow_callback_threshold.
  uint64_t slow_callbacks = 0;
};

// Base of the move-only watcher handles. Destruction stops the watcher.
class WatcherHandle {
 public:
  WatcherHandle() = default;
  WatcherHandle(const WatcherHandle&) = delete;
  WatcherHandle& operator=(const WatcherHandle&) = delete;
  WatcherHandle(WatcherHandle&& other) noexcept;
  WatcherHandle& operator=(WatcherHandle&& other) noexcept;
  ~WatcherHandle();

  // Attached to a live loop.
  bool valid() const { return loop_ != nullptr; }
  // Stops the watcher and detaches the handle (same as destroying it).
  void Release();

 protected:
  friend class EventLoop;
  WatcherHandle(EventLoop* loop, uint32_t slot);
  // The same, given the slot's owner field (saves looking the slot up).
  WatcherHandle(EventLoop* loop, uint32_t slot, WatcherHandle*& owner)
      : loop_(loop), slot_(slot) {
    owner = this;
  }
  // Release() of an attached handle.
  void Detach();

  EventLoop* loop_ = nullptr;
  uint32_t slot_ = 0;
};

// Watches one fd for readiness. One IoWatcher per fd per loop.
class IoWatcher : public WatcherHandle {
 public:
  IoWatcher() = default;
  int fd() const;
  // True while registered with the backend.
  bool active() const;
  // Changes the interest (kReadable / kWritable); a pending, not yet invoked
  // readiness of the old interest is dropped. A pending inactivity timeout
  // is not: the watcher was idle past its deadline either way.
  absl::Status SetInterest(uint32_t interest);
  uint32_t interest() const;
  // Re-arms a stopped (or fired one-shot) watcher with its current interest.
  absl::Status Start();
  void Stop();

 private:
  friend class EventLoop;
  using WatcherHandle::WatcherHandle;
};

class Timer : public WatcherHandle {
 public:
  Timer() = default;
  bool pending() const;
  void Cancel();
  // Re-arms at Now() + delay. O(log n): the idle-timeout pattern.
  void Reschedule(absl::Duration delay);
  void RescheduleAt(MonoTime deadline);
  MonoTime deadline() const;

 private:
  friend class EventLoop;
  Timer(EventLoop* loop, uint32_t slot, uint32_t heap_record,
        WatcherHandle*& owner)
      : WatcherHandle(loop, slot, owner), heap_record_(heap_record) {}

  static constexpr uint32_t kNoRecord = UINT32_MAX;

  // The heap record of this timer's element when it was last armed through
  // this handle; kNoRecord for a periodic timer. Cancel() of a one-shot
  // timer in a large heap goes to the heap with it and leaves the loop
  // slot alone: the record and the element's payload are read, and the
  // payload, the slot index, says whether the element is this timer's (a
  // slot has at most one element in the heap, so that is all it takes; a
  // record reused by another watcher fails it). The loop slot, a 96-byte
  // record in a table larger than any cache, is neither read nor written,
  // and its timer_armed flag stays set: every reader of the flag asks the
  // heap whether the element is still there (EventLoop::TimerArmed).
  // Otherwise (a small heap, a record reused, a periodic timer, whose
  // cancel must also reach the slot because the loop re-arms it when it
  // comes due while its run may be queued) the loop's slot path does the
  // cancel, with this as a hint for the record. Sits in the base's tail
  // padding: a Timer stays 16 bytes.
  uint32_t heap_record_ = kNoRecord;
};

class SignalWatcher : public WatcherHandle {
 public:
  SignalWatcher() = default;
  int signo() const;

 private:
  friend class EventLoop;
  using WatcherHandle::WatcherHandle;
};

// Runs its callback in every iteration that found nothing else to do; while
// one is active the loop polls instead of blocking.
class IdleWatcher : public WatcherHandle {
 public:
  IdleWatcher() = default;

 private:
  friend class EventLoop;
  using WatcherHandle::WatcherHandle;
};

class EventLoop {
  // A callable that AddTimer, Post and RunInLoop accept other than a Task.
  template <typename F>
  using EnableIfCallback =
      std::enable_if_t<!std::is_same<std::decay_t<F>, Task>::value &&
                       std::is_constructible<Task, F&&>::value>;

 public:
  enum class RunMode {
    // Return when Stop() is called or nothing is left to wait for (no active
    // I/O watcher, timer, signal watcher, idle watcher or deferred work).
    kUntilIdle,
    // Return only when Stop() is called, e.g. a worker that gets all its work
    // through Post().
    kUntilStopped,
  };

  static absl::StatusOr<std::unique_ptr<EventLoop>> Create(
      LoopOptions options = {});
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  absl::string_view backend_name() const { return backend_->name(); }
  // Why the registry chose this backend (and why it skipped others).
  const std::string& backend_reason() const { return backend_reason_; }

  // Runs iterations until the mode says to stop. Returns the backend's error
  // if waiting fails. Stop() ends Run() after the current iteration, whose
  // collected callbacks all still run.
  absl::Status Run(RunMode mode = RunMode::kUntilIdle);
  // One iteration; with block = false the wait only polls. With block = true
  // it waits for the next timer, I/O or signal, but returns at once when
  // nothing is active (work Post()ed from other threads is not waited for).
  absl::Status RunOnce(bool block = true);
  // Any thread. Makes Run() return after the current iteration; a Stop()
  // before Run() makes the next Run() return after one iteration. RunOnce()
  // outside Run() neither consumes nor heeds it.
  void Stop();
  // Something is left to wait for (see RunMode::kUntilIdle).
  bool HasActiveWork() const;

  // The cached instant of this iteration: no system call.
  MonoTime Now() const { return clock_.Now(); }
  // Refreshes the cache, for a callback that blocked for a long time.
  MonoTime UpdateNow() { return clock_.UpdateCache(); }

  absl::StatusOr<IoWatcher> WatchIo(int fd, uint32_t interest, IoCallback cb,
                                    IoOptions options = {});
  // Inline: one call layer less per timer (NewTimer does the work). Without
  // options the timer is a one-shot of normal priority; the overloads that
  // take none skip testing them (a TimerOptions argument lives in memory,
  // where its fields were stored and read back on every call).
  [[nodiscard]] Timer AddTimer(absl::Duration delay, Task cb) {
    return NewTimer(Now() + delay, std::move(cb), nullptr);
  }
  [[nodiscard]] Timer AddTimer(absl::Duration delay, Task cb,
                               const TimerOptions& options) {
    return NewTimer(Now() + delay, std::move(cb), &options);
  }
  [[nodiscard]] Timer AddTimerAt(MonoTime deadline, Task cb) {
    return NewTimer(deadline, std::move(cb), nullptr);
  }
  [[nodiscard]] Timer AddTimerAt(MonoTime deadline, Task cb,
                                 const TimerOptions& options) {
    return NewTimer(deadline, std::move(cb), &options);
  }
  // The same for a callable that is not already a Task (a lambda, say):
  // the Task is constructed in the timer's slot from `cb`, instead of here
  // and then moved there. Behaves exactly like the overloads above.
  template <typename F, typename = EnableIfCallback<F>>
  [[nodiscard]] Timer AddTimer(absl::Duration delay, F&& cb) {
    return NewTimer(Now() + delay, std::forward<F>(cb), nullptr);
  }
  template <typename F, typename = EnableIfCallback<F>>
  [[nodiscard]] Timer AddTimer(absl::Duration delay, F&& cb,
                               const TimerOptions& options) {
    return NewTimer(Now() + delay, std::forward<F>(cb), &options);
  }
  template <typename F, typename = EnableIfCallback<F>>
  [[nodiscard]] Timer AddTimerAt(MonoTime deadline, F&& cb) {
    return NewTimer(deadline, std::forward<F>(cb), nullptr);
  }
  template <typename F, typename = EnableIfCallback<F>>
  [[nodiscard]] Timer AddTimerAt(MonoTime deadline, F&& cb,
                                 const TimerOptions& options) {
    return NewTimer(deadline, std::forward<F>(cb), &options);
  }
  // A one-shot timer the loop owns: no handle, cannot be cancelled.
  void RunAfter(absl::Duration delay, Task cb);
  // Signals are delivered to the loop's thread between callbacks, never in a
  // signal handler. Deliveries coalesce: a signal raised several times before
  // the loop reads it runs the callback once, so a burst yields at least one
  // callback and never more callbacks than raises. A signal may be owned by
  // one loop of the process at a time: a second owner gets
  // FailedPrecondition.
  absl::StatusOr<SignalWatcher> WatchSignal(int signo, SignalCallback cb);
  [[nodiscard]] IdleWatcher AddIdle(Task cb);
  // Loop thread: runs fn after the callbacks of the current batch.
  void Defer(Task fn);

  // Any thread. Queues fn for the loop's thread (through the mtqueue
  // notification). RunInLoop runs fn at once when called on the loop thread.
  absl::Status Post(Task fn);
  absl::Status RunInLoop(Task fn);
  // The same for a callable that is not already a Task (a lambda, say).
  // Post builds the Task directly in the queue when it fits the Task's
  // inline storage (two pointers, as a lambda capturing `this` and a value
  // does), instead of here and then moved there: the move and the
  // destruction of the moved-from Task are an indirect call each, per
  // message. A larger callable would allocate, and that happens here, not
  // under the queue's lock. RunInLoop on the loop thread calls `fn` at once
  // and builds no Task at all. Behaves exactly like the overloads above.
  template <typename F, typename = EnableIfCallback<F>>
  absl::Status Post(F&& fn) {
    using D = std::decay_t<F>;
    if constexpr (sizeof(D) <= 2 * sizeof(void*) &&
                  alignof(D) <= alignof(std::max_align_t) &&
                  std::is_nothrow_move_constructible<D>::value) {
      return posted_->Emplace(std::forward<F>(fn));
    } else {
      return Post(Task(std::forward<F>(fn)));
    }
  }
  template <typename F, typename = EnableIfCallback<F>>
  absl::Status RunInLoop(F&& fn) {
    if (IsInLoopThread()) {
      if constexpr (std::is_invocable<F&>::value) {
        fn();
      } else {
        // A const reference to a lambda with a mutable call operator: call
        // a copy, as Task would.
        Task(std::forward<F>(fn))();
      }
      return absl::OkStatus();
    }
    return Post(std::forward<F>(fn));
  }
  bool IsInLoopThread() const;

  // In a child after fork(): re-creates the backend if it shares kernel state
  // with the parent (epoll, io_uring), the cross-thread queue and the signal
  // pipe, and re-registers every active watcher.
  absl::Status ReinitAfterFork();

  const LoopStats& stats() const;

  // Test hooks. Timer bookkeeping: every live element of the timer heap
  // belongs to an armed timer or io watcher whose slot (the element's
  // payload) names it, no slot has two, and the heap's own invariants hold.
  // Timer::Cancel's heap-only path relies on this (see Timer::Cancel).
  // Returns the first violation found; O(timers + watchers).
  absl::Status CheckTimerBookkeepingForTesting() const;
  // The heap cancels lazily only while it holds at least `n` entries
  // (16384 by default): a lower floor lets tests take the lazy paths with
  // a few timers.
  void SetLazyCancelMinSizeForTesting(size_t n) {
    timers_.SetLazyCancelMinSizeForTesting(n);
  }

 private:
  friend class WatcherHandle;
  friend class IoWatcher;
  friend class Timer;
  friend class SignalWatcher;

  enum class SlotKind : uint8_t { kFree, kIo, kTimer, kSignal, kIdle };
  using Heap = TimerHeap<MonoTime, uint32_t>;

  // The plain state of a slot, hot fields first: what cancel, collect and
  // dispatch read sits in the first 32 bytes. 64 bytes in all, so a Slot
  // (with its 16-byte aligned callback) is 96.
  struct SlotFields {
    // Bumped by every stop, cancel, reschedule, interest change and release:
    // a pending entry collected before that no longer matches and is skipped.
    uint32_t epoch = 0;
    SlotKind kind = SlotKind::kFree;
    Priority priority = Priority::kNormal;
    bool timer_armed = false;
    // io: stopped with its inactivity deadline left in the heap (StopIo).
    bool timer_parked = false;
    bool persistent = true;          // io; timer: periodic
    bool active = false;             // io registered / signal owned / idle on
    bool loop_owned = false;         // RunAfter: freed after it fires
    bool release_requested = false;  // handle gone while the callback ran
    Heap::Handle timer{};  // timer deadline, or io inactivity deadline
    union {
      int fd = -1;  // io
      int signo;    // signal
    };
    // io inactivity deadline, reset lazily: readiness (and a restart) only
    // records the new deadline here, in nanoseconds, and the heap entry
    // keeps its older key; CollectTimers moves the entry when that key comes
    // due. Clock-jump corrections shift it with the keys (ShiftTimers).
    // timeout_ns caches interval() for that arithmetic.
    int64_t io_deadline_ns = 0;
    int64_t timeout_ns = 0;
    WatcherHandle* owner = nullptr;
    // Timer: the period; io: the inactivity timeout. Kept as the two fields
    // of an absl::Duration (whole seconds, quarter-nanosecond ticks; see
    // clock/mono_time.h), exact, in 12 bytes where a Duration takes 16.
    int64_t interval_hi = 0;
    uint8_t interest = 0;  // io; every bit of kAllInterestBits fits
    // io: changed while a direct batch (DispatchReadyIo) is pending, so the
    // readiness collected for it before is stale and is dropped, as the
    // epoch check drops a queued one: kIoStopped (to restart, too; kept when
    // the slot is freed and reused, until the batch ends) or
    // kIoInterestChanged (the same watcher, still there: its readiness still
    // resets the inactivity deadline, as the queued pass does for every
    // ready watcher before any callback runs). 0: unchanged.
    uint8_t io_touched = 0;
    // A periodic or non-normal-priority timer, or an io watcher with an
    // inactivity timeout: its heap entries need CollectTimers' full
    // treatment (counted in special_timing_slots_).
    bool special_timing = false;
    // timer: came due in a direct timer batch and was cancelled,
    // rescheduled or released (maybe reused) before DispatchDueTimers got
    // to it, which then drops it. Kept when the slot is freed, until the
    // batch ends.
    bool timer_touched = false;
    uint32_t interval_lo = 0;

    absl::Duration interval() const {
      return absl::time_internal::MakeDuration(interval_hi, interval_lo);
    }
    void set_interval(absl::Duration d) {
      interval_hi = absl::time_internal::GetRepHi(d);
      interval_lo = absl::time_internal::GetRepLo(d);
    }
  };

  // A slot runs one kind of callback, so it stores one: the member alive is
  // the one its kind names (none while the slot is free). Three separate
  // AnyInvocables made a slot ~250 bytes, and at a million timers slot
  // memory is what adding and cancelling spend their time faulting in and
  // missing on.
  union Callback {
    Callback() {}
    ~Callback() {}
    IoCallback io;          // kIo
    Task task;              // kTimer, kIdle
    SignalCallback signal;  // kSignal
  };

  // What a new or freed slot holds, as one constant: copying it is a few
  // wide stores, where the member initializers were one store per field
  // (SlotTable::AddChunk: 15 to 11 instructions per slot, 4 per AddTimer
  // at a million timers).
  static const SlotFields kPristine;

  struct Slot : SlotFields {
    // User-provided, so that make_unique<Slot[]> does not zero a whole chunk
    // before the member initializers write it again.
    Slot() : SlotFields(kPristine) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { DestroyCallback(kind); }
    // Ends the life of the callback a slot of `k` holds.
    void DestroyCallback(SlotKind k);

    Callback cb;
  };
  // A million timers are a million slots.
  static_assert(sizeof(Slot) <= 96, "EventLoop::Slot grew past 96 bytes");

  struct Pending {
    uint32_t slot;
    uint32_t epoch;
    uint32_t events;
    bool timed_out;
    // Readiness of a persistent io watcher: Dispatch runs it inline.
    bool fast_io;
    // &slots_[slot] (slots never move): saves Dispatch the chunk lookup.
    Slot* target;
  };
  // PendingQueue::Grow leaves new entries uninitialised.
  static_assert(std::is_trivial<Pending>::value, "Pending must stay trivial");

  // A per-priority queue of collected callbacks: a plain growable array.
  // std::vector's push_back cost ~19 instructions per event on pipebench's
  // hot path; Collect reserves room for a whole backend batch once and then
  // appends with bare stores. Nothing appends while Dispatch runs.
  class PendingQueue {
   public:
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    Pending& operator[](size_t i) { return data_[i]; }
    void clear() { size_ = 0; }
    // Room for n more entries without growing.
    void Reserve(size_t n) {
      if (cap_ - size_ < n) Grow(size_ + n);
    }
    void push_back(const Pending& p) {
      if (size_ == cap_) Grow(size_ + 1);
      data_[size_++] = p;
    }
    // Only within room made by Reserve().
    void PushReserved(const Pending& p) { data_[size_++] = p; }

   private:
    void Grow(size_t need);
    std::unique_ptr<Pending[]> data_;
    size_t size_ = 0;
    size_t cap_ = 0;
  };

  EventLoop(LoopOptions options, std::unique_ptr<Backend> backend,
            std::string backend_reason, TimeSource* source,
            std::unique_ptr<NotifyQueue<Task>> posted);

  // Inline: the fast path is a free-list pop or a bump, and AddTimer pays
  // for every instruction of it.
  uint32_t AllocateSlot(SlotKind kind) {
    uint32_t index;
    if (!free_slots_.empty()) {
      index = free_slots_.back();
      free_slots_.pop_back();
    } else {
      index = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    // A slot is pristine here: new ones are default-constructed, and
    // FreeSlot resets a slot before it goes on the free list. It holds no
    // callback: the caller constructs the one its kind needs right away
    // (before anything can free the slot again).
    Slot& s = slots_[index];
    s.kind = kind;
    ++s.epoch;
    return index;
  }
  // Builds the timer's Task in its slot from `cb`. The Task overloads of
  // AddTimer pass their argument on by reference (one AnyInvocable move into
  // the slot); a lambda is constructed there directly, which saves the move
  // and the destruction of a moved-from Task (an indirect call each).
  // `options`: null for the defaults (a one-shot of normal priority).
  template <typename F>
  Timer NewTimer(MonoTime deadline, F&& cb, const TimerOptions* options) {
    // kFree until the callback exists: if constructing it throws, the slot
    // goes back to the free list still pristine (only its epoch moved on),
    // and never holds a half-made callback.
    const uint32_t index = AllocateSlot(SlotKind::kFree);
    Slot& s = slots_[index];
    try {
      ::new (&s.cb.task) Task(std::forward<F>(cb));
    } catch (...) {
      free_slots_.push_back(index);
      throw;
    }
    s.kind = SlotKind::kTimer;
    // Folds to false without options.
    bool periodic = false;
    if (options != nullptr && (options->period != absl::ZeroDuration() ||
                               options->priority != Priority::kNormal)) {
      ApplyTimerOptions(s, *options);
      periodic = s.persistent;
    } else {
      // The common one-shot timer: a pristine slot already has the
      // priority, the zero period and no special timing; only its io
      // default differs.
      s.persistent = false;
    }
    // What ArmTimer would do for a fresh slot (AllocateSlot bumped the
    // epoch, nothing is armed), inline, the heap's Push included.
    s.timer = timers_.Push(deadline, index);
    s.timer_armed = true;
    return Timer(this, index,
                 periodic ? Timer::kNoRecord : s.timer.record_index(), s.owner);
  }
  // A new timer's period and priority, other than the defaults.
  void ApplyTimerOptions(Slot& s, const TimerOptions& options);
  // Stops whatever the slot does; frees it unless its callback is running.
  void ReleaseSlot(uint32_t index);
  void FreeSlot(uint32_t index);
  void Attach(uint32_t index, WatcherHandle* owner) {
    slots_[index].owner = owner;
  }
  Slot& slot(uint32_t index) { return slots_[index]; }
  const Slot& slot(uint32_t index) const { return slots_[index]; }

  void ArmTimer(uint32_t index, MonoTime deadline);
  // now + the slot's io inactivity timeout, clamped at MonoTime::Max(): the
  // one computation of an io deadline, wherever it is set or reset.
  static int64_t IoDeadlineNs(int64_t now_ns, const SlotFields& s) {
    int64_t due;
    if (__builtin_add_overflow(now_ns, s.timeout_ns, &due)) {
      due = MonoTime::Max().nanos();
    }
    return due;
  }
  // Every deadline moves by `offset` (a clock-jump correction): the heap's
  // keys and the io deadlines recorded lazily in the slots.
  void ShiftTimers(absl::Duration offset);
  // Ends a parked state (the caller moves, cancels or drops the entry).
  void Unpark(Slot& s) {
    if (s.timer_parked) {
      s.timer_parked = false;
      --parked_timers_;
    }
  }
  // Cancels the slot's timer (or io inactivity deadline), whatever state it
  // is in. Timer::Cancel tries the heap-only path first (inline, with no
  // call on the way); this is the rest. `record_hint`: where the caller
  // expects the heap record of the slot's timer (Timer::heap_record_); any
  // value is safe, see TimerHeap::CancelWithRecord.
  void DisarmTimer(uint32_t index, uint32_t record_hint);
  absl::Status StartIo(uint32_t index);
  void StopIo(uint32_t index);
  void StopSignal(uint32_t index);

  absl::Duration ComputeTimeout(bool block, MonoTime now) const;
  // Returns how long the wait is taken to have lasted: what the clock
  // measured, unless that was a jump (then what the timers were shifted to
  // assume), so that a jump never counts as time waiting.
  absl::Duration CorrectClockJump(MonoTime before_wait, absl::Duration timeout,
                                  MonoTime after_wait);
  // Non-monotonic sources only: a jump while callbacks ran (see the .cc).
  void CorrectJumpDuringCallbacks(MonoTime dispatch_start);
  // Adds the time since the last wait ended, up to `end`, to the running
  // time (the callbacks of the last pass, and a poll's own wait).
  void RecordRunningTime(MonoTime end) {
    const int64_t ran_ns = end.nanos() - last_wait_end_.nanos();
    time_running_ns_ += ran_ns;
    longest_dispatch_ns_ = std::max(longest_dispatch_ns_, ran_ns);
  }
  void Collect(MonoTime now);
  // Reads the signal fd and queues the watchers of the signals it reported;
  // false if none of them has one.
  bool CollectSignals();
  // fd_to_slot_[fd] = value, growing the map.
  void SetFdSlot(int fd, int32_t value);
  // Only when a timer is due (the heap's top key is at or before `now`).
  void CollectTimers(MonoTime now);
  void Dispatch();
  // Runs the normal-priority io callbacks of a direct batch straight from
  // ready_ (see Collect), then ends the batch.
  void DispatchReadyIo();
  // Runs the timers of a direct timer batch (see CollectTimers) straight
  // from due_timers_, then ends the batch.
  void DispatchDueTimers();
  // A timer that came due in this pass's direct timer batch, still waiting
  // for DispatchDueTimers, is being cancelled, rescheduled or released:
  // marks it (Slot::timer_touched) so that it does not fire.
  void TouchDueTimer(uint32_t index, Slot& s) {
    if (direct_timer_batch_ && !s.timer_touched) {
      s.timer_touched = true;
      touched_timer_slots_.push_back(index);
    }
  }
  // Slot::timer_armed as the API reports it: set, and the heap still holds
  // the slot's element. It does not after Timer::Cancel's heap-only path,
  // nor for a timer of a direct timer batch that has not run yet (out of
  // the heap, as it would be after CollectTimers' full pass).
  bool TimerArmed(uint32_t index, const Slot& s) const {
    return s.timer_armed && timers_.ContainsOwned(s.timer, index);
  }
  // Marks an io slot that changed during a direct batch (Slot::io_touched);
  // a stop outranks a new interest.
  static constexpr uint8_t kIoInterestChanged = 1;
  static constexpr uint8_t kIoStopped = 2;
  void TouchIo(uint32_t index, Slot& s, uint8_t how) {
    if (!direct_io_batch_) return;
    if (s.io_touched == 0) touched_io_slots_.push_back(index);
    if (how > s.io_touched) s.io_touched = how;
  }
  void Invoke(const Pending& p);
  void DrainPosted();
  void RunDeferred();
  // Runs and empties *tasks (posted_batch_ or deferred_).
  void RunTasks(std::vector<Task>* tasks);
  // Records one callback's duration (per-callback timing is on).
  void RecordCallbackTime(MonoTime start);
  // An exception escaped a callback: one line to stderr, then abort.
  [[noreturn]] void DieOfEscapedException(const char* what) const;

  LoopOptions options_;
  std::unique_ptr<Backend> backend_;
  std::string backend_reason_;
  mutable CachedClock clock_;  // reading the time is logically const
  // clock_.source()->is_monotonic(), read once: a source never changes its
  // answer (clock/time_source.h), and RunOnce asks on every pass.
  const bool monotonic_clock_;
  std::unique_ptr<NotifyQueue<Task>> posted_;
  std::unique_ptr<SignalSource> signals_;

  // Slots in fixed-size chunks: a callback running from a slot must not move
  // when a callback creates watchers (emplace_back keeps references valid, as
  // std::deque's does), and indexing is a shift and a mask, cheaper than
  // std::deque's, on the per-callback path.
  class SlotTable {
   public:
    Slot& operator[](size_t i) { return chunks_[i >> kShift][i & kMask]; }
    const Slot& operator[](size_t i) const {
      return chunks_[i >> kShift][i & kMask];
    }
    size_t size() const { return size_; }
    void emplace_back() {
      if ((size_ & kMask) == 0) AddChunk();
      ++size_;
    }
    // Destroys every slot (and its callbacks).
    void clear() {
      chunks_.clear();
      size_ = 0;
    }
    template <typename Table, typename Ref>
    class Iter {
     public:
      Iter(Table* table, size_t i) : table_(table), i_(i) {}
      Ref operator*() const { return (*table_)[i_]; }
      Iter& operator++() {
        ++i_;
        return *this;
      }
      bool operator!=(const Iter& other) const { return i_ != other.i_; }

     private:
      Table* table_;
      size_t i_;
    };
    Iter<SlotTable, Slot&> begin() { return {this, 0}; }
    Iter<SlotTable, Slot&> end() { return {this, size_}; }
    Iter<const SlotTable, const Slot&> begin() const { return {this, 0}; }
    Iter<const SlotTable, const Slot&> end() const { return {this, size_}; }

   private:
    // Out of line: keeps the chunk construction loop (and the registers it
    // needs) out of AllocateSlot, which otherwise saved and restored six
    // registers on every call.
    void AddChunk();

    // 256 slots (24 KB) a chunk: at 64, allocating the chunks cost ~4
    // instructions per AddTimer at a million timers (~220 per chunk).
    static constexpr size_t kShift = 8;
    static constexpr size_t kChunk = size_t{1} << kShift;
    static constexpr size_t kMask = kChunk - 1;
    std::vector<std::unique_ptr<Slot[]>> chunks_;
    size_t size_ = 0;
  };
  SlotTable slots_;
  std::vector<uint32_t> free_slots_;
  // -1: not watched; kPostedFd / kSignalFd: the loop's own fds, so Collect
  // tells every kind of ready fd apart with this one lookup.
  std::vector<int32_t> fd_to_slot_;
  static constexpr int32_t kPostedFd = -2;
  static constexpr int32_t kSignalFd = -3;
  std::vector<int32_t> signal_to_slot_;
  Heap timers_;
  std::vector<ReadyEvent> ready_;
  PendingQueue pending_[kNumPriorities];
  std::vector<Task> deferred_;
  std::vector<Task> posted_batch_;
  std::vector<Task> running_tasks_;  // scratch for RunTasks, reused
  std::vector<int> signal_batch_;    // scratch for SignalSource::ReadPending
  // Scratch for CollectTimers: (deadline, slot) of the timers due this pass.
  std::vector<std::pair<MonoTime, uint32_t>> due_timers_;
  std::vector<uint32_t> idle_slots_;

  size_t active_io_ = 0;
  // Io watchers (active or not) of a priority other than kNormal: while
  // there are none, a batch with no timer due can skip the pending queues
  // for readiness (direct batch, see Collect).
  size_t other_priority_io_ = 0;
  // This pass's io readiness is in ready_, not in pending_, and runs in
  // DispatchReadyIo; set by Collect, cleared when that has run.
  bool direct_io_batch_ = false;
  // The instant Collect saw: DispatchReadyIo resets inactivity deadlines
  // from it, as Collect does in a queued batch (a callback may move the
  // cached time on with UpdateNow()).
  int64_t collect_now_ns_ = 0;
  // The slots TouchIo marked, to clear their flags after the batch.
  std::vector<uint32_t> touched_io_slots_;
  // Slots with Slot::special_timing set. While there are none (and
  // per-callback timing is off), every heap entry is a one-shot timer of
  // normal priority, and the due ones need no treatment before they run.
  size_t special_timing_slots_ = 0;
  // This pass's due timers are in due_timers_, not in pending_, and run in
  // DispatchDueTimers; set by CollectTimers, cleared when that has run.
  bool direct_timer_batch_ = false;
  // The slots TouchDueTimer marked, to clear their flags after the batch.
  std::vector<uint32_t> touched_timer_slots_;
  // Heap entries of stopped io watchers (Slot::timer_parked): not work.
  size_t parked_timers_ = 0;
  size_t active_signals_ = 0;

  static constexpr uint32_t kNoSlot = UINT32_MAX;
  uint32_t running_slot_ = kNoSlot;
  bool dispatching_ = false;
  bool wait_for_posts_ = false;  // Run(kUntilStopped) in progress
  bool in_run_ = false;          // Run() in progress (any mode)
  // profile_callbacks or a finite slow_callback_threshold: one flag, so the
  // per-callback cost with both off stays one predictable branch.
  bool time_callbacks_ = false;
  // Which task list RunTasks is running, for the message when a task throws.
  enum class TaskPhase : uint8_t { kNone, kPosted, kDeferred };
  TaskPhase task_phase_ = TaskPhase::kNone;
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::thread::id> loop_thread_;
  MonoTime last_wait_end_;
  bool have_last_wait_end_ = false;
  // mutable: stats() fills the Duration fields from the *_ns_ counters.
  mutable LoopStats stats_;
  // Per-pass time accounting in plain nanoseconds: absl::Duration's
  // saturating arithmetic cost ~90 instructions per pass here.
  int64_t time_waiting_ns_ = 0;
  int64_t time_running_ns_ = 0;
  int64_t longest_dispatch_ns_ = 0;
};

// The handle operations every AddTimer/Cancel goes through, inline: moving
// a handle into place and destroying the moved-from one were out-of-line
// calls of ~35 instructions per timer, mostly call overhead around a null
// test.
inline WatcherHandle::WatcherHandle(EventLoop* loop, uint32_t slot)
    : loop_(loop), slot_(slot) {
  loop_->Attach(slot_, this);
}

inline WatcherHandle::WatcherHandle(WatcherHandle&& other) noexcept
    : loop_(other.loop_), slot_(other.slot_) {
  other.loop_ = nullptr;
  if (loop_ != nullptr) loop_->Attach(slot_, this);
}

inline WatcherHandle& WatcherHandle::operator=(WatcherHandle&& other) noexcept {
  if (this != &other) {
    Release();
    // Through locals: the store to other.loop_ may alias this->loop_ as far
    // as the compiler knows, which would reload loop_ for Attach.
    EventLoop* const loop = other.loop_;
    const uint32_t slot = other.slot_;
    other.loop_ = nullptr;
    loop_ = loop;
    slot_ = slot;
    if (loop != nullptr) loop->Attach(slot, this);
  }
  return *this;
}

inline WatcherHandle::~WatcherHandle() { Release(); }

inline void WatcherHandle::Release() {
  if (loop_ != nullptr) Detach();
}

inline void Timer::Cancel() {
  if (loop_ == nullptr) return;
  if (loop_->timers_.TryCancelLazilyByOwner(heap_record_, slot_)) return;
  loop_->DisarmTimer(slot_, heap_record_);
}

}  // namespace eventide

#endif  // EVENTIDE_LOOP_EVENT_LOOP_H_
