#!/usr/bin/env bash
# Builds every fuzz target (tagged "fuzz", made by eventide_fuzz_test) with
# --config=fuzz in its own Bazel output base, runs each for a bounded time
# on a temporary copy of its seed corpus, and fails on any crash, sanitizer
# report, leak, timeout or model mismatch. Prints per target: executions,
# executions/s, coverage (libFuzzer's cov/ft) and the corpus size reached.
#
#   tools/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET]     (default 60)
#
# Environment:
#   EVENTIDE_FUZZ_OUTPUT_BASE  Bazel output base for the clang build
#                              (default $HOME/.cache/eventide-fuzz; never the
#                              shared one: --config=fuzz switches compilers)
#   EVENTIDE_FUZZ_ARTIFACTS    where crash/leak/timeout inputs and logs go
#                              (default: a new directory under /tmp, kept
#                              only if a target failed)
#   EVENTIDE_FUZZ_TARGETS      space-separated labels instead of the query
#
# The tree is never written: libFuzzer's new inputs go to a temporary copy
# of the corpus, deleted at exit. To keep a crash as a regression seed, copy
# it into <pkg>/testdata/<name>_corpus/ (the replay test then runs it).
# Stops the fuzz output base's Bazel server at the end.
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
output_base=${EVENTIDE_FUZZ_OUTPUT_BASE:-$HOME/.cache/eventide-fuzz}
if [[ -n ${EVENTIDE_FUZZ_ARTIFACTS:-} ]]; then
  artifacts=$EVENTIDE_FUZZ_ARTIFACTS
  own_artifacts=0
else
  artifacts=$(mktemp -d -t eventide-fuzz-artifacts.XXXXXX)
  own_artifacts=1
fi
mkdir -p "$artifacts"
work=$(mktemp -d -t eventide-fuzz-work.XXXXXX)
bazel=(./bazelw --output_base="$output_base")

cleanup() {
  rm -rf "$work"
  "${bazel[@]}" shutdown >/dev/null 2>&1 || true
}
trap cleanup EXIT

start=$(date +%s)

if [[ -n ${EVENTIDE_FUZZ_TARGETS:-} ]]; then
  read -r -a targets <<<"$EVENTIDE_FUZZ_TARGETS"
else
  # Every top-level package tree but Bazel's convenience links: from this
  # output base, bazel-* point into another one and //... would walk them.
  universe=""
  for dir in */; do
    dir=${dir%/}
    [[ $dir == bazel-* || -L $dir ]] && continue
    [[ -n $(find "$dir" \( -name BUILD -o -name BUILD.bazel \) -print -quit) ]] || continue
    universe+="${universe:+ + }//$dir/..."
  done
  query='attr(tags, "[\[ ]fuzz[,\]]", kind(cc_test, '"$universe"'))'
  # The tag exactly, not a substring of another tag. --keep_going: a broken
  # package elsewhere is the normal build's failure to report, not ours.
  mapfile -t targets < <("${bazel[@]}" query --keep_going --noshow_progress \
    "$query" 2>/dev/null)
fi
if ((${#targets[@]} == 0)); then
  echo "run_fuzzers: no fuzz targets found" >&2
  exit 1
fi
echo "run_fuzzers: ${#targets[@]} targets, ${seconds}s each: ${targets[*]}"

"${bazel[@]}" build --config=fuzz --noshow_progress "${targets[@]}"
bin=$("${bazel[@]}" info --config=fuzz bazel-bin 2>/dev/null)
build_done=$(date +%s)

failed=()
summary=()
for label in "${targets[@]}"; do
  pkg=${label#//}
  pkg=${pkg%%:*}
  name=${label##*:}
  binary="$bin/$pkg/$name"
  corpus="$work/$name-corpus"
  mkdir -p "$corpus"
  # The seed files are the target's <name>_corpus filegroup.
  mapfile -t seeds < <("${bazel[@]}" query --noshow_progress \
    "labels(srcs, //$pkg:${name}_corpus)" 2>/dev/null)
  for seed in "${seeds[@]}"; do
    file=${seed#//}
    file=${file/://}
    cp "$file" "$corpus/"
  done
  flags=(
    -max_total_time="$seconds"
    -print_final_stats=1
    -detect_leaks=1
    -timeout=10
    -rss_limit_mb=2560
    -error_exitcode=77
    -timeout_exitcode=78
    -artifact_prefix="$artifacts/$name-"
  )
  dict="$pkg/testdata/$name.dict"
  [[ -f $dict ]] && flags+=(-dict="$dict")
  log="$artifacts/$name.log"
  echo "run_fuzzers: $label (${#seeds[@]} seeds) ..."
  status=0
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$binary" "${flags[@]}" "$corpus" >"$log" 2>&1 || status=$?
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
  eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log")
  rss=$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+)/\1/p' "$log")
  line=$(printf '%-34s runs %9s  exec/s %6s  cov %5s  ft %6s  corpus %-12s rss %sMB' \
    "$label" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}")
  if ((status != 0)); then
    line+="  FAILED (exit $status)"
    failed+=("$label")
    echo "run_fuzzers: $label FAILED (exit $status); end of $log:" >&2
    grep -E 'ERROR:|SUMMARY:|fuzz check failed|runtime error|Test unit written|artifact_prefix' \
      "$log" | head -n 20 >&2 || true
    tail -n 30 "$log" >&2
  fi
  summary+=("$line")
done

end=$(date +%s)
echo
echo "run_fuzzers: summary (build $((build_done - start))s, total $((end - start))s)"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "run_fuzzers: FAILED: ${failed[*]} (crash inputs: $artifacts/<name>-crash-*, leak-*, timeout-*, oom-*)" >&2
  exit 1
fi
# The logs matter only when something failed: a directory we made ourselves
# goes away on success so that repeated CI runs do not pile up in /tmp.
if ((own_artifacts)); then
  rm -rf "$artifacts"
  echo "run_fuzzers: all passed (logs removed)"
else
  echo "run_fuzzers: all passed (logs in $artifacts)"
fi
