// A bounded soak of the cached binary (issue 10): client threads run a mixed
// load (set, get, delete, incr; connects, disconnects and RSTs) against one
// server for EVENTIDE_SOAK_SECONDS (default 20; the nightly target sets
// 120). Each thread owns its keys and keeps an exact model of them, so
// every get is checked while the load runs and the whole data set is
// checked at the end. The server's RSS is sampled every 500 ms and must be
// flat after the warm-up: last sample <= 1.2 x the first post-warm-up sample
// + slack. Every wait is bounded; the server must exit 0 on SIGTERM.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/cached_test_util.h"
#include "tests/fault_test_util.h"

namespace eventide {
namespace fault_test {
namespace {

using cached_test::Client;
using cached_test::Printable;
using cached_test::ServerProcess;

constexpr int kThreads = 4;
constexpr int kKeysPerThread = 400;

std::string Value(absl::string_view key, absl::string_view value) {
  return absl::StrCat("VALUE ", key, " 0 ", value.size(), "\r\n", value,
                      "\r\nEND\r\n");
}

// One client thread: its keys, its model, its counters.
class Worker {
 public:
  Worker(int id, int port) : id_(id), port_(port), rng_(1000 + id) {}

  // Runs mixed operations until `deadline`. Returns false (with error())
  // on the first wrong or missing reply.
  bool Run(absl::Time deadline) {
    if (!Reconnect(false)) return false;
    while (absl::Now() < deadline) {
      const int op = static_cast<int>(rng_() % 100);
      bool ok;
      if (op < 35) {
        ok = DoSet();
      } else if (op < 70) {
        ok = DoGet();
      } else if (op < 80) {
        ok = DoDelete();
      } else if (op < 92) {
        ok = DoIncr();
      } else if (op < 98) {
        ok = DoMultiGet();
      } else {
        ok = Reconnect(/*abortive=*/op == 99);
      }
      if (!ok) return false;
      ++ops_;
    }
    return true;
  }

  // Checks every key of the model on a fresh connection.
  bool Verify() {
    if (!Reconnect(false)) return false;
    for (int k = 0; k < kKeysPerThread; ++k) {
      if (!CheckGet(Key(k))) return false;
    }
    const std::string want = counter_created_
                                 ? Value(CounterKey(), absl::StrCat(counter_))
                                 : std::string("END\r\n");
    return Expect(absl::StrCat("get ", CounterKey(), "\r\n"), want);
  }

  int64_t ops() const { return ops_; }
  const std::string& error() const { return error_; }

 private:
  std::string Key(int k) const { return absl::StrCat("soak", id_, ":", k); }
  std::string CounterKey() const { return absl::StrCat("soak", id_, ":ctr"); }

  bool Reconnect(bool abortive) {
    if (abortive) {
      AbortiveClose(client_);
    } else {
      client_.Close();
    }
    absl::StatusOr<Client> c = Client::Connect(port_);
    if (!c.ok()) return Fail(c.status().ToString());
    client_ = std::move(*c);
    return true;
  }

  bool Fail(const std::string& what) {
    if (error_.empty()) error_ = what;
    return false;
  }

  bool Expect(const std::string& request, const std::string& want) {
    absl::StatusOr<std::string> got = client_.Call(request);
    if (!got.ok()) {
      return Fail(absl::StrCat(got.status().ToString(), " for ",
                               Printable(request, 80)));
    }
    if (*got != want) {
      return Fail(absl::StrCat("got ", Printable(*got, 120), " want ",
                               Printable(want, 120), " for ",
                               Printable(request, 80)));
    }
    return true;
  }

  std::string Expected(const std::string& key) const {
    auto it = model_.find(key);
    if (it == model_.end() || !it->second.has_value()) return "END\r\n";
    return Value(key, *it->second);
  }

  bool CheckGet(const std::string& key) {
    return Expect(absl::StrCat("get ", key, "\r\n"), Expected(key));
  }

  bool DoSet() {
    const std::string key = Key(static_cast<int>(rng_() % kKeysPerThread));
    const size_t size = 1 + rng_() % 4000;
    std::string value = RandomBytes(size, rng_());
    const std::string request =
        absl::StrCat("set ", key, " 0 0 ", value.size(), "\r\n", value, "\r\n");
    if (!Expect(request, "STORED\r\n")) return false;
    model_[key] = std::move(value);
    return true;
  }

  bool DoGet() {
    return CheckGet(Key(static_cast<int>(rng_() % kKeysPerThread)));
  }

  bool DoMultiGet() {
    std::vector<std::string> keys;
    std::string want;
    for (int i = 0; i < 3; ++i) {
      keys.push_back(Key(static_cast<int>(rng_() % kKeysPerThread)));
      auto it = model_.find(keys.back());
      if (it != model_.end() && it->second.has_value()) {
        absl::StrAppend(&want, "VALUE ", keys.back(), " 0 ", it->second->size(),
                        "\r\n", *it->second, "\r\n");
      }
    }
    want += "END\r\n";
    return Expect(absl::StrCat("get ", absl::StrJoin(keys, " "), "\r\n"), want);
  }

  bool DoDelete() {
    const std::string key = Key(static_cast<int>(rng_() % kKeysPerThread));
    auto it = model_.find(key);
    const bool present = it != model_.end() && it->second.has_value();
    if (!Expect(absl::StrCat("delete ", key, "\r\n"),
                present ? "DELETED\r\n" : "NOT_FOUND\r\n")) {
      return false;
    }
    model_[key] = std::nullopt;
    return true;
  }

  bool DoIncr() {
    if (!counter_created_) {
      if (!Expect(absl::StrCat("set ", CounterKey(), " 0 0 1\r\n0\r\n"),
                  "STORED\r\n")) {
        return false;
      }
      counter_created_ = true;
      counter_ = 0;
    }
    const uint64_t delta = rng_() % 1000;
    counter_ += delta;
    return Expect(absl::StrCat("incr ", CounterKey(), " ", delta, "\r\n"),
                  absl::StrCat(counter_, "\r\n"));
  }

  const int id_;
  const int port_;
  std::mt19937_64 rng_;
  Client client_;
  std::map<std::string, std::optional<std::string>> model_;
  bool counter_created_ = false;
  uint64_t counter_ = 0;
  int64_t ops_ = 0;
  std::string error_;
};

#ifndef EVENTIDE_SOAK_DEFAULT_SECONDS
#define EVENTIDE_SOAK_DEFAULT_SECONDS 20
#endif

TEST(CachedSoakTest, MixedLoadKeepsDataAndFlatMemory) {
  SetChildSanitizerOptions();
  const int64_t seconds =
      EnvInt("EVENTIDE_SOAK_SECONDS", EVENTIDE_SOAK_DEFAULT_SECONDS);
  ASSERT_GT(seconds, 0);
  const absl::Duration duration = absl::Seconds(seconds);
  // Warm-up: every key written, buffers and allocator caches grown.
  const absl::Duration warm_up = std::max(absl::Seconds(4), duration / 4);
  auto server = ServerProcess::StartCached(
      {"-l", "127.0.0.1", "-p", "0", "-t", "2", "-m", "64"});
  ASSERT_TRUE(server.ok()) << server.status();
  const pid_t pid = (*server)->pid();
  const int port = (*server)->port();

  const absl::Time start = absl::Now();
  const absl::Time deadline = start + duration;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int id = 0; id < kThreads; ++id) {
    workers.push_back(std::make_unique<Worker>(id, port));
  }
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      if (!workers[id]->Run(deadline)) failed.fetch_add(1);
    });
  }
  // RSS samples: the first one after the warm-up is the reference.
  std::vector<std::pair<absl::Duration, int64_t>> samples;
  int64_t reference_kb = -1;
  while (absl::Now() < deadline && failed.load() == 0) {
    absl::SleepFor(absl::Milliseconds(500));
    absl::StatusOr<int64_t> kb = RssKb(pid);
    ASSERT_TRUE(kb.ok()) << kb.status();
    const absl::Duration at = absl::Now() - start;
    samples.emplace_back(at, *kb);
    if (reference_kb < 0 && at >= warm_up) reference_kb = *kb;
  }
  for (std::thread& t : threads) t.join();
  int64_t total_ops = 0;
  for (auto& w : workers) {
    EXPECT_TRUE(w->error().empty()) << "during the load: " << w->error();
    total_ops += w->ops();
  }
  ASSERT_EQ(failed.load(), 0);
  // The data set after the load, key by key.
  for (auto& w : workers) {
    EXPECT_TRUE(w->Verify()) << "at the end: " << w->error();
  }
  ASSERT_GE(reference_kb, 0) << "no sample after the warm-up";
  const int64_t last_kb = samples.back().second;
  const int64_t slack_kb = UnderSanitizer() ? 16 * 1024 : 8 * 1024;
  std::string trace;
  for (size_t i = 0; i < samples.size();
       i += std::max<size_t>(1, samples.size() / 12)) {
    absl::StrAppend(&trace, absl::ToInt64Seconds(samples[i].first),
                    "s:", samples[i].second / 1024, "M ");
  }
  EXPECT_LE(last_kb, reference_kb * 12 / 10 + slack_kb)
      << "RSS grew after the warm-up: " << trace;
  std::cerr << "soak " << seconds << " s: " << total_ops << " operations, RSS "
            << reference_kb << " KiB after warm-up, " << last_kb
            << " KiB at the end; samples " << trace << "\n";
  // Every connection of the load is forgotten: only the checkers' are left
  // (each Verify() left one open).
  absl::StatusOr<Client> c = Client::Connect(port);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<std::string> stats = c->Call("stats\r\n");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_NE(stats->find("STAT curr_connections " +
                        std::to_string(kThreads + 1) + "\r\n"),
            std::string::npos)
      << Printable(*stats, 2000);
  workers.clear();
  c->Close();
  absl::StatusOr<int> status = (*server)->Stop(SIGTERM, absl::Seconds(5));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "wait status " << *status;
}

}  // namespace
}  // namespace fault_test
}  // namespace eventide
