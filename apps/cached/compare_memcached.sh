#!/usr/bin/env bash
# Throughput of our cached against a real memcached, same load, same run.
#
#   apps/cached/compare_memcached.sh [-r ROUNDS] [-d SECONDS] [-t THREADS]
#                                    [-T CLIENT_THREADS] [-c CONCURRENCY]
#
# Builds //apps/cached:cached with --config=bench, then runs memaslap
# (Debian's libmemcached-tools installs it as `memcaslap`) against each
# server in turn, alternating cached / memcached for ROUNDS rounds:
# 90% get / 10% set, 64-byte keys, 100-byte values, SECONDS seconds each run,
# CONCURRENCY connections from CLIENT_THREADS client threads. Both servers
# run THREADS worker threads and listen on 127.0.0.1 only. Prints the ops/s
# of every run, the median per server, the ratio of the medians and the
# median of the per-round ratios (the steadier of the two on a busy machine)
# with a 95% bootstrap interval,
# each server's CPU time (user + system) per request, read from /proc, and
# the load generator's CPU time per request.
#
# The client shares the machine with the server: on a 2-core machine the
# absolute numbers are low and noisy; compare the ratio within one run.
set -euo pipefail

rounds=3
duration=20
threads=2
client_threads=2
concurrency=32
while getopts "r:d:t:T:c:h" opt; do
  case "$opt" in
    r) rounds=$OPTARG ;;
    d) duration=$OPTARG ;;
    t) threads=$OPTARG ;;
    T) client_threads=$OPTARG ;;
    c) concurrency=$OPTARG ;;
    *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done

cd "$(dirname "$0")/../.."

loadgen=$(command -v memcaslap || command -v memaslap || true)
memcached=$(command -v memcached || true)
if [[ -z "$loadgen" || -z "$memcached" ]]; then
  echo "need memcaslap/memaslap (libmemcached-tools) and memcached" >&2
  exit 1
fi

work=$(mktemp -d -t cached-compare.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

./bazelw build --config=bench //apps/cached:cached >"$work/build.log" 2>&1 ||
  { tail -n 20 "$work/build.log" >&2; exit 1; }
# Copy the binary: other builds in this checkout may replace bazel-bin.
bin_dir=$(./bazelw info --config=bench bazel-bin 2>/dev/null)
cp "$bin_dir/apps/cached/cached" "$work/cached"

cat >"$work/load.cfg" <<'EOF'
key
64 64 1
value
100 100 1
cmd
0 0.1
1 0.9
EOF

# Starts our server on a kernel-chosen port; sets $server_pid, $server_port.
start_cached() {
  "$work/cached" -l 127.0.0.1 -p 0 -t "$threads" >"$work/cached.out" 2>"$work/cached.err" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 100); do
    if grep -q 'listening on' "$work/cached.out" 2>/dev/null; then break; fi
    sleep 0.1
  done
  server_port=$(sed -n 's/^cached: listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/cached.out")
  [[ -n "$server_port" ]] || { echo "cached did not start:" >&2; cat "$work/cached.err" >&2; exit 1; }
}

# memcached cannot bind port 0: try random ports below the kernel's
# ephemeral range (no clash with port-0 binds), check that nothing answers
# there first, and that it is our process that answers afterwards.
start_memcached() {
  local user=()
  [[ $(id -u) -eq 0 ]] && user=(-u root)
  for _ in $(seq 10); do
    server_port=$((20000 + RANDOM % 10000))
    if (exec 3<>"/dev/tcp/127.0.0.1/$server_port") 2>/dev/null; then continue; fi
    "$memcached" -U 0 -l 127.0.0.1 -p "$server_port" -t "$threads" "${user[@]}" 2>"$work/memcached.err" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 50); do
      if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$server_port") 2>/dev/null; then return 0; fi
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
  done
  echo "memcached did not start:" >&2; cat "$work/memcached.err" >&2; exit 1
}

stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# Runs the load against $server_port; prints ops/s (memaslap's TPS).
# Also writes the client's CPU seconds (user + system) to $work/client.time.
run_load() {
  local TIMEFORMAT='%U %S'
  { time timeout $((duration + 30)) "$loadgen" -s "127.0.0.1:$server_port" \
      -F "$work/load.cfg" -t "${duration}s" -T "$client_threads" \
      -c "$concurrency" >"$work/load.out" 2>&1 || true; } 2>"$work/client.time"
  local tps
  tps=$(sed -n 's/.*TPS: \([0-9]*\).*/\1/p' "$work/load.out" | tail -n 1)
  if [[ -z "$tps" ]]; then
    echo "memaslap printed no TPS:" >&2; tail -n 5 "$work/load.out" >&2; exit 1
  fi
  # A server that answers nothing shows up as 0 ops/s: refuse that.
  [[ "$tps" -gt 0 ]] || { echo "0 ops/s" >&2; exit 1; }
  echo "$tps"
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# 95% bootstrap interval of the median of the numbers on stdin: 2000
# resamples with replacement, fixed seed (the same input prints the same
# interval). With few rounds it is wide; that width is the honest answer
# to "is one server faster?", since single rounds move by up to 25% here.
median_interval() {
  awk 'function med(b, n,   i, j, t) {
         for (i = 2; i <= n; i++) {  # insertion sort: n is a few dozen
           t = b[i]
           for (j = i - 1; j >= 1 && b[j] > t; j--) b[j + 1] = b[j]
           b[j + 1] = t
         }
         return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
       }
       {a[NR] = $1}
       END {
         srand(1)
         for (r = 1; r <= 2000; r++) {
           for (i = 1; i <= NR; i++) b[i] = a[int(rand() * NR) + 1]
           m[r] = med(b, NR)
         }
         med(m, 2000)  # sorts m
         printf "%.3f-%.3f", m[50], m[1951]
       }'
}

echo "load: $(basename "$loadgen") -T $client_threads -c $concurrency -t ${duration}s," \
  "90% get / 10% set, 64-byte keys, 100-byte values; servers: -t $threads, 127.0.0.1"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-10s %12s %14s %14s\n' round server ops/s "cpu µs/op" \
  "client µs/op"
: >"$work/cached.tps"
: >"$work/memcached.tps"
: >"$work/cached.cpu"
: >"$work/memcached.cpu"
: >"$work/cached.client"
: >"$work/memcached.client"
for round in $(seq "$rounds"); do
  # Alternate which server goes first, so a drift in machine load does
  # not always favour the same one.
  if ((round % 2)); then order=(cached memcached); else order=(memcached cached); fi
  for server in "${order[@]}"; do
    "start_$server"
    cpu_before=$(cpu_ticks "$server_pid")
    tps=$(run_load)
    cpu_after=$(cpu_ticks "$server_pid")
    ops=$(sed -n 's/.*Ops: \([0-9]*\) TPS.*/\1/p' "$work/load.out" | tail -n 1)
    # Server CPU (user + system) per request: steadier than ops/s when the
    # client shares the cores, since it does not depend on who got them.
    cpu_us=$(awk -v t=$((cpu_after - cpu_before)) -v hz="$hz" -v n="${ops:-0}" \
      'BEGIN {if (n > 0) printf "%.3f", t / hz / n * 1e6; else print "nan"}')
    # The client's CPU per request too: on a machine the client shares, a
    # server that makes the client work less per reply (say, by answering
    # several of its connections per wake-up) leaves it more of the cores.
    client_us=$(awk -v n="${ops:-0}" \
      '{if (n > 0) printf "%.3f", ($1 + $2) / n * 1e6; else print "nan"}' \
      "$work/client.time")
    stop_server
    echo "$tps" >>"$work/$server.tps"
    echo "$cpu_us" >>"$work/$server.cpu"
    echo "$client_us" >>"$work/$server.client"
    printf '%-6s %-10s %12s %14s %14s\n' "$round" "$server" "$tps" "$cpu_us" \
      "$client_us"
  done
done
ours=$(median <"$work/cached.tps")
theirs=$(median <"$work/memcached.tps")
# The two runs of a round are adjacent in time, so their ratio is less
# exposed to the machine's load drifting over minutes than the medians.
round_ratio=$(paste "$work/cached.tps" "$work/memcached.tps" |
  awk '{printf "%.4f\n", $1 / $2}' | median)
echo
printf 'median ops/s: cached %s, memcached %s; ratio of medians %s\n' \
  "$ours" "$theirs" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.3f", a / b}')"
round_interval=$(paste "$work/cached.tps" "$work/memcached.tps" |
  awk '{printf "%.4f\n", $1 / $2}' | median_interval)
printf 'median of per-round ratios cached/memcached: %.3f (95%% bootstrap interval %s)\n' \
  "$round_ratio" "$round_interval"
ours_cpu=$(median <"$work/cached.cpu")
theirs_cpu=$(median <"$work/memcached.cpu")
printf 'median server CPU per op: cached %s µs, memcached %s µs; ratio %s (lower is better)\n' \
  "$ours_cpu" "$theirs_cpu" "$(awk -v a="$ours_cpu" -v b="$theirs_cpu" 'BEGIN {printf "%.3f", a / b}')"
ours_client=$(median <"$work/cached.client")
theirs_client=$(median <"$work/memcached.client")
printf 'median client CPU per op: with cached %s µs, with memcached %s µs; ratio %s\n' \
  "$ours_client" "$theirs_client" \
  "$(awk -v a="$ours_client" -v b="$theirs_client" 'BEGIN {printf "%.3f", a / b}')"
