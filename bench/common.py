"""What the benchmark scripts share: an orchestrator with one rhizos-node on
loopback and a funded client (deploy a flow, wait for its end), a call
timed in milliseconds, a quantile.

A script imports it with bench/ put first on sys.path (as gen_dag); this
module puts tests/e2e there for the harness it starts processes with."""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import (Proc, cli_env, http as api_call, read_to_close, run,  # noqa: E402,F401
                     sandbox_flags, set_config, start_orchestrator)


def timed(fn):
    """fn() run once: how long it took, in ms."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


def quantile(xs, q):
    """The q-quantile (0..1) of the sorted list xs, nearest rank."""
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


class Net:
    """An orchestrator and one rhizos-node on loopback (in tmp/net), with
    `modules`, and a client credited `credit` micros. `config`: more
    (section, key, value) lines for the node's config; `slots` jobs at a
    time; `sandbox` False runs the node with --no-sandbox."""

    def __init__(self, build, tmp, modules, admin, credit, slots=1, sandbox=True,
                 config=()):
        self.rhizos = os.path.join(build, "cli", "rhizos")
        self.modules = modules
        self.dir = os.path.join(tmp, "net")
        os.makedirs(self.dir)
        self.orch = start_orchestrator(
            os.path.join(build, "server", "rhizos-orchestrator"),
            os.path.join(self.dir, "orch"),
            ["--quiet", "--node-timeout-ms", "3600000", "--modules", modules],
            admin_key=admin, cwd=ROOT)
        self.base = self.orch.base
        acct = self.cli_json(admin, "account", "create", "--name", "bench")
        self.key = acct["api_key"]
        self.cli_json(admin, "account", "credit", acct["id"], str(credit))
        node = os.path.join(build, "server", "rhizos-node")
        data = os.path.join(self.dir, "node")
        p = run([node, "init", "--data", data, "--orchestrator", self.base],
                cwd=ROOT, timeout=30)
        if p.returncode:
            raise SystemExit("rhizos-node init: " + p.stderr)
        for section, key, value in config:
            set_config(data, section, key, value)
        set_config(data, "pricing", "cpu_hour_micros", 1)
        set_config(data, "limits", "max_concurrent_jobs", slots)
        set_config(data, "node", "heartbeat_s", 0.5)
        flags = sandbox_flags() if sandbox else ["--no-sandbox"]
        self.node = Proc([node, "start", "--data", data, "--json", "--modules",
                          modules, *flags], cwd=ROOT)
        self.node.wait_for(lambda: [e for e in self.node.events()
                                    if e.get("event") == "registered"],
                           30, "the node to register")

    def cli_json(self, key, *args):
        p = run([self.rhizos, "--orchestrator", self.base, *args, "--json"],
                cwd=ROOT, env=cli_env(RHIZOS_API_KEY=key), timeout=60)
        if p.returncode:
            raise SystemExit("rhizos %s: %s%s" % (args, p.stdout, p.stderr))
        return json.loads(p.stdout)

    def deploy(self, flow, timeout, poll):
        """`flow deploy` of the file `flow`, its status polled every `poll`
        seconds until final: the status document, which says succeeded
        (else RuntimeError)."""
        dep = self.cli_json(self.key, "flow", "deploy", flow, "--modules",
                            self.modules)["id"]
        path = "/api/v1/flows/%d/status" % dep
        end = time.monotonic() + timeout
        doc = {}
        while time.monotonic() < end:
            st, doc = api_call(self.base, "GET", path, self.key)
            if st == 200 and doc.get("status") in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(poll)
        if doc.get("status") != "succeeded":
            raise RuntimeError("deployment %d: %s\n%s" % (dep, str(doc)[:2000],
                                                          self.node.output()))
        return doc

    def stop(self):
        self.node.stop()
        self.orch.stop()
