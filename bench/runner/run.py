#!/usr/bin/env python3
"""The runner benchmark (issue 22): one DAG of trivial `/bin/sh` steps run by
`rhizos flow run` (embedded; sandbox on and off) and by `make -j2` and
`ninja -j2`, two slots each, alternating in the same run.

The DAG is bench/gen_dag.py's (N nodes, 4 edges per node, seed 42). Every
step of every tool is one /bin/sh printing `{}`: rhizos runs the module
bench/runner/modules/sh (`/bin/sh -c "echo {}"`), make and ninja a recipe
`echo {} > $@`, which they hand to /bin/sh -c. Each run gets a fresh output
or data folder, so nothing is up to date and no run history grows.

Per size and tool, the median of -n runs of: wall time, CPU (user+sys of the
tool and all its children, from wait4) per step, the CPU of every process
the tool started (a cpuacct cgroup v1, where there is one: it also counts
the sandbox helper and its cells, which wait4 does not; kernel workers,
such as the one that frees a network namespace, are in neither), and the peak RSS of the
tool's own process. Ratios are rhizos / make and rhizos / ninja of the
median walls. The load average (1 min) is read before each row's runs.

With --runs K, it instead times `rhizos flow runs` (newest 20) and
`flow runs --limit 0 --json` over a store of K recorded runs of 20 steps
each, filled once by build/bench/runner/runs_fill (ninja -C build
bench/runner/runs_fill); the goal is under 50 ms at 10,000.

usage: bench/runner/run.py [--build DIR] [-n N] [--sizes 1,200,2000]
                           [--big] [--tools rhizos,nosandbox,make,ninja]
                           (also: bwrap, the sandbox through bubblewrap per step;
                            rhizos=DIR, the sandboxed runner of the build in DIR;
                            nosandbox=DIR, its runner without the sandbox)
                           [--tmpdir DIR] [--json FILE] [--runs K]
--big adds 20,000 steps (several minutes on 2 cores).
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import gen_dag  # noqa: E402
import random  # noqa: E402


def dag(n):
    """(ids, needs) of gen_dag's graph of n nodes, 4 edges per node."""
    e = min(4 * n, n * (n - 1) // 2)
    _, edges = gen_dag.make_edges(n, e, random.Random(42))
    needs = [[] for _ in range(n)]
    for a, b in edges:
        needs[b].append(a)
    return needs


def write_flow(path, needs):
    with open(path, "w") as f:
        f.write('{"id":"bench","name":"runner-bench","version":"1.0.0",\n"nodes":[\n')
        f.write(",\n".join('{"id":"n%d","moduleId":"sh","needs":[%s]}'
                           % (i, ",".join('"n%d"' % a for a in ns))
                           for i, ns in enumerate(needs)))
        f.write('\n],\n"connections":[]}\n')


def write_make(path, needs):
    with open(path, "w") as f:
        f.write("all: %s\n" % " ".join("n%d" % i for i in range(len(needs))))
        for i, ns in enumerate(needs):
            f.write("n%d: %s\n\t@echo {} > $@\n" % (i, " ".join("n%d" % a for a in ns)))


def write_ninja(path, needs):
    with open(path, "w") as f:
        f.write("rule sh\n  command = echo {} > $out\n")
        for i, ns in enumerate(needs):
            dep = (" | " + " ".join("n%d" % a for a in ns)) if ns else ""
            f.write("build n%d: sh%s\n" % (i, dep))


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def timed(argv, cwd, env=None):
    """(wall s, cpu s, peak RSS KiB or 0, rc) of one process and its children.

    Peak RSS comes from GNU time(1), which forks the tool from its own small
    process: anything spawned from this Python (fork or posix_spawn) would
    start with Python's peak RSS and hide the tool's. Without GNU time the
    RSS column says "-"."""
    errpath = os.path.join(cwd, ".stderr")
    rusage = os.path.join(cwd, ".rusage")
    full = ([GNU_TIME, "-f", "%M", "-o", rusage] if GNU_TIME else []) + argv
    prog = full[0] if os.path.isabs(full[0]) else shutil.which(full[0])
    cg = cg_enter()
    t0 = time.perf_counter()
    pid = os.posix_spawn(prog, full, env if env is not None else os.environ,
                         file_actions=[
                             (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                             (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                             (os.POSIX_SPAWN_OPEN, 2, errpath,
                              os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
    if cg:
        cg_leave()
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    all_cpu = cg_read(cg) if cg else None
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        with open(errpath, errors="replace") as f:
            err = f.read()
        sys.exit("bench/runner: %s failed (%d):\n%s" % (" ".join(argv), rc, err[-2000:]))
    rss = 0
    if GNU_TIME:
        with open(rusage) as f:
            rss = int(f.read().split()[-1])
        os.unlink(rusage)
    os.unlink(errpath)
    return wall, ru.ru_utime + ru.ru_stime, rss, all_cpu


CPUACCT = "/sys/fs/cgroup/cpuacct"


def cg_enter():
    """A cpuacct cgroup (v1) for the tool and everything it starts: it
    counts the processes its wait4 does not (the sandbox helper and its
    cells, which outlive the tool by a moment). None where there is none."""
    d = os.path.join(CPUACCT, "rz-bench-%d" % os.getpid())
    try:
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        return d
    except OSError:
        return None


def cg_leave():
    with open(os.path.join(CPUACCT, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))


def cg_read(d):
    """CPU s of the cgroup once its last process is gone; emptied for the next."""
    for _ in range(200):
        with open(os.path.join(d, "cgroup.procs")) as f:
            if not f.read().strip():
                break
        time.sleep(0.01)
    with open(os.path.join(d, "cpuacct.usage")) as f:
        ns = int(f.read())
    with open(os.path.join(d, "cpuacct.usage"), "w") as f:
        f.write("0")
    return ns / 1e9


def tools(build, names):
    rz = os.path.join(build, "cli", "rhizos")
    mods = os.path.join(HERE, "modules")
    have = {"make": shutil.which("make"), "ninja": shutil.which("ninja")}
    out = []
    for name in names:
        if name == "rhizos":
            out.append((name, lambda d, w: [rz, "flow", "run", os.path.join(w, "flow.json"),
                                            "--jobs", "2", "--data", d, "--modules", mods]))
        elif name.startswith("rhizos="):
            # the sandboxed runner of another build (say, before a change),
            # alternated with this one's: rhizos=DIR
            other = os.path.join(os.path.abspath(name.split("=", 1)[1]), "cli", "rhizos")
            out.append((name, lambda d, w, rz=other: [rz, "flow", "run",
                                                      os.path.join(w, "flow.json"),
                                                      "--jobs", "2", "--data", d,
                                                      "--modules", mods]))
        elif name.startswith("nosandbox="):
            # the unsandboxed runner of another build, alternated with this one's
            other = os.path.join(os.path.abspath(name.split("=", 1)[1]), "cli", "rhizos")
            out.append((name, lambda d, w, rz=other: [rz, "flow", "run",
                                                      os.path.join(w, "flow.json"),
                                                      "--jobs", "2", "--data", d,
                                                      "--modules", mods, "--no-sandbox"]))
        elif name == "nosandbox":
            out.append((name, lambda d, w: [rz, "flow", "run", os.path.join(w, "flow.json"),
                                            "--jobs", "2", "--data", d, "--modules", mods,
                                            "--no-sandbox"]))
        elif name == "bwrap":
            # the sandbox as it was before the helper: bubblewrap per step
            out.append((name, lambda d, w: ["env", "RHIZOS_SANDBOX=bwrap", rz, "flow", "run",
                                            os.path.join(w, "flow.json"), "--jobs", "2",
                                            "--data", d, "--modules", mods]))
        elif name in have and have[name]:
            if name == "make":
                out.append((name, lambda d, w: ["make", "-j2", "-s", "-C", d, "-f",
                                                os.path.join(w, "Makefile")]))
            else:
                out.append((name, lambda d, w: ["ninja", "-j2", "--quiet", "-C", d, "-f",
                                                os.path.join(w, "build.ninja")]))
        else:
            sys.exit("bench/runner: no %s here (scripts/bootstrap --no-build installs it)" % name)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("-n", type=int, default=5, help="runs per size and tool")
    ap.add_argument("--sizes", default="1,200,2000")
    ap.add_argument("--big", action="store_true", help="also 20,000 steps")
    ap.add_argument("--tools", default="rhizos,nosandbox,make,ninja")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--runs", type=int, default=0,
                    help="time `flow runs` over K stored runs instead")
    a = ap.parse_args()
    if a.runs:
        return bench_runs(a)
    sizes = [int(s) for s in a.sizes.split(",") if s]
    if a.big and 20000 not in sizes:
        sizes.append(20000)
    ts = tools(os.path.abspath(a.build), a.tools.split(","))
    base = tempfile.mkdtemp(prefix="rz-runner-", dir=a.tmpdir)
    rows = []
    try:
        for n in sizes:
            work = os.path.join(base, "w%d" % n)
            os.makedirs(work)
            needs = dag(n)
            write_flow(os.path.join(work, "flow.json"), needs)
            write_make(os.path.join(work, "Makefile"), needs)
            write_ninja(os.path.join(work, "build.ninja"), needs)
            load = os.getloadavg()[0]
            res = {name: [] for name, _ in ts}
            for r in range(a.n):
                # alternate: each round starts with the next tool
                order = ts[r % len(ts):] + ts[:r % len(ts)]
                for name, argv in order:
                    d = os.path.join(base, "run")
                    shutil.rmtree(d, ignore_errors=True)
                    os.makedirs(d)
                    res[name].append(timed(argv(d, work), d))
            row = {"steps": n, "load": load, "load_after": os.getloadavg()[0]}
            for name, runs in res.items():
                row[name] = {"wall_s": statistics.median(x[0] for x in runs),
                             "cpu_ms_per_step": statistics.median(x[1] for x in runs) * 1000 / n,
                             "rss_kib": max(x[2] for x in runs)}
                if all(x[3] is not None for x in runs):
                    row[name]["cpu_all_ms_per_step"] = statistics.median(
                        x[3] for x in runs) * 1000 / n
            rows.append(row)
            show(row, [name for name, _ in ts])
    finally:
        shutil.rmtree(base, ignore_errors=True)
        try:
            os.rmdir(os.path.join(CPUACCT, "rz-bench-%d" % os.getpid()))
        except OSError:
            pass
    print("\nrepeat: %s" % " ".join(shlex.quote(x) for x in
                                     [os.path.relpath(__file__, ROOT)] + sys.argv[1:]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


def bench_runs(a):
    build = os.path.abspath(a.build)
    fill = os.path.join(build, "bench", "runner", "runs_fill")
    if not os.path.exists(fill):
        sys.exit("bench/runner: build runs_fill first: ninja -C %s bench/runner/runs_fill" % a.build)
    base = tempfile.mkdtemp(prefix="rz-runs-", dir=a.tmpdir)
    try:
        data = os.path.join(base, "data")
        t0 = time.perf_counter()
        subprocess.run([fill, data, str(a.runs), "20"], check=True)
        print("filled %d runs in %.1f s" % (a.runs, time.perf_counter() - t0))
        rz = os.path.join(build, "cli", "rhizos")
        print("%-34s %9s %9s %7s" % ("command", "median ms", "min ms", "load"))
        for argv, n in (([rz, "flow", "runs", "--data", data], max(a.n, 15)),
                        ([rz, "flow", "runs", "--data", data, "--limit", "5"], max(a.n, 15)),
                        ([rz, "flow", "runs", "--data", data, "--limit", "0", "--json"], a.n),
                        ([rz, "--version"], max(a.n, 15))):
            load = os.getloadavg()[0]
            walls = [timed(argv, base)[0] * 1000 for _ in range(n)]
            print("%-34s %9.1f %9.1f %7.2f" % (" ".join(argv[1:]).replace(data, "DATA")[:34],
                                               statistics.median(walls), min(walls), load))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("\nrepeat: %s" % " ".join(shlex.quote(x) for x in
                                     [os.path.relpath(__file__, ROOT)] + sys.argv[1:]))


def show(row, names):
    n = row["steps"]
    print("\n%d steps (load %.2f -> %.2f)" % (n, row["load"], row["load_after"]))
    print("  %-10s %9s %12s %12s %9s %10s %10s" % ("tool", "wall s", "CPU ms/step",
                                                   "all ms/step", "RSS MiB", "/ make",
                                                   "/ ninja"))
    for name in names:
        x = row[name]
        ratio = lambda peer: ("%.2fx" % (x["wall_s"] / row[peer]["wall_s"])
                              if peer in row and row[peer]["wall_s"] > 0 else "-")
        print("  %-10s %9.3f %12.2f %12s %9s %10s %10s" % (
            name, x["wall_s"], x["cpu_ms_per_step"],
            "%.2f" % x["cpu_all_ms_per_step"] if "cpu_all_ms_per_step" in x else "-",
            "%.1f" % (x["rss_kib"] / 1024) if x["rss_kib"] else "-",
            ratio("make"), ratio("ninja")))
    if "nosandbox" in row:
        for name in names:
            if name == "rhizos" or name == "bwrap" or name.startswith("rhizos="):
                x, y = row[name], row["nosandbox"]
                print("  %s adds %.2f ms of wall time per step over --no-sandbox%s" % (
                    name, (x["wall_s"] - y["wall_s"]) * 1000 / n,
                    ", %.2f ms of CPU (all its processes)" % (
                        x["cpu_all_ms_per_step"] - y["cpu_all_ms_per_step"])
                    if "cpu_all_ms_per_step" in x and "cpu_all_ms_per_step" in y else ""))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
