#include "mtqueue/notify_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace eventide {
namespace {

using FullPolicy = NotifyQueueOptions::FullPolicy;

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  const int n = poll(&p, 1, 0);
  EXPECT_GE(n, 0);
  return n == 1 && (p.revents & POLLIN) != 0;
}

// Counts the objects that own a value, so a test can check that every item
// ended up destroyed (or handed out) exactly once. Moved-from objects own
// nothing.
class Tracked {
 public:
  static std::atomic<int> owners;

  explicit Tracked(int v) : value_(v), owns_(true) { ++owners; }
  Tracked(Tracked&& other) noexcept
      : value_(other.value_), owns_(std::exchange(other.owns_, false)) {}
  Tracked& operator=(Tracked&& other) noexcept {
    if (this != &other) {
      if (owns_) --owners;
      value_ = other.value_;
      owns_ = std::exchange(other.owns_, false);
    }
    return *this;
  }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() {
    if (owns_) --owners;
  }

  int value() const { return value_; }
  bool owns() const { return owns_; }

 private:
  int value_;
  bool owns_;
};
std::atomic<int> Tracked::owners{0};

// A move-only owner of a file descriptor, like a connection handed from an
// accept thread to a worker.
class OwnedFd {
 public:
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd() { Reset(); }
  int get() const { return fd_; }

 private:
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_;
};

bool FdIsOpen(int fd) { return fcntl(fd, F_GETFD) >= 0 || errno != EBADF; }

template <typename T>
std::unique_ptr<NotifyQueue<T>> MakeQueue(NotifyQueueOptions options) {
  auto q = NotifyQueue<T>::Create(options);
  EXPECT_TRUE(q.ok()) << q.status();
  return q.ok() ? *std::move(q) : nullptr;
}

std::vector<int> DrainInts(NotifyQueue<int>& q) {
  std::vector<int> out;
  q.Drain([&](int&& v) { out.push_back(v); });
  return out;
}

// Waits (bounded) until `pred` holds; returns false on timeout.
template <typename Pred>
bool WaitFor(Pred pred) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

class NotifyQueueTest : public ::testing::TestWithParam<NotifierKind> {
 protected:
  NotifyQueueOptions Options(size_t capacity = 0,
                             FullPolicy policy = FullPolicy::kFail) const {
    NotifyQueueOptions o;
    o.notifier = GetParam();
    o.capacity = capacity;
    o.full_policy = policy;
    return o;
  }
};

TEST_P(NotifyQueueTest, CreateGivesNonBlockingCloexecFd) {
  auto q = MakeQueue<int>(Options());
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q->notifier_kind(), NotifierKind::kAuto);
  if (GetParam() != NotifierKind::kAuto) {
    EXPECT_EQ(q->notifier_kind(), GetParam());
  }
  const int fl = fcntl(q->fd(), F_GETFL);
  ASSERT_GE(fl, 0);
  EXPECT_NE(fl & O_NONBLOCK, 0);
  const int fdfl = fcntl(q->fd(), F_GETFD);
  ASSERT_GE(fdfl, 0);
  EXPECT_NE(fdfl & FD_CLOEXEC, 0);
  EXPECT_FALSE(Readable(q->fd()));
  EXPECT_FALSE(q->closed());
  EXPECT_EQ(q->size(), 0u);
}

TEST_P(NotifyQueueTest, PushWakesAndDrainReturnsItemsInOrder) {
  auto q = MakeQueue<int>(Options());
  ASSERT_NE(q, nullptr);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(q->Push(i).ok());
  EXPECT_EQ(q->size(), 5u);
  EXPECT_TRUE(Readable(q->fd()));
  EXPECT_EQ(DrainInts(*q), (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_FALSE(Readable(q->fd()));
  EXPECT_EQ(q->size(), 0u);

  // An empty Drain() does not call fn.
  int calls = 0;
  EXPECT_EQ(q->Drain([&](int&&) { ++calls; }), 0u);
  EXPECT_EQ(calls, 0);

  // The queue works again after a drain.
  ASSERT_TRUE(q->Push(6).ok());
  EXPECT_TRUE(Readable(q->fd()));
  EXPECT_EQ(DrainInts(*q), (std::vector<int>{6}));
}

TEST_P(NotifyQueueTest, EmplaceAndDrainToHandOverTheBatch) {
  auto q = MakeQueue<std::unique_ptr<int>>(Options());
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->Emplace(new int(1)).ok());
  ASSERT_TRUE(q->Emplace(std::make_unique<int>(2)).ok());
  EXPECT_EQ(q->notifications_written(), 1u);
  EXPECT_TRUE(Readable(q->fd()));

  // Into an empty vector: the batch itself, in order; the wake-up is cleared.
  std::vector<std::unique_ptr<int>> out;
  EXPECT_EQ(q->DrainTo(&out), 2u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(*out[0], 1);
  EXPECT_EQ(*out[1], 2);
  EXPECT_FALSE(Readable(q->fd()));
  EXPECT_EQ(q->size(), 0u);

  // Into a non-empty vector: appended after what is there.
  ASSERT_TRUE(q->Emplace(new int(3)).ok());
  EXPECT_TRUE(Readable(q->fd()));
  EXPECT_EQ(q->DrainTo(&out), 1u);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(*out[2], 3);
  EXPECT_FALSE(Readable(q->fd()));

  // An empty DrainTo leaves the vector alone; Emplace after Close fails.
  EXPECT_EQ(q->DrainTo(&out), 0u);
  EXPECT_EQ(out.size(), 3u);
  q->Close();
  auto kept = std::make_unique<int>(4);
  EXPECT_EQ(q->Emplace(std::move(kept)).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_NE(kept, nullptr);  // a failed Emplace leaves its argument alone
  EXPECT_EQ(*kept, 4);
}

TEST_P(NotifyQueueTest, BurstOfTenThousandPushesWritesOnce) {
  auto q = MakeQueue<int>(Options());
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->notifications_written(), 0u);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(q->Push(i).ok());
  EXPECT_EQ(q->notifications_written(), 1u);
  EXPECT_TRUE(Readable(q->fd()));

  std::vector<int> got = DrainInts(*q);
  ASSERT_EQ(got.size(), 10000u);
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(got[i], i);
  EXPECT_FALSE(Readable(q->fd()));
  EXPECT_EQ(q->notifications_written(), 1u);

  // The first push after a drain writes again, the rest of its burst not.
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(q->Push(i).ok());
  EXPECT_EQ(q->notifications_written(), 2u);
  EXPECT_EQ(q->Drain([](int&&) {}), 10000u);
}

TEST_P(NotifyQueueTest, ConcurrentBurstFromFourThreadsWritesOnce) {
  auto q = MakeQueue<int>(Options());
  ASSERT_NE(q, nullptr);
  std::vector<std::thread> producers;
  for (int t = 0; t < 4; ++t) {
    producers.emplace_back([&q] {
      for (int i = 0; i < 2500; ++i) ASSERT_TRUE(q->Push(i).ok());
    });
  }
  for (std::thread& t : producers) t.join();
  EXPECT_EQ(q->size(), 10000u);
  EXPECT_EQ(q->notifications_written(), 1u);
  EXPECT_EQ(q->Drain([](int&&) {}), 10000u);
}

TEST_P(NotifyQueueTest, SpuriousWakeupIsCleared) {
  auto q = MakeQueue<int>(Options());
  ASSERT_NE(q, nullptr);
  if (q->notifier_kind() != NotifierKind::kEventFd) {
    // The pipe's write end is private; notifier_test covers its Clear().
    GTEST_SKIP() << "needs the eventfd, whose one fd the test can write";
  }
  ASSERT_TRUE(q->Push(1).ok());
  EXPECT_EQ(DrainInts(*q), (std::vector<int>{1}));
  // A stale wake-up, as left by a producer whose write lands after the
  // Drain() that already took its item.
  const uint64_t one = 1;
  ASSERT_EQ(write(q->fd(), &one, sizeof(one)), (ssize_t)sizeof(one));
  EXPECT_TRUE(Readable(q->fd()));
  EXPECT_EQ(q->Drain([](int&&) {}), 0u);
  EXPECT_FALSE(Readable(q->fd()));
  // And the next push still wakes.
  ASSERT_TRUE(q->Push(2).ok());
  EXPECT_TRUE(Readable(q->fd()));
  EXPECT_EQ(DrainInts(*q), (std::vector<int>{2}));
}

TEST_P(NotifyQueueTest, PushFromDrainCallbackLandsInNextBatch) {
  auto q = MakeQueue<int>(Options());
  ASSERT_NE(q, nullptr);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q->Push(i).ok());
  std::vector<int> first;
  q->Drain([&](int&& v) {
    first.push_back(v);
    ASSERT_TRUE(q->Push(v + 100).ok());
  });
  EXPECT_EQ(first, (std::vector<int>{0, 1, 2}));
  // The pushes made during the callback found no wake-up pending (Drain
  // had reset it), so they wrote one and the fd is readable again.
  EXPECT_TRUE(Readable(q->fd()));
  EXPECT_EQ(q->notifications_written(), 2u);
  EXPECT_EQ(DrainInts(*q), (std::vector<int>{100, 101, 102}));
}

TEST_P(NotifyQueueTest, CloseRejectsPushesKeepsQueuedItemsAndStaysReadable) {
  auto q = MakeQueue<std::unique_ptr<int>>(Options());
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->Push(std::make_unique<int>(1)).ok());
  ASSERT_TRUE(q->Push(std::make_unique<int>(2)).ok());
  const uint64_t writes_before = q->notifications_written();
  q->Close();
  EXPECT_TRUE(q->closed());
  EXPECT_EQ(q->notifications_written(), writes_before + 1);

  absl::Status s = q->Push(std::make_unique<int>(3));
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  auto kept = std::make_unique<int>(4);
  EXPECT_FALSE(q->TryPush(kept));
  ASSERT_NE(kept, nullptr);  // the caller still owns it
  EXPECT_EQ(*kept, 4);

  EXPECT_TRUE(Readable(q->fd()));
  std::vector<int> got;
  EXPECT_EQ(q->Drain([&](std::unique_ptr<int>&& p) { got.push_back(*p); }), 2u);
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
  // Like a socket at EOF: readable until the consumer stops watching.
  EXPECT_TRUE(Readable(q->fd()));
  EXPECT_EQ(q->Drain([](std::unique_ptr<int>&&) {}), 0u);
  EXPECT_TRUE(Readable(q->fd()));

  // Close() is idempotent and does not write again.
  const uint64_t writes_after = q->notifications_written();
  q->Close();
  EXPECT_EQ(q->notifications_written(), writes_after);
}

TEST_P(NotifyQueueTest, CloseOnEmptyQueueWakesConsumer) {
  auto q = MakeQueue<int>(Options());
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(Readable(q->fd()));
  std::thread closer([&q] { q->Close(); });
  pollfd p{q->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1) << "Close() did not wake the consumer";
  closer.join();
  EXPECT_TRUE(q->closed());
  EXPECT_EQ(q->Drain([](int&&) {}), 0u);
}

TEST_P(NotifyQueueTest, PushFailureDestroysTheItem) {
  const int before = Tracked::owners.load();
  auto q = MakeQueue<Tracked>(Options(1, FullPolicy::kFail));
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->Push(Tracked(1)).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(q->Push(Tracked(2))));
  EXPECT_EQ(Tracked::owners.load(), before + 1);  // only the queued one
  q->Close();
  EXPECT_TRUE(absl::IsFailedPrecondition(q->Push(Tracked(3))));
  EXPECT_EQ(Tracked::owners.load(), before + 1);
  q.reset();
  EXPECT_EQ(Tracked::owners.load(), before);
}

TEST_P(NotifyQueueTest, CapacityWithFailPolicy) {
  auto q = MakeQueue<std::unique_ptr<int>>(Options(3, FullPolicy::kFail));
  ASSERT_NE(q, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(q->Push(std::make_unique<int>(i)).ok());
  }
  absl::Status s = q->Push(std::make_unique<int>(3));
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  auto item = std::make_unique<int>(4);
  EXPECT_FALSE(q->TryPush(item));
  ASSERT_NE(item, nullptr);
  EXPECT_FALSE(q->closed());  // how a caller tells "full" from "closed"
  EXPECT_EQ(q->size(), 3u);

  EXPECT_EQ(q->Drain([](std::unique_ptr<int>&&) {}), 3u);
  EXPECT_TRUE(q->TryPush(item));
  EXPECT_EQ(item, nullptr);  // moved into the queue
  std::vector<int> got;
  q->Drain([&](std::unique_ptr<int>&& p) { got.push_back(*p); });
  EXPECT_EQ(got, (std::vector<int>{4}));
}

TEST_P(NotifyQueueTest, TryPushNeverBlocksEvenWithBlockPolicy) {
  auto q = MakeQueue<int>(Options(1, FullPolicy::kBlock));
  ASSERT_NE(q, nullptr);
  int a = 1, b = 2;
  EXPECT_TRUE(q->TryPush(a));
  EXPECT_FALSE(q->TryPush(b));
  EXPECT_EQ(DrainInts(*q), (std::vector<int>{1}));
}

TEST_P(NotifyQueueTest, BlockedPushIsReleasedByDrain) {
  auto q = MakeQueue<int>(Options(2, FullPolicy::kBlock));
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->Push(1).ok());
  ASSERT_TRUE(q->Push(2).ok());
  std::atomic<bool> returned{false};
  absl::Status status = absl::UnknownError("not set");
  std::thread producer([&] {
    status = q->Push(3);
    returned = true;
  });
  ASSERT_TRUE(WaitFor([&] { return q->blocked_pushers() == 1; }));
  EXPECT_FALSE(returned.load());
  EXPECT_EQ(q->size(), 2u);

  EXPECT_EQ(DrainInts(*q), (std::vector<int>{1, 2}));
  producer.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(q->blocked_pushers(), 0u);
  EXPECT_TRUE(Readable(q->fd()));
  EXPECT_EQ(DrainInts(*q), (std::vector<int>{3}));
}

TEST_P(NotifyQueueTest, BlockedPushIsReleasedByClose) {
  const int before = Tracked::owners.load();
  auto q = MakeQueue<Tracked>(Options(1, FullPolicy::kBlock));
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->Push(Tracked(1)).ok());
  absl::Status status = absl::UnknownError("not set");
  std::thread producer([&] { status = q->Push(Tracked(2)); });
  ASSERT_TRUE(WaitFor([&] { return q->blocked_pushers() == 1; }));
  q->Close();
  producer.join();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  // The rejected item was destroyed; the one queued before Close() remains.
  EXPECT_EQ(Tracked::owners.load(), before + 1);
  std::vector<int> got;
  q->Drain([&](Tracked&& t) { got.push_back(t.value()); });
  EXPECT_EQ(got, (std::vector<int>{1}));
  EXPECT_EQ(Tracked::owners.load(), before);
}

TEST_P(NotifyQueueTest, MoveOnlyItemsAreHandedOver) {
  auto q = MakeQueue<std::unique_ptr<std::string>>(Options());
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->Push(std::make_unique<std::string>("a")).ok());
  auto b = std::make_unique<std::string>("b");
  ASSERT_TRUE(q->TryPush(b));
  EXPECT_EQ(b, nullptr);
  std::vector<std::unique_ptr<std::string>> taken;
  EXPECT_EQ(q->Drain([&](std::unique_ptr<std::string>&& p) {
    taken.push_back(std::move(p));
  }),
            2u);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(*taken[0], "a");
  EXPECT_EQ(*taken[1], "b");
}

TEST_P(NotifyQueueTest, ItemsTheCallbackDoesNotTakeAreDestroyed) {
  const int before = Tracked::owners.load();
  auto q = MakeQueue<Tracked>(Options());
  ASSERT_NE(q, nullptr);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(q->Push(Tracked(i)).ok());
  EXPECT_EQ(Tracked::owners.load(), before + 10);
  int sum = 0;
  q->Drain([&](Tracked&& t) { sum += t.value(); });  // looks, does not take
  EXPECT_EQ(sum, 45);
  EXPECT_EQ(Tracked::owners.load(), before);
}

TEST_P(NotifyQueueTest, DestructionDestroysPendingItems) {
  const int before = Tracked::owners.load();
  {
    auto q = MakeQueue<Tracked>(Options());
    ASSERT_NE(q, nullptr);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(q->Push(Tracked(i)).ok());
    EXPECT_EQ(Tracked::owners.load(), before + 100);
  }
  EXPECT_EQ(Tracked::owners.load(), before);
  // The same with heap-owning items: LeakSanitizer (--config=asan) fails the
  // test if any of these is not freed.
  {
    auto q = MakeQueue<std::unique_ptr<std::vector<int>>>(Options());
    ASSERT_NE(q, nullptr);
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(q->Push(std::make_unique<std::vector<int>>(64, i)).ok());
    }
    q->Close();  // closed with items pending, never drained
  }
}

TEST_P(NotifyQueueTest, OwnedFdItemsAreClosedOrHandedOver) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  int kept_fd;
  {
    auto q = MakeQueue<OwnedFd>(Options());
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(q->Push(OwnedFd(fds[0])).ok());
    ASSERT_TRUE(q->Push(OwnedFd(fds[1])).ok());
    // Hand the first over, leave the second pending at destruction.
    OwnedFd kept(-1);
    q->Drain([&](OwnedFd&& fd) {
      if (kept.get() < 0) kept = std::move(fd);
    });
    kept_fd = kept.get();
    EXPECT_EQ(kept_fd, fds[0]);
    EXPECT_TRUE(FdIsOpen(fds[0]));
    // The callback did not take fds[1], so it was closed after the call.
    EXPECT_FALSE(FdIsOpen(fds[1]));

    int more[2];
    ASSERT_EQ(pipe2(more, O_CLOEXEC), 0);
    ASSERT_TRUE(q->Push(OwnedFd(more[0])).ok());
    ASSERT_TRUE(q->Push(OwnedFd(more[1])).ok());
    q.reset();  // pending fds are closed by the queue's destruction
    EXPECT_FALSE(FdIsOpen(more[0]));
    EXPECT_FALSE(FdIsOpen(more[1]));
    EXPECT_TRUE(FdIsOpen(kept_fd));
  }
  EXPECT_FALSE(FdIsOpen(kept_fd));
}

#ifndef NDEBUG
TEST_P(NotifyQueueTest, ReentrantDrainDiesInDebugBuilds) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto q = MakeQueue<int>(Options());
        (void)q->Push(1);
        q->Drain([&](int&&) { q->Drain([](int&&) {}); });
      },
      "another Drain");
}

TEST_P(NotifyQueueTest, BlockingPushFromDrainCallbackDiesInDebugBuilds) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto q = MakeQueue<int>(Options(1, FullPolicy::kBlock));
        (void)q->Push(1);
        q->Drain([&](int&&) {
          (void)q->Push(2);  // fills the queue again
          (void)q->Push(3);  // would wait for this very Drain()
        });
      },
      "block forever");
}
#endif

INSTANTIATE_TEST_SUITE_P(AllKinds, NotifyQueueTest,
                         ::testing::Values(NotifierKind::kAuto,
                                           NotifierKind::kEventFd,
                                           NotifierKind::kPipe),
                         [](const ::testing::TestParamInfo<NotifierKind>& i) {
                           return std::string(NotifierKindName(i.param));
                         });

}  // namespace
}  // namespace eventide
