#include "loop/event_loop.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clock/jump_detector.h"
#include "clock/system_time_source.h"
#include "loop/signal_source.h"

namespace eventide {
namespace {

// API misuse that cannot be reported through a Status (a broken invariant):
// abort with a message rather than corrupt the loop.
[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "eventide::EventLoop: %s\n", what);
  std::abort();
}

SignalSource::Mode ToSourceMode(SignalMode mode) {
  return mode == SignalMode::kSignalFd ? SignalSource::Mode::kSignalFd
                                       : SignalSource::Mode::kSelfPipe;
}

// The loop keeps an interest in one byte (EventLoop::SlotFields), so it
// refuses unknown bits itself rather than leave that to the backend, which
// would only ever see the bits that fit.
absl::Status CheckInterestBits(const char* what, uint32_t interest) {
  if ((interest & ~kAllInterestBits) == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": unknown interest bits 0x",
                   absl::Hex(interest & ~kAllInterestBits)));
}
static_assert(kAllInterestBits <= UINT8_MAX,
              "every interest bit must fit in SlotFields::interest");

}  // namespace

// ---------------------------------------------------------------- handles --

void WatcherHandle::Detach() {
  EventLoop* loop = loop_;
  loop_ = nullptr;
  loop->slot(slot_).owner = nullptr;
  loop->ReleaseSlot(slot_);
}

int IoWatcher::fd() const { return loop_ ? loop_->slot(slot_).fd : -1; }

bool IoWatcher::active() const {
  return loop_ != nullptr && loop_->slot(slot_).active;
}

uint32_t IoWatcher::interest() const {
  return loop_ ? loop_->slot(slot_).interest : 0;
}

absl::Status IoWatcher::SetInterest(uint32_t interest) {
  if (loop_ == nullptr) {
    return absl::FailedPreconditionError("IoWatcher is not attached to a loop");
  }
  if (absl::Status status = CheckInterestBits("SetInterest", interest);
      !status.ok()) {
    return status;
  }
  EventLoop::Slot& s = loop_->slot(slot_);
  if (s.active) {
    absl::Status status = loop_->backend_->Modify(s.fd, interest);
    if (!status.ok()) return status;
  }
  s.interest = static_cast<uint8_t>(interest);
  ++s.epoch;
  loop_->TouchIo(slot_, s, EventLoop::kIoInterestChanged);
  return absl::OkStatus();
}

absl::Status IoWatcher::Start() {
  if (loop_ == nullptr) {
    return absl::FailedPreconditionError("IoWatcher is not attached to a loop");
  }
  return loop_->StartIo(slot_);
}

void IoWatcher::Stop() {
  if (loop_ != nullptr) loop_->StopIo(slot_);
}

// A vector of a million timers is 16 MB, not 24: the record is free.
static_assert(
    sizeof(Timer) == sizeof(WatcherHandle),
    "Timer::heap_record_ should fit in the base class's tail padding");

bool Timer::pending() const {
  return loop_ != nullptr && loop_->TimerArmed(slot_, loop_->slot(slot_));
}

void Timer::Reschedule(absl::Duration delay) {
  if (loop_ != nullptr) RescheduleAt(loop_->Now() + delay);
}

void Timer::RescheduleAt(MonoTime deadline) {
  if (loop_ == nullptr) return;
  loop_->ArmTimer(slot_, deadline);
  const EventLoop::Slot& s = loop_->slot(slot_);
  heap_record_ = s.persistent ? kNoRecord : s.timer.record_index();
}

MonoTime Timer::deadline() const {
  if (loop_ == nullptr || !loop_->TimerArmed(slot_, loop_->slot(slot_))) {
    return MonoTime::Max();
  }
  return *loop_->timers_.KeyOf(loop_->slot(slot_).timer);
}

int SignalWatcher::signo() const {
  return loop_ ? loop_->slot(slot_).signo : 0;
}

// ------------------------------------------------------------ construction --

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create(
    LoopOptions options) {
  absl::StatusOr<BackendSelection> selection = CreateBackend(options.backend);
  if (!selection.ok()) return selection.status();
  TimeSource* source = options.time_source != nullptr
                           ? options.time_source
                           : &SystemTimeSource::Default();
  absl::StatusOr<std::unique_ptr<NotifyQueue<Task>>> posted =
      NotifyQueue<Task>::Create();
  if (!posted.ok()) return posted.status();
  absl::Status status = selection->backend->Add((*posted)->fd(), kReadable);
  if (!status.ok()) return status;
  std::unique_ptr<EventLoop> loop(
      new EventLoop(std::move(options), std::move(selection->backend),
                    std::move(selection->reason), source, std::move(*posted)));
  return loop;
}

EventLoop::EventLoop(LoopOptions options, std::unique_ptr<Backend> backend,
                     std::string backend_reason, TimeSource* source,
                     std::unique_ptr<NotifyQueue<Task>> posted)
    : options_(std::move(options)),
      backend_(std::move(backend)),
      backend_reason_(std::move(backend_reason)),
      clock_(source),
      monotonic_clock_(source->is_monotonic()),
      posted_(std::move(posted)),
      loop_thread_(std::this_thread::get_id()) {
  time_callbacks_ =
      options_.profile_callbacks ||
      options_.slow_callback_threshold != absl::InfiniteDuration();
  SetFdSlot(posted_->fd(), kPostedFd);
}

void EventLoop::SetFdSlot(int fd, int32_t value) {
  if (static_cast<size_t>(fd) >= fd_to_slot_.size()) {
    fd_to_slot_.resize(static_cast<size_t>(fd) + 1, -1);
  }
  fd_to_slot_[fd] = value;
}

void EventLoop::PendingQueue::Grow(size_t need) {
  const size_t cap = std::max<size_t>({need, cap_ * 2, 64});
  // Default-initialised (Pending is trivial): only the first size_ entries
  // are ever read before being written. make_unique would zero all of them
  // first, ~7 instructions per timer when a million timers fire at once.
  std::unique_ptr<Pending[]> bigger(new Pending[cap]);
  std::copy(data_.get(), data_.get() + size_, bigger.get());
  data_ = std::move(bigger);
  cap_ = cap;
}

EventLoop::~EventLoop() {
  // Handles that outlive the loop become inert.
  for (Slot& s : slots_) {
    if (s.owner != nullptr) {
      s.owner->loop_ = nullptr;
      s.owner = nullptr;
    }
  }
  // Callbacks may capture handles of this loop; they were detached above, so
  // destroying the callbacks (with the slots) touches nothing here.
  signals_.reset();
  slots_.clear();
  // Tasks posted but never run are destroyed with the queue.
}

// ------------------------------------------------------------------ slots --

// constexpr: constant-initialized, so a loop created during static
// initialization elsewhere still finds it written.
constexpr EventLoop::SlotFields EventLoop::kPristine{};

void EventLoop::SlotTable::AddChunk() {
  chunks_.push_back(std::make_unique<Slot[]>(kChunk));
}

void EventLoop::ReleaseSlot(uint32_t index) {
  Slot& s = slots_[index];
  switch (s.kind) {
    case SlotKind::kIo:
      StopIo(index);
      // A parked inactivity deadline goes too.
      DisarmTimer(index, s.timer.record_index());
      break;
    case SlotKind::kTimer:
      DisarmTimer(index, s.timer.record_index());
      break;
    case SlotKind::kSignal:
      StopSignal(index);
      break;
    case SlotKind::kIdle:
      idle_slots_.erase(
          std::find(idle_slots_.begin(), idle_slots_.end(), index));
      break;
    case SlotKind::kFree:
      Die("release of a free watcher slot");
  }
  ++s.epoch;
  if (index == running_slot_) {
    // Its callback is on the stack: destroy it once it has returned.
    s.release_requested = true;
    return;
  }
  FreeSlot(index);
}

void EventLoop::Slot::DestroyCallback(SlotKind k) {
  switch (k) {
    case SlotKind::kIo:
      cb.io.~IoCallback();
      break;
    case SlotKind::kTimer:
    case SlotKind::kIdle:
      cb.task.~Task();
      break;
    case SlotKind::kSignal:
      cb.signal.~SignalCallback();
      break;
    case SlotKind::kFree:
      break;
  }
}

void EventLoop::FreeSlot(uint32_t index) {
  Slot& s = slots_[index];
  const SlotKind kind = s.kind;
  if (kind == SlotKind::kIo && s.priority != Priority::kNormal) {
    --other_priority_io_;
  }
  if (s.special_timing) --special_timing_slots_;
  const uint32_t epoch = s.epoch + 1;
  // A direct batch's ready_ or due_timers_ may still name this slot: the
  // marks keep that readiness or timer from reaching whatever reuses it
  // (see DispatchReadyIo and DispatchDueTimers).
  const uint8_t io_touched = s.io_touched;
  const bool timer_touched = s.timer_touched;
  static_cast<SlotFields&>(s) = kPristine;
  s.epoch = epoch;
  s.io_touched = io_touched;
  s.timer_touched = timer_touched;
  // The slot reads as free before its callback is destroyed, and goes on the
  // free list only after: destroying the callback may destroy captured
  // handles, which re-enter ReleaseSlot for other slots (and may create
  // watchers), and none of that may see this slot half torn down or reuse
  // its storage while the callback in it is still being destroyed.
  s.DestroyCallback(kind);
  free_slots_.push_back(index);
}

// ----------------------------------------------------------------- timers --

void EventLoop::ArmTimer(uint32_t index, MonoTime deadline) {
  Slot& s = slots_[index];
  ++s.epoch;
  s.io_deadline_ns = deadline.nanos();
  Unpark(s);
  if (s.timer_armed) {
    if (timers_.ContainsOwned(s.timer, index) &&
        timers_.Reschedule(s.timer, deadline)) {
      return;
    }
    // Armed but out of the heap: cancelled by Timer::Cancel's heap-only
    // path, or due in this pass's direct timer batch and not run yet (it
    // runs at its new deadline instead).
    TouchDueTimer(index, s);
  }
  s.timer = timers_.Push(deadline, index);
  s.timer_armed = true;
}

void EventLoop::ShiftTimers(absl::Duration offset) {
  timers_.ShiftAll(offset);
  // O(watchers), on a clock-jump correction only (non-monotonic sources).
  for (Slot& s : slots_) {
    if (s.kind == SlotKind::kIo && s.timer_armed) {
      s.io_deadline_ns =
          (MonoTime::FromNanos(s.io_deadline_ns) + offset).nanos();
    }
  }
}

void EventLoop::DisarmTimer(uint32_t index, uint32_t record_hint) {
  Slot& s = slots_[index];
  ++s.epoch;
  s.io_deadline_ns = 0;
  Unpark(s);
  if (s.timer_armed) {
    // Not in the heap: cancelled by Timer::Cancel's heap-only path, or due
    // in this pass's direct timer batch and not run yet. (A generation
    // alone could name another slot's element by now: see ContainsOwned.)
    if (!timers_.ContainsOwned(s.timer, index) ||
        !timers_.CancelWithRecord(s.timer, record_hint)) {
      TouchDueTimer(index, s);
    }
    s.timer_armed = false;
  }
}

void EventLoop::ApplyTimerOptions(Slot& s, const TimerOptions& options) {
  s.priority = options.priority;
  s.set_interval(options.period);
  s.persistent = options.period > absl::ZeroDuration();
  if (s.persistent || s.priority != Priority::kNormal) {
    s.special_timing = true;
    ++special_timing_slots_;
  }
}

void EventLoop::RunAfter(absl::Duration delay, Task cb) {
  const uint32_t index = AllocateSlot(SlotKind::kTimer);
  Slot& s = slots_[index];
  ::new (&s.cb.task) Task(std::move(cb));
  s.persistent = false;
  s.loop_owned = true;
  s.timer = timers_.Push(Now() + delay, index);  // fresh: see NewTimer
  s.timer_armed = true;
}

// --------------------------------------------------------------------- io --

absl::StatusOr<IoWatcher> EventLoop::WatchIo(int fd, uint32_t interest,
                                             IoCallback cb, IoOptions options) {
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat("WatchIo: invalid fd ", fd));
  }
  if (absl::Status status = CheckInterestBits("WatchIo", interest);
      !status.ok()) {
    return status;
  }
  if (static_cast<size_t>(fd) < fd_to_slot_.size() && fd_to_slot_[fd] >= 0) {
    return absl::AlreadyExistsError(absl::StrCat(
        "WatchIo: fd ", fd, " already has a watcher in this loop"));
  }
  const uint32_t index = AllocateSlot(SlotKind::kIo);
  Slot& s = slots_[index];
  s.fd = fd;
  s.interest = static_cast<uint8_t>(interest);
  ::new (&s.cb.io) IoCallback(std::move(cb));
  s.persistent = options.persistent;
  s.priority = options.priority;
  // Counted from here, so the FreeSlot below (on failure) evens it out.
  if (s.priority != Priority::kNormal) ++other_priority_io_;
  s.set_interval(options.timeout);
  s.timeout_ns = absl::ToInt64Nanoseconds(options.timeout);  // saturates
  if (options.timeout != absl::InfiniteDuration()) {
    s.special_timing = true;
    ++special_timing_slots_;
  }
  absl::Status status = StartIo(index);
  if (!status.ok()) {
    FreeSlot(index);
    return status;
  }
  return IoWatcher(this, index);
}

absl::Status EventLoop::StartIo(uint32_t index) {
  Slot& s = slots_[index];
  if (s.active) return absl::OkStatus();
  absl::Status status = backend_->Add(s.fd, s.interest);
  if (!status.ok()) return status;
  if (static_cast<size_t>(s.fd) < fd_to_slot_.size()) {
    fd_to_slot_[s.fd] = static_cast<int32_t>(index);  // no call when it fits
  } else {
    SetFdSlot(s.fd, static_cast<int32_t>(index));
  }
  s.active = true;
  ++active_io_;
  if (s.interval() != absl::InfiniteDuration()) {
    const MonoTime deadline =
        MonoTime::FromNanos(IoDeadlineNs(Now().nanos(), s));
    if (s.timer_parked) {
      // Stopped and started again before the old deadline came due: move
      // the parked entry lazily, as readiness does (see Collect), instead of
      // a cancel at Stop and a push here. The epoch was bumped by StopIo.
      Unpark(s);
      if (deadline.nanos() >= s.io_deadline_ns) {
        s.io_deadline_ns = deadline.nanos();
      } else {
        ArmTimer(index, deadline);  // earlier than before: a real move
      }
    } else {
      ArmTimer(index, deadline);
    }
  }
  return absl::OkStatus();
}

void EventLoop::StopIo(uint32_t index) {
  Slot& s = slots_[index];
  ++s.epoch;
  // Start needs no mark of its own: a direct batch only holds slots that
  // were active when it was collected, and those must stop to restart.
  TouchIo(index, s, kIoStopped);
  if (!s.active) return;
  // The fd may already be closed by the user (then the kernel dropped it from
  // epoll by itself); the error is of no use to anyone here.
  (void)backend_->Remove(s.fd);
  fd_to_slot_[s.fd] = -1;
  s.active = false;
  --active_io_;
  // The epoch is bumped above, so no timeout collected earlier fires. The
  // inactivity deadline stays in the heap, parked: a watcher stopped and
  // started again (libevent's event_del + event_add, once per iteration in
  // pipebench -t) then pays no heap cancel and push. CollectTimers drops a
  // parked entry that comes due; release disarms it (ReleaseSlot).
  if (s.timer_armed) {
    s.timer_parked = true;
    ++parked_timers_;
  }
}

// ---------------------------------------------------------------- signals --

absl::StatusOr<SignalWatcher> EventLoop::WatchSignal(int signo,
                                                     SignalCallback cb) {
  if (signals_ == nullptr) {
    absl::StatusOr<std::unique_ptr<SignalSource>> source =
        SignalSource::Create(ToSourceMode(options_.signal_mode));
    if (!source.ok()) return source.status();
    absl::Status status = backend_->Add((*source)->fd(), kReadable);
    if (!status.ok()) return status;
    signals_ = std::move(*source);
    SetFdSlot(signals_->fd(), kSignalFd);
  }
  absl::Status status = signals_->Add(signo);
  if (!status.ok()) return status;
  const uint32_t index = AllocateSlot(SlotKind::kSignal);
  Slot& s = slots_[index];
  s.signo = signo;
  ::new (&s.cb.signal) SignalCallback(std::move(cb));
  s.active = true;
  if (static_cast<size_t>(signo) >= signal_to_slot_.size()) {
    signal_to_slot_.resize(static_cast<size_t>(signo) + 1, -1);
  }
  signal_to_slot_[signo] = static_cast<int32_t>(index);
  ++active_signals_;
  return SignalWatcher(this, index);
}

void EventLoop::StopSignal(uint32_t index) {
  Slot& s = slots_[index];
  ++s.epoch;
  if (!s.active) return;
  signals_->Remove(s.signo);
  signal_to_slot_[s.signo] = -1;
  s.active = false;
  --active_signals_;
}

// ------------------------------------------------------- idle and deferred --

IdleWatcher EventLoop::AddIdle(Task cb) {
  const uint32_t index = AllocateSlot(SlotKind::kIdle);
  Slot& s = slots_[index];
  ::new (&s.cb.task) Task(std::move(cb));
  s.active = true;
  idle_slots_.push_back(index);
  return IdleWatcher(this, index);
}

void EventLoop::Defer(Task fn) { deferred_.push_back(std::move(fn)); }

// ----------------------------------------------------------- cross-thread --

bool EventLoop::IsInLoopThread() const {
  // seq_cst (a plain load on x86): see Stop().
  return loop_thread_.load() == std::this_thread::get_id();
}

absl::Status EventLoop::Post(Task fn) {
  // Emplace, not Push: one AnyInvocable move (an indirect call) less.
  return posted_->Emplace(std::move(fn));
}

absl::Status EventLoop::RunInLoop(Task fn) {
  if (IsInLoopThread()) {
    fn();
    return absl::OkStatus();
  }
  return Post(std::move(fn));
}

void EventLoop::Stop() {
  // The flag, then the loop's thread; the loop stores its thread, then
  // reads the flag (RunOnce, ComputeTimeout). All four sequentially
  // consistent, so at least one side sees the other's store: either this
  // thread knows it is not the loop's and wakes it, or the loop sees the
  // flag and does not block. With weaker orders a Stop() from the creating
  // thread while another thread starts running the loop could do neither.
  stop_requested_.store(true);
  // Wake a wait in progress; an empty task is skipped when drained.
  if (!IsInLoopThread()) (void)posted_->Push(Task());
}

void EventLoop::DrainPosted() {
  // Takes the whole batch by swapping vectors (no per-task move), then drops
  // the empty tasks Stop() posts as wake-ups (a scan that reads one pointer
  // per task and moves nothing unless it finds one).
  posted_->DrainTo(&posted_batch_);
  posted_batch_.erase(std::remove_if(posted_batch_.begin(), posted_batch_.end(),
                                     [](const Task& task) { return !task; }),
                      posted_batch_.end());
}

// ------------------------------------------------------------- the loop --

const LoopStats& EventLoop::stats() const {
  stats_.time_waiting = absl::Nanoseconds(time_waiting_ns_);
  stats_.time_running = absl::Nanoseconds(time_running_ns_);
  stats_.longest_dispatch = absl::Nanoseconds(longest_dispatch_ns_);
  return stats_;
}

absl::Status EventLoop::CheckTimerBookkeepingForTesting() const {
  std::string why;
  if (!timers_.VerifyInvariants(&why)) {
    return absl::InternalError(absl::StrCat("timer heap: ", why));
  }
  std::vector<bool> seen(slots_.size(), false);
  size_t live = 0;
  absl::Status status;
  timers_.ForEachLive([&](Heap::Handle h, MonoTime, uint32_t index) {
    ++live;
    if (!status.ok()) return;
    if (index >= slots_.size()) {
      status = absl::InternalError(absl::StrCat("heap element names slot ",
                                                index, " of ", slots_.size()));
      return;
    }
    const Slot& s = slots_[index];
    if (s.kind != SlotKind::kTimer && s.kind != SlotKind::kIo) {
      status = absl::InternalError(absl::StrCat("slot ", index, " of kind ",
                                                static_cast<int>(s.kind),
                                                " has a heap element"));
    } else if (seen[index]) {
      status = absl::InternalError(
          absl::StrCat("slot ", index, " has two live heap elements"));
    } else if (!s.timer_armed) {
      status = absl::InternalError(
          absl::StrCat("slot ", index, " has a heap element but is disarmed"));
    } else if (s.timer != h) {
      status = absl::InternalError(absl::StrCat(
          "slot ", index, "'s handle does not name its heap element"));
    }
    seen[index] = true;
  });
  if (status.ok() && live != timers_.size()) {
    status = absl::InternalError(absl::StrCat(
        "walked ", live, " live heap elements, heap size ", timers_.size()));
  }
  return status;
}

bool EventLoop::HasActiveWork() const {
  return active_io_ > 0 || timers_.size() > parked_timers_ ||
         active_signals_ > 0 || !idle_slots_.empty() || !deferred_.empty() ||
         !posted_batch_.empty();
}

absl::Duration EventLoop::ComputeTimeout(bool block, MonoTime now) const {
  // A pending Stop() only concerns Run(): a caller driving the loop with
  // RunOnce(true) keeps blocking (Run consumes the request).
  if (!block || (in_run_ && stop_requested_.load()) || !deferred_.empty() ||
      !idle_slots_.empty() || !posted_batch_.empty()) {
    return absl::ZeroDuration();
  }
  // Only parked entries (stopped io watchers) are no reason to wait: a
  // blocking RunOnce with nothing else active returns at once. With real
  // timers too, a parked entry on top costs one early wake-up that drops it.
  if (timers_.size() > parked_timers_ && timers_.TopKey() != MonoTime::Max()) {
    const absl::Duration left = timers_.TopKey() - now;
    return left > absl::ZeroDuration() ? left : absl::ZeroDuration();
  }
  // Nothing but I/O, signals or timers that never expire: block, unless
  // there is nothing at all to wait for (then a blocking RunOnce would hang).
  if (active_io_ > 0 || active_signals_ > 0 ||
      timers_.size() > parked_timers_ || wait_for_posts_) {
    return absl::InfiniteDuration();
  }
  return absl::ZeroDuration();
}

absl::Status EventLoop::Run(RunMode mode) {
  // A Stop() that came before Run() (e.g. from another thread) is honoured
  // after one iteration rather than lost.
  wait_for_posts_ = mode == RunMode::kUntilStopped;
  in_run_ = true;
  absl::Status status;
  for (;;) {
    if (mode == RunMode::kUntilIdle && !HasActiveWork()) break;
    status = RunOnce(true);
    if (!status.ok()) break;
    if (stop_requested_.exchange(false)) break;
  }
  wait_for_posts_ = false;
  in_run_ = false;
  return status;
}

absl::Duration EventLoop::CorrectClockJump(MonoTime before_wait,
                                           absl::Duration timeout,
                                           MonoTime after_wait) {
  const ClockJump jump = DetectJump(before_wait, timeout, after_wait,
                                    options_.forward_jump_tolerance);
  if (jump.kind == ClockJump::Kind::kNone) return jump.measured;
  absl::Duration offset = jump.offset;
  if (jump.kind == ClockJump::Kind::kBackward) {
    ++stats_.clock_jumps_backward;
  } else {
    ++stats_.clock_jumps_forward;
    // DetectJump assumes the wait lasted its whole timeout. A wait that
    // returned readiness may have ended at any point before that (under load,
    // almost at once), so take it as having lasted no time: timers then run
    // late by at most the real wait, never early.
    if (!ready_.empty()) offset = jump.measured;
  }
  // Every deadline moves by the same amount, so the heap order holds.
  ShiftTimers(offset);
  // Backward: no time at all; forward: the whole timeout, or none if the
  // wait returned readiness.
  return jump.measured - offset;
}

void EventLoop::CorrectJumpDuringCallbacks(MonoTime dispatch_start) {
  // The callbacks of this iteration ran from dispatch_start until now. On a
  // wall clock a negative span is a backward step, and a span beyond
  // forward_jump_tolerance is taken as a forward step (libev draws the same
  // line with MIN_TIMEJUMP). Either way the callbacks are taken to have run
  // in no time, so every timer keeps the remaining time it had when they
  // started: none fires early, and a callback that really blocked that long
  // makes timers late by that much. Costs one clock read per iteration, on
  // non-monotonic sources only. Time spent outside RunOnce() is not judged:
  // a caller may legitimately poll the loop seconds apart.
  const MonoTime end = clock_.NowUncached();
  const absl::Duration span = end - dispatch_start;
  if (span >= absl::ZeroDuration() &&
      span <= std::max(options_.forward_jump_tolerance, absl::ZeroDuration())) {
    return;
  }
  if (span < absl::ZeroDuration()) {
    ++stats_.clock_jumps_backward;
  } else {
    ++stats_.clock_jumps_forward;
  }
  ShiftTimers(span);
  last_wait_end_ = end;
}

absl::Status EventLoop::RunOnce(bool block) {
  if (dispatching_) Die("RunOnce/Run called from inside a callback");
  // Stored only when it changes (the first pass on a thread), sequentially
  // consistent then: see Stop().
  const std::thread::id me = std::this_thread::get_id();
  if (loop_thread_.load(std::memory_order_relaxed) != me)
    loop_thread_.store(me);
  ++stats_.iterations;

  clock_.ClearCache();
  const bool monotonic = monotonic_clock_;
  // A poll on a monotonic clock needs no reading before the wait: its
  // timeout is zero whatever the time, there is no jump to detect, and a
  // wait that cannot block is counted as running time, not waiting. That
  // saves one of the pass's two clock reads for a caller that polls (a
  // game loop, a loop embedded in another one).
  const bool poll_only = !block && monotonic;
  MonoTime before;
  if (!poll_only) {
    // Reading the clock here (not the cache of the last iteration) keeps
    // the timeout honest after slow callbacks; it also serves as the
    // "before" instant for jump detection and the end of the previous
    // running phase.
    before = clock_.NowUncached();
    if (!monotonic && have_last_wait_end_ && before < last_wait_end_) {
      // The wall clock went back while callbacks ran (the window DetectJump
      // below cannot see). Forward jumps in that window look like slow
      // callbacks and are left alone.
      ++stats_.clock_jumps_backward;
      ShiftTimers(before - last_wait_end_);
      last_wait_end_ = before;
    }
    if (have_last_wait_end_) RecordRunningTime(before);
  }
  const absl::Duration timeout =
      poll_only ? absl::ZeroDuration() : ComputeTimeout(block, before);
  absl::Status status = backend_->Wait(timeout, &ready_);
  MonoTime now = clock_.UpdateCache();
  if (poll_only) {
    if (have_last_wait_end_) RecordRunningTime(now);
  } else if (monotonic) {
    time_waiting_ns_ += now.nanos() - before.nanos();
  } else {
    time_waiting_ns_ +=
        absl::ToInt64Nanoseconds(CorrectClockJump(before, timeout, now));
  }
  last_wait_end_ = now;
  have_last_wait_end_ = true;
  if (!status.ok()) {
    clock_.ClearCache();
    return status;
  }

  Collect(now);
  // One handler around the whole dispatch phase, not one per callback: with
  // the zero-cost exception model it adds no instruction to the happy path.
  // running_slot_ and task_phase_ already say which callback was running.
  try {
    Dispatch();
  } catch (const std::exception& e) {
    DieOfEscapedException(e.what());
  } catch (...) {
    DieOfEscapedException(nullptr);
  }
  if (!monotonic) CorrectJumpDuringCallbacks(now);
  clock_.ClearCache();
  return absl::OkStatus();
}

void EventLoop::Collect(MonoTime now) {
  // The hot loop of every pass, kept lean: one map lookup classifies the fd,
  // the queues have room for the whole batch, counters are summed once.
  const size_t batch = ready_.size();
  const int64_t now_ns = now.nanos();
  size_t io_events = 0;
  bool found_work = false;
  // Locals, not members, in the loop: the stores below could alias them as
  // far as the compiler knows. Nothing called from here changes either.
  ReadyEvent* const ready_end = ready_.data() + batch;
  const int32_t* const fd_map = fd_to_slot_.data();
  const size_t fd_map_size = fd_to_slot_.size();
  // A direct batch: every io watcher runs at normal priority and no
  // inactivity timeout can be due (no timer is due, or no slot needs
  // CollectTimers' full pass, which also means no io watcher has a
  // timeout), so queueing readiness would only copy ready_ into
  // pending_[kNormal] in the same order, to be read back by Dispatch.
  // Instead the pass below handles the loop's own fds and rewrites ready_
  // in place, each fd replaced by its watcher's slot index (negative:
  // nothing to run); DispatchReadyIo runs those where Dispatch would run
  // the queued readiness, and resets inactivity deadlines as the queued
  // pass does here (no timeout is collected in between to see them).
  // A watcher that changes in the meantime is marked (TouchIo) instead of
  // having its epoch compared.
  const bool direct =
      other_priority_io_ == 0 && !time_callbacks_ &&
      (special_timing_slots_ == 0 || timers_.empty() || now < timers_.TopKey());
  if (direct) {
    for (ReadyEvent* ev = ready_.data(); ev != ready_end; ++ev) {
      const int32_t index =
          static_cast<size_t>(ev->fd) < fd_map_size ? fd_map[ev->fd] : -1;
      ev->fd = index;  // any negative value: nothing to run
      if (index >= 0) {
        ++io_events;
      } else if (index == kPostedFd) {
        DrainPosted();
      } else if (index == kSignalFd) {
        if (CollectSignals()) found_work = true;
      }
    }
    if (io_events != 0) {
      direct_io_batch_ = true;
      collect_now_ns_ = now_ns;
    }
  } else {
    for (PendingQueue& queue : pending_) queue.Reserve(batch);
    for (const ReadyEvent* ev = ready_.data(); ev != ready_end; ++ev) {
      if (static_cast<size_t>(ev->fd) >= fd_map_size) continue;
      const int32_t index = fd_map[ev->fd];
      if (index < 0) {
        if (index == kPostedFd) {
          DrainPosted();
        } else if (index == kSignalFd) {
          if (CollectSignals()) found_work = true;
          for (PendingQueue& queue : pending_) queue.Reserve(batch);
        }
        continue;  // -1: stopped since the backend saw it
      }
      Slot& s = slots_[index];
      // Readiness resets the inactivity deadline before timers are
      // collected, so one batch never reports both readiness and a timeout.
      // Lazily (see Slot::io_deadline_ns): one store here instead of a sift
      // per readiness; CollectTimers below sees the new deadline.
      if (s.timer_armed) s.io_deadline_ns = IoDeadlineNs(now_ns, s);
      pending_[static_cast<int>(s.priority)].PushReserved(
          {static_cast<uint32_t>(index), s.epoch, ev->events, false,
           s.persistent, &s});
      ++io_events;
    }
  }
  stats_.io_events += io_events;
  if (io_events != 0) found_work = true;
  // Tested here, not in CollectTimers: most passes have no timer due and
  // skip the call.
  if (!timers_.empty() && !(now < timers_.TopKey())) {
    const size_t before_timers = stats_.timers_fired;
    CollectTimers(now);
    if (stats_.timers_fired != before_timers) found_work = true;
  }
  if (!found_work && posted_batch_.empty() && deferred_.empty()) {
    for (uint32_t index : idle_slots_) {
      pending_[static_cast<int>(Priority::kLow)].push_back(
          {index, slots_[index].epoch, 0, false, false, &slots_[index]});
    }
  }
}

bool EventLoop::CollectSignals() {
  bool queued = false;
  signal_batch_.clear();
  signals_->ReadPending(&signal_batch_);
  for (int signo : signal_batch_) {
    if (static_cast<size_t>(signo) >= signal_to_slot_.size()) continue;
    const int32_t index = signal_to_slot_[signo];
    if (index < 0) continue;
    Slot& s = slots_[index];
    pending_[static_cast<int>(s.priority)].push_back(
        {static_cast<uint32_t>(index), s.epoch, static_cast<uint32_t>(signo),
         false, false, &s});
    queued = true;
  }
  return queued;
}

void EventLoop::CollectTimers(MonoTime now) {
  // All due entries leave the heap at once, in firing order (PopDue turns a
  // large batch into one pass instead of a sift per timer); the ones that
  // must stay armed go back in with a fresh handle. Their new deadlines are
  // all after `now`, so re-adding them cannot make them due in this pass,
  // and they are re-added in the order a Reschedule per pop used to give.
  due_timers_.clear();
  timers_.PopDue(now, &due_timers_);
  if (special_timing_slots_ == 0 && !time_callbacks_) {
    // A direct timer batch: every entry is a one-shot timer of normal
    // priority, for which the pass below would only clear timer_armed and
    // queue it in firing order, where nothing else follows it. Instead
    // DispatchDueTimers runs them from due_timers_ where the queue would,
    // touching each slot once instead of twice (a million due timers do
    // not fit in any cache). Until then such a timer is armed with a stale
    // handle, which TimerArmed reads as disarmed, and a cancel, reschedule
    // or release marks instead (TouchDueTimer).
    direct_timer_batch_ = true;
    stats_.timers_fired += due_timers_.size();
    return;
  }
  // Most timers run at normal priority: room for all of them at once, not
  // a doubling (and a copy) per power of two of a large batch.
  pending_[static_cast<int>(Priority::kNormal)].Reserve(due_timers_.size());
  uint64_t fired = 0;
  for (const std::pair<MonoTime, uint32_t>& entry : due_timers_) {
    const MonoTime deadline = entry.first;
    const uint32_t index = entry.second;
    Slot& s = slots_[index];
    s.timer_armed = false;
    if (s.timer_parked) {
      // The old deadline of a stopped io watcher: nothing to fire.
      Unpark(s);
      s.io_deadline_ns = 0;
      continue;
    }
    if (s.kind == SlotKind::kIo && s.io_deadline_ns > deadline.nanos()) {
      // An io inactivity deadline that readiness pushed out since it was
      // armed: move the heap entry there instead of firing, unless that too
      // has passed.
      const MonoTime due = MonoTime::FromNanos(s.io_deadline_ns);
      if (due > now) {
        s.timer = timers_.Push(due, index);
        s.timer_armed = true;
        continue;
      }
    }
    if (s.kind == SlotKind::kTimer && s.persistent) {
      // Next deadline on the original grid; skip missed ticks.
      const absl::Duration period = s.interval();
      MonoTime next = deadline + period;
      if (next <= now) {
        const int64_t behind = (now - deadline) / period;
        next = deadline + period * (behind + 1);
      }
      s.timer = timers_.Push(next, index);
      s.timer_armed = true;
    }
    pending_[static_cast<int>(s.priority)].push_back(
        {index, s.epoch, 0, s.kind == SlotKind::kIo, false, &s});
    ++fired;
  }
  stats_.timers_fired += fired;
}

void EventLoop::Dispatch() {
  dispatching_ = true;
  // The common pass, readiness of normal-priority io watchers and nothing
  // else, skips the walk over the priority levels below (about 20
  // instructions per pass). Callbacks never append to the queues, so
  // nothing can arrive in them meanwhile.
  if (!direct_timer_batch_ && posted_batch_.empty() && pending_[0].empty() &&
      pending_[1].empty() && pending_[2].empty()) {
    static_assert(kNumPriorities == 3, "check every queue above");
    if (direct_io_batch_) DispatchReadyIo();
    if (!deferred_.empty()) RunDeferred();
    dispatching_ = false;
    return;
  }
  if (!posted_batch_.empty()) RunTasks(&posted_batch_);
  // Read once: the compiler must otherwise reload it after every callback.
  const bool timing = time_callbacks_;
  for (int priority = 0; priority < kNumPriorities; ++priority) {
    // Only Collect appends to the queues, never a callback; iterating by
    // index would stay safe if that changed.
    PendingQueue& queue = pending_[priority];
    // A direct batch's readiness goes first in its queue, as Collect would
    // have put it there.
    if (priority == static_cast<int>(Priority::kNormal) && direct_io_batch_) {
      DispatchReadyIo();
    }
    for (size_t i = 0; i < queue.size(); ++i) {
      const Pending p = queue[i];
      Slot& s = *p.target;
      // Fast path, inline: readiness of a live persistent io watcher (Collect
      // set fast_io; the epoch says it is still the same registration) with
      // per-callback timing off. Everything else goes through Invoke().
      if (p.fast_io && s.epoch == p.epoch && !timing) {
        running_slot_ = p.slot;
        s.cb.io(IoEvent{s.fd, p.events, false});
        running_slot_ = kNoSlot;
        ++stats_.callbacks_run;
        if (s.release_requested) FreeSlot(p.slot);
        continue;
      }
      // The same for a live timer (the common case of CollectTimers): what
      // Invoke() would do for one, without its switch and re-lookup.
      if (s.kind == SlotKind::kTimer && s.epoch == p.epoch && !timing) {
        running_slot_ = p.slot;
        s.cb.task();
        running_slot_ = kNoSlot;
        ++stats_.callbacks_run;
        if (s.release_requested || (s.loop_owned && !s.timer_armed)) {
          FreeSlot(p.slot);
        }
        continue;
      }
      Invoke(p);
    }
    queue.clear();
    // A direct timer batch's timers come last in their queue, as
    // CollectTimers would have put them there.
    if (priority == static_cast<int>(Priority::kNormal) &&
        direct_timer_batch_) {
      DispatchDueTimers();
    }
  }
  RunDeferred();
  dispatching_ = false;
}

void EventLoop::DispatchReadyIo() {
  // What Dispatch's inline io path does for a queued entry. ready_ holds
  // slot indices here (Collect rewrote it), and cannot change: callbacks
  // may not run the loop. A slot touched since Collect was stopped (and
  // maybe freed and reused: FreeSlot keeps the mark), restarted or given
  // a new interest: its readiness is dropped, as a stale epoch drops a
  // queued entry. ready_ names slots, not fds: a watcher that replaced
  // another on the same fd during the batch is in a slot ready_ does not
  // name, or in the old one, which the old watcher's Stop marked.
  const int64_t now_ns = collect_now_ns_;
  for (const ReadyEvent& ev : ready_) {
    const int32_t index = ev.fd;  // a slot index, or negative
    if (index < 0) continue;
    Slot& s = slots_[index];
    if (s.io_touched != 0) {
      // Its readiness is stale. After a new interest it is still activity,
      // as in the queued pass, which resets the deadline of every ready
      // watcher in Collect. After a stop the slot may hold another watcher
      // (and a restart set the deadline anyway).
      if (s.io_touched == kIoInterestChanged && s.timer_armed) {
        s.io_deadline_ns = IoDeadlineNs(now_ns, s);
      }
      continue;
    }
    if (s.timer_armed) s.io_deadline_ns = IoDeadlineNs(now_ns, s);
    if (!s.persistent) {
      // One-shot: Invoke stops it first.
      Invoke(
          {static_cast<uint32_t>(index), s.epoch, ev.events, false, false, &s});
      continue;
    }
    running_slot_ = static_cast<uint32_t>(index);
    s.cb.io(IoEvent{s.fd, ev.events, false});
    running_slot_ = kNoSlot;
    ++stats_.callbacks_run;
    if (s.release_requested) FreeSlot(static_cast<uint32_t>(index));
  }
  direct_io_batch_ = false;
  for (uint32_t index : touched_io_slots_) slots_[index].io_touched = 0;
  touched_io_slots_.clear();
}

void EventLoop::DispatchDueTimers() {
  // What CollectTimers and Dispatch's inline timer path do for a one-shot
  // timer of normal priority. due_timers_ cannot change here: callbacks may
  // not run the loop. A timer cancelled, rescheduled or released since it
  // came due (maybe freed and reused: FreeSlot keeps the mark) is dropped,
  // as a stale epoch drops a queued entry.
  for (const std::pair<MonoTime, uint32_t>& entry : due_timers_) {
    const uint32_t index = entry.second;
    Slot& s = slots_[index];
    if (s.timer_touched) continue;
    s.timer_armed = false;
    running_slot_ = index;
    s.cb.task();
    running_slot_ = kNoSlot;
    ++stats_.callbacks_run;
    if (s.release_requested || (s.loop_owned && !s.timer_armed)) {
      FreeSlot(index);
    }
  }
  direct_timer_batch_ = false;
  for (uint32_t index : touched_timer_slots_) {
    slots_[index].timer_touched = false;
  }
  touched_timer_slots_.clear();
}

void EventLoop::Invoke(const Pending& p) {
  Slot& s = slots_[p.slot];
  if (s.epoch != p.epoch) {
    // Stopped, rescheduled or released since: dropped. Except an io
    // timeout whose watcher is still active and was not re-armed, which
    // only a new interest (SetInterest) leaves: the watcher was idle past
    // its deadline whatever it now waits for, and collecting the timeout
    // took it out of the heap, so dropping it would leave the watcher
    // without any. A stop, a restart (StartIo arms) or a release (and any
    // reuse of the slot) all fail the test.
    if (!p.timed_out || s.kind != SlotKind::kIo || !s.active || s.timer_armed ||
        s.interval() == absl::InfiniteDuration()) {
      return;
    }
  }
  MonoTime start;
  if (time_callbacks_) start = clock_.NowUncached();
  running_slot_ = p.slot;
  switch (s.kind) {
    case SlotKind::kIo: {
      if (!s.persistent) StopIo(p.slot);
      const IoEvent event{s.fd, p.events, p.timed_out};
      if (p.timed_out && s.persistent && s.active) {
        ArmTimer(p.slot, MonoTime::FromNanos(IoDeadlineNs(Now().nanos(), s)));
      }
      s.cb.io(event);
      break;
    }
    case SlotKind::kTimer:
      s.cb.task();
      break;
    case SlotKind::kSignal:
      ++stats_.signals_delivered;
      s.cb.signal(static_cast<int>(p.events));
      break;
    case SlotKind::kIdle:
      s.cb.task();
      break;
    case SlotKind::kFree:
      Die("pending event for a free slot");
  }
  running_slot_ = kNoSlot;
  ++stats_.callbacks_run;
  if (time_callbacks_) RecordCallbackTime(start);
  if (s.release_requested || (s.loop_owned && !s.timer_armed)) {
    FreeSlot(p.slot);
  }
}

void EventLoop::RunDeferred() {
  for (int round = 0;
       round < options_.max_deferred_rounds && !deferred_.empty(); ++round) {
    RunTasks(&deferred_);
  }
}

void EventLoop::RunTasks(std::vector<Task>* tasks) {
  // Swap with a scratch vector that keeps its capacity between iterations,
  // so running posted or deferred work allocates nothing in steady state.
  // Tasks may Post/Defer more work: it lands in *tasks, for a later round.
  running_tasks_.swap(*tasks);
  task_phase_ = tasks == &deferred_ ? TaskPhase::kDeferred : TaskPhase::kPosted;
  if (time_callbacks_) {
    for (Task& task : running_tasks_) {
      const MonoTime start = clock_.NowUncached();
      task();
      ++stats_.callbacks_run;
      RecordCallbackTime(start);
    }
  } else {
    for (Task& task : running_tasks_) {
      task();
      ++stats_.callbacks_run;
    }
  }
  task_phase_ = TaskPhase::kNone;
  running_tasks_.clear();
}

void EventLoop::RecordCallbackTime(MonoTime start) {
  const absl::Duration took = clock_.NowUncached() - start;
  stats_.longest_callback = std::max(stats_.longest_callback, took);
  if (took > options_.slow_callback_threshold) ++stats_.slow_callbacks;
}

void EventLoop::DieOfEscapedException(const char* what) const {
  // Unwinding has already left the callback; whatever it was updating (its
  // own state, or the loop's through the watcher API) may be half done, so
  // going on could corrupt more than it saves. Name the culprit and stop.
  const char* kind = "unknown";
  std::string detail;
  if (running_slot_ != kNoSlot) {
    const Slot& s = slots_[running_slot_];
    switch (s.kind) {
      case SlotKind::kIo:
        kind = "io";
        detail = absl::StrCat(" (fd ", s.fd, ")");
        break;
      case SlotKind::kTimer:
        kind = "timer";
        break;
      case SlotKind::kSignal:
        kind = "signal";
        detail = absl::StrCat(" (signal ", s.signo, ")");
        break;
      case SlotKind::kIdle:
        kind = "idle";
        break;
      case SlotKind::kFree:
        break;
    }
  } else if (task_phase_ == TaskPhase::kPosted) {
    kind = "posted";
  } else if (task_phase_ == TaskPhase::kDeferred) {
    kind = "deferred";
  }
  std::fprintf(stderr,
               "eventide::EventLoop: uncaught exception in %s callback%s: "
               "%s; aborting (callbacks must not throw)\n",
               kind, detail.c_str(),
               what != nullptr ? what : "unknown exception type");
  std::abort();
}

// ------------------------------------------------------------------ fork --

absl::Status EventLoop::ReinitAfterFork() {
  if (dispatching_) Die("ReinitAfterFork called from inside a callback");
  // Tasks the parent posted before fork() are in this copy of the queue.
  // Take them without reading its wake-up fd: the fd is shared with the
  // parent, and emptying it would swallow the parent's pending wake-up (and
  // the parent's queue writes only while none is pending, so its loop would
  // never hear of posted work again). A closed queue hands out its items
  // without reading the fd; Close() writes to it once, which the parent sees
  // as a spurious wake-up, harmless.
  posted_->Close();
  DrainPosted();
  absl::StatusOr<std::unique_ptr<NotifyQueue<Task>>> posted =
      NotifyQueue<Task>::Create();
  if (!posted.ok()) return posted.status();
  const int old_posted_fd = posted_->fd();

  if (backend_->capabilities().needs_reinit_after_fork) {
    BackendOptions options = options_.backend;
    options.name = std::string(backend_->name());
    options.ignore_environment = true;
    absl::StatusOr<BackendSelection> selection = CreateBackend(options);
    if (!selection.ok()) return selection.status();
    backend_ = std::move(selection->backend);
    for (Slot& s : slots_) {
      if (s.kind != SlotKind::kIo || !s.active) continue;
      absl::Status status = backend_->Add(s.fd, s.interest);
      if (!status.ok()) return status;
    }
  } else {
    (void)backend_->Remove(old_posted_fd);
    if (signals_) (void)backend_->Remove(signals_->fd());
  }
  posted_ = std::move(*posted);
  SetFdSlot(old_posted_fd, -1);
  SetFdSlot(posted_->fd(), kPostedFd);
  absl::Status status = backend_->Add(posted_->fd(), kReadable);
  if (!status.ok()) return status;
  if (signals_) {
    SetFdSlot(signals_->fd(), -1);
    status = signals_->ReinitAfterFork();
    SetFdSlot(signals_->fd(), kSignalFd);
    if (!status.ok()) return status;
    status = backend_->Add(signals_->fd(), kReadable);
    if (!status.ok()) return status;
  }
  loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  return absl::OkStatus();
}

}  // namespace eventide
