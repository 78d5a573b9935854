#!/usr/bin/env python3
"""Runs Eventide's peer benchmarks with a fixed matrix and writes the report.

    apps/bench/compare.sh [--rounds N] [--quick] [--no-callgrind] ...

(compare.sh installs what this needs on a fresh Debian, builds the binaries
with --config=bench and calls this script.)

What runs, in this order:
  pipebench   rows (pipes, active) = (100, 1), (1000, 100), (10000, 100),
              (10000, 1000), writes = min(100 * active, 20000), plain and -t,
              every implementation `pipebench --list` names; pinned to one
              core; rounds interleaved (every round runs every impl once per
              row, in a rotated order, so drift in machine load is spread).
  timerbench  1,000,000 timers, every impl, pinned, rounds interleaved;
              every peer twice per round: its watcher array zeroed before
              timing (the default; the goals use these) and left unwritten
              (--watchers=untouched), so that its add pays the first touch
              of its watchers as Eventide's add does for its slot table.
  xthreadbench  throughput (1,000,000 messages) and ping-pong (100,000 round
              trips), every impl, unpinned (two threads on two cores) and both
              threads on one core pair.
  callgrind   user-space instructions per event for every pipebench row and
              impl, plain and -t, and per timer add/cancel/fire: each
              configuration runs at two sizes and the difference in
              instructions is divided by the difference in events, so set-up
              cancels out. Deterministic for a given binary and input.

Writes a JSON file with every raw result and a Markdown report with medians,
ratios to the fastest peer and to the raw floor, ratios within each round
(every round runs every implementation back to back), plus an SVG chart.
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

PIPE_ROWS = [(100, 1), (1000, 100), (10000, 100), (10000, 1000)]
PEERS = ("libevent", "libev", "libuv")
FLOORS = ("raw-epoll", "raw-eventfd")
NOT_AVAILABLE = 3  # exit status a bench uses for "this impl cannot run this"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def writes_for(active):
    return min(100 * active, 20000)


class Bench:
    """Runs one benchmark binary; every run prints one JSON object."""

    def __init__(self, path, pin=None):
        self.path = path
        self.pin = pin

    def impls(self):
        out = subprocess.run([self.path, "--list"], check=True,
                             capture_output=True, text=True).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def run(self, args, pin=None, timeout=900):
        cmd = [self.path] + args
        pin = pin if pin is not None else self.pin
        if pin:
            cmd = ["taskset", "-c", pin] + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode == NOT_AVAILABLE:
            return {"na": proc.stderr.strip().splitlines()[-1:] or ["n/a"]}
        if proc.returncode != 0:
            raise RuntimeError("%s failed (exit %d): %s" %
                               (" ".join(cmd), proc.returncode,
                                proc.stderr.strip()[-500:]))
        lines = [l for l in proc.stdout.splitlines() if l.strip()]
        return json.loads(lines[-1])

    def callgrind_ir(self, args, workdir, phases=0):
        """User-space instructions (Ir) of one run under callgrind.

        phases=0: the whole program, returned as an int. phases=N: the
        benchmark brackets its N timed phases with callgrind client requests
        (timerbench), collection starts off, and the N dumps' totals are
        returned as a list.
        """
        out = os.path.join(workdir, "callgrind.out")
        for name in os.listdir(workdir):
            if name.startswith("callgrind.out"):
                os.remove(os.path.join(workdir, name))
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out]
        if phases:
            cmd.append("--collect-atstart=no")
        proc = subprocess.run(cmd + [self.path] + args, capture_output=True,
                              text=True, timeout=3600)
        if proc.returncode == NOT_AVAILABLE:
            return None, None
        if proc.returncode != 0:
            raise RuntimeError("callgrind %s failed: %s" %
                               (" ".join(args), proc.stderr.strip()[-500:]))

        def total(path):
            ir = None
            with open(path) as f:
                for line in f:
                    if line.startswith("totals:") or line.startswith(
                            "summary:"):
                        ir = int(line.split()[1])
            return ir

        lines = [l for l in proc.stdout.splitlines() if l.strip()]
        result = json.loads(lines[-1])
        if not phases:
            return total(out), result
        return [total("%s.%d" % (out, i + 1)) for i in range(phases)], result


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rotated(items, k):
    k %= max(1, len(items))
    return items[k:] + items[:k]


# ---------------------------------------------------------------- pipebench


def pipe_args(pipes, active, timeout, iterations):
    args = ["--pipes=%d" % pipes, "--active=%d" % active,
            "--writes=%d" % writes_for(active), "--iterations=%d" % iterations]
    if timeout:
        args.append("--timeout")
    return args


def run_pipebench(bench, impls, rounds, rows, iterations):
    results = []  # raw JSON objects, with "round"
    for r in range(rounds):
        for (pipes, active) in rows:
            for timeout in (False, True):
                for impl in rotated(impls, r):
                    log("pipebench round %d: %s pipes=%d active=%d%s" %
                        (r + 1, impl, pipes, active, " -t" if timeout else ""))
                    res = bench.run(["--impl=" + impl] +
                                    pipe_args(pipes, active, timeout,
                                              iterations))
                    res.update({"round": r, "impl": impl,
                                "pipes_requested": res.get("pipes_requested",
                                                           pipes),
                                "active": active, "timeout": timeout})
                    results.append(res)
    return results


def callgrind_pipebench(bench, impls, rows, k1, k2, workdir):
    out = []
    for (pipes, active) in rows:
        for timeout in (False, True):
            for impl in impls:
                log("callgrind pipebench %s pipes=%d active=%d%s" %
                    (impl, pipes, active, " -t" if timeout else ""))
                ir1, r1 = bench.callgrind_ir(
                    ["--impl=" + impl] + pipe_args(pipes, active, timeout, k1),
                    workdir)
                ir2, r2 = bench.callgrind_ir(
                    ["--impl=" + impl] + pipe_args(pipes, active, timeout, k2),
                    workdir)
                entry = {"impl": impl, "pipes_requested": pipes,
                         "active": active, "timeout": timeout}
                if ir1 is None or ir2 is None:
                    entry["na"] = True
                else:
                    cb1 = total_callbacks(r1)
                    cb2 = total_callbacks(r2)
                    entry.update({"ir_k1": ir1, "ir_k2": ir2, "k1": k1,
                                  "k2": k2, "callbacks_k1": cb1,
                                  "callbacks_k2": cb2,
                                  "instructions_per_callback":
                                      (ir2 - ir1) / float(cb2 - cb1)})
                out.append(entry)
    return out


def total_callbacks(res):
    if "callbacks_total" in res:
        return res["callbacks_total"]
    per_iter = res.get("callbacks_per_iteration", res.get("callbacks"))
    return per_iter * res["iterations"]


# --------------------------------------------------------------- timerbench

TIMER_OPS = ("add_ns", "cancel_ns", "fire_ns")


def run_timerbench(bench, impls, rounds, count):
    results = []
    for r in range(rounds):
        for impl in rotated(impls, r):
            # Eventide's watchers are the loop's slots: the flag does not
            # apply to them.
            modes = ["zeroed"] if is_eventide(impl) else ["zeroed", "untouched"]
            for watchers in rotated(modes, r):
                log("timerbench round %d: %s, watchers %s" %
                    (r + 1, impl, watchers))
                res = bench.run(["--impl=" + impl, "--count=%d" % count,
                                 "--watchers=" + watchers])
                res.update({"round": r, "impl": impl, "watchers": watchers})
                results.append(res)
    return results


def timer_runs(results, untouched_peers):
    """The timerbench runs of one view: Eventide's, with the peers' runs
    whose watcher arrays were zeroed (the default) or left untouched.
    Results from before the flag existed count as zeroed."""
    want = "untouched" if untouched_peers else "zeroed"
    return [r for r in results
            if is_eventide(r["impl"]) or r.get("watchers", "zeroed") == want]


def callgrind_timerbench(bench, impls, n1, n2, workdir):
    out = []
    for impl in impls:
        log("callgrind timerbench %s" % impl)
        # One repetition: one dump per timed phase (add, cancel, fire).
        ir1, _ = bench.callgrind_ir(["--impl=" + impl, "--count=%d" % n1,
                                     "--repetitions=1"], workdir, phases=3)
        ir2, _ = bench.callgrind_ir(["--impl=" + impl, "--count=%d" % n2,
                                     "--repetitions=1"], workdir, phases=3)
        entry = {"impl": impl, "n1": n1, "n2": n2}
        if ir1 is None or ir2 is None or None in ir1 or None in ir2:
            entry["na"] = True
        else:
            for op, a, b in zip(("add", "cancel", "fire"), ir1, ir2):
                entry["instructions_per_" + op] = (b - a) / float(n2 - n1)
        out.append(entry)
    return out


# ------------------------------------------------------------- xthreadbench


def run_xthreadbench(bench, impls, rounds, messages, round_trips,
                     repetitions):
    results = []
    for pin_label, pin in (("unpinned", None), ("cpus 0,1", "0,1")):
        for r in range(rounds):
            for mode, size_flag, size in (("throughput", "--messages",
                                           messages),
                                          ("pingpong", "--round-trips",
                                           round_trips)):
                for impl in rotated(impls, r):
                    log("xthreadbench %s round %d: %s %s" %
                        (pin_label, r + 1, impl, mode))
                    res = bench.run(["--impl=" + impl, "--mode=" + mode,
                                     "%s=%d" % (size_flag, size),
                                     "--repetitions=%d" % repetitions],
                                    pin=pin or "")
                    res.update({"round": r, "impl": impl, "mode": mode,
                                "pinning": pin_label})
                    results.append(res)
    return results


# ------------------------------------------------------------------ report


def fmt(v, digits=1):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return "{:,}".format(v)
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    return ("{:.%df}" % digits).format(v)


def ratio(v, ref):
    if v is None or ref is None or ref == 0:
        return "n/a"
    return "%.2fx" % (v / ref)


def is_eventide(impl):
    return impl.startswith("eventide")


def paired_ratios(rows, impl, ref, key="median_us"):
    """impl's result over ref's in each round where both ran: the rounds
    interleave every implementation, so a ratio within one round is not
    moved by the machine's slow and fast phases as much as a ratio of
    medians taken over all rounds is."""
    by_round = {}
    for r in rows:
        if "na" not in r and r["impl"] in (impl, ref) and r.get(key):
            by_round.setdefault(r["round"], {})[r["impl"]] = r[key]
    return [v[impl] / v[ref] for _, v in sorted(by_round.items())
            if impl in v and ref in v]


def fmt_paired(ratios):
    if not ratios:
        return "n/a"
    if len(ratios) == 1:
        return "%.2fx" % ratios[0]
    return "%.2fx (%.2f-%.2f)" % (median(ratios), min(ratios), max(ratios))


def pipe_row_results(results, pipes, active, timeout):
    return [r for r in results if r["pipes_requested"] == pipes and
            r["active"] == active and r["timeout"] == timeout]


def medians_by_impl(rows, impls):
    """Each implementation's median of its runs' medians in `rows`."""
    return {i: median([r["median_us"] for r in rows
                       if r["impl"] == i and "na" not in r]) for i in impls}


def fastest(med, impls):
    """The implementation with the smallest median among impls."""
    have = [(med[i], i) for i in impls if med.get(i) is not None]
    return min(have)[1] if have else None


def pipe_table(results, cg, timeout):
    """Markdown table for one variant (plain or -t)."""
    impls = []
    for res in results:
        if res["impl"] not in impls:
            impls.append(res["impl"])
    lines = []
    header = ("| pipes / active / writes | impl | median µs | min µs | "
              "vs fastest peer | same round vs fastest peer | vs raw epoll "
              "| instr / callback |")
    lines += [header, "|---|---|---|---|---|---|---|---|"]
    for (pipes, active) in PIPE_ROWS:
        rows = pipe_row_results(results, pipes, active, timeout)
        if not rows:
            continue
        med = {}
        mins = {}
        used = {}
        for impl in impls:
            mine = [r for r in rows if r["impl"] == impl and "na" not in r]
            med[impl] = median([r["median_us"] for r in mine])
            mins[impl] = min([r["min_us"] for r in mine]) if mine else None
            if mine:
                used[impl] = mine[0].get("pipes", pipes)
        best = fastest(med, PEERS)
        fastest_peer = med[best] if best else None
        floor = med.get("raw-epoll")
        for impl in impls:
            ipc = None
            for e in cg:
                if (e["impl"] == impl and e["pipes_requested"] == pipes and
                        e["active"] == active and e["timeout"] == timeout and
                        "na" not in e):
                    ipc = e["instructions_per_callback"]
            label = "%s / %d / %s" % (fmt(used.get(impl, pipes)), active,
                                      fmt(writes_for(active)))
            name = "**%s**" % impl if is_eventide(impl) else impl
            paired = (fmt_paired(paired_ratios(rows, impl, best))
                      if best and impl != best else "n/a")
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" %
                         (label, name, fmt(med[impl]), fmt(mins[impl]),
                          ratio(med[impl], fastest_peer), paired,
                          ratio(med[impl], floor), fmt(ipc, 0)))
    return "\n".join(lines)


def timer_table(results, cg, instructions=True):
    impls = []
    for res in results:
        if res["impl"] not in impls:
            impls.append(res["impl"])
    med = {i: {op: median([r.get(op) for r in results if r["impl"] == i])
               for op in TIMER_OPS} for i in impls}
    if instructions:
        lines = ["| impl | add ns | cancel ns | fire ns | instructions per "
                 "add / cancel / fire | libevent cancel time / this |",
                 "|---|---|---|---|---|---|"]
    else:
        lines = ["| impl | add ns | cancel ns | fire ns | "
                 "libevent cancel time / this |", "|---|---|---|---|---|"]
    for impl in impls:
        ipt = "n/a"
        for e in cg:
            if e["impl"] == impl and "na" not in e:
                ipt = " / ".join(fmt(e["instructions_per_" + op], 0)
                                 for op in ("add", "cancel", "fire"))
        lib = med.get("libevent", {}).get("cancel_ns")
        speedup = ("%.2f" % (lib / med[impl]["cancel_ns"])
                   if lib and med[impl]["cancel_ns"] else "n/a")
        name = "**%s**" % impl if is_eventide(impl) else impl
        cells = [name, fmt(med[impl]["add_ns"]), fmt(med[impl]["cancel_ns"]),
                 fmt(med[impl]["fire_ns"])]
        cells += [ipt, speedup] if instructions else [speedup]
        lines.append("| %s |" % " | ".join(cells))
    return "\n".join(lines)


def xthread_table(results, pinning):
    impls = []
    for res in results:
        if res["impl"] not in impls:
            impls.append(res["impl"])
    rows = [r for r in results if r["pinning"] == pinning]
    tput = {i: median([r.get("msgs_per_s") for r in rows
                       if r["impl"] == i and r["mode"] == "throughput"])
            for i in impls}
    rtt = {i: median([r.get("median_us") for r in rows
                      if r["impl"] == i and r["mode"] == "pingpong"])
           for i in impls}
    raw = tput.get("raw-eventfd")
    peers = [tput[p] for p in PEERS if tput.get(p)]
    best_peer = max(peers) if peers else None
    lines = ["| impl | throughput msgs/s | vs raw eventfd | vs best peer | "
             "ping-pong round trip µs (median) |", "|---|---|---|---|---|"]
    for impl in impls:
        name = "**%s**" % impl if is_eventide(impl) else impl
        lines.append("| %s | %s | %s | %s | %s |" %
                     (name, fmt(tput[impl]), ratio(tput[impl], raw),
                      ratio(tput[impl], best_peer), fmt(rtt[impl], 2)))
    return "\n".join(lines)


def goals_table(data):
    """Issue 9's goals, each with the measured value and met / missed."""
    rows = []

    def verdict(ok):
        return "met" if ok else "**missed**"

    cg = data.get("pipebench_callgrind", [])
    for timeout, limit in ((False, 100), (True, 200)):
        for e in cg:
            if (e["impl"] == "eventide-epoll" and e["pipes_requested"] == 1000
                    and e["active"] == 100 and e["timeout"] == timeout and
                    "na" not in e):
                v = e["instructions_per_callback"]
                rows.append(("pipebench 1000/100%s: instructions per callback "
                             "<= %d" % (" -t" if timeout else "", limit),
                             fmt(v, 0), verdict(v <= limit)))
    pipe = data.get("pipebench", [])
    if pipe:
        wins = total = 0
        for (pipes, active) in PIPE_ROWS:
            for timeout in (False, True):
                med = medians_by_impl(
                    pipe_row_results(pipe, pipes, active, timeout),
                    PEERS + ("eventide-epoll",))
                best = fastest(med, PEERS)
                ev = med["eventide-epoll"]
                if ev is None or best is None:
                    continue
                total += 1
                wins += ev <= med[best]
        rows.append(("pipebench wall time: eventide-epoll at or ahead of the "
                     "fastest peer in every row", "%d of %d rows" %
                     (wins, total), verdict(total and wins == total)))
    tb = timer_runs(data.get("timerbench", []), untouched_peers=False)
    if tb:
        def med(impl, op):
            return median([r.get(op) for r in tb if r["impl"] == impl])
        for op in TIMER_OPS:
            ev, lv = med("eventide-epoll", op), med("libev", op)
            if ev is not None and lv is not None:
                rows.append(("timerbench %s at least as fast as libev" %
                             op.replace("_ns", ""),
                             "%s vs %s ns" % (fmt(ev), fmt(lv)),
                             verdict(ev <= lv)))
        ev, le = med("eventide-epoll", "cancel_ns"), med("libevent",
                                                         "cancel_ns")
        if ev and le:
            rows.append(("timerbench cancel >= 3x faster than libevent",
                         "%.2fx" % (le / ev), verdict(le / ev >= 3)))
    xb = [r for r in data.get("xthreadbench", [])
          if r["mode"] == "throughput" and r["pinning"] == "unpinned"]
    if xb:
        def tput(impl):
            return median([r.get("msgs_per_s") for r in xb
                           if r["impl"] == impl])
        best = max((tput(i), i) for i in {r["impl"] for r in xb}
                   if is_eventide(i))
        raw, uv = tput("raw-eventfd"), tput("libuv")
        if raw:
            rows.append(("xthreadbench throughput >= raw eventfd + mutex "
                         "queue (best Eventide API: %s)" % best[1],
                         "%.2fx" % (best[0] / raw), verdict(best[0] >= raw)))
        if uv:
            rows.append(("xthreadbench throughput ahead of libuv",
                         "%.2fx" % (best[0] / uv), verdict(best[0] > uv)))
    if not rows:
        return ""
    out = ["| goal (issue 9) | measured | |", "|---|---|---|"]
    out += ["| %s | %s | %s |" % r for r in rows]
    return "\n".join(out)


def same_round_summary(data):
    """What the rounds say when each is compared within itself: a paragraph
    under the goals, which stay judged on the medians."""
    if data.get("rounds", 1) < 2:
        return ""  # a single round is what the medians already say
    out = []
    pipe = data.get("pipebench", [])
    rows = []
    for (pipes, active) in PIPE_ROWS:
        for timeout in (False, True):
            rs = pipe_row_results(pipe, pipes, active, timeout)
            med = medians_by_impl(rs, PEERS + ("eventide-epoll",))
            best = fastest(med, PEERS)
            ratios = (paired_ratios(rs, "eventide-epoll", best)
                      if best else [])
            if ratios:
                rows.append(("%d/%d%s" % (pipes, active,
                                          " -t" if timeout else ""),
                             best, ratios))
    if rows:
        level = sum(1 for _, _, r in rows if median(r) <= 1.0)
        behind = [(n, b, r) for n, b, r in rows if min(r) > 1.0]
        text = ("Compared within each round instead (a round runs every "
                "implementation back to back, so a ratio within it moves "
                "less with the machine's slow and fast phases than a ratio "
                "of medians over all rounds), eventide-epoll is at or ahead "
                "of the fastest peer by median in %d of %d pipebench rows" %
                (level, len(rows)))
        if behind:
            text += ("; behind it in each of the %d rounds in %s" % (
                data["rounds"], "; ".join(
                    "%s against %s, %s" % (n, b, fmt_paired(r))
                    for n, b, r in behind)))
        else:
            text += ", and in no row behind it in each of the %d rounds" % (
                data["rounds"])
        out.append(text + ".")
    tb = timer_runs(data.get("timerbench", []), untouched_peers=False)
    for op in TIMER_OPS:
        ratios = paired_ratios(tb, "eventide-epoll", "libev", key=op)
        if len(ratios) > 1:
            out.append("timerbench %s, eventide-epoll over libev within each "
                       "round (median, range): %s." %
                       (op.replace("_ns", ""), fmt_paired(ratios)))
    return " ".join(out)


def svg_chart(data, path, title):
    """Grouped horizontal bars: data = [(group, [(label, value)])]."""
    colors = {"eventide": "#2b7bba", "libevent": "#d95f02",
              "libev": "#7570b3", "libuv": "#1b9e77", "raw": "#777777"}

    def color(label):
        for k, c in colors.items():
            if label.startswith(k):
                return c
        return "#999999"

    bar_h, gap, left, width = 14, 10, 260, 460
    n_bars = sum(len(bars) for _, bars in data)
    height = 40 + n_bars * bar_h + len(data) * (gap + 18)
    vmax = max([v for _, bars in data for _, v in bars if v] or [1])
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="11">' %
           (left + width + 90, height),
           '<text x="10" y="20" font-size="14">%s</text>' % title]
    y = 36
    for group, bars in data:
        out.append('<text x="10" y="%d" font-weight="bold">%s</text>' %
                   (y + 12, group))
        y += 18
        for label, v in bars:
            w = 0 if not v else max(1, int(width * v / vmax))
            out.append('<text x="20" y="%d">%s</text>' % (y + 11, label))
            out.append('<rect x="%d" y="%d" width="%d" height="%d" '
                       'fill="%s"/>' % (left, y, w, bar_h - 3, color(label)))
            out.append('<text x="%d" y="%d">%s</text>' %
                       (left + w + 4, y + 10, fmt(v, 0)))
            y += bar_h
        y += gap
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def machine_line():
    load = open("/proc/loadavg").read().split()[:3]
    cpu = "unknown cpu"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return "%s, %d cores, kernel %s, load average %s" % (
        cpu, os.cpu_count(), platform.release(), " ".join(load))


def write_report(data, md_path, svg_path, command):
    pipe = data.get("pipebench", [])
    pipe_cg = data.get("pipebench_callgrind", [])
    md = ["# Eventide performance against libevent, libev, libuv and the "
          "raw-syscall floor", "",
          "Generated by `%s` on %s (binaries of commit %s)." %
          (command, data["date"], data.get("commit", "?")), "",
          "Machine: %s. Rounds: %d, interleaved (every round runs every "
          "implementation in a rotated order). Wall times are medians over "
          "rounds of each run's own median; instructions are user-space "
          "instructions counted by `valgrind --tool=callgrind` (deterministic"
          "), computed from two run sizes so set-up cancels out." %
          (data["machine"], data["rounds"]), "",
          "Raw results: `%s`." % os.path.basename(data["json_path"]) +
          (" Instruction counts from a `--callgrind-only` run of the same "
           "binaries on %s." % data["callgrind_from"]
           if data.get("callgrind_from") else ""), ""]
    goals = goals_table(data)
    if goals:
        md += ["## Goals", "", goals, ""]
        rounds_text = same_round_summary(data)
        if rounds_text:
            md += [rounds_text, ""]
    analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "ANALYSIS.md")
    if os.path.exists(analysis):
        md += [open(analysis).read().strip(), ""]
    if pipe:
        md += ["## pipebench", "",
               "libevent's classic benchmark: N socketpairs with a persistent "
               "read watcher each, A seeded with one byte; every callback "
               "reads its byte and, while the write budget lasts, writes one "
               "byte to the next pair. Every iteration first re-registers "
               "every watcher; only event processing is timed (%d "
               "iterations per run, pinned to one core). \"Same round vs "
               "fastest peer\": each round's run over the same round's run "
               "of the peer with the smallest median; the median over the "
               "rounds, and their range in brackets." %
               data["pipebench_iterations"], "",
               "### plain", "", pipe_table(pipe, pipe_cg, False), "",
               "### -t (every watcher has an idle timeout, reset in each "
               "callback)", "", pipe_table(pipe, pipe_cg, True), ""]
    if data.get("timerbench"):
        md += ["## timerbench", "",
               "%s timers with random timeouts 1-60 s added, then cancelled "
               "in another random order; then as many already-due timers "
               "fired by the loop. Nanoseconds per operation, pinned to one "
               "core." % fmt(data["timer_count"]), "",
               timer_table(timer_runs(data["timerbench"], False),
                           data.get("timerbench_callgrind", [])), ""]
        untouched = timer_runs(data["timerbench"], True)
        if any(r.get("watchers") == "untouched" for r in untouched):
            md += ["The same rounds with the peers' watcher arrays allocated "
                   "but not written before timing (`--watchers=untouched`): "
                   "their add then pays the first touch of their watchers' "
                   "memory, as Eventide's add does for the loop's slot table "
                   "(the table above zeroes the peers' arrays before timing, "
                   "so their add runs on memory already mapped). The goals "
                   "use the table above.", "",
                   timer_table(untouched, [], instructions=False), ""]
    if data.get("xthreadbench"):
        md += ["## xthreadbench", "",
               "A producer thread posts %s messages to a loop (throughput), "
               "and %s ping-pong round trips between two threads (latency)." %
               (fmt(data["messages"]), fmt(data["round_trips"])), ""]
        for pinning in ("unpinned", "cpus 0,1"):
            md += ["### %s" % pinning, "",
                   xthread_table(data["xthreadbench"], pinning), ""]
    # Chart: instructions per callback, 1000/100 row, plain and -t.
    groups = []
    for timeout in (False, True):
        bars = [(e["impl"], e["instructions_per_callback"]) for e in pipe_cg
                if e["pipes_requested"] == 1000 and e["active"] == 100 and
                e["timeout"] == timeout and "na" not in e]
        if bars:
            groups.append(("pipebench 1000/100%s" %
                           (" -t" if timeout else ""), bars))
    if groups:
        svg_chart(groups, svg_path,
                  "User-space instructions per callback (lower is better)")
        md += ["## Chart", "",
               "![instructions per callback](%s)" % os.path.basename(svg_path),
               ""]
    with open(md_path, "w") as f:
        f.write("\n".join(md).rstrip("\n") + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin-dir",
                   help="directory with pipebench, timerbench, xthreadbench")
    p.add_argument("--report-only", metavar="JSON",
                   help="rewrite the Markdown and SVG from an earlier run's "
                   "JSON (e.g. after editing ANALYSIS.md); runs nothing")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=25)
    p.add_argument("--timers", type=int, default=1000000)
    p.add_argument("--messages", type=int, default=1000000)
    p.add_argument("--round-trips", type=int, default=100000)
    p.add_argument("--quick", action="store_true",
                   help="small sizes, one round: checks the script works")
    p.add_argument("--no-callgrind", action="store_true")
    p.add_argument("--callgrind-rows", default="100x1,1000x100",
                   help="pipebench rows (PIPESxACTIVE, or 'all') to count "
                   "instructions for; the 10,000-pipe rows take long under "
                   "valgrind")
    p.add_argument("--xthread-repetitions", type=int, default=3)
    p.add_argument("--callgrind-only", action="store_true",
                   help="only the instruction counts (deterministic, so "
                   "they may run while the machine is busy)")
    p.add_argument("--reuse-callgrind", metavar="JSON",
                   help="take the instruction counts from an earlier "
                   "--callgrind-only run of the same binaries")
    p.add_argument("--only", default="pipebench,timerbench,xthreadbench")
    p.add_argument("--json", default="docs/performance.json")
    p.add_argument("--markdown", default="docs/PERFORMANCE.md")
    p.add_argument("--svg", default="docs/performance.svg")
    p.add_argument("--command", default="apps/bench/compare.sh")
    args = p.parse_args()
    if args.report_only:
        with open(args.report_only) as f:
            data = json.load(f)
        write_report(data, args.markdown, args.svg, data.get(
            "command", args.command))
        log("wrote %s, %s" % (args.markdown, args.svg))
        return
    if not args.bin_dir:
        p.error("--bin-dir is required")

    rows = PIPE_ROWS
    if args.quick:
        args.rounds, args.iterations = 1, 3
        args.timers, args.messages, args.round_trips = 20000, 20000, 2000
        rows = [(100, 1), (1000, 100)]
    only = set(args.only.split(","))
    data = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": machine_line(), "rounds": args.rounds,
            "pipebench_iterations": args.iterations,
            "timer_count": args.timers, "messages": args.messages,
            "round_trips": args.round_trips, "json_path": args.json,
            "command": args.command}
    work = tempfile.mkdtemp(prefix="eventide-compare.")
    # Callgrind's output files are read back into the JSON; the directory
    # is scratch, removed however the run ends.
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    try:
        data["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        data["commit"] = "unknown"

    def save():
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
        write_report(data, args.markdown, args.svg, args.command)

    reused = {}
    if args.reuse_callgrind:
        with open(args.reuse_callgrind) as f:
            reused = json.load(f)
        for key in ("pipebench_callgrind", "timerbench_callgrind"):
            if key in reused:
                data[key] = reused[key]
        data["callgrind_from"] = reused.get("date")
        args.no_callgrind = True
    if "pipebench" in only:
        pb = Bench(os.path.join(args.bin_dir, "pipebench"), pin="0")
        impls = pb.impls()
        if not args.callgrind_only:
            data["pipebench"] = run_pipebench(pb, impls, args.rounds, rows,
                                              args.iterations)
            save()
        if not args.no_callgrind:
            if args.callgrind_rows == "all":
                cg_rows = rows
            else:
                wanted = {tuple(int(x) for x in r.split("x"))
                          for r in args.callgrind_rows.split(",")}
                cg_rows = [r for r in rows if r in wanted]
            if args.quick:
                cg_rows = rows[:1]
            data["pipebench_callgrind"] = callgrind_pipebench(
                pb, impls, cg_rows, 2, 4, work)
            save()
    if "timerbench" in only:
        tb = Bench(os.path.join(args.bin_dir, "timerbench"), pin="0")
        impls = tb.impls()
        if not args.callgrind_only:
            data["timerbench"] = run_timerbench(tb, impls, args.rounds,
                                                args.timers)
            save()
        if not args.no_callgrind:
            n1 = 10000 if args.quick else 100000
            data["timerbench_callgrind"] = callgrind_timerbench(
                tb, impls, n1, 2 * n1, work)
            save()
    if "xthreadbench" in only and not args.callgrind_only:
        xb = Bench(os.path.join(args.bin_dir, "xthreadbench"))
        data["xthreadbench"] = run_xthreadbench(xb, xb.impls(), args.rounds,
                                                args.messages,
                                                args.round_trips,
                                                args.xthread_repetitions)
        save()
    log("wrote %s, %s, %s" % (args.json, args.markdown, args.svg))


if __name__ == "__main__":
    main()
