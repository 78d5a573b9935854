// Copyright 2026 The Eventide Authors.

#include "demux/backend.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace eventide {

uint32_t FeaturesOf(const BackendCapabilities& caps) {
  uint32_t f = 0;
  if (caps.edge_triggered) f |= kFeatureEdgeTriggered;
  if (caps.max_fd == -1) f |= kFeatureUnlimitedFds;
  if (caps.scalable) f |= kFeatureScalable;
  if (!caps.needs_reinit_after_fork) f |= kFeatureNoReinitAfterFork;
  if (caps.reports_error_and_hangup) f |= kFeatureErrorAndHangup;
  if (caps.timeout_resolution < absl::Milliseconds(1)) {
    f |= kFeaturePreciseTimeout;
  }
  if (!caps.reports_once) f |= kFeatureLevelTriggered;
  return f;
}

std::string FeatureNames(uint32_t features) {
  static constexpr std::pair<uint32_t, const char*> kNames[] = {
      {kFeatureEdgeTriggered, "edge-triggered"},
      {kFeatureUnlimitedFds, "unlimited-fds"},
      {kFeatureScalable, "scalable"},
      {kFeatureNoReinitAfterFork, "no-reinit-after-fork"},
      {kFeatureErrorAndHangup, "error-and-hangup"},
      {kFeaturePreciseTimeout, "precise-timeout"},
      {kFeatureLevelTriggered, "level-triggered"},
  };
  std::vector<std::string> parts;
  for (const auto& [bit, name] : kNames) {
    if (features & bit) {
      parts.emplace_back(name);
      features &= ~bit;
    }
  }
  if (features != 0) parts.push_back(absl::StrCat("0x", absl::Hex(features)));
  if (parts.empty()) return "none";
  return absl::StrJoin(parts, "|");
}

}  // namespace eventide
