#!/usr/bin/env bash
# User-space instructions per event, counted with callgrind.
#
#   apps/bench/callgrind_per_event.sh BINARY ARGS... -- K1 K2 EVENTS_PER_ITER
#
# Runs `BINARY ARGS... --iterations=K` under valgrind --tool=callgrind for
# K = K1 and K = K2 (K2 > K1), reads the total instruction count (Ir) of each
# run, and prints one JSON line on stdout:
#   {"k1":2,"k2":6,"events_per_iteration":10100,"ir_k1":...,"ir_k2":...,
#    "extra_events":40400,"ir_per_event":61.3}
# ir_per_event = (Ir(K2) - Ir(K1)) / ((K2 - K1) * EVENTS_PER_ITER): set-up,
# tear-down and start-up cancel out; what is left is the per-iteration work
# (for pipebench: the timed phase plus the untimed re-registration) divided by
# the events it handled.
#
# The iteration flag is --iterations=K by default; set ITER_FLAG to change it
# (e.g. ITER_FLAG=--rounds). Extra valgrind options go in CALLGRIND_ARGS, e.g.
# CALLGRIND_ARGS="--toggle-collect=*RunTimedPhase*" to count only pipebench's
# timed phase. KEEP_DIR=/some/dir keeps the callgrind.out files there (named
# after K) for callgrind_annotate; otherwise they go to a temporary directory
# that is removed.
#
# Exit status: that of the benchmark if it fails (3 = n/a for this
# configuration, passed through), 2 on bad usage, 1 if valgrind output cannot
# be read. The benchmark's stdout is discarded; its stderr is shown.
set -euo pipefail

usage() {
  echo "usage: $0 BINARY ARGS... -- K1 K2 EVENTS_PER_ITER" >&2
  exit 2
}

[[ $# -ge 5 ]] || usage
args=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  args+=("$1")
  shift
done
[[ $# -eq 4 ]] || usage
shift
k1=$1 k2=$2 events=$3
[[ "$k1" =~ ^[0-9]+$ && "$k2" =~ ^[0-9]+$ && "$events" =~ ^[0-9]+$ ]] || usage
((k2 > k1 && events > 0)) || usage
iter_flag=${ITER_FLAG:---iterations}

if [[ -n "${KEEP_DIR:-}" ]]; then
  dir=$KEEP_DIR
  mkdir -p "$dir"
else
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
fi

# Prints the Ir total of one run.
total_ir() {
  local k=$1 out="$dir/callgrind.out.k$1" rc=0
  # shellcheck disable=SC2086  # CALLGRIND_ARGS is a list of options
  valgrind --tool=callgrind --callgrind-out-file="$out" ${CALLGRIND_ARGS:-} \
    "${args[@]}" "$iter_flag=$k" >/dev/null 2>"$dir/stderr.k$k" || rc=$?
  if ((rc != 0)); then
    grep -v '^==' "$dir/stderr.k$k" >&2 || true
    exit "$rc"
  fi
  # "summary: N" (or "totals: N") holds the first event (Ir) over the run.
  local ir
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out")
  if [[ -z "$ir" ]]; then
    echo "$0: no Ir total in $out" >&2
    exit 1
  fi
  echo "$ir"
}

ir1=$(total_ir "$k1")
ir2=$(total_ir "$k2")
python3 - "$k1" "$k2" "$events" "$ir1" "$ir2" <<'EOF'
import json, sys
k1, k2, events, ir1, ir2 = (int(x) for x in sys.argv[1:])
extra = (k2 - k1) * events
print(json.dumps({"k1": k1, "k2": k2, "events_per_iteration": events,
                  "ir_k1": ir1, "ir_k2": ir2, "extra_events": extra,
                  "ir_per_event": round((ir2 - ir1) / extra, 1)}))
EOF
