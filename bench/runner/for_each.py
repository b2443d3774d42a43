#!/usr/bin/env python3
"""for_each against static steps (issue 16): `rhizos flow run` (embedded, no
sandbox) of N independent steps of the trivial module bench/runner/modules/sh,
and of one step with `for_each` over N elements of the same module, run
alternately. Per size, the median of -n runs of the wall time and of the CPU
(user+sys of rhizos and its children, from wait4) per step or element, and
the ratio for_each / static of each (the issue's goal: within 1.2x).

usage: bench/runner/for_each.py [--build DIR] [-n N] [--sizes 1000,10000]
                                [--jobs J]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write_static(path, n):
    with open(path, "w") as f:
        f.write("flux: 1\nname: static\nsteps:\n")
        for i in range(n):
            f.write("  n%d: {module: sh}\n" % i)


def write_for_each(path, n):
    with open(path, "w") as f:
        f.write("flux: 1\nname: map\nsteps:\n  m:\n    module: sh\n"
                "    for_each: [%s]\n" % ",".join(str(i) for i in range(n)))


def one(rhizos, flow, jobs, tmp):
    data = tempfile.mkdtemp(dir=tmp)
    cmd = [rhizos, "flow", "run", flow, "-q", "--no-sandbox", "--jobs", str(jobs),
           "--modules", os.path.join(HERE, "modules"), "--data", data]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("%s failed: %s" % (" ".join(cmd), err))
    return wall, ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    rhizos = os.path.join(a.build, "cli", "rhizos")
    with tempfile.TemporaryDirectory() as tmp:
        print("%7s %-9s %9s %12s %12s" % ("N", "flow", "wall s", "wall ms/el",
                                            "CPU ms/el"))
        for n in (int(s) for s in a.sizes.split(",")):
            flows = {"static": os.path.join(tmp, "static.yaml"),
                     "for_each": os.path.join(tmp, "map.yaml")}
            write_static(flows["static"], n)
            write_for_each(flows["for_each"], n)
            res = {k: [] for k in flows}
            for _ in range(a.n):   # alternate, so load changes hit both
                for k, f in flows.items():
                    res[k].append(one(rhizos, f, a.jobs, tmp))
            med = {k: (statistics.median(w for w, _ in v),
                       statistics.median(c for _, c in v)) for k, v in res.items()}
            for k in flows:
                w, c = med[k]
                print("%7d %-9s %9.2f %12.3f %12.3f" % (n, k, w, 1000 * w / n,
                                                       1000 * c / n))
            print("%7d %-9s %9s %12.2fx %11.2fx" % (
                n, "ratio", "", med["for_each"][0] / med["static"][0],
                med["for_each"][1] / med["static"][1]))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
