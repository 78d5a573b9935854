// Copyright 2026 The Eventide Authors.
//
// The select backend: select(2)/pselect: the last-resort fallback, fds below
// FD_SETSIZE only. Usually chosen through //demux:registry; use the factory
// directly to pin this mechanism. Contract, threading and errors:
// demux/backend.h.

#ifndef EVENTIDE_DEMUX_SELECT_H_
#define EVENTIDE_DEMUX_SELECT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "demux/backend.h"

namespace eventide {

// Init: returns the backend, or an error when the kernel refuses the
// mechanism (Unavailable) or resources run out.
absl::StatusOr<std::unique_ptr<Backend>> CreateSelectBackend(
    const BackendOptions& options = {});

}  // namespace eventide

#endif  // EVENTIDE_DEMUX_SELECT_H_
