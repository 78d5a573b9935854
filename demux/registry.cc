// Copyright 2026 The Eventide Authors.

#include "demux/registry.h"

#include <stdlib.h>
#include <sys/auxv.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "demux/epoll.h"
#include "demux/io_uring.h"
#include "demux/poll.h"
#include "demux/select.h"

namespace eventide {
namespace {

using Factory =
    absl::StatusOr<std::unique_ptr<Backend>> (*)(const BackendOptions&);

struct Entry {
  const char* name;
  Factory create;
  bool opt_in;
};

// In order of preference; demux/README.md has the measurements behind it.
// epoll: cost follows ready fds, not registered ones (1 ready of 10,000:
//   240x cheaper than poll); at most 1.5x slower than poll when every
//   registered fd is active.
// poll: no fd limit, O(registered) per wait.
// select: as poll, but limited to fds below FD_SETSIZE and blind to
//   error/hang-up.
// io_uring: opt-in, 1.1-1.4x behind epoll on the reactor cycle (README.md).
constexpr Entry kBackends[] = {
    {"epoll", &CreateEpollBackend, false},
    {"poll", &CreatePollBackend, false},
    {"select", &CreateSelectBackend, false},
    {"io_uring", &CreateIoUringBackend, true},
};

const Entry* Lookup(absl::string_view name) {
  for (const Entry& e : kBackends) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

std::string AvailableList() {
  return absl::StrCat("available: ",
                      absl::StrJoin(AvailableBackendNames(), ", "));
}

}  // namespace

SelectionEnvironment CurrentSelectionEnvironment() {
  SelectionEnvironment env;
  // secure_getenv would hide the variable from us in a setuid process; we
  // read it anyway so the reason can say it was ignored.
  if (const char* value = getenv(kBackendEnvironmentVariable)) {
    env.backend_variable = std::string(value);
  }
  env.secure = getauxval(AT_SECURE) != 0;
  return env;
}

std::vector<std::string> AvailableBackendNames() {
  std::vector<std::string> names;
  for (const Entry& e : kBackends) {
    if (!e.opt_in) names.emplace_back(e.name);
  }
  for (const Entry& e : kBackends) {
    if (e.opt_in) names.emplace_back(e.name);
  }
  return names;
}

std::vector<std::string> UsableBackendNames() {
  std::vector<std::string> usable;
  for (const std::string& name : AvailableBackendNames()) {
    BackendOptions options;
    options.name = name;
    options.ignore_environment = true;
    if (CreateBackend(options).ok()) usable.push_back(name);
  }
  return usable;
}

bool IsOptInBackend(absl::string_view name) {
  const Entry* e = Lookup(name);
  return e != nullptr && e->opt_in;
}

absl::StatusOr<BackendSelection> CreateBackend(const BackendOptions& options) {
  return CreateBackend(options, CurrentSelectionEnvironment());
}

absl::StatusOr<BackendSelection> CreateBackend(
    const BackendOptions& options, const SelectionEnvironment& environment) {
  std::vector<std::string> notes;  // goes into the reason / the error

  // 1. The name, if any.
  std::string name = options.name;
  std::string name_source = "BackendOptions::name";
  const std::string variable =
      absl::StrCat(kBackendEnvironmentVariable, "=",
                   environment.backend_variable.value_or(""));
  if (environment.backend_variable.has_value() &&
      !environment.backend_variable->empty()) {
    if (options.ignore_environment) {
      notes.push_back(absl::StrCat(
          variable, " ignored (BackendOptions::ignore_environment)"));
    } else if (environment.secure) {
      notes.push_back(
          absl::StrCat(variable, " ignored (setuid/setgid process)"));
    } else {
      if (!name.empty() && name != *environment.backend_variable) {
        notes.push_back(
            absl::StrCat(variable, " overrides BackendOptions::name=", name));
      }
      name = *environment.backend_variable;
      name_source = variable;
    }
  }
  for (const std::string& avoided : options.avoid) {
    if (Lookup(avoided) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("demux: unknown backend \"", avoided,
                       "\" in BackendOptions::avoid; ", AvailableList()));
    }
  }

  // 2. Candidates.
  std::vector<const Entry*> candidates;
  if (!name.empty()) {
    const Entry* e = Lookup(name);
    if (e == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("demux: unknown backend \"", name, "\" (from ",
                       name_source, "); ", AvailableList()));
    }
    candidates.push_back(e);
  } else {
    for (const Entry& e : kBackends) {
      if (!e.opt_in || options.allow_opt_in) {
        candidates.push_back(&e);
      } else {
        notes.push_back(absl::StrCat(
            e.name, " not tried (opt-in: name it or set allow_opt_in)"));
      }
    }
  }

  // 3. The first that fits.
  std::vector<std::string> skipped;
  absl::Status last_init_error;
  for (const Entry* e : candidates) {
    if (std::find(options.avoid.begin(), options.avoid.end(), e->name) !=
        options.avoid.end()) {
      skipped.push_back(absl::StrCat(e->name, " (in BackendOptions::avoid)"));
      continue;
    }
    absl::StatusOr<std::unique_ptr<Backend>> backend = e->create(options);
    if (!backend.ok()) {
      last_init_error = backend.status();
      skipped.push_back(absl::StrCat(
          e->name, " (init failed: ", backend.status().ToString(), ")"));
      continue;
    }
    const uint32_t missing =
        options.required_features & ~FeaturesOf((*backend)->capabilities());
    if (missing != 0) {
      skipped.push_back(
          absl::StrCat(e->name, " (lacks ", FeatureNames(missing), ")"));
      continue;  // destroying it is the dealloc
    }
    BackendSelection selection;
    selection.backend = *std::move(backend);
    if (!name.empty()) {
      selection.reason = absl::StrCat(e->name, ": named by ", name_source);
    } else {
      selection.reason = absl::StrCat(
          e->name, ": first in order of preference that initialised",
          options.required_features != 0
              ? absl::StrCat(" and has ",
                             FeatureNames(options.required_features))
              : "");
    }
    if (!skipped.empty()) {
      absl::StrAppend(&selection.reason, "; skipped ",
                      absl::StrJoin(skipped, ", "));
    }
    if (!notes.empty()) {
      absl::StrAppend(&selection.reason, "; ", absl::StrJoin(notes, "; "));
    }
    return selection;
  }
  std::string message = "demux: no backend fits";
  // A named backend that failed to initialise keeps its code (Unavailable
  // for io_uring on a kernel that refuses it), so callers can tell.
  absl::StatusCode code = absl::StatusCode::kNotFound;
  if (candidates.size() == 1 && !last_init_error.ok()) {
    code = last_init_error.code();
  }
  if (!name.empty()) absl::StrAppend(&message, " (named by ", name_source, ")");
  if (!skipped.empty()) {
    absl::StrAppend(&message, "; skipped ", absl::StrJoin(skipped, ", "));
  }
  if (!notes.empty())
    absl::StrAppend(&message, "; ", absl::StrJoin(notes, "; "));
  absl::StrAppend(&message, "; ", AvailableList());
  return absl::Status(code, message);
}

}  // namespace eventide
