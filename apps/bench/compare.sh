#!/usr/bin/env bash
# Runs the peer benchmarks (pipebench, timerbench, xthreadbench) with the
# fixed matrix of apps/bench/compare.py and writes docs/performance.json,
# docs/PERFORMANCE.md and docs/performance.svg.
#
#   apps/bench/compare.sh                  # full matrix, 3 rounds (~1 h)
#   apps/bench/compare.sh --rounds 5
#   apps/bench/compare.sh --quick --json /tmp/p.json --markdown /tmp/p.md \
#                         --svg /tmp/p.svg  # smoke run of the script
#
# Installs what it needs on a fresh Debian (python3, valgrind, taskset), builds
# the binaries with --config=bench through ./bazelw (which installs the
# libraries) and copies them out, so builds in this checkout during the run
# cannot swap them.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v python3 >/dev/null || need+=(python3)
command -v valgrind >/dev/null || need+=(valgrind)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  echo "compare.sh: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q \
    --no-install-recommends "${need[@]}" >/dev/null
fi

./bazelw build --config=bench //apps/bench:pipebench //apps/bench:timerbench \
  //apps/bench:xthreadbench
bin=$(mktemp -d -t eventide-bench.XXXXXX)
trap 'rm -rf "$bin"' EXIT
src=$(./bazelw info --config=bench bazel-bin 2>/dev/null)/apps/bench
cp "$src/pipebench" "$src/timerbench" "$src/xthreadbench" "$bin/"
mkdir -p docs
python3 apps/bench/compare.py --bin-dir "$bin" --command "apps/bench/compare.sh $*" "$@"
