#!/usr/bin/env python3
"""Per-step overhead of the network path (issue 22): the same fan-out flow
of trivial `/bin/sh` steps (one root, N-1 steps that need it) run embedded
(`rhizos flow run --jobs 2`) and through an orchestrator and two
`rhizos-node`s of one slot each (`rhizos flow deploy` + `rhizos flow
watch`), alternately, on loopback. Prints the wall time of each, per step,
the ratio, and the CPU the orchestrator spent.

usage: bench/orchestrator/fanout.py [--build DIR] [--steps N] [--rounds R]
       [--sandbox] [--watch json|changes] [--for-each] [--trace FILE]
--for-each: the N-1 steps are one step with `for_each` over N-1 elements
(each element a job made mid-deployment: issue 16's per-element cost).
--trace: the orchestrator logs every request and job event (JSON lines,
written to FILE at the end) and the latency structure is printed: per
node, the gap from a job's result to the node's next job, its cycle split
between its result's request in the orchestrator and the rest, and the
slowest requests by route.
"""
import argparse
import json
import os
import re
import resource
import signal
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import Proc, cli_env, run, set_config, start_orchestrator  # noqa: E402

ADMIN = "bench-admin-" + "b" * 32
NOP = {
    "id": "nop", "version": "1.0.0", "name": "nop", "description": "nothing",
    "inputs": [], "outputs": [], "config": {"type": "object"}, "credentials": [],
    "requirements": {"adapter": "process", "cpu_cores": 1, "memory_mb": 16},
    "estimate": {"seconds": 0.01},
    # On the network a step's timeout counts from when its job is queued:
    # 10,000 steps through two one-slot nodes wait minutes for a node.
    "exec": {"adapter": "process", "command": ["/bin/sh", "-c", "echo {}"],
             "timeout_s": 3600},
}


def cpu_s(pid, children=False):
    """A process's own CPU (its threads), or that of its waited-for
    children (a node's steps)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    i = 13 if children else 11
    return (int(fields[i]) + int(fields[i + 1])) / os.sysconf("SC_CLK_TCK")


def own_children_cpu_s():
    """This script's waited-for children's CPU: the CLIs, and the
    embedded run with its steps."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ts_ms(line):
    return datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else 0.0


def summarize_trace(lines):
    """Where the network path waits, from the orchestrator's JSON log."""
    evs = []
    for line in lines:
        try:
            evs.append(json.loads(line))
        except ValueError:
            pass
    by_route = defaultdict(list)
    fin = {}                  # job -> ts of its job_finished
    disp = defaultdict(list)  # node -> [(ts, job)] of its dispatches
    for e in evs:
        if e.get("event") == "request":
            by_route["%s %s" % (e["method"], e["route"])].append(e["ms"])
        elif e.get("event") == "job_finished" and "node" in e:
            fin[e.get("job")] = ts_ms(e)
        elif e.get("event") == "job_dispatched" and "node" in e:
            disp[e["node"]].append((ts_ms(e), e.get("job")))
    # A job's result against its node's next dispatch: negative when the
    # node's poll said the attempt ended and got its next job before it.
    gaps = {node: [t1 - fin[job] for (_, job), (t1, _) in zip(ds, ds[1:])
                   if job in fin] for node, ds in disp.items()}
    for node, g in sorted(gaps.items()):
        if g:
            print("node %s: result -> next dispatch ms: median %.2f, p10 %.2f, "
                  "p90 %.2f, max %.1f (%d jobs)" % (node, pct(g, .5), pct(g, .1),
                                                    pct(g, .9), max(g), len(g)))
    cycle_split(evs, by_route.get("POST /api/v1/nodes/{id}/jobs/{job}/result", []))
    for route, ms in sorted(by_route.items(), key=lambda kv: -sum(kv[1])):
        print("%-45s n %5d  median %.2f ms  p99 %.2f  max %.1f  sum %.0f ms"
              % (route, len(ms), pct(ms, .5), pct(ms, .99), max(ms), sum(ms)))


def cycle_split(evs, result_ms):
    """A node's cycle (dispatch to its next dispatch, mean) split into its
    result's request in the orchestrator (arrival to reply, the pass and its
    syncs included; mean over all nodes) and the rest: the node's own work
    and the wire."""
    last, cyc = {}, defaultdict(list)
    for e in evs:
        if e.get("event") == "job_dispatched" and "node" in e:
            t = ts_ms(e)
            if e["node"] in last:
                cyc[e["node"]].append(t - last[e["node"]])
            last[e["node"]] = t
    p = sum(result_ms) / len(result_ms) if result_ms else 0.0
    for node, c in sorted(cyc.items()):
        m = sum(c) / len(c)
        print("node %s: a job every %.2f ms (mean): its result's request %.2f ms "
              "in the orchestrator, %.2f ms on the node and the wire"
              % (node, m, p, m - p))


def strace_passes(path):
    """The orchestrator's event-loop passes (between two epoll_waits) by the
    syncs they made: S an fdatasync, W an O_DSYNC write (a meta page, a
    ledger journal record), each named by its file (fd -> path from the
    openats)."""
    files, passes, cur, total = {}, defaultdict(int), [], 0
    with open(path) as f:
        for line in f:
            m = re.search(r'openat\(AT_FDCWD, "([^"]+)", ([A-Z_|]+).*\) = (\d+)', line)
            if m:
                name = m.group(1).split("/orch/")[-1]
                files[int(m.group(3))] = name + ("(meta)" if "DSYNC" in m.group(2) else "")
            elif "epoll_wait(" in line:
                if cur:
                    passes[" ".join(cur)] += 1
                cur = []
            else:
                m = re.search(r"(fdatasync|pwrite64)\((\d+)", line)
                name = files.get(int(m.group(2)), "?") if m else ""
                if m and (m.group(1) == "fdatasync" or name.endswith("(meta)")):
                    cur.append(("S:" if m.group(1) == "fdatasync" else "W:") +
                               ("audit.log" if name.startswith("audit.log") else name))
                    total += 1
    print("orchestrator: %d syncs; event-loop passes by their syncs:" % total)
    for k, v in sorted(passes.items(), key=lambda kv: -kv[1])[:8]:
        print("%6d  %s" % (v, k[:160]))


def strace_prefix(folder, name):
    if not folder:
        return []
    os.makedirs(folder, exist_ok=True)
    return ["strace", "-f", "-tt", "-T", "-o", os.path.join(folder, name + ".txt")]


def stop_traced(proc, sig):
    """Stop a program started under strace: the signal goes to the traced
    program, which strace would otherwise take for itself and leave the
    program running; strace exits with it."""
    if proc.cmd[0] != "strace":
        return proc.stop(sig)
    try:
        with open("/proc/%d/task/%d/children" % (proc.p.pid, proc.p.pid)) as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        kids = []
    for k in kids:
        try:
            os.kill(k, sig)
        except ProcessLookupError:
            pass
    return proc.stop(sig)


def write_flow(path, n, for_each=False):
    steps = {"s0": {"module": "nop@1", "max_cost_micros": 10000}}
    if for_each:
        steps["m"] = {"module": "nop@1", "needs": ["s0"], "max_cost_micros": 10000,
                      "for_each": list(range(1, n))}
    for i in range(1, 0 if for_each else n):
        steps["s%d" % i] = {"module": "nop@1", "needs": ["s0"], "max_cost_micros": 10000}
    with open(path, "w") as f:
        json.dump({"flux": 1, "name": "fanout%d" % n, "steps": steps}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sandbox", action="store_true")
    ap.add_argument("--watch", choices=("changes", "json"), default="changes",
                    help="json: the stream of whole statuses (flow watch --json)")
    ap.add_argument("--for-each", action="store_true",
                    help="one for_each step over N-1 elements instead of N-1 steps")
    ap.add_argument("--trace", metavar="FILE",
                    help="log every request and job event to FILE and summarize")
    ap.add_argument("--strace", metavar="DIR",
                    help="run the orchestrator and node 1 under strace -f -tt -T "
                    "(DIR/orch.txt, DIR/node.txt): where a step's time goes; "
                    "prints the orchestrator's passes by the syncs they made")
    a = ap.parse_args()
    rhizos = os.path.join(a.build, "cli", "rhizos")
    node = os.path.join(a.build, "server", "rhizos-node")
    orch_exe = os.path.join(a.build, "server", "rhizos-orchestrator")
    tmp = tempfile.TemporaryDirectory(prefix="rz-fanout-")
    mods = os.path.join(tmp.name, "modules", "nop")
    os.makedirs(mods)
    with open(os.path.join(mods, "module.json"), "w") as f:
        json.dump(NOP, f)
    moddir = os.path.dirname(mods)
    flow = os.path.join(tmp.name, "flow.json")
    write_flow(flow, a.steps, a.for_each)
    box = [] if a.sandbox else ["--no-sandbox"]

    orch = start_orchestrator(orch_exe, os.path.join(tmp.name, "orch"),
                              (["--log-format", "json", "--log-level", "debug", "--access-log"]
                               if a.trace else ["--quiet"]) + ["--modules", moddir], admin_key=ADMIN,
                              cwd=ROOT, prefix=strace_prefix(a.strace, "orch"))
    nodes = []
    try:
        def cli(*args, key=ADMIN, timeout=600):
            p = run([rhizos, "--orchestrator", orch.base, *args], cwd=ROOT,
                    env=cli_env(RHIZOS_API_KEY=key), timeout=timeout)
            if p.returncode not in (0, 1):
                sys.exit("%s: %s%s" % (args, p.stdout, p.stderr))
            return p
        acct = json.loads(cli("account", "create", "--name", "bench", "--json").stdout)
        cli("account", "credit", acct["id"], str(10 * a.steps + 1000))
        for i in range(2):
            data = os.path.join(tmp.name, "node%d" % i)
            p = run([node, "init", "--data", data, "--orchestrator", orch.base],
                    cwd=ROOT, timeout=30)
            if p.returncode:
                sys.exit(p.stderr)
            set_config(data, "node", "modules", json.dumps(moddir))
            set_config(data, "limits", "max_concurrent_jobs", 1)
            set_config(data, "pricing", "cpu_hour_micros", 0)
            set_config(data, "pricing", "gpu_hour_micros", 0)
            set_config(data, "pricing", "memory_gb_hour_micros", 0)
            n = Proc(strace_prefix(a.strace if i == 0 else None, "node") +
                     [node, "start", "--data", data, "--json", *box], cwd=ROOT)
            nodes.append(n)
            n.wait_for(lambda n=n: [e for e in n.events()
                                    if e.get("event") == "registered"],
                       30, "node to register")
        watch = ["flow", "watch"] + (["--json"] if a.watch == "json" else [])
        rows = []
        for r in range(a.rounds):
            e0 = own_children_cpu_s()
            t = time.monotonic()
            p = run([rhizos, "flow", "run", flow, "--modules", moddir, "--jobs", "2",
                     *box], cwd=ROOT, timeout=3600)
            emb = time.monotonic() - t
            ec = own_children_cpu_s() - e0
            if p.returncode:
                sys.exit(p.stderr[-2000:])
            c0 = cpu_s(orch.p.pid)
            n0 = sum(cpu_s(n.p.pid) for n in nodes)
            s0 = sum(cpu_s(n.p.pid, True) for n in nodes)
            w0 = own_children_cpu_s()
            t = time.monotonic()
            dep = json.loads(cli("flow", "deploy", flow, "--json",
                                 key=acct["api_key"]).stdout)["id"]
            w = cli(*watch, str(dep), key=acct["api_key"], timeout=3600)
            net = time.monotonic() - t
            oc = cpu_s(orch.p.pid) - c0
            nc = sum(cpu_s(n.p.pid) for n in nodes) - n0
            sc = sum(cpu_s(n.p.pid, True) for n in nodes) - s0
            wc = own_children_cpu_s() - w0
            if w.returncode:
                sys.exit("the deployment did not succeed: %s %s" % (w.stdout[:300], w.stderr[-500:]))
            rows.append((emb, net, oc))
            print("round %d: embedded %.2f s (%.2f ms/step), network %.2f s "
                  "(%.2f ms/step), ratio %.2f, orchestrator CPU %.2f s, nodes' "
                  "CPU %.2f s (without their steps); load %s"
                  % (r + 1, emb, 1000 * emb / a.steps, net, 1000 * net / a.steps,
                     net / emb, oc, nc, open("/proc/loadavg").read().split()[0]),
                  flush=True)
            # With 2 cores the network's wall is at least its CPU over 2.
            print("  CPU: embedded run %.2f s (steps included); network: steps "
                  "%.2f + orchestrator %.2f + nodes %.2f + CLI %.2f = %.2f s, "
                  "floor on 2 cores %.2f s = %.2fx embedded"
                  % (ec, sc, oc, nc, wc, sc + oc + nc + wc, (sc + oc + nc + wc) / 2,
                     (sc + oc + nc + wc) / 2 / emb), flush=True)
        best = min(rows, key=lambda x: x[1] / x[0])
        print("%d steps, watch %s: best ratio %.2f (embedded %.2f s, network "
              "%.2f s); repeat: bench/orchestrator/fanout.py --steps %d"
              % (a.steps, a.watch, best[1] / best[0], best[0], best[1], a.steps))
    finally:
        for n in nodes:
            stop_traced(n, signal.SIGTERM)
        stop_traced(orch, signal.SIGTERM)
        tmp.cleanup()
        if a.trace:
            with open(a.trace, "w") as f:
                f.write("\n".join(orch.err) + "\n")
            summarize_trace(orch.err)
        if a.strace:
            strace_passes(os.path.join(a.strace, "orch.txt"))


if __name__ == "__main__":
    main()
