#!/bin/sh
echo "remote_coverage_tools is not available offline; use gcov/lcov from Debian instead of 'bazel coverage'" >&2
exit 1
