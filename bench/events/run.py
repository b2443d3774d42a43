#!/usr/bin/env python3
"""The events benchmark (issue 17): producer -> consumer throughput and
latency on one machine, embedded and through one node.

A service (bench/events/modules/ev-producer) emits COUNT `tick` events at
RATE a second, each carrying its emit time; a listener step
(ev-consumer, `on: {event: steps.p.events.tick}`, `max_parallel` P) runs
once per event and says how long after the emit it started (its own
clock, CLOCK_REALTIME, read first thing in the process: the hand-over
through the engine plus starting one sandboxed process) and when it
finished. Per rate:
  events/s   events handled / (last consumer's end - first emit)
  p50, p99   emit -> consumer start, ms
An offered rate the pipeline cannot keep up with shows as events/s below
it and a p99 that grows with COUNT (a queue).

  embedded   `rhizos flow run` (the engine in the CLI's process)
  node       `rhizos flow deploy` to an orchestrator with one rhizos-node
             on loopback (the events go node -> orchestrator over HTTP, the
             consumer jobs back to the node)

usage: bench/events/run.py [--build DIR] [--count N] [--rates 20,50,100]
                           [--parallel P] [--no-node] [--no-sandbox]
                           [--json FILE]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from common import Net, quantile, run  # noqa: E402

MODULES = os.path.join(ROOT, "bench", "events", "modules")
ADMIN = "bench-admin-" + "e" * 32


def flow_text(count, rate, parallel):
    return ("flux: 1\nname: ev-bench\nsteps:\n"
            "  p:\n    module: ev-producer@1\n    restart: {policy: never}\n"
            "    max_cost_micros: 5000000\n"
            "    config: {count: %d, rate: %g}\n"
            "  c:\n    module: ev-consumer@1\n    on: {event: steps.p.events.tick}\n"
            "    max_parallel: %d\n    max_cost_micros: 50000\n"
            "    inputs: {t: \"${{ event.data.t }}\"}\n" % (count, rate, parallel))


def summary(runs, count):
    outs = [r["outputs"] for r in runs if r.get("status") == "succeeded"]
    if len(outs) != count:
        raise RuntimeError("%d of %d events handled" % (len(outs), count))
    lat = sorted(o["latency_us"] / 1000.0 for o in outs)
    first = min(o["done_ns"] - o["latency_us"] * 1000 for o in outs)
    last = max(o["done_ns"] for o in outs)
    return {"events": count, "events_per_s": count / ((last - first) / 1e9),
            "p50_ms": statistics.median(lat), "p99_ms": quantile(lat, 0.99),
            "max_ms": lat[-1]}


def embedded(build, tmp, flow, count, sandbox):
    rhizos = os.path.join(build, "cli", "rhizos")
    args = [rhizos, "flow", "run", flow, "--json", "--modules", MODULES,
            "--data", os.path.join(tmp, "data")]
    if not sandbox:
        args.append("--no-sandbox")
    p = run(args, cwd=ROOT, timeout=600)
    if p.returncode:
        raise SystemExit("flow run: %s%s" % (p.stdout[-2000:], p.stderr[-2000:]))
    return summary(json.loads(p.stdout)["steps"]["c"]["runs"], count)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--count", type=int, default=200, help="events a run (200)")
    ap.add_argument("--rates", default="20,50,100,200",
                    help="offered events/s, comma-separated (max 1000: the cap)")
    ap.add_argument("--parallel", type=int, default=4, help="consumer max_parallel")
    ap.add_argument("--no-node", action="store_true", help="embedded only")
    ap.add_argument("--no-sandbox", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rates = [float(r) for r in a.rates.split(",") if r]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        node = None if a.no_node else Net(a.build, tmp, MODULES, ADMIN, 1000000000,
                                          slots=a.parallel + 1, sandbox=not a.no_sandbox)
        try:
            for rate in rates:
                flow = os.path.join(tmp, "ev-%g.yaml" % rate)
                with open(flow, "w") as f:
                    f.write(flow_text(a.count, rate, a.parallel))
                modes = [("embedded", lambda: embedded(a.build, os.path.join(
                    tmp, "e%g" % rate), flow, a.count, not a.no_sandbox))]
                if node:
                    modes.append(("node", lambda: summary(node.deploy(
                        flow, 600, 0.1)["steps"]["c"]["runs"], a.count)))
                for name, fn in modes:
                    r = fn()
                    r.update(mode=name, offered=rate)
                    results.append(r)
                    print("%-9s offered %6g/s: %7.1f events/s  p50 %7.1f ms  p99 %7.1f ms"
                          "  max %7.1f ms" % (name, rate, r["events_per_s"],
                                              r["p50_ms"], r["p99_ms"], r["max_ms"]),
                          flush=True)
        finally:
            if node:
                node.stop()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"count": a.count, "parallel": a.parallel,
                       "sandbox": not a.no_sandbox, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
