// Copyright 2026 The Eventide Authors.
//
// The registry: every backend compiled in, in order of preference, and the
// run-time choice among them. libevent keeps its `eventops` in a static array
// and takes the first whose init succeeds, letting the user only avoid
// methods; here the choice can also be made by name, by required features, or
// by the EVENTIDE_BACKEND environment variable, and the result says why.
//
// This is the only file that names concrete backends. To add one (kqueue,
// event ports, ...): write foo.h/foo.cc with a CreateFooBackend factory and a
// //demux:foo target, add a row to the table in registry.cc (guarded by the
// platform macro) and the target to //demux:registry's deps; the conformance
// suite (tests/demux_conformance_test.cc) picks it up from
// AvailableBackendNames().
//
// Order of preference (measured, see demux/README.md): epoll, poll, select.
// io_uring is compiled in but opt-in: it is used only when named
// (BackendOptions::name or EVENTIDE_BACKEND=io_uring) or when
// BackendOptions::allow_opt_in is set, until our benchmark shows it ahead of
// epoll on the same work.
//
// Selection rules, in order:
//  1. The name: EVENTIDE_BACKEND=<name> if set, non-empty, not ignored
//     (BackendOptions::ignore_environment, or a setuid/setgid process:
//     getauxval(AT_SECURE)); else BackendOptions::name; else none.
//  2. Candidates: the named backend only, or every backend in order of
//     preference (opt-in ones only with allow_opt_in).
//  3. The first candidate that is not in `avoid`, initialises, and has all of
//     `required_features` is created. Unknown names (in `name`, `avoid` or the
//     variable) are InvalidArgument; no fitting backend is NotFound. Both
//     messages list the available names and why each candidate was skipped.
//
// Thread-safe: CreateBackend may be called from any thread (it reads the
// environment with getenv, so do not setenv concurrently).
//
// Example:
//   eventide::BackendOptions options;
//   options.avoid = {"select"};
//   options.required_features = eventide::kFeatureEdgeTriggered;
//   absl::StatusOr<eventide::BackendSelection> s =
//       eventide::CreateBackend(options);
//   if (!s.ok()) return s.status();
//   LOG(INFO) << s->reason;  // "epoll: first in order of preference ..."
//   std::unique_ptr<eventide::Backend> backend = std::move(s->backend);

#ifndef EVENTIDE_DEMUX_REGISTRY_H_
#define EVENTIDE_DEMUX_REGISTRY_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "demux/backend.h"

namespace eventide {

inline constexpr char kBackendEnvironmentVariable[] = "EVENTIDE_BACKEND";

struct BackendSelection {
  std::unique_ptr<Backend> backend;
  // Human-readable: which backend, what chose it (order of preference, a
  // name, the environment variable), which candidates were skipped and why.
  std::string reason;
};

// What CreateBackend reads from the process; a parameter so tests can play a
// setuid process or a variable without touching the real environment.
struct SelectionEnvironment {
  std::optional<std::string> backend_variable;  // EVENTIDE_BACKEND, if set
  bool secure = false;  // setuid/setgid or otherwise AT_SECURE
};
SelectionEnvironment CurrentSelectionEnvironment();

// Creates the backend the rules above choose.
absl::StatusOr<BackendSelection> CreateBackend(
    const BackendOptions& options = {});
absl::StatusOr<BackendSelection> CreateBackend(
    const BackendOptions& options, const SelectionEnvironment& environment);

// Every backend compiled in, in order of preference (opt-in ones last),
// whether or not the running kernel supports it.
std::vector<std::string> AvailableBackendNames();
// The backends of AvailableBackendNames() that initialise on the running
// kernel (each is created once and destroyed). For tools and for suites that
// must run on every backend the machine has.
std::vector<std::string> UsableBackendNames();
// True for backends used only when named or allowed (io_uring).
bool IsOptInBackend(absl::string_view name);

}  // namespace eventide

#endif  // EVENTIDE_DEMUX_REGISTRY_H_
