#!/usr/bin/env python3
"""End-to-end: the network as its users meet it, on loopback.

An orchestrator on a random free port, three `rhizos-node`s (each its own
--data, prices set so that every job costs something), an admin who makes a
client account with test credits through the CLI, and the client deploying
examples/flows/fanout.yaml: every step runs on a node, the outputs equal an
embedded `rhizos flow run`, and the money is exact to the cent (the client
pays the sum of the jobs' costs, each node gets its jobs' costs less the
platform fee of rz_ledger_fee, the platform the fees), and
`rhizos ledger verify` is clean afterwards. Then the faults: a node killed
mid-job (its job ends on another node, settled once), the orchestrator
killed mid-deployment and restarted (the deployment completes, a node
stopped meanwhile delivers its finished result from DATA/outbox), and fake
nodes: a result for a job the node does not hold is refused and changes
nothing; a job handed to a node that its heartbeats do not list goes back
to the queue; a held long-poll gets new work while another node heartbeats
fast.

Usage: network.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT [TEST ...]"""
import json
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import unittest

from harness import (NodeKey, Proc, cli_env, free_port, http, run, sandbox_flags,
                     set_config, start_orchestrator, wait_until)

KEYS = {}   # fake node id -> its NodeKey, to sign its results

RHIZOS, NODE, ORCH, ROOT = sys.argv[1:5]
FANOUT = os.path.join(ROOT, "examples", "flows", "fanout.yaml")
ADMIN = "network-admin-" + "a" * 32
FEE_BPS = 500
# micro-dollars per hour of one core: 1 cent (10,000 micros) per ms at the
# first node; nodes differ
PRICES = (36000000000, 54000000000, 72000000000)
NODE_TIMEOUT_MS = 3000
CREDITS = 10000 * 1000000   # $10,000 in micro-dollars


def fee(micros):
    """rz_ledger_fee: micros * fee_bps / 10000 rounded half up; the rest to
    the node."""
    return (micros * FEE_BPS + 5000) // 10000


SANDBOX = sandbox_flags()


class Base(unittest.TestCase):
    node_timeout_ms = NODE_TIMEOUT_MS

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="rz-network-")
        self.data = os.path.join(self.tmp.name, "orch")
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.orch = None
        self.nodes = []
        self.start_orchestrator()
        acct = self.cli_json("account", "create", "--name", "network", key=ADMIN)
        self.client, self.key = acct["id"], acct["api_key"]
        a = self.cli_json("account", "credit", self.client, str(CREDITS // 1000000),
                          key=ADMIN)
        self.assertEqual(a["balance_micros"], CREDITS)

    def tearDown(self):
        for n in self.nodes:
            n.stop(signal.SIGKILL)
        if self.orch:
            self.orch.stop(signal.SIGKILL)
        self.tmp.cleanup()

    # ---- processes ----

    def start_orchestrator(self):
        self.orch = start_orchestrator(
            ORCH, self.data, ["--quiet", "--node-timeout-ms", str(self.node_timeout_ms)],
            admin_key=ADMIN, cwd=ROOT, port=self.port)

    def stop_orchestrator(self):
        rc = self.orch.stop()
        self.assertEqual(rc, 0, self.orch.output())   # also: no leak under ASan
        self.orch = None

    def init_node(self, name, price):
        data = os.path.join(self.tmp.name, name)
        p = run([NODE, "init", "--data", data, "--orchestrator", self.base],
                cwd=ROOT, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        set_config(data, "pricing", "cpu_hour_micros", price)
        set_config(data, "pricing", "gpu_hour_micros", 0)
        set_config(data, "pricing", "memory_gb_hour_micros", 0)
        set_config(data, "limits", "max_concurrent_jobs", 1)
        set_config(data, "node", "heartbeat_s", 0.5)
        return data

    def run_node(self, data):
        n = Proc([NODE, "start", "--data", data, "--json", *SANDBOX], cwd=ROOT)
        n.data = data
        self.nodes.append(n)
        return n

    def registered(self, n, name, timeout=30):
        """Node process `n` once it has registered, with its id, account
        and `name` on it."""
        reg = n.wait_for(lambda: [e for e in n.events() if e.get("event") == "registered"],
                         timeout, "node %s to register" % name)[0]
        n.id, n.account, n.name = reg["node"], reg["account"], name
        return n

    def start_node(self, name, price):
        return self.registered(self.run_node(self.init_node(name, price)), name)

    def start_nodes(self):
        return [self.start_node("node%d" % (i + 1), p) for i, p in enumerate(PRICES)]

    # ---- the CLI ----

    def cli(self, *args, key=None, code=0, timeout=60):
        env = cli_env(RHIZOS_API_KEY=key) if key else cli_env()
        p = run([RHIZOS, "--orchestrator", self.base, *args], cwd=ROOT, env=env,
                timeout=timeout)
        self.assertEqual(p.returncode, code, "%s\n%s%s" % (args, p.stdout, p.stderr))
        return p

    def cli_json(self, *args, key=None):
        return json.loads(self.cli(*args, "--json", key=key).stdout)

    def flow_file(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def watch_on_tty(self, dep):
        """`flow watch` with stderr on a terminal: (stdout, what the terminal got)."""
        import pty
        import subprocess
        master, slave = pty.openpty()
        env = cli_env(RHIZOS_API_KEY=self.key, TERM="xterm")
        p = subprocess.Popen([RHIZOS, "--orchestrator", self.base, "flow", "watch",
                              str(dep)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=slave, text=True)
        os.close(slave)
        out, _ = p.communicate(timeout=90)
        tty = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            tty += chunk
        os.close(master)
        self.assertEqual(p.returncode, 0, out + tty.decode(errors="replace"))
        return out, tty.decode(errors="replace")

    def deploy_and_watch(self, path):
        dep = self.cli_json("flow", "deploy", path, key=self.key)["id"]
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        return dep

    # ---- checks ----

    def api(self, method, path, key=ADMIN, body=None, code=200):
        st, doc = http(self.base, method, path, key, body)
        self.assertEqual(st, code, doc)
        return doc

    def job(self, job):
        return self.api("GET", "/api/v1/jobs/%d" % job)

    def status(self, dep):
        st = self.cli_json("flow", "status", str(dep), key=self.key)
        self.assertEqual(st["status"], "succeeded", st)
        for sid, step in st["steps"].items():
            self.assertEqual(step["status"], "succeeded", (sid, step))
        return st

    def check_money(self, jobs, payees=None):
        """Exact balances over every job the client ever submitted; payees:
        (node id, payout account) of every node (default: the real ones)."""
        by_node, charged, fees = {}, 0, 0
        for j in jobs:
            self.assertIn(j["status"], ("succeeded", "failed", "cancelled"), j)
            cost = j["cost_micros"]
            charged += cost
            fees += fee(cost)
            if cost:
                by_node[j["node"]] = by_node.get(j["node"], 0) + cost - fee(cost)
        self.assertGreater(charged, 0, "jobs must cost something")
        a = self.api("GET", "/api/v1/accounts/%s" % self.client)
        self.assertEqual(a["debits_micros"], charged, a)
        self.assertEqual(a["pending_micros"], 0, a)
        self.assertEqual(a["balance_micros"], CREDITS - charged, a)
        self.assertEqual(a["credits_micros"], CREDITS, a)
        payees = payees or [(n.id, n.account) for n in self.nodes]
        self.assertTrue(set(by_node) <= {nid for nid, _ in payees}, by_node)
        for nid, account in payees:
            acct = self.api("GET", "/api/v1/accounts/%s" % account)
            self.assertEqual(acct["credits_micros"], by_node.get(nid, 0), (nid, acct))
            self.assertEqual(acct["balance_micros"], by_node.get(nid, 0), (nid, acct))
        stats = self.api("GET", "/api/v1/payments/stats")
        self.assertEqual(stats["fees_micros"], fees, stats)
        self.assertEqual(stats["held_micros"], 0, stats)
        return charged

    def client_jobs(self):
        jobs = self.api("GET", "/api/v1/jobs?limit=1000", key=self.key)["jobs"]
        return [self.job(j["id"]) for j in jobs]

    def settlements(self, job):
        pays = self.api("GET", "/api/v1/accounts/%s/payments" % self.client)["payments"]
        return [p for p in pays if p.get("job") == job and p["kind"] == "settle"]

    def verify_ledger(self):
        p = run([RHIZOS, "ledger", "verify", "--data", self.data], cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def holder(self, job, timeout=30):
        """The node that started `job` (its latest attempt)."""
        def find():
            got = [(e["attempt"], n) for n in self.nodes for e in n.events()
                   if e.get("event") == "started" and e.get("job") == job]
            return max(got, key=lambda x: x[0])[1] if got else None
        return wait_until(find, timeout, "job %d to start" % job)

    # ---- fake nodes speaking the protocol in JSON ----

    def fake_node(self, slots=1):
        caps = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
                "storage": {"total_gb": 100, "free_gb": 100},
                "adapters": ["process"],
                "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000000000,
                           "memory_gb_hour_micros": 0},
                "max_concurrent_jobs": slots}
        nk = NodeKey("22" * 32)
        doc = self.api("POST", "/api/v1/nodes/register", key=None, code=201,
                       body=nk.register_body(caps))
        KEYS[doc["id"]] = nk
        return doc["id"], doc["token"], doc["account"]

    def submit(self):
        return self.api("POST", "/api/v1/jobs", key=self.key, code=201,
                        body={"module": "echo", "inputs": {"message": "hi"},
                              "max_cost_micros": 5000000})["id"]


class Network(Base):
    def test_fanout_over_three_nodes_pays_exactly(self):
        nodes = self.start_nodes()
        self.assertEqual(len({n.id for n in nodes}), 3)
        dep = self.cli_json("flow", "deploy", FANOUT, key=self.key)["id"]
        # On a terminal, a live summary line under the step lines, cleared
        # at the end; the lines themselves go to stdout as without one.
        out, tty = self.watch_on_tty(dep)
        self.assertIn("succeeded", out)
        self.assertRegex(tty, r"\d/7 done, \d running, \d waiting, [\d.]+ s")
        self.assertIn("7/7 done, 0 running, 0 waiting", tty)
        self.assertTrue(tty.endswith("\r\x1b[K"), repr(tty[-40:]))
        # --json of a finished flow: its status once.
        lines = self.cli("flow", "watch", str(dep), "--json", key=self.key).stdout
        self.assertEqual(len(lines.splitlines()), 1, lines)
        st = self.status(dep)
        self.assertEqual(len(st["steps"]), 7)
        # A finished flow watched again: the times the run recorded, per step.
        out = self.cli("flow", "watch", str(dep), key=self.key).stdout
        self.assertIn("flow %d had already finished: succeeded" % dep, out)
        for sid, step in st["steps"].items():
            end = (step["started_ms"] + step["duration_ms"]) / 1000.0
            self.assertIn("[%7.1fs] %-20s succeeded in %.2f s"
                          % (end, sid, step["duration_ms"] / 1000.0), out)
        jobs = []
        for sid, step in st["steps"].items():
            j = self.job(step["job"])
            self.assertEqual(j["status"], "succeeded", j)
            self.assertIn(j["node"], {n.id for n in nodes}, j)
            self.assertEqual((j["deployment"], j["step"]), (dep, sid))
            self.assertEqual(j["outputs"], step["outputs"])
            self.assertGreater(j["cost_micros"], 0, j)
            jobs.append(j)
        # The parallel branches spread: one job at a time per node.
        self.assertGreater(len({j["node"] for j in jobs}), 1)
        # The same flow embedded gives the same outputs.
        p = run([RHIZOS, "flow", "run", FANOUT, "--json",
                 "--data", os.path.join(self.tmp.name, "embedded")], cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stderr)
        local = json.loads(p.stdout)
        self.assertEqual(local["status"], "succeeded")
        self.assertEqual(st["outputs"], local["outputs"])
        for sid, step in local["steps"].items():
            self.assertEqual(st["steps"][sid]["outputs"], step["outputs"], sid)
        self.assertEqual(st["outputs"]["merge"]["total"], 29)
        charged = self.check_money(jobs)
        self.assertEqual(st["charged_micros"], charged, st)
        for j in jobs:
            self.assertEqual(len(self.settlements(j["id"])), 1, j)
        # Each succeeded step's run time is in its module's histogram.
        metrics = http(self.base, "GET", "/metrics", ADMIN)[1]
        counts = dict(re.findall(r'^rhizos_step_duration_seconds_count\{module="([^"]+)"\} (\d+)$',
                                 metrics, re.M))
        by_module = {}
        for j in jobs:
            by_module[j["module"]] = by_module.get(j["module"], 0) + 1
        for mod, n in by_module.items():
            self.assertGreaterEqual(int(counts.get(mod, 0)), n, (mod, counts))
        self.stop_orchestrator()
        self.verify_ledger()

    def test_subflow_as_embedded(self):
        # A sub-flow three levels deep through a real orchestrator and
        # nodes: `flow deploy` expands it where the files are; the child's
        # steps are jobs of the same deployment, each held and charged, and
        # the results are the embedded run's.
        self.start_nodes()
        src = os.path.join(ROOT, "examples", "flows")
        os.makedirs(os.path.join(self.tmp.name, "subflows"), exist_ok=True)
        for name in ("subflow.yaml", "subflows/classify.yaml", "subflows/shout.yaml"):
            with open(os.path.join(src, name)) as f:
                text = re.sub(r"(?m)^( +)(module: .*)$",
                              r"\1\2\n\1max_cost_micros: 20000000", f.read())
            path = self.flow_file(name, text)
        path = os.path.join(self.tmp.name, "subflow.yaml")
        dep = self.cli_json("flow", "deploy", path, "--input", "value=3", key=self.key)["id"]
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        st = self.cli_json("flow", "status", str(dep), key=self.key)
        p = run([RHIZOS, "flow", "run", os.path.join(src, "subflow.yaml"), "--json",
                 "--input", "value=3", "--data", os.path.join(self.tmp.name, "embedded")],
                cwd=ROOT)
        local = json.loads(p.stdout)
        self.assertEqual(st["status"], "succeeded", st)
        self.assertEqual(st["outputs"], local["outputs"])
        self.assertEqual(st["outputs"]["shout"], "classifying 3: at or below!")
        self.assertEqual({k: v["status"] for k, v in st["steps"].items()},
                         {k: v["status"] for k, v in local["steps"].items()})
        ran = [s["job"] for s in st["steps"].values() if s["status"] == "succeeded"]
        jobs = [self.job(j) for j in ran]
        self.assertEqual(len(jobs), 6)
        for j in jobs:
            self.assertEqual(j["deployment"], dep, j)
        self.assertEqual(st["charged_micros"], sum(j["cost_micros"] for j in jobs), st)
        self.assertGreater(st["charged_micros"], 0)

    def test_for_each_subflow_as_embedded(self):
        # for_each over a sub-flow on the network: each element of each
        # child step is a job of the deployment with its own hold and charge,
        # and the outputs (lists in element order) are the embedded run's.
        self.start_nodes()
        src = os.path.join(ROOT, "examples", "flows")
        os.makedirs(os.path.join(self.tmp.name, "subflows"), exist_ok=True)
        for name in ("map_subflow.yaml", "subflows/greet.yaml", "subflows/shout.yaml"):
            with open(os.path.join(src, name)) as f:
                text = re.sub(r"(?m)^( +)(module: .*)$",
                              r"\1\2\n\1max_cost_micros: 20000000", f.read())
            self.flow_file(name, text)
        path = os.path.join(self.tmp.name, "map_subflow.yaml")
        dep = self.deploy_and_watch(path)
        st = self.cli_json("flow", "status", str(dep), key=self.key)
        p = run([RHIZOS, "flow", "run", os.path.join(src, "map_subflow.yaml"), "--json",
                 "--data", os.path.join(self.tmp.name, "embedded")], cwd=ROOT)
        local = json.loads(p.stdout)
        self.assertEqual(st["status"], "succeeded", st)
        self.assertEqual(st["outputs"], local["outputs"])
        self.assertEqual(st["outputs"]["loud"],
                         ["#0 hello ann!", "#1 hello bob!", "#2 hello cy!"])
        self.assertEqual(sorted(st["steps"]), ["greet-hello", "greet-loud-say", "report"])
        jobs = [self.job(st["steps"]["report"]["job"])]
        for sid in ("greet-hello", "greet-loud-say"):
            els = st["steps"][sid]["elements"]
            self.assertEqual([e["outputs"] for e in els],
                             [e["outputs"] for e in local["steps"][sid]["elements"]])
            jobs += [self.job(e["job"]) for e in els]
        self.assertEqual(len({j["id"] for j in jobs}), 7)
        for j in jobs:
            self.assertEqual(j["deployment"], dep, j)
        self.assertEqual(st["charged_micros"], sum(j["cost_micros"] for j in jobs), st)
        self.assertGreater(st["charged_micros"], 0)

    def test_named_subflow_through_the_cli(self):
        # `flow deploy` expands a file sub-flow where the file is and leaves
        # flow://NAME@N to the orchestrator, which runs that version of the
        # caller's own named flow: its steps are jobs of the deployment.
        self.start_nodes()
        shout = ("flux: 1\nname: shout\ninputs:\n  text: {type: string}\nsteps:\n"
                 "  say:\n    module: echo@1\n    max_cost_micros: 20000000\n"
                 "    inputs: {message: \"${{ inputs.text }}!\"}\n"
                 "outputs:\n  loud: \"${{ steps.say.outputs.message }}\"\n")
        first = self.cli_json("flow", "deploy", self.flow_file("shout.yaml", shout),
                              "--input", "text=x", key=self.key)["id"]
        self.cli("flow", "watch", str(first), key=self.key, timeout=90)
        self.flow_file("kid.yaml", shout.replace("name: shout", "name: kid")
                       .replace("}!", "}?"))
        top = self.flow_file("top.yaml",
            "flux: 1\nname: top\nsteps:\n"
            "  a:\n    flow: flow://shout@1\n    inputs: {text: hey}\n"
            "  k:\n    flow: kid.yaml\n    needs: [a]\n"
            "    inputs: {text: \"${{ steps.a.outputs.loud }}\"}\n"
            "outputs:\n  said: \"${{ steps.k.outputs.loud }}\"\n")
        dep = self.deploy_and_watch(top)
        st = self.cli_json("flow", "status", str(dep), key=self.key)
        self.assertEqual(st["status"], "succeeded", st)
        self.assertEqual(st["outputs"], {"said": "hey!?"})
        self.assertEqual(sorted(st["steps"]), ["a-say", "k-say"])
        for s in st["steps"].values():
            self.assertEqual(self.job(s["job"])["deployment"], dep)
        # for_each over a named sub-flow: the orchestrator maps it, each
        # element a job of the deployment.
        many = self.flow_file("many.yaml",
            "flux: 1\nname: many\nsteps:\n"
            "  m:\n    flow: flow://shout@1\n    for_each: [x, y, z]\n"
            "    inputs: {text: \"${{ index }}${{ item }}\"}\n"
            "outputs:\n  said: \"${{ steps.m.outputs.loud }}\"\n")
        dep = self.deploy_and_watch(many)
        st = self.cli_json("flow", "status", str(dep), key=self.key)
        self.assertEqual(st["status"], "succeeded", st)
        self.assertEqual(st["outputs"], {"said": ["0x!", "1y!", "2z!"]})
        els = st["steps"]["m-say"]["elements"]
        self.assertEqual(len({e["job"] for e in els}), 3)
        for e in els:
            self.assertEqual(self.job(e["job"])["deployment"], dep)
        # a version the account does not have: refused before anything is held
        with open(top) as f:
            bad = self.flow_file("bad.yaml", f.read().replace("@1", "@5"))
        p = self.cli("flow", "deploy", bad, key=self.key, code=1)
        self.assertIn("flow 'shout' has no version 5 (its latest is 1)", p.stderr)
        # `flow validate` with --orchestrator checks named sub-flows there
        # (files here), located in the file as written, in both formats.
        p = self.cli("flow", "validate", top, key=self.key)
        self.assertIn("%s: ok (2 steps)" % top, p.stdout)
        p = self.cli("flow", "validate", bad, key=self.key, code=1)
        self.assertIn("%s:5:11: error: " % bad, p.stderr)
        self.assertIn("flow 'shout' has no version 5 (its latest is 1)", p.stderr)
        badj = self.flow_file("bad.json", '{"nodes": [{"id": "a", "flow": "flow://shout@1",\n'
                              ' "inputs": {"txet": "hey"}}]}')
        p = self.cli("flow", "validate", "--json", badj, key=self.key, code=1)
        got = [(d["file"], d["line"], d["column"], d["message"]) for d in json.loads(p.stdout)]
        self.assertIn((badj, 2, 21, "sub-flow flow://shout@1 has no input 'txet'"), got)
        # The interface of a flow's active version, at the step.
        inner = self.flow_file("inner.yaml", "flux: 1\nsteps:\n  a:\n    flow: flow://shout\n")
        p = self.cli("flow", "validate", inner, key=self.key, code=1)
        self.assertIn("%s:3:3: error: sub-flow step 'a' does not give input 'text', which "
                      "flow://shout" % inner, p.stderr)

    def test_join_on_exit_and_outputs_as_embedded(self):
        # The flow language on the network: a join after an if/else, an
        # on_exit step reading flow.status, and declared outputs, with the
        # same results as the same flows run embedded.
        self.start_nodes()
        for name in ("join.yaml", "for_each.yaml", "nested_map.yaml", "on_exit.yaml"):
            with self.subTest(flow=name):
                path = os.path.join(ROOT, "examples", "flows", name)
                with open(path) as f:   # each step a budget for these prices
                    text = re.sub(r"(?m)^( +)(module: .*)$",
                                  r"\1\2\n\1max_cost_micros: 20000000", f.read())
                dep = self.deploy_and_watch(self.flow_file(name, text))
                st = self.cli_json("flow", "status", str(dep), key=self.key)
                p = run([RHIZOS, "flow", "run", path, "--json", "--data",
                         os.path.join(self.tmp.name, "embedded")], cwd=ROOT)
                local = json.loads(p.stdout)
                self.assertEqual(st["status"], "succeeded", st)
                self.assertEqual(st["status"], local["status"])
                self.assertEqual(st["outputs"], local["outputs"])
                self.assertEqual(st.get("failed_steps"), local.get("failed_steps"))
                self.assertEqual({k: v["status"] for k, v in st["steps"].items()},
                                 {k: v["status"] for k, v in local["steps"].items()})
                # for_each: each element a job of its own on the network, with
                # the statuses, attempts and outputs of the embedded run's.
                def elements(doc):
                    return {k: [(e["status"], e["attempts"], e["outputs"])
                                for e in v.get("elements", [])]
                            for k, v in doc["steps"].items()}
                self.assertEqual(elements(st), elements(local))
                if name == "nested_map.yaml":   # a map within a map, grouped back
                    self.assertEqual(st["outputs"]["by_team"],
                                     [["team 0 #0: ann", "team 0 #1: bob"], [],
                                      ["team 2 #0: cy"]])
                    self.assertEqual(len({e["job"] for e in st["steps"]["greet"]["elements"]}), 3)
                if name == "for_each.yaml":   # element i failed i times
                    self.assertEqual([a for _, a, _ in elements(st)["retries"]],
                                     [1, 2, 3])
                    self.assertEqual(st["outputs"]["attempts"], [1, 2, 3])
                    # Each element is a job of the deployment, charged once,
                    # and counted in what the flow charged.
                    jobs = [self.job(s["job"]) for s in st["steps"].values()]
                    for s in st["steps"].values():
                        jobs += [self.job(e["job"]) for e in s.get("elements", [])]
                    self.assertEqual(len({j["id"] for j in jobs}), 3 + 6)
                    for j in jobs:
                        self.assertEqual(j["deployment"], dep, j)
                    self.assertEqual(st["charged_micros"],
                                     sum(j["cost_micros"] for j in jobs), st)
                    self.assertGreater(st["charged_micros"], 0)
                    text = self.cli("flow", "status", str(dep), key=self.key).stdout
                    self.assertRegex(text, r"\n  retries\[2\] +3 +\d+  succeeded\n")
        self.assertEqual(st["outputs"]["alert"], "run succeeded; failed steps: [primary]")
        self.assertEqual(st["failed_steps"], ["primary"])
        text = self.cli("flow", "status", str(dep), key=self.key).stdout
        self.assertIn('  alert: "run succeeded; failed steps: [primary]"', text)
        self.assertIn("  failed steps: primary", text)
        # The failed step's job: `rhizos job ID` exits 1 and shows its log.
        job = st["steps"]["primary"]["job"]
        p = self.cli("job", str(job), key=self.key, code=1)
        self.assertIn("  log:\n", p.stdout)
        self.assertIn("fails on purpose", p.stdout)

    def test_desk_service_events_over_the_network(self):
        # The desk (docs/services.md) deployed: the trader service runs on
        # one node, says it is ready and emits its trades over HTTP; one
        # announcer job runs per trade on the others, each exactly once.
        self.start_nodes()
        with open(os.path.join(ROOT, "examples", "flows", "desk.yaml")) as f:
            text = re.sub(r"(?m)^( +)(module: .*)$",
                          r"\1\2\n\1max_cost_micros: 20000000", f.read())
        dep = self.cli_json("flow", "deploy", self.flow_file("desk.yaml", text),
                            "--input", "trades=5", key=self.key)["id"]
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        st = self.status(dep)
        runs = st["steps"]["announce"]["runs"]
        self.assertEqual([r["event_id"] for r in runs],
                         ["hb:%d" % (i + 1) for i in range(5)])
        self.assertEqual(len({r["job"] for r in runs}), 5)
        self.assertEqual(st["steps"]["hb"]["events"], 5)
        self.assertEqual(st["outputs"]["summary"], "5 trades announced")
        for r in runs:   # each run a job of the deployment, charged once
            j = self.job(r["job"])
            self.assertEqual((j["deployment"], j["status"]), (dep, "succeeded"), j)

    def test_service_ready_check_on_a_node(self):
        # ready: {tcp: PORT} travels in the assignment and the node checks
        # inside the step's network: the trader listens (and prints no
        # ready line), so its announcer runs; a check of a port nothing
        # listens on fails the service with the reason.
        self.start_nodes()
        ports = []
        for _ in range(2):
            with socket.socket() as sk:
                sk.bind(("127.0.0.1", 0))
                ports.append(sk.getsockname()[1])
        for port, ok in ((ports[0], True), (ports[1], False)):
            text = ("flux: 1\nname: rdy\nsteps:\n"
                    "  hb: {module: trader@1, kind: service, restart: {policy: never},"
                    " max_cost_micros: 20000000, ready: {tcp: %d, timeout_s: 2},"
                    " config: {trades: 2, interval_ms: 1500, listen_port: %d}}\n"
                    "  after: {module: echo@1, needs: [hb], max_cost_micros: 20000000,"
                    " inputs: {message: ready}}\n" % (port, ports[0]))
            dep = self.cli_json("flow", "deploy", self.flow_file("rdy%d.yaml" % port, text),
                                key=self.key)["id"]
            self.cli("flow", "watch", str(dep), key=self.key, timeout=90, code=0 if ok else 1)
            st = self.cli_json("flow", "status", str(dep), key=self.key)
            if ok:
                self.assertEqual(st["steps"]["after"]["status"], "succeeded", st)
                self.assertEqual(st["steps"]["hb"]["status"], "succeeded", st)
            else:
                self.assertIn("not ready within 2 s (connect 127.0.0.1:%d" % port,
                              st["steps"]["hb"]["error"], st)
                self.assertNotEqual(st["steps"]["after"]["status"], "succeeded", st)

    def test_node_caps_service_events(self):
        # The node refuses, as an embedded run does, an event over 64 KiB
        # and those past 1,000 a second, saying so in the job's live log
        # (read while it runs: the final log is its stderr); the rest reach
        # the orchestrator (in posts under its 1,024 cap).
        self.start_nodes()
        text = ("flux: 1\nname: caps\nsteps:\n"
                "  hb: {module: trader@1, restart: {policy: never},"
                " max_cost_micros: 20000000,"
                " config: {trades: 2, interval_ms: 4000, burst: 3000, oversize: true}}\n"
                "  ann: {module: echo@1, on: {event: steps.hb.events.trade},"
                " max_cost_micros: 20000000, inputs: {message: \"${{ event.data.n }}\"}}\n")
        dep = self.cli_json("flow", "deploy", self.flow_file("caps.yaml", text),
                            key=self.key)["id"]
        want = ("event 'quote' refused: the line is over 65536 bytes",
                "event 'quote' refused: over 1000 events a second")
        logs = lambda: self.cli("flow", "logs", str(dep), "hb", key=self.key).stdout  # noqa: E731
        wait_until(lambda: all(w in logs() for w in want), 30, "the refusals logged")
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        st = self.status(dep)
        events = st["steps"]["hb"]["events"]
        self.assertGreaterEqual(events, 1000 + 2, st["steps"]["hb"])
        self.assertLess(events, 3000 + 2, st["steps"]["hb"])
        # The cap counts on the node's clock as it reads: a slow reader
        # (a loaded machine, ASan) may still be in the burst's seconds.
        self.assertIn(len(st["steps"]["ann"]["runs"]), (1, 2))

    def test_desk_producer_node_killed_restarts_elsewhere(self):
        # kill -9 of the trader's node mid-run: the service is restarted on
        # another node and emits its fills again from the first; their ids
        # make each one event, so every trade is announced exactly once.
        self.start_nodes()
        dep = self.desk_deploy(12, 150)
        hb = self.cli_json("flow", "status", str(dep), key=self.key)["steps"]["hb"]["job"]
        first = self.holder(hb)
        wait_until(lambda: self.desk_events(dep) >= 3, 30, "three trades")
        first.stop(signal.SIGKILL)
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        self.desk_announced_once(dep, 12)
        j = self.job(hb)
        self.assertNotEqual(j["node"], first.id, j)
        self.assertGreaterEqual(j["attempt"], 2, j)

    def desk_deploy(self, trades, interval_ms):
        """The desk with a restartable trader at `interval_ms` a fill."""
        with open(os.path.join(ROOT, "examples", "flows", "desk.yaml")) as f:
            text = re.sub(r"(?m)^( +)(module: .*)$",
                          r"\1\2\n\1max_cost_micros: 200000000", f.read())
        text = text.replace("restart: {policy: never}",
                            "restart: {policy: on-failure, backoff_ms: 100}")
        text = text.replace('trades: "${{ inputs.trades }}"',
                            'trades: "${{ inputs.trades }}"\n      interval_ms: %d'
                            % interval_ms)
        return self.cli_json("flow", "deploy", self.flow_file("desk.yaml", text),
                             "--input", "trades=%d" % trades, key=self.key)["id"]

    def desk_events(self, dep):
        return self.cli_json("flow", "status", str(dep),
                             key=self.key)["steps"]["hb"].get("events", 0)

    def desk_announced_once(self, dep, trades):
        st = self.status(dep)
        runs = st["steps"]["announce"]["runs"]
        self.assertEqual(sorted(r["event_key"] for r in runs),
                         sorted("fill-%d" % (i + 1) for i in range(trades)))
        self.assertEqual(st["steps"]["hb"]["events"], trades)
        self.assertEqual(st["outputs"]["summary"], "%d trades announced" % trades)

    def test_desk_orchestrator_killed_events_taken_once(self):
        # kill -9 of the orchestrator while the trader emits: the node
        # resends what was not acknowledged when it is back; the engine
        # kept what it had taken; every trade is announced exactly once.
        self.start_nodes()
        dep = self.desk_deploy(12, 250)
        wait_until(lambda: self.desk_events(dep) >= 3, 30, "three trades")
        self.orch.stop(signal.SIGKILL)
        self.orch = None
        time.sleep(1.0)   # fills made meanwhile wait in the node
        self.start_orchestrator()
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        self.desk_announced_once(dep, 12)

    def test_node_killed_mid_job_finishes_elsewhere_charged_once(self):
        self.start_nodes()
        flow = self.flow_file("nap.yaml", (
            "flux: 1\nname: nap\nsteps:\n"
            "  nap:\n    module: sleep@1\n    max_cost_micros: 500000000\n"
            "    config: {seconds: 2}\n"
            "  after:\n    module: text-source@1\n    needs: [nap]\n"
            "    max_cost_micros: 20000000\n    inputs: {text: rested}\n"))
        dep = self.cli_json("flow", "deploy", flow, key=self.key)["id"]
        nap = self.cli_json("flow", "status", str(dep), key=self.key)["steps"]["nap"]["job"]
        first = self.holder(nap)
        first.stop(signal.SIGKILL)
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        st = self.status(dep)
        self.assertEqual(st["steps"]["after"]["outputs"]["text"], "rested")
        j = self.job(nap)
        self.assertNotEqual(j["node"], first.id, j)
        self.assertGreaterEqual(j["attempt"], 2, j)
        self.assertEqual(len(self.settlements(nap)), 1)
        self.check_money(self.client_jobs())
        self.stop_orchestrator()
        self.verify_ledger()

    def test_orchestrator_killed_mid_deployment_resumes(self):
        nodes = self.start_nodes()
        flow = self.flow_file("naps.yaml", (
            "flux: 1\nname: naps\nsteps:\n"
            "  nap1:\n    module: sleep@1\n    max_cost_micros: 500000000\n"
            "    config: {seconds: 1.5}\n"
            "  nap2:\n    module: sleep@1\n    max_cost_micros: 500000000\n"
            "    config: {seconds: 1.5}\n"
            "  tail:\n    module: text-source@1\n    needs: [nap1, nap2]\n"
            "    max_cost_micros: 20000000\n    inputs: {text: awake}\n"))
        dep = self.cli_json("flow", "deploy", flow, key=self.key)["id"]
        steps = self.cli_json("flow", "status", str(dep), key=self.key)["steps"]
        naps = [steps["nap1"]["job"], steps["nap2"]["job"]]
        holders = [self.holder(j) for j in naps]
        self.assertNotEqual(holders[0], holders[1])
        # Acknowledged just before the crash: must survive it.
        kept = self.cli_json("run", "-t", "echo", "--input", "message=kept",
                             "--max-cost", "2000", key=self.key)["id"]
        self.orch.stop(signal.SIGKILL)
        self.orch = None
        # The naps end while nobody listens: each result waits in its
        # node's outbox, private.
        outbox = [os.path.join(n.data, "outbox", "%d-1.json" % j)
                  for n, j in zip(holders, naps)]
        wait_until(lambda: all(os.path.exists(p) for p in outbox), 30,
                   "results kept in the outboxes")
        for p in outbox:
            self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600)
        # One of them stops before the orchestrator is back.
        stopped = holders[0]
        self.assertEqual(stopped.stop(), 0, stopped.output())
        self.nodes.remove(stopped)
        self.assertTrue(os.path.exists(outbox[0]))
        self.start_orchestrator()
        again = self.run_node(stopped.data)
        again.id, again.account, again.name = stopped.id, stopped.account, stopped.name
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        st = self.status(dep)
        self.assertEqual(st["steps"]["tail"]["outputs"]["text"], "awake")
        # The results finished before the crash were the ones taken.
        for j, n in zip(naps, holders):
            got = self.job(j)
            self.assertEqual((got["attempt"], got["node"]), (1, n.id), got)
        wait_until(lambda: not any(os.path.exists(p) for p in outbox), 10,
                   "the outboxes to empty")
        j = wait_until(lambda: (lambda j: j if j["status"] not in
                                ("queued", "assigned", "running") else None)(
                                    self.job(kept)), 30, "job %d" % kept)
        self.assertEqual((j["status"], j["outputs"]), ("succeeded", {"message": "kept"}))
        self.assertTrue(any(e.get("event") == "delivered" and e["job"] == naps[0]
                            for e in again.events()), again.out)
        self.assertEqual(len(nodes), 3)
        self.check_money(self.client_jobs())
        self.stop_orchestrator()
        self.verify_ledger()

    def test_orchestrator_killed_mid_for_each(self):
        # kill -9 of the orchestrator while a for_each's elements run: after
        # the restart each element is still one job, settled once, and the
        # money is exact (lib/engine/fanout.c).
        self.start_nodes()
        flow = self.flow_file("map.yaml", (
            "flux: 1\nname: map\nsteps:\n"
            "  first:\n    module: text-source@1\n    max_cost_micros: 20000000\n"
            "    inputs: {text: go}\n"
            "  naps:\n    module: sleep@1\n    needs: [first]\n"
            "    max_cost_micros: 500000000\n    for_each: [1, 2, 3, 4, 5]\n"
            "    max_parallel: 2\n    config: {seconds: 1}\n"
            "  tail:\n    module: text-source@1\n    needs: [naps]\n"
            "    max_cost_micros: 20000000\n"
            "    inputs: {text: \"${{ format('{0} naps', length(steps.naps.outputs.started)) }}\"}\n"))
        dep = self.cli_json("flow", "deploy", flow, key=self.key)["id"]

        def running_element():
            st = self.cli_json("flow", "status", str(dep), key=self.key)
            els = st["steps"]["naps"].get("elements", [])
            return els if any(e.get("job_status") == "running" for e in els) else None
        els = wait_until(running_element, 30, "an element running")
        made = [e["job"] for e in els]
        self.assertEqual(len(set(made)), 5)
        self.orch.stop(signal.SIGKILL)
        self.orch = None
        self.start_orchestrator()
        self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        st = self.status(dep)
        self.assertEqual(st["steps"]["tail"]["outputs"]["text"], "5 naps")
        els = st["steps"]["naps"]["elements"]
        self.assertEqual([e["job"] for e in els], made)   # none made again
        for j in made:
            self.assertEqual(self.job(j)["status"], "succeeded")
            self.assertEqual(len(self.settlements(j)), 1, j)
        self.check_money(self.client_jobs())
        self.stop_orchestrator()
        self.verify_ledger()

    def test_fake_nodes_foreign_result_and_lost_assignment(self):
        a, a_tok, a_acct = self.fake_node()
        b, b_tok, b_acct = self.fake_node()
        job1 = self.submit()
        got = self.api("GET", "/api/v1/nodes/%d/jobs?wait=0" % a, key=a_tok)
        self.assertEqual((got["job"], got["attempt"]), (job1, 1))
        job2 = self.submit()
        got = self.api("GET", "/api/v1/nodes/%d/jobs?wait=0" % b, key=b_tok)
        self.assertEqual((got["job"], got["attempt"]), (job2, 1))
        # A result for a job the node does not hold: 409, nothing changes.
        before = (self.api("GET", "/api/v1/accounts/%s" % self.client),
                  self.api("GET", "/api/v1/payments/stats"),
                  self.job(job1), self.job(job2))
        for node, tok, job in ((a, a_tok, job2), (b, b_tok, job1), (a, a_tok, 999)):
            st, doc = http(self.base, "POST", "/api/v1/nodes/%d/jobs/%d/result"
                           % (node, job), tok, KEYS[node].signed(job, {
                               "attempt": 1, "run_ms": 5,
                               "outputs": {"message": "forged"}}))
            self.assertIn(st, (404, 409), doc)
            if job != 999:
                self.assertEqual((st, doc["error"]["code"]), (409, "RZ_ESTATE"))
        after = (self.api("GET", "/api/v1/accounts/%s" % self.client),
                 self.api("GET", "/api/v1/payments/stats"),
                 self.job(job1), self.job(job2))
        self.assertEqual(before, after)

        # Node a's heartbeats stop listing job1: it never got there, so it
        # goes back to the queue (attempt counted, nothing charged).
        def requeued():
            http(self.base, "POST", "/api/v1/nodes/%d/heartbeat" % a, a_tok,
                 {"load": 0, "running": []})
            return self.job(job1)["attempt"] == 2
        wait_until(requeued, 15, "job %d to be re-queued" % job1)
        st, doc = http(self.base, "POST", "/api/v1/nodes/%d/jobs/%d/result" % (a, job1),
                       a_tok, KEYS[a].signed(job1, {"attempt": 1, "run_ms": 5,
                                                     "outputs": {"message": "x"}}))
        self.assertEqual(st, 409, doc)
        # Its second attempt runs and settles once; b finishes job2.
        got = self.api("GET", "/api/v1/nodes/%d/jobs?wait=5" % a, key=a_tok)
        self.assertEqual((got["job"], got["attempt"]), (job1, 2))
        time.sleep(0.05)   # billed = min(reported, measured): let 40 ms pass
        for node, tok, job, att in ((a, a_tok, job1, 2), (b, b_tok, job2, 1)):
            self.api("POST", "/api/v1/nodes/%d/jobs/%d/result" % (node, job), key=tok,
                     body=KEYS[node].signed(job, {
                         "attempt": att, "run_ms": 40, "outputs": {"message": "hi"},
                         "log": "the real log\n"}))
        # A resend of job2's report: the exact repeat is taken (200) and a
        # different one refused (409); neither rewrites the stored log.
        kept = self.job(job2)
        self.assertEqual(kept["log"], "the real log\n")
        path = "/api/v1/nodes/%d/jobs/%d/result" % (b, job2)
        self.api("POST", path, key=b_tok, body=KEYS[b].signed(job2, {
                 "attempt": 1, "run_ms": 40, "outputs": {"message": "hi"},
                 "log": "a second log\n"}))
        for forged in ({"outputs": {"message": "forged"}, "run_ms": 40},
                       {"outputs": {"message": "hi"}, "run_ms": 41},
                       {"error": "forged", "run_ms": 40}):
            st, doc = http(self.base, "POST", path, b_tok,
                           KEYS[b].signed(job2, dict(forged, attempt=1,
                                                     log="forged log\n")))
            self.assertEqual((st, doc["error"]["code"]), (409, "RZ_ESTATE"), doc)
        self.assertEqual(self.job(job2), kept)
        jobs = [self.job(job1), self.job(job2)]
        self.assertEqual([(j["status"], j["cost_micros"]) for j in jobs],
                         [("succeeded", 400000), ("succeeded", 400000)])   # 40 ms at 1 cent a ms
        self.assertEqual(len(self.settlements(job1)), 1)
        self.check_money(jobs, [(a, a_acct), (b, b_acct)])
        self.stop_orchestrator()
        self.verify_ledger()



class Placement(Base):
    # Long enough that neither a node's deadline nor its poll's end places
    # the job: only the placement after the submission itself can.
    node_timeout_ms = 120000

    def test_held_poll_gets_new_work_while_another_node_heartbeats(self):
        a, a_tok, _ = self.fake_node()
        b, b_tok, _ = self.fake_node()
        job1 = self.submit()
        got = self.api("GET", "/api/v1/nodes/%d/jobs?wait=0" % a, key=a_tok)
        self.assertEqual(got["job"], job1)
        # Node a is full and heartbeats fast; b waits in a long-poll of 60 s:
        # the next submission reaches b at once, not when its wait ends.
        stop_beats = threading.Event()

        def beat():
            while not stop_beats.wait(0.2):
                http(self.base, "POST", "/api/v1/nodes/%d/heartbeat" % a, a_tok,
                     {"load": 1, "running": [job1]})
        beats = threading.Thread(target=beat, daemon=True)
        beats.start()
        box = {}

        def wait_poll():
            box["r"] = http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=60" % b,
                            b_tok, timeout=75)
        poll = threading.Thread(target=wait_poll, daemon=True)
        poll.start()
        time.sleep(0.5)   # b's poll held (were it not, the poll takes it anyway)
        job2 = self.submit()
        poll.join(timeout=20)
        stop_beats.set()
        beats.join()
        self.assertFalse(poll.is_alive(), "the held poll never got job %d" % job2)
        self.assertEqual(box["r"][0], 200, box)
        self.assertEqual(box["r"][1]["job"], job2)

        self.cli("cancel", str(job2), key=self.key)
        self.cli("cancel", str(job1), key=self.key)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[5:])   # [TEST ...]
