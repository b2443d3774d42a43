#!/usr/bin/env python3
"""One step, two builds, run by run (issue 22's start-up goal): `rhizos flow
run` of bench/runner's one-step flow from BASE's build and from BUILD's, and
`make -j2` of the same step, one after the other, the order reversed every
other round, a fresh data folder each run. Batches of runs of one build
drift with a shared machine more than a start-up change moves them; this
alternates every run. Prints the median wall (spawn to wait4) with its
quartiles, the runner's own CPU (wait4) and the ratio to make's median.
--with-errors: the flow names a module that does not exist, so `flow run`
fails as it reads it (exit 1; make is still given the good step), and
prints how many /tmp/rz-probe-* folders the runs left. --floor: BUILD's
`--no-sandbox` run too, in the same rounds (what the sandbox adds).

usage: bench/runner/one_step.py --base DIR [--build DIR] [-n ROUNDS] [--no-sandbox]
                                [--with-errors] [--floor]
"""
import argparse
import glob
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the flow and the Makefile as bench/runner writes them)


def timed(argv, want=0):
    t = time.perf_counter()
    null = [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_WRONLY, 0) for fd in (1, 2)]
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=null)
    _, status, ru = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != want:
        sys.exit("bench/runner/one_step: %s failed" % " ".join(argv))
    return (time.perf_counter() - t) * 1000, (ru.ru_utime + ru.ru_stime) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the build to compare with")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("-n", type=int, default=60, help="rounds")
    ap.add_argument("--no-sandbox", action="store_true")
    ap.add_argument("--with-errors", action="store_true")
    ap.add_argument("--floor", action="store_true",
                    help="BUILD's --no-sandbox run too, in the same rounds")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rz-one-step-")
    probes = set(glob.glob("/tmp/rz-probe-*"))
    try:
        run.write_flow(os.path.join(work, "flow.json"), run.dag(1))
        if a.with_errors:
            with open(os.path.join(work, "flow.json"), "r+") as f:
                text = f.read().replace('"moduleId":"sh"', '"moduleId":"no-such-module"')
                f.seek(0)
                f.truncate()
                f.write(text)
        run.write_make(os.path.join(work, "Makefile"), run.dag(1))
        mods = os.path.join(HERE, "modules")
        tools = {}
        for name, build in (("base", a.base), ("build", a.build)):
            tools[name] = ([os.path.join(os.path.abspath(build), "cli", "rhizos"), "flow",
                            "run", os.path.join(work, "flow.json"), "--jobs", "2",
                            "--modules", mods] + (["--no-sandbox"] if a.no_sandbox else []))
        if a.floor and not a.no_sandbox:
            tools["floor"] = tools["build"] + ["--no-sandbox"]
        tools["make"] = ["make", "-j2", "-s", "-f", os.path.join(work, "Makefile")]
        wall = {k: [] for k in tools}
        cpu = {k: [] for k in tools}
        load = os.getloadavg()[0]
        for i in range(a.n):
            for k in (list(tools) if i % 2 == 0 else list(reversed(list(tools)))):
                d = os.path.join(work, "d-" + k)
                shutil.rmtree(d, ignore_errors=True)
                os.makedirs(d)
                w, c = timed(tools[k] + (["-C", d] if k == "make" else ["--data", d]),
                             1 if a.with_errors and k != "make" else 0)
                wall[k].append(w)
                cpu[k].append(c)
        print("%d rounds, load %.2f -> %.2f%s%s" % (a.n, load, os.getloadavg()[0],
                                                   ", --no-sandbox" if a.no_sandbox else "",
                                                   ", --with-errors" if a.with_errors else ""))
        make = statistics.median(wall["make"])
        for k in tools:
            q = statistics.quantiles(wall[k], n=4)
            print("  %-6s wall %6.2f ms (quartiles %6.2f-%6.2f), CPU %5.2f ms, %.2fx make"
                  % (k, statistics.median(wall[k]), q[0], q[2], statistics.median(cpu[k]),
                     statistics.median(wall[k]) / make))
        if a.with_errors:
            print("  /tmp/rz-probe-* folders left: %d"
                  % len(set(glob.glob("/tmp/rz-probe-*")) - probes))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
