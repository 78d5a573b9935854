// Copyright 2026 The Eventide Authors.
//
// The epoll backend: epoll(7): scalable, level- or edge-triggered, Linux only.
// Usually chosen through //demux:registry; use the factory directly to pin
// this mechanism. Contract, threading and errors: demux/backend.h.

#ifndef EVENTIDE_DEMUX_EPOLL_H_
#define EVENTIDE_DEMUX_EPOLL_H_

#include <memory>

#include "absl/status/statusor.h"
#include "demux/backend.h"

namespace eventide {

// Init: returns the backend, or an error when the kernel refuses the
// mechanism (Unavailable) or resources run out.
absl::StatusOr<std::unique_ptr<Backend>> CreateEpollBackend(
    const BackendOptions& options = {});

}  // namespace eventide

#endif  // EVENTIDE_DEMUX_EPOLL_H_
