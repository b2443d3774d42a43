#!/usr/bin/env python3
"""Deploy a flow to an orchestrator and follow it to the end.

    RHIZOS_URL=http://127.0.0.1:8080 RHIZOS_API_KEY=rzk_... \\
        python3 examples/python/deploy.py [FLOW] [--input NAME=VALUE ...]

Loads FLOW (default examples/flows/wordcount.yaml), validates it against
the module registries (diagnostics, exit 1), prints the plan and the cost
estimate, deploys it, prints progress until it finishes, then its outputs.
Exits 0 only when the deployment succeeded.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
try:
    import rhizos
except ImportError:                      # run from a checkout
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import rhizos


def money(micros):
    """Dollars from micro-dollars, with as many decimals as needed (>= 2)."""
    frac = ("%06d" % (micros % 1000000)).rstrip("0").ljust(2, "0")
    return "$%d.%s" % (micros // 1000000, frac)


def show_estimate(flow):
    try:
        est = rhizos.estimate(flow)
    except rhizos.Error as e:            # no price tables here: not fatal
        print("estimate: unavailable (%s)" % e)
        return
    for s in est["steps"]:
        print("  %-12s %-24s %-5s %s" % (s["step"], s["module"], s["recommendation"],
                                          money(s["cost_micros"])))
    print("estimate: %s%s" % (money(est["total_micros"]),
                              "" if est["complete"] else " (some steps unpriced)"))


def progress(status, last, order):
    """One line per step whose status changed since the previous event, in
    plan order (a step after the steps it waits for)."""
    steps = status.get("steps", {})
    for step in sorted(steps, key=lambda x: order.get(x, len(order))):
        s = steps[step]
        if last.get(step) != s["status"]:
            last[step] = s["status"]
            extra = " (attempt %d)" % s["attempts"] if s.get("attempts", 0) > 1 else ""
            err = ": %s" % s["error"] if s.get("error") else ""
            print("  %-12s %s%s%s" % (step, s["status"], extra, err), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Deploy a flow to a RhizOS orchestrator.")
    ap.add_argument("flow", nargs="?", default=os.path.join(ROOT, "examples", "flows",
                                                            "wordcount.yaml"))
    ap.add_argument("--input", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    inputs = {}
    for kv in args.input:
        name, sep, value = kv.partition("=")
        if not sep:
            ap.error("--input wants NAME=VALUE")
        inputs[name] = value
    url = os.environ.get("RHIZOS_URL", "http://127.0.0.1:8080")
    key = os.environ.get("RHIZOS_API_KEY")
    if not key:
        print("deploy.py: set RHIZOS_API_KEY (and RHIZOS_URL)", file=sys.stderr)
        return 2

    try:
        flow = rhizos.load_flow(args.flow)
    except rhizos.Error as e:
        for d in e.diagnostics or [e]:
            print(d, file=sys.stderr)
        return 1
    with flow:
        diags = flow.validate()
        for d in diags:
            print(d, file=sys.stderr)
        if not flow.validated:
            return 1
        print("flow %s: %d steps" % (flow.name, len(flow)))
        order = {}
        for i, stage in enumerate(flow.plan(), 1):
            print("  stage %d: %s" % (i, " ".join(stage)))
            order.update((step, len(order)) for step in stage)
        show_estimate(flow)

        with rhizos.Client(url, key) as client:
            try:
                dep = client.deploy(args.flow, inputs or None)   # the text as written
            except rhizos.Error as e:
                print("deploy: %s" % e, file=sys.stderr)
                for d in e.diagnostics:
                    print(d, file=sys.stderr)
                return 1
            print("deployment %d on %s" % (dep, url), flush=True)
            final, last = None, {}
            try:
                for status in client.watch(dep):
                    progress(status, last, order)
                    final = status
            except rhizos.Error as e:
                print("watch: %s" % e, file=sys.stderr)
                return 1
    if final is None:
        return 1
    print("status: %s (charged %s)" % (final["status"], money(final.get("charged_micros", 0))))
    print(json.dumps(final.get("outputs", {}), indent=2, sort_keys=True))
    return 0 if final["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
