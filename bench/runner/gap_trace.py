#!/usr/bin/env python3
"""Where the wall time between one step's end and the next one's start goes
(issue 22): each tool runs the runner bench's DAG under `perf record -a` of
the scheduler's tracepoints (fork, exec, exit, switch, wakeup), and this
prints, per step, with J slots:

  J x wall / steps  =  fork->exec + exec->exit  +  idle slot time

- fork->exec: the step's start (for a vfork/CLONE_VFORK start the tool is
  suspended meanwhile); exec->exit: the step's own life, run queue included;
- idle: the integral of (J - steps alive) over the run, per step: the time a
  slot held no step. Each step's exit is paired with the tool's next fork and
  that gap is split by what the tool's thread was doing: on a CPU, runnable
  but waiting for one (woken or preempted), or asleep (blocked: poll, a lock,
  the disk), and the first part, exit -> the tool woken.

usage: bench/runner/gap_trace.py [--build DIR] [--steps 200] [--tools nosandbox,make,ninja]
                                 [-n 1] [--keep DIR]
Needs perf with the sched tracepoints (root, or perf_event_paranoid <= -1).
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402
from perf_sched import parse, record  # noqa: E402

EVENTS = ["sched:sched_process_fork", "sched:sched_process_exec",
          "sched:sched_process_exit", "sched:sched_switch", "sched:sched_wakeup"]
class Thread:
    """One tool thread's state over time: 'S' asleep, 'R' waiting for a
    CPU, 'C' on one."""

    def __init__(self):
        self.spans = []          # (t0, t1, state)
        self.state, self.since = "C", None

    def to(self, t, state):
        if self.since is not None and t > self.since:
            self.spans.append((self.since, t, self.state))
        self.state, self.since = state, t

    def split(self, a, b):
        got = {"C": 0.0, "R": 0.0, "S": 0.0}
        for t0, t1, s in self.spans:
            lo, hi = max(a, t0), min(b, t1)
            if hi > lo:
                got[s] += hi - lo
        return got


def analyse(path, exe_name, slots):
    tool = None
    forks, execs, exits = {}, {}, {}
    thread = Thread()
    woke = []
    for t, ev, f, _, _ in parse(path):
        if ev == "sched_process_exec" and tool is None and \
                os.path.basename(f.get("filename", "")) == exe_name:
            tool = int(f["pid"])
            thread.since = t
            continue
        if tool is None:
            continue
        if ev == "sched_process_fork" and int(f["pid"]) == tool:
            forks[int(f["child_pid"])] = t
        elif ev == "sched_process_exec" and int(f["pid"]) in forks:
            execs[int(f["pid"])] = t
        elif ev == "sched_process_exit":
            p = int(f["pid"])
            if p in forks and p not in exits:
                exits[p] = t
            if p == tool:
                thread.to(t, "S")
                break
        elif ev == "sched_switch":
            if int(f["prev_pid"]) == tool:
                thread.to(t, "R" if f["prev_state"].startswith("R") else "S")
            if int(f["next_pid"]) == tool:
                thread.to(t, "C")
        elif ev == "sched_wakeup" and int(f["pid"]) == tool and thread.state == "S":
            thread.to(t, "R")
            woke.append(t)
    steps = sorted(p for p in forks if p in execs and p in exits)
    if not steps:
        sys.exit("gap_trace: no steps of %s in the trace" % exe_name)
    span0, span1 = min(forks[p] for p in steps), max(exits[p] for p in steps)
    # idle slot time: J minus the steps alive, integrated
    marks = sorted([(forks[p], 1) for p in steps] + [(exits[p], -1) for p in steps])
    alive, last, idle = 0, span0, 0.0
    for t, d in marks:
        idle += max(0, slots - alive) * (t - last)
        alive, last = alive + d, t
    fork_times = sorted(forks[p] for p in steps)
    gaps, parts, wake = [], {"C": 0.0, "R": 0.0, "S": 0.0}, []
    import bisect
    for p in steps:
        te = exits[p]
        i = bisect.bisect_right(fork_times, te)
        if i == len(fork_times):
            continue
        tf = fork_times[i]
        gaps.append(tf - te)
        for k, v in thread.split(te, tf).items():
            parts[k] += v
        j = bisect.bisect_right(woke, te)
        if j < len(woke) and woke[j] <= tf:
            wake.append(woke[j] - te)
    n = len(steps)
    ms = 1000.0
    return {
        "steps": n,
        "span_s": span1 - span0,
        "start_ms": statistics.mean(execs[p] - forks[p] for p in steps) * ms,
        "life_ms": statistics.mean(exits[p] - execs[p] for p in steps) * ms,
        "idle_ms": idle / n * ms,
        "gap_med_ms": statistics.median(gaps) * ms if gaps else 0,
        "gap_p90_ms": sorted(gaps)[int(len(gaps) * 0.9)] * ms if gaps else 0,
        "gap_cpu_ms": parts["C"] / max(1, len(gaps)) * ms,
        "gap_runq_ms": parts["R"] / max(1, len(gaps)) * ms,
        "gap_sleep_ms": parts["S"] / max(1, len(gaps)) * ms,
        "wake_med_ms": statistics.median(wake) * ms if wake else float("nan"),
        "tool_cpu_ms": sum(t1 - t0 for t0, t1, s in thread.spans if s == "C") / n * ms,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(run.ROOT, "build"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--tools", default="nosandbox,make,ninja")
    ap.add_argument("-n", type=int, default=1, help="rounds, alternating")
    ap.add_argument("--keep", default=None, help="keep the perf data here")
    a = ap.parse_args()
    ts = run.tools(os.path.abspath(a.build), a.tools.split(","))
    base = tempfile.mkdtemp(prefix="rz-gap-")
    work = os.path.join(base, "w")
    os.makedirs(work)
    needs = run.dag(a.steps)
    run.write_flow(os.path.join(work, "flow.json"), needs)
    run.write_make(os.path.join(work, "Makefile"), needs)
    run.write_ninja(os.path.join(work, "build.ninja"), needs)
    cols = ["start_ms", "life_ms", "idle_ms", "gap_med_ms", "gap_p90_ms",
            "gap_cpu_ms", "gap_runq_ms", "gap_sleep_ms", "wake_med_ms", "tool_cpu_ms"]
    print("steps %d, 2 slots; ms per step (gap_*: a step's exit -> the tool's next fork)"
          % a.steps)
    print("%-10s %5s %6s %7s " % ("tool", "load", "wall", "J*w/n") +
          " ".join("%11s" % c[:-3] for c in cols))
    try:
        for r in range(a.n):
            for name, argv in ts[r % len(ts):] + ts[:r % len(ts)]:
                d = os.path.join(base, "run")
                shutil.rmtree(d, ignore_errors=True)
                os.makedirs(d)
                data = os.path.join(a.keep or base, "%s-%d.data" % (name, r))
                if a.keep:
                    os.makedirs(a.keep, exist_ok=True)
                cmd = argv(d, work)
                load = os.getloadavg()[0]
                record(data, EVENTS, cmd, d)
                exe = os.path.basename(cmd[0])
                res = analyse(data, exe, 2)
                print("%-10s %5.1f %6.3f %7.3f " % (name, load, res["span_s"],
                                                   2 * res["span_s"] * 1000 / res["steps"]) +
                      " ".join("%11.3f" % res[c] for c in cols))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
