// Copyright 2026 The Eventide Authors.
//
// Test-only: make one system call fail with a chosen errno in the calling
// process, as an old kernel, a container's seccomp profile or
// kernel.io_uring_disabled would. Irreversible, so call it in a forked child.

#ifndef EVENTIDE_DEMUX_INTERNAL_SECCOMP_FOR_TEST_H_
#define EVENTIDE_DEMUX_INTERNAL_SECCOMP_FOR_TEST_H_

namespace eventide {
namespace demux_internal {

// Installs a seccomp filter: syscall `nr` returns -1 with errno `err`, every
// other call is allowed. Returns false (errno set) if the filter could not be
// installed.
bool FailSyscallForTest(long nr, int err);

}  // namespace demux_internal
}  // namespace eventide

#endif  // EVENTIDE_DEMUX_INTERNAL_SECCOMP_FOR_TEST_H_
