#!/usr/bin/env python3
"""Planner benchmark: RhizOS vs coreutils tsort vs Python graphlib.

For each size it generates one random DAG (bench/gen_dag.py, 4 edges per
node, fixed seed) and times, best of REPEAT runs each:
  rhizos   rz_flow_load (JSON parse) + rz_flow_validate (no registry)
           + rz_plan_build, measured inside bench/plan_bench, on the builder
           JSON with one connection object per edge, and on the same flow
           with edges as `needs` lists (a smaller file)
  tsort    coreutils tsort(1) on the same edges, whole process wall time
  graphlib graphlib.TopologicalSorter: read the edge file, add, static_order,
           measured inside one Python process (interpreter start excluded)

Usage: bench/run_plan_bench.py [--build-dir build] [--sizes 1000,10000,100000]
                               [--with-1m] [--repeat 3] [--keep DIR]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

GRAPHLIB = r"""
import graphlib, sys, time
best = None
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    ts = graphlib.TopologicalSorter()
    with open(sys.argv[1]) as f:
        for line in f:
            a, b = line.split()
            if a == b:
                ts.add(a)
            else:
                ts.add(b, a)
    n = sum(1 for _ in ts.static_order())
    dt = (time.perf_counter() - t0) * 1e3
    best = dt if best is None or dt < best else best
print("RESULT total_ms=%.3f nodes=%d" % (best, n))
"""


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def build(build_dir):
    if not os.path.isdir(build_dir):
        run(["meson", "setup", build_dir, ROOT])
    run(["ninja", "-C", build_dir, "bench/plan_bench"])
    return os.path.join(build_dir, "bench", "plan_bench")


def result(text):
    line = [l for l in text.splitlines() if l.startswith("RESULT ")][-1]
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def time_ours(exe, flow, repeat):
    """Figures of plan_bench, or None if it refused the file (a 1M-node
    connections file is past RZ_FLOW_MAX_BYTES, for one)."""
    p = subprocess.run([exe, flow, str(repeat)], text=True, capture_output=True)
    if p.returncode != 0:
        print("plan_bench %s: %s" % (os.path.basename(flow), p.stderr.strip()),
              file=sys.stderr)
        return None
    return result(p.stdout)


def time_tsort(edges, repeat):
    best = None
    for _ in range(repeat):
        with open(edges) as fin, open(os.devnull, "w") as fout:
            t0 = time.perf_counter()
            subprocess.run(["tsort"], stdin=fin, stdout=fout, check=True)
            dt = (time.perf_counter() - t0) * 1e3
        best = dt if best is None or dt < best else best
    return best


def time_graphlib(edges, repeat):
    return result(run([sys.executable, "-c", GRAPHLIB, edges, str(repeat)]).stdout)["total_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--with-1m", action="store_true",
                    help="add 1,000,000 nodes / 4,000,000 edges (slow to generate)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="keep generated graphs in this folder")
    args = ap.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.with_1m:
        sizes.append(1000000)
    if not shutil.which("tsort"):
        sys.exit("run_plan_bench: tsort (coreutils) not found")
    exe = build(os.path.abspath(args.build_dir))
    work = args.keep or tempfile.mkdtemp(prefix="rz-bench-")
    os.makedirs(work, exist_ok=True)

    rows = []
    try:
        for n in sizes:
            prefix = os.path.join(work, "dag%d" % n)
            if not os.path.exists(prefix + ".needs.json"):
                run([sys.executable, os.path.join(HERE, "gen_dag.py"), str(n),
                     "--out", prefix])
            conn = time_ours(exe, prefix + ".json", args.repeat)
            needs = time_ours(exe, prefix + ".needs.json", args.repeat)
            ts = time_tsort(prefix + ".edges", args.repeat)
            gl = time_graphlib(prefix + ".edges", args.repeat)
            sizes_mb = [os.path.getsize(prefix + x) / 1e6
                        for x in (".json", ".needs.json", ".edges")]
            rows.append((n, 4 * n, conn, needs, ts, gl, sizes_mb))
            print("%d nodes: tsort %.1f ms, graphlib %.1f ms" % (n, ts, gl),
                  file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def cell(r):
        if r is None:
            return "refused"
        return "%.1f (%.1f + %.1f + %.1f)" % (r["total_ms"], r["load_ms"],
                                              r["validate_ms"], r["plan_ms"])

    def ratio(peer, a, b):
        f = lambda r: "-" if r is None else "%.2f" % (peer / r["total_ms"])
        return "%s / %s" % (f(a), f(b))

    print("| nodes | edges | rhizos, connections (ms) | rhizos, needs (ms) "
          "| tsort (ms) | graphlib (ms) | tsort / rhizos | graphlib / rhizos |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, e, conn, needs, ts, gl, mb in rows:
        print("| %d | %d | %s | %s | %.1f | %.1f | %s | %s |"
              % (n, e, cell(conn), cell(needs), ts, gl,
                 ratio(ts, conn, needs), ratio(gl, conn, needs)))
    print()
    print("rhizos cells: total (load + validate + plan). Ratios: figure for "
          "connections / for needs; above 1 means rhizos is faster.")
    print("Input sizes (MB, connections / needs / edges): " + "; ".join(
        "%d: %.1f / %.1f / %.1f" % ((r[0],) + tuple(r[6])) for r in rows))


if __name__ == "__main__":
    main()
