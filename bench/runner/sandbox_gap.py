#!/usr/bin/env python3
"""Where a sandboxed step's added wall time goes (issue 22): the runner
bench's DAG run by `rhizos flow run --jobs 2` sandboxed and `--no-sandbox`,
alternating, each under `perf record -a` of the scheduler's tracepoints.
Per step (ms):

  2 x wall / steps  =  life + idle
  life   a step's /bin/sh from its exec to its exit (the step itself);
  idle   the integral of (2 - steps alive) over the run: slot time no step
         ran in, which is all of the sandbox's cost that is not the step
         running slower;
  c_*    CPU a step of the runner's processes by name (the runner, the
         cells, the inits, the steps and what the runner's tree named
         otherwise) and of every kernel worker (the machine's: the freeing
         of network namespaces is theirs), from sched_switch.

usage: bench/runner/sandbox_gap.py [--build DIR] [--steps 200] [-n 1]
                                   [--tools rhizos,nosandbox] [--keep DIR]
Needs perf with the sched tracepoints (root).
"""
import argparse
import collections
import os
import re
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402
from perf_sched import parse, record  # noqa: E402

EVENTS = ["sched:sched_process_fork", "sched:sched_process_exec",
          "sched:sched_process_exit", "sched:sched_switch"]
def analyse(path):
    runner = None
    execs, exits, mine = {}, {}, set()
    cpu = collections.Counter()
    on = {}   # cpu -> when its current task was switched in
    for t, ev, f, pid, ncpu in parse(path):
        if ev == "sched_process_exec":
            name = os.path.basename(f.get("filename", ""))
            if runner is None and name == "rhizos":
                runner = int(f["pid"])
                mine.add(runner)
            elif int(f["pid"]) in mine and name == "sh":
                execs[int(f["pid"])] = t
            continue
        if runner is None:
            continue
        if ev == "sched_switch":
            prev = int(f["prev_pid"])
            if ncpu in on and (prev in mine or f["prev_comm"].startswith("kworker")):
                cpu[f["prev_comm"]] += t - on[ncpu]
            on[ncpu] = t
        elif ev == "sched_process_fork":
            if int(f["pid"]) in mine:   # the runner's tree, by who cloned
                mine.add(int(f["child_pid"]))
        elif ev == "sched_process_exit":
            p = int(f["pid"])
            if p in execs and p not in exits:
                exits[p] = t
            if p == runner:
                break
    steps = sorted(p for p in execs if p in exits)
    if not steps:
        return None   # perf lost the runner's exec (a loaded machine)
    n = len(steps)
    t0, t1 = min(execs[p] for p in steps), max(exits[p] for p in steps)
    marks = sorted([(execs[p], 1) for p in steps] + [(exits[p], -1) for p in steps])
    alive, last, idle = 0, t0, 0.0
    for t, d in marks:
        idle += max(0, 2 - alive) * (t - last)
        alive, last = alive + d, t
    ms = 1000.0
    res = {"steps": n, "span_s": t1 - t0,
           "life": statistics.mean(exits[p] - execs[p] for p in steps) * ms,
           "idle": idle / n * ms}
    groups = {"rhizos": "runner", "rz-sandbox-cell": "cell", "rz-step-init": "init",
              "sh": "step"}
    per = collections.Counter()
    for cm, v in cpu.items():
        per[groups.get(cm, "kworker" if cm.startswith("kworker") else "other")] += v
    for g in ("runner", "cell", "init", "step", "kworker", "other"):
        res["cpu_" + g] = per[g] / n * ms
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(run.ROOT, "build"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--tools", default="rhizos,nosandbox")
    ap.add_argument("-n", type=int, default=1, help="rounds, alternating")
    ap.add_argument("--keep", default=None, help="keep the perf data here")
    a = ap.parse_args()
    ts = run.tools(os.path.abspath(a.build), a.tools.split(","))
    base = tempfile.mkdtemp(prefix="rz-sgap-")
    work = os.path.join(base, "w")
    os.makedirs(work)
    run.write_flow(os.path.join(work, "flow.json"), run.dag(a.steps))
    cols = ["life", "idle", "cpu_runner", "cpu_cell", "cpu_init", "cpu_step",
            "cpu_kworker", "cpu_other"]
    print("steps %d, 2 slots; ms per step" % a.steps)
    print("%-10s %5s %6s %7s " % ("tool", "load", "wall", "2*w/n") +
          " ".join("%8s" % c.replace("cpu_", "c_") for c in cols))
    try:
        for r in range(a.n):
            for name, argv in ts[r % len(ts):] + ts[:r % len(ts)]:
                d = os.path.join(base, "run")
                shutil.rmtree(d, ignore_errors=True)
                os.makedirs(d)
                data = os.path.join(a.keep or base, "%s-%d.data" % (
                    re.sub(r"[^\w.-]", "_", name), r))
                if a.keep:
                    os.makedirs(a.keep, exist_ok=True)
                load = os.getloadavg()[0]
                record(data, EVENTS, argv(d, work), d)
                res = analyse(data)
                if not a.keep:
                    os.unlink(data)
                if res is None:
                    print("%-10s %5.1f  no steps in the trace (perf lost events?)"
                          % (name, load), flush=True)
                    continue
                print("%-10s %5.1f %6.3f %7.3f " % (name, load, res["span_s"],
                                                   2 * res["span_s"] * 1000 / res["steps"]) +
                      " ".join("%8.3f" % res[c] for c in cols), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
