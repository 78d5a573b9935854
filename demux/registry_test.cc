// Copyright 2026 The Eventide Authors.
//
// Run-time selection: order of preference, name, avoid-list, required
// features, EVENTIDE_BACKEND (and when it is ignored), the errors, and the
// fallback past a backend whose init fails.

#include "demux/registry.h"

#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "demux/internal/seccomp_for_test.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace eventide {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// No variable set, not setuid: what most processes see.
const SelectionEnvironment kPlain;

SelectionEnvironment WithVariable(std::string value, bool secure = false) {
  SelectionEnvironment env;
  env.backend_variable = std::move(value);
  env.secure = secure;
  return env;
}

std::string Chosen(const absl::StatusOr<BackendSelection>& s) {
  if (!s.ok()) return s.status().ToString();
  return std::string(s->backend->name());
}

TEST(Registry, ListsEveryBackendInOrderOfPreference) {
  EXPECT_THAT(AvailableBackendNames(),
              ElementsAre("epoll", "poll", "select", "io_uring"));
  EXPECT_TRUE(IsOptInBackend("io_uring"));
  EXPECT_FALSE(IsOptInBackend("epoll"));
  EXPECT_FALSE(IsOptInBackend("poll"));
  EXPECT_FALSE(IsOptInBackend("nonsense"));
}

TEST(Registry, DefaultIsFirstInOrderAndSaysWhy) {
  absl::StatusOr<BackendSelection> s = CreateBackend({}, kPlain);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->backend->name(), "epoll");
  EXPECT_THAT(s->reason, HasSubstr("epoll: first in order of preference"));
  EXPECT_THAT(s->reason, HasSubstr("io_uring not tried (opt-in"));
}

TEST(Registry, ByName) {
  for (const char* name : {"epoll", "poll", "select"}) {
    BackendOptions options;
    options.name = name;
    absl::StatusOr<BackendSelection> s = CreateBackend(options, kPlain);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->backend->name(), name);
    EXPECT_THAT(s->reason, HasSubstr("named by BackendOptions::name"));
  }
}

TEST(Registry, OptInBackendByNameOrAllowed) {
  BackendOptions options;
  options.name = "io_uring";
  absl::StatusOr<BackendSelection> s = CreateBackend(options, kPlain);
  if (absl::IsUnavailable(s.status())) {
    GTEST_SKIP() << "io_uring unavailable here: " << s.status();
  }
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->backend->name(), "io_uring");

  // Allowed but not named: still last in order.
  options = {};
  options.allow_opt_in = true;
  EXPECT_EQ(Chosen(CreateBackend(options, kPlain)), "epoll");
  options.avoid = {"epoll", "poll", "select"};
  EXPECT_EQ(Chosen(CreateBackend(options, kPlain)), "io_uring");
}

TEST(Registry, AvoidList) {
  BackendOptions options;
  options.avoid = {"epoll"};
  absl::StatusOr<BackendSelection> s = CreateBackend(options, kPlain);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->backend->name(), "poll");
  EXPECT_THAT(s->reason, HasSubstr("skipped epoll (in BackendOptions::avoid)"));

  options.avoid = {"poll", "epoll"};
  EXPECT_EQ(Chosen(CreateBackend(options, kPlain)), "select");

  options.avoid = {"poll", "epoll", "select"};
  s = CreateBackend(options, kPlain);
  EXPECT_TRUE(absl::IsNotFound(s.status())) << s.status();
  EXPECT_THAT(s.status().message(),
              HasSubstr("available: epoll, poll, select, io_uring"));
  EXPECT_THAT(s.status().message(),
              HasSubstr("select (in BackendOptions::avoid)"));
}

TEST(Registry, RequiredFeatures) {
  BackendOptions options;
  options.required_features = kFeatureNoReinitAfterFork;
  absl::StatusOr<BackendSelection> s = CreateBackend(options, kPlain);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->backend->name(), "poll");
  EXPECT_THAT(s->reason, HasSubstr("epoll (lacks no-reinit-after-fork)"));
  EXPECT_THAT(s->reason, HasSubstr("has no-reinit-after-fork"));

  options.required_features = kFeatureEdgeTriggered | kFeatureScalable;
  EXPECT_EQ(Chosen(CreateBackend(options, kPlain)), "epoll");

  options.avoid = {"epoll"};
  s = CreateBackend(options, kPlain);
  EXPECT_TRUE(absl::IsNotFound(s.status())) << s.status();
  EXPECT_THAT(s.status().message(),
              HasSubstr("poll (lacks edge-triggered|scalable)"));
  EXPECT_THAT(s.status().message(), HasSubstr("io_uring not tried (opt-in"));

  // A named backend must have the features too.
  options = {};
  options.name = "select";
  options.required_features = kFeatureUnlimitedFds;
  s = CreateBackend(options, kPlain);
  EXPECT_TRUE(absl::IsNotFound(s.status())) << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr("select (lacks unlimited-fds)"));
}

TEST(Registry, UnknownNamesAreInvalidArgumentWithTheList) {
  BackendOptions options;
  options.name = "kqueue";
  absl::StatusOr<BackendSelection> s = CreateBackend(options, kPlain);
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr("unknown backend \"kqueue\""));
  EXPECT_THAT(s.status().message(),
              HasSubstr("available: epoll, poll, select, io_uring"));

  options = {};
  options.avoid = {"epol"};
  s = CreateBackend(options, kPlain);
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  EXPECT_THAT(s.status().message(),
              HasSubstr("\"epol\" in BackendOptions::avoid"));
}

TEST(Registry, EnvironmentVariableNamesTheBackend) {
  absl::StatusOr<BackendSelection> s =
      CreateBackend({}, WithVariable("select"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->backend->name(), "select");
  EXPECT_THAT(s->reason, HasSubstr("named by EVENTIDE_BACKEND=select"));

  // It overrides the name in the code, and says so.
  BackendOptions options;
  options.name = "epoll";
  s = CreateBackend(options, WithVariable("poll"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->backend->name(), "poll");
  EXPECT_THAT(
      s->reason,
      HasSubstr("EVENTIDE_BACKEND=poll overrides BackendOptions::name=epoll"));

  // Empty means unset.
  EXPECT_EQ(Chosen(CreateBackend({}, WithVariable(""))), "epoll");

  // A typo is an error naming the variable, not a silent default.
  s = CreateBackend({}, WithVariable("pol"));
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr("from EVENTIDE_BACKEND=pol"));

  // The avoid-list and features still apply.
  options = {};
  options.avoid = {"poll"};
  s = CreateBackend(options, WithVariable("poll"));
  EXPECT_TRUE(absl::IsNotFound(s.status())) << s.status();
}

TEST(Registry, EnvironmentVariableIgnoredWhenSecureOrSwitchedOff) {
  absl::StatusOr<BackendSelection> s =
      CreateBackend({}, WithVariable("select", /*secure=*/true));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->backend->name(), "epoll");
  EXPECT_THAT(
      s->reason,
      HasSubstr("EVENTIDE_BACKEND=select ignored (setuid/setgid process)"));

  BackendOptions options;
  options.ignore_environment = true;
  s = CreateBackend(options, WithVariable("select"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->backend->name(), "epoll");
  EXPECT_THAT(s->reason,
              HasSubstr("ignored (BackendOptions::ignore_environment)"));
}

TEST(Registry, ReadsTheRealEnvironment) {
  ASSERT_EQ(setenv(kBackendEnvironmentVariable, "poll", 1), 0);
  SelectionEnvironment env = CurrentSelectionEnvironment();
  EXPECT_EQ(env.backend_variable, "poll");
  EXPECT_FALSE(env.secure) << "tests do not run setuid";
  EXPECT_EQ(Chosen(CreateBackend()), "poll");
  BackendOptions options;
  options.ignore_environment = true;
  EXPECT_EQ(Chosen(CreateBackend(options)), "epoll");
  ASSERT_EQ(unsetenv(kBackendEnvironmentVariable), 0);
  EXPECT_FALSE(CurrentSelectionEnvironment().backend_variable.has_value());
  EXPECT_EQ(Chosen(CreateBackend()), "epoll");
}

// In a child whose epoll_create1 fails as on a kernel without epoll, the
// registry falls back to poll and says why.
TEST(Registry, FallsBackPastABackendWhoseInitFails) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!demux_internal::FailSyscallForTest(SYS_epoll_create1, ENOSYS)) {
      _exit(10);
    }
    absl::StatusOr<BackendSelection> s = CreateBackend({}, kPlain);
    if (!s.ok()) _exit(11);
    if (s->backend->name() != "poll") _exit(12);
    if (!absl::StrContains(s->reason,
                           "skipped epoll (init failed: UNAVAILABLE")) {
      _exit(13);
    }
    // Named, it keeps the init failure's code.
    BackendOptions options;
    options.name = "epoll";
    if (!absl::IsUnavailable(CreateBackend(options, kPlain).status()))
      _exit(14);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace eventide
