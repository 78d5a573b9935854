// A real memcached client library against our server: libmemcached
// (Debian's libmemcached-dev, 1.1.x, text protocol) drives //apps/cached:cached
// through set/add/replace/get/mget (with cas)/delete/incr/decr/cas/append/
// prepend/touch/flush/version/verbosity/stats, noreply and buffered modes,
// large values, and several threads with their own handles.
//
// Each test starts its own server (127.0.0.1, kernel-chosen port) and stops
// it with SIGTERM at the end, expecting exit 0. The library's connect and
// poll timeouts are set so that every call is bounded.
#include <libmemcached/memcached.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/cached_test_util.h"

namespace eventide {
namespace cached_test {
namespace {

struct MemcDeleter {
  void operator()(memcached_st* memc) const { memcached_free(memc); }
};
using Memc = std::unique_ptr<memcached_st, MemcDeleter>;

struct FreeDeleter {
  void operator()(char* p) const { free(p); }
};
using MallocedString = std::unique_ptr<char, FreeDeleter>;

struct ResultDeleter {
  void operator()(memcached_result_st* r) const { memcached_result_free(r); }
};

// A fetched value, or nothing.
struct Fetched {
  memcached_return_t rc = MEMCACHED_FAILURE;
  std::string value;
  uint32_t flags = 0;
};

class LibmemcachedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::StartCached({"-l", "127.0.0.1", "-p", "0", "-t", "2"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    memc_ = NewHandle();
    ASSERT_NE(memc_, nullptr);
  }

  void TearDown() override {
    memc_.reset();  // closes the library's connection first
    if (server_ != nullptr && !server_->HasExited()) {
      absl::StatusOr<int> status = server_->Stop(SIGTERM, absl::Seconds(5));
      ASSERT_TRUE(status.ok()) << status.status();
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
          << "wait status " << *status;
    }
  }

  // A handle on our server with bounded timeouts.
  Memc NewHandle() {
    Memc memc(memcached_create(nullptr));
    if (memc == nullptr) return memc;
    EXPECT_EQ(memcached_server_add(memc.get(), "127.0.0.1",
                                   static_cast<in_port_t>(server_->port())),
              MEMCACHED_SUCCESS);
    EXPECT_EQ(memcached_behavior_set(memc.get(),
                                     MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, 5000),
              MEMCACHED_SUCCESS);
    EXPECT_EQ(memcached_behavior_set(memc.get(),
                                     MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 5000),
              MEMCACHED_SUCCESS);
    EXPECT_EQ(
        memcached_behavior_set(memc.get(), MEMCACHED_BEHAVIOR_TCP_NODELAY, 1),
        MEMCACHED_SUCCESS);
    return memc;
  }

  static memcached_return_t Set(memcached_st* memc, const std::string& key,
                                const std::string& value, uint32_t flags = 0,
                                time_t exptime = 0) {
    return memcached_set(memc, key.data(), key.size(), value.data(),
                         value.size(), exptime, flags);
  }

  static Fetched Get(memcached_st* memc, const std::string& key) {
    Fetched out;
    size_t length = 0;
    MallocedString value(memcached_get(memc, key.data(), key.size(), &length,
                                       &out.flags, &out.rc));
    if (value != nullptr) out.value.assign(value.get(), length);
    return out;
  }

  // mget + fetch_result: key -> (value, flags, cas).
  struct Item {
    std::string value;
    uint32_t flags;
    uint64_t cas;
  };
  static std::map<std::string, Item> MultiGet(
      memcached_st* memc, const std::vector<std::string>& keys) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lengths;
    for (const std::string& k : keys) {
      ptrs.push_back(k.data());
      lengths.push_back(k.size());
    }
    std::map<std::string, Item> items;
    memcached_return_t rc =
        memcached_mget(memc, ptrs.data(), lengths.data(), keys.size());
    EXPECT_EQ(rc, MEMCACHED_SUCCESS) << memcached_last_error_message(memc);
    if (rc != MEMCACHED_SUCCESS) return items;
    for (size_t bound = 0; bound <= keys.size(); ++bound) {
      std::unique_ptr<memcached_result_st, ResultDeleter> result(
          memcached_fetch_result(memc, nullptr, &rc));
      if (result == nullptr) break;
      items[std::string(memcached_result_key_value(result.get()),
                        memcached_result_key_length(result.get()))] =
          Item{std::string(memcached_result_value(result.get()),
                           memcached_result_length(result.get())),
               memcached_result_flags(result.get()),
               memcached_result_cas(result.get())};
    }
    EXPECT_TRUE(rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND)
        << memcached_strerror(memc, rc);
    return items;
  }

  std::unique_ptr<ServerProcess> server_;
  Memc memc_;
};

TEST_F(LibmemcachedTest, VersionIsParsed) {
  ASSERT_EQ(memcached_version(memc_.get()), MEMCACHED_SUCCESS)
      << memcached_last_error_message(memc_.get());
  memcached_return_t rc;
  const memcached_instance_st* instance =
      memcached_server_by_key(memc_.get(), "k", 1, &rc);
  ASSERT_NE(instance, nullptr);
  EXPECT_EQ(memcached_server_major_version(instance), 1);
  EXPECT_EQ(memcached_server_minor_version(instance), 6);
  EXPECT_EQ(memcached_server_micro_version(instance), 18);
}

TEST_F(LibmemcachedTest, SetGetAddReplaceDelete) {
  memcached_st* m = memc_.get();
  EXPECT_EQ(Set(m, "foo", "bar", 42), MEMCACHED_SUCCESS);
  Fetched got = Get(m, "foo");
  EXPECT_EQ(got.rc, MEMCACHED_SUCCESS);
  EXPECT_EQ(got.value, "bar");
  EXPECT_EQ(got.flags, 42u);
  EXPECT_EQ(Get(m, "missing").rc, MEMCACHED_NOTFOUND);

  EXPECT_EQ(memcached_add(m, "foo", 3, "x", 1, 0, 0), MEMCACHED_NOTSTORED);
  EXPECT_EQ(memcached_add(m, "new", 3, "n", 1, 0, 0), MEMCACHED_SUCCESS);
  EXPECT_EQ(memcached_replace(m, "absent", 6, "x", 1, 0, 0),
            MEMCACHED_NOTSTORED);
  EXPECT_EQ(memcached_replace(m, "foo", 3, "replaced", 8, 0, 7),
            MEMCACHED_SUCCESS);
  got = Get(m, "foo");
  EXPECT_EQ(got.value, "replaced");
  EXPECT_EQ(got.flags, 7u);

  EXPECT_EQ(memcached_delete(m, "foo", 3, 0), MEMCACHED_SUCCESS);
  EXPECT_EQ(memcached_delete(m, "foo", 3, 0), MEMCACHED_NOTFOUND);
  EXPECT_EQ(Get(m, "foo").rc, MEMCACHED_NOTFOUND);
  EXPECT_EQ(memcached_exist(m, "new", 3), MEMCACHED_SUCCESS);
  // libmemcached's text-protocol exist is "add <key> 0 2678400 0": an
  // exptime past 30 days is an absolute time (here in 1970), so a missing
  // key is stored already expired (STORED -> NOTFOUND) and stays invisible.
  EXPECT_EQ(memcached_exist(m, "foo", 3), MEMCACHED_NOTFOUND);
  EXPECT_EQ(Get(m, "foo").rc, MEMCACHED_NOTFOUND);
  EXPECT_EQ(Get(m, "new").value, "n");
}

TEST_F(LibmemcachedTest, MultiGetWithCas) {
  memcached_st* m = memc_.get();
  ASSERT_EQ(memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1),
            MEMCACHED_SUCCESS);
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) {
    keys.push_back(absl::StrCat("mget", i));
    if (i % 3 != 0) {
      ASSERT_EQ(Set(m, keys.back(), absl::StrCat("value", i), i),
                MEMCACHED_SUCCESS);
    }
  }
  std::map<std::string, Item> items = MultiGet(m, keys);
  EXPECT_EQ(items.size(), 20u);
  std::set<uint64_t> uniques;
  for (int i = 0; i < 30; ++i) {
    auto it = items.find(keys[i]);
    if (i % 3 == 0) {
      EXPECT_EQ(it, items.end()) << keys[i];
      continue;
    }
    ASSERT_NE(it, items.end()) << keys[i];
    EXPECT_EQ(it->second.value, absl::StrCat("value", i));
    EXPECT_EQ(it->second.flags, static_cast<uint32_t>(i));
    EXPECT_NE(it->second.cas, 0u);
    uniques.insert(it->second.cas);
  }
  EXPECT_EQ(uniques.size(), 20u) << "cas uniques must differ per item";
}

TEST_F(LibmemcachedTest, Cas) {
  memcached_st* m = memc_.get();
  ASSERT_EQ(memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1),
            MEMCACHED_SUCCESS);
  ASSERT_EQ(Set(m, "c", "v1"), MEMCACHED_SUCCESS);
  std::map<std::string, Item> items = MultiGet(m, {"c"});
  ASSERT_EQ(items.count("c"), 1u);
  const uint64_t cas = items["c"].cas;
  EXPECT_EQ(memcached_cas(m, "c", 1, "v2", 2, 0, 5, cas), MEMCACHED_SUCCESS);
  EXPECT_EQ(memcached_cas(m, "c", 1, "v3", 2, 0, 0, cas),
            MEMCACHED_DATA_EXISTS);
  EXPECT_EQ(memcached_cas(m, "nothing", 7, "v", 1, 0, 0, cas),
            MEMCACHED_NOTFOUND);
  Fetched got = Get(m, "c");
  EXPECT_EQ(got.value, "v2");
  EXPECT_EQ(got.flags, 5u);
  items = MultiGet(m, {"c"});
  EXPECT_NE(items["c"].cas, cas);
}

TEST_F(LibmemcachedTest, IncrDecr) {
  memcached_st* m = memc_.get();
  ASSERT_EQ(Set(m, "n", "100"), MEMCACHED_SUCCESS);
  uint64_t value = 0;
  EXPECT_EQ(memcached_increment(m, "n", 1, 23, &value), MEMCACHED_SUCCESS);
  EXPECT_EQ(value, 123u);
  EXPECT_EQ(memcached_decrement(m, "n", 1, 200, &value), MEMCACHED_SUCCESS);
  EXPECT_EQ(value, 0u);
  EXPECT_EQ(memcached_increment(m, "absent", 6, 1, &value), MEMCACHED_NOTFOUND);
  ASSERT_EQ(Set(m, "text", "abc"), MEMCACHED_SUCCESS);
  EXPECT_NE(memcached_increment(m, "text", 4, 1, &value), MEMCACHED_SUCCESS);
  // The connection is still fine after the CLIENT_ERROR.
  EXPECT_EQ(memcached_increment(m, "n", 1, 7, &value), MEMCACHED_SUCCESS);
  EXPECT_EQ(value, 7u);
}

TEST_F(LibmemcachedTest, AppendPrepend) {
  memcached_st* m = memc_.get();
  ASSERT_EQ(Set(m, "ap", "middle", 9), MEMCACHED_SUCCESS);
  EXPECT_EQ(memcached_append(m, "ap", 2, "-end", 4, 0, 0), MEMCACHED_SUCCESS);
  EXPECT_EQ(memcached_prepend(m, "ap", 2, "start-", 6, 0, 0),
            MEMCACHED_SUCCESS);
  Fetched got = Get(m, "ap");
  EXPECT_EQ(got.value, "start-middle-end");
  EXPECT_EQ(got.flags, 9u);
  EXPECT_EQ(memcached_append(m, "absent", 6, "x", 1, 0, 0),
            MEMCACHED_NOTSTORED);
  EXPECT_EQ(memcached_prepend(m, "absent", 6, "x", 1, 0, 0),
            MEMCACHED_NOTSTORED);
}

TEST_F(LibmemcachedTest, TouchFlushVerbosity) {
  memcached_st* m = memc_.get();
  ASSERT_EQ(Set(m, "t", "v"), MEMCACHED_SUCCESS);
  EXPECT_EQ(memcached_touch(m, "t", 1, 100), MEMCACHED_SUCCESS);
  EXPECT_EQ(memcached_touch(m, "absent", 6, 100), MEMCACHED_NOTFOUND);
  EXPECT_EQ(memcached_verbosity(m, 0), MEMCACHED_SUCCESS);
  EXPECT_EQ(memcached_flush(m, 0), MEMCACHED_SUCCESS);
  EXPECT_EQ(Get(m, "t").rc, MEMCACHED_NOTFOUND);
  ASSERT_EQ(Set(m, "t", "after flush"), MEMCACHED_SUCCESS);
  EXPECT_EQ(Get(m, "t").value, "after flush");
}

TEST_F(LibmemcachedTest, LargeValuesAndTooLarge) {
  memcached_st* m = memc_.get();
  std::string large(900 * 1024, '\0');
  for (size_t i = 0; i < large.size(); ++i) {
    large[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  }
  ASSERT_EQ(Set(m, "large", large), MEMCACHED_SUCCESS)
      << memcached_last_error_message(m);
  Fetched got = Get(m, "large");
  EXPECT_EQ(got.rc, MEMCACHED_SUCCESS);
  EXPECT_TRUE(got.value == large) << "900 KiB value came back different";
  // Over -I (1 MiB): refused by the server, the connection stays usable.
  const std::string too_large((1 << 20) + 100, 'x');
  EXPECT_NE(Set(m, "huge", too_large), MEMCACHED_SUCCESS);
  EXPECT_EQ(Get(m, "huge").rc, MEMCACHED_NOTFOUND);
  EXPECT_EQ(Set(m, "small", "ok"), MEMCACHED_SUCCESS);
  EXPECT_EQ(Get(m, "small").value, "ok");
}

TEST_F(LibmemcachedTest, NoReplyAndBufferedRequests) {
  Memc quiet = NewHandle();
  ASSERT_EQ(memcached_behavior_set(quiet.get(), MEMCACHED_BEHAVIOR_NOREPLY, 1),
            MEMCACHED_SUCCESS);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(Set(quiet.get(), absl::StrCat("nr", i), absl::StrCat(i)),
              MEMCACHED_SUCCESS);
  }
  EXPECT_EQ(memcached_delete(quiet.get(), "nr0", 3, 0), MEMCACHED_SUCCESS);

  Memc buffered = NewHandle();
  ASSERT_EQ(memcached_behavior_set(buffered.get(),
                                   MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1),
            MEMCACHED_SUCCESS);
  for (int i = 0; i < 100; ++i) {
    const memcached_return_t rc =
        Set(buffered.get(), absl::StrCat("buf", i), absl::StrCat("b", i));
    EXPECT_TRUE(rc == MEMCACHED_BUFFERED || rc == MEMCACHED_SUCCESS)
        << memcached_strerror(buffered.get(), rc);
  }
  EXPECT_EQ(memcached_flush_buffers(buffered.get()), MEMCACHED_SUCCESS);

  // A third handle sees everything (the server handles a request only
  // after the ones before it on that connection, but across connections
  // the order is not defined: poll, bounded).
  memcached_st* m = memc_.get();
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (Get(m, "buf99").rc != MEMCACHED_SUCCESS ||
         Get(m, "nr99").rc != MEMCACHED_SUCCESS) {
    ASSERT_LT(absl::Now(), deadline) << "noreply/buffered sets never arrived";
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(Get(m, "nr0").rc, MEMCACHED_NOTFOUND);
  for (int i = 1; i < 100; ++i) {
    EXPECT_EQ(Get(m, absl::StrCat("nr", i)).value, absl::StrCat(i));
    EXPECT_EQ(Get(m, absl::StrCat("buf", i)).value, absl::StrCat("b", i));
  }
}

TEST_F(LibmemcachedTest, StatsThroughTheLibrary) {
  memcached_st* m = memc_.get();
  ASSERT_EQ(Set(m, "s1", "1"), MEMCACHED_SUCCESS);
  ASSERT_EQ(Set(m, "s2", "2"), MEMCACHED_SUCCESS);
  EXPECT_EQ(Get(m, "s1").rc, MEMCACHED_SUCCESS);
  EXPECT_EQ(Get(m, "s3").rc, MEMCACHED_NOTFOUND);
  memcached_return_t rc;
  memcached_stat_st* stats = memcached_stat(m, nullptr, &rc);
  ASSERT_EQ(rc, MEMCACHED_SUCCESS) << memcached_last_error_message(m);
  ASSERT_NE(stats, nullptr);
  auto stat = [&](const char* name) -> int64_t {
    memcached_return_t r;
    MallocedString text(memcached_stat_get_value(m, stats, name, &r));
    int64_t v = -1;
    if (r != MEMCACHED_SUCCESS || text == nullptr ||
        !absl::SimpleAtoi(text.get(), &v)) {
      ADD_FAILURE() << "stat " << name << ": " << memcached_strerror(m, r);
    }
    return v;
  };
  EXPECT_EQ(stat("pid"), server_->pid());
  EXPECT_EQ(stat("curr_items"), 2);
  EXPECT_EQ(stat("get_hits"), 1);
  EXPECT_EQ(stat("get_misses"), 1);
  EXPECT_EQ(stat("threads"), 2);
  EXPECT_EQ(stats->pid, static_cast<pid_t>(server_->pid()));
  EXPECT_EQ(stats->curr_items, 2u);
  memcached_stat_free(nullptr, stats);
}

TEST_F(LibmemcachedTest, ThreadsWithTheirOwnHandles) {
  constexpr int kThreads = 4;
  constexpr int kOps = 300;
  std::atomic<int> failures{0};
  std::mutex mu;
  std::string first;
  std::vector<Memc> handles;
  for (int t = 0; t < kThreads; ++t) {
    handles.push_back(NewHandle());
    ASSERT_NE(handles.back(), nullptr);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      memcached_st* m = handles[static_cast<size_t>(t)].get();
      for (int i = 0; i < kOps; ++i) {
        const std::string key = absl::StrCat("t", t, "_", i % 50);
        const std::string value = absl::StrCat(t, ":", i);
        memcached_return_t rc = Set(m, key, value, static_cast<uint32_t>(i));
        Fetched got = Get(m, key);
        if (rc != MEMCACHED_SUCCESS || got.rc != MEMCACHED_SUCCESS ||
            got.value != value || got.flags != static_cast<uint32_t>(i)) {
          if (failures.fetch_add(1) == 0) {
            std::lock_guard<std::mutex> lock(mu);
            first = absl::StrCat(key, ": set ", memcached_strerror(m, rc),
                                 ", get ", memcached_strerror(m, got.rc), " '",
                                 got.value, "'");
          }
          return;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0) << first;
}

}  // namespace
}  // namespace cached_test
}  // namespace eventide
