// Copyright 2026 The Eventide Authors.
//
// Prints the backends compiled in, what each can do on this kernel (or why
// it cannot start), and which one CreateBackend picks here and why.
//   ./bazelw run //demux:demux_info
//   EVENTIDE_BACKEND=poll ./bazel-bin/demux/demux_info

#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "demux/backend.h"
#include "demux/registry.h"

int main() {
  using eventide::BackendCapabilities;
  std::printf("%-9s %-7s %s\n", "backend", "opt-in",
              "capabilities on this kernel");
  for (const std::string& name : eventide::AvailableBackendNames()) {
    eventide::BackendOptions options;
    options.name = name;
    options.ignore_environment = true;
    absl::StatusOr<eventide::BackendSelection> s =
        eventide::CreateBackend(options);
    std::string what;
    if (!s.ok()) {
      what = "unavailable: " + s.status().ToString();
    } else {
      const BackendCapabilities c = s->backend->capabilities();
      what = absl::StrFormat(
          "features=%s max_fd=%d reinit_after_fork=%s resolution=%s",
          eventide::FeatureNames(eventide::FeaturesOf(c)), c.max_fd,
          c.needs_reinit_after_fork ? "yes" : "no",
          absl::FormatDuration(c.timeout_resolution));
    }
    std::printf("%-9s %-7s %s\n", name.c_str(),
                eventide::IsOptInBackend(name) ? "yes" : "no", what.c_str());
  }
  absl::StatusOr<eventide::BackendSelection> chosen = eventide::CreateBackend();
  if (!chosen.ok()) {
    std::printf("\nCreateBackend(): %s\n", chosen.status().ToString().c_str());
    return 1;
  }
  std::printf("\nCreateBackend() chose %s\n", chosen->reason.c_str());
  return 0;
}
