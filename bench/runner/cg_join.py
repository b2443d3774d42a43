#!/usr/bin/env python3
"""How long joining a cgroup v1 takes (issue 22, one sandboxed step): this
process writes "0" into its own cgroup (a move to where it is, which
changes nothing) through cgroup.procs (the whole process, under the
kernel's threadgroup lock, whose writer waits for an RCU grace period
unless one just passed) and through tasks (the writing thread alone: no
such lock), ROUNDS times each, a pause before each so no grace period is
left from the last. Root, cgroup v1.

usage: bench/runner/cg_join.py [-n ROUNDS] [--controller pids]
"""
import argparse
import os
import statistics
import time


def own_cgroup(controller):
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctls, path = line.rstrip("\n").split(":", 2)
            if controller in ctls.split(","):
                return "/sys/fs/cgroup/%s%s" % (controller, path)
    raise SystemExit("no cgroup v1 %s hierarchy here" % controller)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--controller", default="pids")
    a = ap.parse_args()
    base = own_cgroup(a.controller)
    load = os.getloadavg()[0]
    for name in ("cgroup.procs", "tasks"):
        fd = os.open(os.path.join(base, name), os.O_WRONLY)
        ms = []
        for _ in range(a.n):
            time.sleep(0.06)
            t = time.perf_counter()
            os.write(fd, b"0")
            ms.append((time.perf_counter() - t) * 1000)
        os.close(fd)
        print("%-12s median %6.3f ms, min %6.3f, max %6.3f (%d moves)"
              % (name, statistics.median(ms), min(ms), max(ms), a.n))
    print("load %.2f -> %.2f" % (load, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
