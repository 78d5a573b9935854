// Stress tests: several producer threads, one consumer thread that watches
// the fd with plain poll(2) and drains only when poll reports it readable.
// Because the consumer never drains without a wake-up, a lost wake-up shows
// up as items that never arrive (the test fails at a deadline instead of
// hanging).
#include <errno.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mtqueue/notify_queue.h"

namespace eventide {
namespace {

using FullPolicy = NotifyQueueOptions::FullPolicy;
using Clock = std::chrono::steady_clock;

constexpr int kProducers = 4;
constexpr int kItemsPerProducer = 20000;
constexpr int kTotal = kProducers * kItemsPerProducer;
// Generous: the slowest run (TSan, loaded 2-core machine) takes about a
// second. Reaching a deadline means a bug, not a slow machine.
constexpr auto kDeadline = std::chrono::seconds(10);
constexpr int kPollTimeoutMs = 100;

struct Item {
  int producer;
  int seq;
};

struct StressConfig {
  const char* name;
  NotifierKind kind;
  size_t capacity;
  FullPolicy policy;
  bool try_push;  // producers spin on TryPush() instead of calling Push()
};

void PrintTo(const StressConfig& config, std::ostream* os) {
  *os << config.name;
}

class NotifyQueueStressTest : public ::testing::TestWithParam<StressConfig> {};

// Waits until fd is readable or the deadline passes. Returns false on
// deadline.
bool WaitReadable(int fd, Clock::time_point deadline) {
  pollfd p{fd, POLLIN, 0};
  while (Clock::now() < deadline) {
    const int n = poll(&p, 1, kPollTimeoutMs);
    if (n < 0 && errno == EINTR) continue;
    EXPECT_GE(n, 0) << "poll: errno " << errno;
    if (n < 0) return false;
    if (n == 1) {
      EXPECT_EQ(p.revents & (POLLERR | POLLHUP | POLLNVAL), 0);
      return true;
    }
  }
  return false;
}

TEST_P(NotifyQueueStressTest, ManyProducersOneConsumer) {
  const StressConfig& config = GetParam();
  NotifyQueueOptions options;
  options.notifier = config.kind;
  options.capacity = config.capacity;
  options.full_policy = config.policy;
  auto created = NotifyQueue<std::unique_ptr<Item>>::Create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  NotifyQueue<std::unique_ptr<Item>>& q = **created;
  const Clock::time_point deadline = Clock::now() + kDeadline;

  // Consumer state is touched only by the consumer thread until join().
  std::vector<int> next_seq(kProducers, 0);
  int bad_items = 0;
  size_t drains = 0, empty_drains = 0;
  bool consumer_timed_out = false;
  std::atomic<int> received{0};

  std::thread consumer([&] {
    for (;;) {
      if (!WaitReadable(q.fd(), deadline)) {
        consumer_timed_out = true;
        return;
      }
      const bool was_closed = q.closed();
      const size_t n = q.Drain([&](std::unique_ptr<Item>&& item) {
        if (item == nullptr || item->producer < 0 ||
            item->producer >= kProducers ||
            item->seq != next_seq[item->producer]) {
          ++bad_items;  // lost, duplicated or reordered
          return;
        }
        ++next_seq[item->producer];
      });
      ++drains;
      if (n == 0) ++empty_drains;
      received.fetch_add(static_cast<int>(n), std::memory_order_relaxed);
      if (was_closed) return;  // that Drain() emptied the queue for good
    }
  });

  std::vector<std::thread> producers;
  std::atomic<int> push_errors{0};
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kItemsPerProducer; ++i) {
        auto item = std::make_unique<Item>(Item{p, i});
        if (config.try_push) {
          // A failed TryPush() leaves the item with us: retry the same one.
          while (!q.TryPush(item)) {
            if (q.closed() || Clock::now() > deadline) {
              push_errors.fetch_add(1);
              return;
            }
            std::this_thread::yield();
          }
          if (item != nullptr) push_errors.fetch_add(1);
        } else if (!q.Push(std::move(item)).ok()) {
          push_errors.fetch_add(1);
          return;
        }
      }
    });
  }
  for (std::thread& t : producers) t.join();

  // Every item must arrive through wake-ups alone, before Close() would
  // wake the consumer anyway.
  while (received.load() < kTotal && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const int received_before_close = received.load();
  q.Close();
  consumer.join();

  EXPECT_EQ(push_errors.load(), 0);
  EXPECT_FALSE(consumer_timed_out);
  EXPECT_EQ(received_before_close, kTotal) << "lost wake-up or lost items";
  EXPECT_EQ(received.load(), kTotal);
  EXPECT_EQ(bad_items, 0);
  for (int p = 0; p < kProducers; ++p) {
    EXPECT_EQ(next_seq[p], kItemsPerProducer) << "producer " << p;
  }
  EXPECT_EQ(q.size(), 0u);
  // Coalescing: a push writes only on the pending false -> true transition,
  // which happens once initially and at most once after each Drain()'s
  // reset; add Close() and its possible re-arm.
  EXPECT_LE(q.notifications_written(), drains + 3);
  EXPECT_LT(q.notifications_written(), static_cast<uint64_t>(kTotal));
  std::cout << config.name << ": " << kTotal << " items, " << drains
            << " drains (" << empty_drains << " empty), "
            << q.notifications_written() << " notification writes\n";
}

// One item at a time, back and forth between two threads through two
// queues: every item needs its own wake-up, so this exercises the window
// between a Drain() and the next push as often as possible. A lost wake-up
// makes a round trip miss the deadline.
// The consumer destroys the queue as soon as it has what it waited for,
// while the producer may still be inside its wake-up write (Push) or its
// locked section (Close). The destructor must wait for both; ASan and TSan
// report a use-after-free otherwise.
class NotifyQueueLifetimeTest : public ::testing::TestWithParam<NotifierKind> {
};

TEST_P(NotifyQueueLifetimeTest, ConsumerMayDestroyRightAfterDraining) {
  NotifyQueueOptions options;
  options.notifier = GetParam();
  const Clock::time_point deadline = Clock::now() + kDeadline;
  for (int round = 0; round < 300; ++round) {
    auto created = NotifyQueue<int>::Create(options);
    ASSERT_TRUE(created.ok()) << created.status();
    std::unique_ptr<NotifyQueue<int>> q = *std::move(created);
    const bool via_close = round % 2 == 1;
    NotifyQueue<int>* raw = q.get();
    std::thread producer([raw, via_close] {
      if (via_close) {
        raw->Close();
      } else {
        EXPECT_TRUE(raw->Push(7).ok());
      }
    });
    // Spin on Drain() instead of poll(): it sees the item before the
    // producer's write(2) has returned, which is the window under test.
    bool done = false;
    while (!done && Clock::now() < deadline) {
      const bool was_closed = q->closed();
      int got = 0;
      q->Drain([&](int&& v) { got = v; });
      done = via_close ? was_closed : got == 7;
      if (!done) std::this_thread::yield();
    }
    ASSERT_TRUE(done) << "round " << round;
    q.reset();  // the producer may still be finishing its call
    producer.join();
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, NotifyQueueLifetimeTest,
                         ::testing::Values(NotifierKind::kEventFd,
                                           NotifierKind::kPipe),
                         [](const ::testing::TestParamInfo<NotifierKind>& i) {
                           return std::string(NotifierKindName(i.param));
                         });

class NotifyQueuePingPongTest : public ::testing::TestWithParam<NotifierKind> {
};

TEST_P(NotifyQueuePingPongTest, NeverLosesAWakeup) {
  NotifyQueueOptions options;
  options.notifier = GetParam();
  auto ping_or = NotifyQueue<int>::Create(options);
  auto pong_or = NotifyQueue<int>::Create(options);
  ASSERT_TRUE(ping_or.ok()) << ping_or.status();
  ASSERT_TRUE(pong_or.ok()) << pong_or.status();
  NotifyQueue<int>& ping = **ping_or;
  NotifyQueue<int>& pong = **pong_or;
  const Clock::time_point deadline = Clock::now() + kDeadline;
  constexpr int kRounds = 10000;

  bool echo_timed_out = false;
  std::thread echo([&] {
    for (;;) {
      if (!WaitReadable(ping.fd(), deadline)) {
        echo_timed_out = true;
        return;
      }
      const bool was_closed = ping.closed();
      ping.Drain([&](int&& v) { (void)pong.Push(v); });
      if (was_closed) return;
    }
  });

  int round = 0;
  for (; round < kRounds; ++round) {
    ASSERT_TRUE(ping.Push(round).ok());
    int got = -1;
    size_t n = 0;
    while (n == 0) {  // a stale wake-up may give an empty drain
      if (!WaitReadable(pong.fd(), deadline)) break;
      n = pong.Drain([&](int&& v) { got = v; });
    }
    if (n != 1 || got != round) break;
  }
  ping.Close();
  echo.join();
  EXPECT_EQ(round, kRounds) << "stalled: a wake-up was lost";
  EXPECT_FALSE(echo_timed_out);
  // Every round needed exactly one fresh wake-up on the way back (each push
  // to pong comes after the drain of the previous one).
  EXPECT_EQ(pong.notifications_written(), static_cast<uint64_t>(kRounds));
}

INSTANTIATE_TEST_SUITE_P(
    Configs, NotifyQueueStressTest,
    ::testing::Values(StressConfig{"eventfd_unbounded", NotifierKind::kEventFd,
                                   0, FullPolicy::kFail, false},
                      StressConfig{"pipe_unbounded", NotifierKind::kPipe, 0,
                                   FullPolicy::kFail, false},
                      StressConfig{"eventfd_cap64_block",
                                   NotifierKind::kEventFd, 64,
                                   FullPolicy::kBlock, false},
                      StressConfig{"pipe_cap64_block", NotifierKind::kPipe, 64,
                                   FullPolicy::kBlock, false},
                      StressConfig{"eventfd_cap64_trypush",
                                   NotifierKind::kEventFd, 64,
                                   FullPolicy::kFail, true}),
    [](const ::testing::TestParamInfo<StressConfig>& i) {
      return std::string(i.param.name);
    });

INSTANTIATE_TEST_SUITE_P(Kinds, NotifyQueuePingPongTest,
                         ::testing::Values(NotifierKind::kEventFd,
                                           NotifierKind::kPipe),
                         [](const ::testing::TestParamInfo<NotifierKind>& i) {
                           return std::string(NotifierKindName(i.param));
                         });

}  // namespace
}  // namespace eventide
