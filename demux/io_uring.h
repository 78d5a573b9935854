// Copyright 2026 The Eventide Authors.
//
// The io_uring backend: io_uring multishot poll via liburing; opt-in, see
// README.md. Usually chosen through //demux:registry; use the factory directly
// to pin this mechanism. Contract, threading and errors: demux/backend.h.

#ifndef EVENTIDE_DEMUX_IO_URING_H_
#define EVENTIDE_DEMUX_IO_URING_H_

#include <memory>

#include "absl/status/statusor.h"
#include "demux/backend.h"

namespace eventide {

// Init: returns the backend, or an error when the kernel refuses the
// mechanism (Unavailable) or resources run out.
absl::StatusOr<std::unique_ptr<Backend>> CreateIoUringBackend(
    const BackendOptions& options = {});

}  // namespace eventide

#endif  // EVENTIDE_DEMUX_IO_URING_H_
