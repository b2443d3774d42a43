#!/usr/bin/env python3
"""End-to-end: docker steps through the network on loopback, against the
real engine of scripts/containers-up: an orchestrator, rhizos-nodes pointed
at the engine with --container-host, and the CLI deploying container flows.
Balances are checked exactly as network.py does. A node killed with -9
mid-container and restarted reaps the container it left and the job still
finishes, charged once. A flow cancelled while its container sleeps on a
node removes the container and refunds; a credential sealed to a node
reaches the container only as a file, never its inspect JSON, the job's
log and outputs, or any file of the node's or orchestrator's data.

Usage: containers_network.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT
Skipped (exit 77) when RHIZOS_TEST_DOCKER_HOST is unset."""
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

HOST = os.environ.get("RHIZOS_TEST_DOCKER_HOST", "")
if not HOST:
    print("RHIZOS_TEST_DOCKER_HOST is unset: no container engine to test "
          "against (scripts/containers-up starts one)")
    sys.exit(77)

import network  # noqa: E402  (reads the same argv)
from containers import (IMAGE, SECRET, containers, engine,  # noqa: E402
                        write_module)
from harness import (Proc, cli_env, run, set_config,  # noqa: E402
                     start_orchestrator, wait_until)

ROOT, NODE, ORCH = network.ROOT, network.NODE, network.ORCH
TEST_MODULES = os.path.join(ROOT, "tests", "e2e", "modules")
WORDCOUNT = os.path.join(ROOT, "examples", "flows", "containers",
                         "container-wordcount.yaml")


class ContainerNetwork(network.Base):
    @classmethod
    def setUpClass(cls):
        # The shared test modules plus two written here, as containers.py
        # writes its own: the orchestrator and the nodes read the same.
        cls.mods_dir = tempfile.TemporaryDirectory(prefix="rz-ctr-mods-")
        cls.mods = os.path.join(cls.mods_dir.name, "modules")
        shutil.copytree(TEST_MODULES, cls.mods)
        sh = lambda script: ["sh", "-c", script]   # noqa: E731
        write_module(cls.mods, "ctr-sleep", sh("sleep 60"), ["x"],
                     timeout_s=120)
        write_module(cls.mods, "ctr-secret", sh(
            "v=$(cat \"$RZ_CRED_API_FILE\"); echo \"using $v\" >&2; "
            "sleep 5; "
            "printf '{\"seen\": \"key=%s\", \"length\": %d, \"file\": \"%s\"}' "
            "\"$v\" ${#v} \"$RZ_CRED_API_FILE\""),
            ["seen", "length", "file"], creds=("api",))

    @classmethod
    def tearDownClass(cls):
        cls.mods_dir.cleanup()

    def start_orchestrator(self):
        self.orch = start_orchestrator(
            ORCH, self.data, ["--quiet", "--node-timeout-ms",
                              str(self.node_timeout_ms),
                              "--modules", self.mods,
                              "--allow-images", "localhost/*"],
            admin_key=network.ADMIN, cwd=ROOT, port=self.port)

    def init_node(self, name, price):
        data = super().init_node(name, price)
        set_config(data, "container", "host", '"%s"' % HOST)
        return data

    def run_node(self, data):
        n = Proc([NODE, "start", "--data", data, "--json", "--modules",
                  self.mods, *network.SANDBOX], cwd=ROOT)
        n.data = data
        self.nodes.append(n)
        return n

    def test_adhoc_image_needs_the_node_operator_too(self):
        """The orchestrator allows the image, but a node runs one only
        under its own [container] allow_images: the node without it is not
        offered the job (and says why), the one with it runs it."""
        self.start_node("node1", network.PRICES[0])
        job = self.cli_json("run", "-t", "docker", "-i", IMAGE, "--cmd", "sh",
                            "--cmd", "-c", "--cmd", "echo '{\"ok\": 1}'",
                            "--memory", "64", "--max-cost", "500", key=self.key)
        wait_until(lambda: "rhizos.adhoc_images" in
                   (self.job(job["id"]).get("waiting_reason") or ""), 30,
                   "the job's reason to name the label")
        self.assertEqual(self.job(job["id"])["status"], "queued")
        data = self.init_node("node2", network.PRICES[1])
        set_config(data, "container", "allow_images", '["localhost/*"]')
        n = self.run_node(data)
        reg = n.wait_for(lambda: [e for e in n.events()
                                  if e.get("event") == "registered"],
                         30, "node2 to register")[0]
        try:
            wait_until(lambda: self.job(job["id"])["status"] in
                       ("succeeded", "failed"), 60, "the image's job to finish")
        except AssertionError:
            raise AssertionError(str(self.job(job["id"])) + n.output())
        j = self.job(job["id"])
        self.assertEqual((j["status"], j["node"]), ("succeeded", reg["node"]),
                         str(j) + n.output())
        self.assertEqual(j["outputs"], {"ok": 1})

    def test_container_flow_pays_exactly(self):
        node = self.start_node("node1", network.PRICES[0])
        with open(WORDCOUNT) as f:   # the example, with a price cap per step
            text = f.read().replace("    module: ", "    max_cost_micros: 500000000\n"
                                    "    module: ")
        dep = self.deploy_and_watch(self.flow_file("wordcount.yaml", text))
        st = self.status(dep)
        self.assertEqual(st["steps"]["count"]["outputs"],
                         {"words": 28, "unique": 22, "lines": 1})
        jobs = [self.job(s["job"]) for s in st["steps"].values()]
        for j in jobs:
            self.assertEqual((j["status"], j["node"]), ("succeeded", node.id), j)
        charged = self.check_money(jobs)
        self.assertEqual(st["charged_micros"], charged, st)
        count = st["steps"]["count"]["job"]
        self.assertEqual(len(self.settlements(count)), 1)
        self.assertEqual(containers("io.rhizos.job=%d" % count), [])
        self.stop_orchestrator()
        self.verify_ledger()

    def test_node_killed_mid_container_reaps_and_finishes(self):
        first = self.start_node("node1", network.PRICES[0])
        flow = self.flow_file("nap.yaml", (
            "flux: 1\nname: ctr-nap\nsteps:\n"
            "  nap:\n    module: ctr-nap@1\n    max_cost_micros: 500000000\n"))
        dep = self.cli_json("flow", "deploy", flow, key=self.key)["id"]
        nap = self.cli_json("flow", "status", str(dep),
                            key=self.key)["steps"]["nap"]["job"]
        try:
            wait_until(lambda: containers("io.rhizos.job=%d" % nap), 30,
                       "the container of job %d" % nap)
        except AssertionError:
            raise AssertionError(first.output() + str(self.job(nap)))
        first.stop(signal.SIGKILL)
        self.nodes.remove(first)
        # The engine keeps it: a kill -9 of the node is not one of the
        # container.
        self.assertTrue(containers("io.rhizos.job=%d" % nap))
        again = self.run_node(first.data)
        again.id, again.account, again.name = first.id, first.account, first.name
        try:   # generous: a loaded 2-core machine answers /version slowly
            again.wait_for(lambda: [e for e in again.events()
                                    if e.get("event") == "reaped"], 90,
                           "the restarted node to reap its container")
        except AssertionError:
            raise AssertionError(again.output() + str(self.job(nap)))
        self.cli("flow", "watch", str(dep), key=self.key, timeout=120)
        st = self.status(dep)
        self.assertEqual(st["steps"]["nap"]["outputs"], {"slept": 6})
        j = self.job(nap)
        self.assertGreaterEqual(j["attempt"], 2, j)
        self.assertEqual(len(self.settlements(nap)), 1)
        self.assertEqual(containers("io.rhizos.job=%d" % nap), [])
        self.check_money(self.client_jobs())
        self.stop_orchestrator()
        self.verify_ledger()

    def test_cancel_mid_container_removes_it_and_refunds(self):
        node = self.start_node("node1", network.PRICES[0])
        flow = self.flow_file("sleep.yaml", (
            "flux: 1\nname: ctr-sleep\nsteps:\n"
            "  nap:\n    module: ctr-sleep@1\n    max_cost_micros: 500000000\n"))
        dep = self.cli_json("flow", "deploy", flow, key=self.key)["id"]
        job = self.cli_json("flow", "status", str(dep),
                            key=self.key)["steps"]["nap"]["job"]
        label = "io.rhizos.job=%d" % job
        wait_until(lambda: containers(label), 30, "the container of the job")
        held = self.api("GET", "/api/v1/accounts/%s" % self.client)
        self.assertGreater(held["pending_micros"], 0, held)
        c = self.cli_json("flow", "cancel", str(dep), key=self.key)
        self.assertEqual(c["status"], "cancelled")
        # Well before the 60 s sleep ends: the node stops and removes it.
        try:
            wait_until(lambda: not containers(label), 20,
                       "the cancelled container to be removed")
        except AssertionError:
            raise AssertionError(node.output())
        j = self.job(job)
        self.assertEqual(j["status"], "cancelled", j)
        # The hold is released: what the engine charged for the cancel
        # (nothing ran to completion) is debited, the rest refunded.
        a = self.api("GET", "/api/v1/accounts/%s" % self.client)
        self.assertEqual(a["pending_micros"], 0, a)
        self.assertEqual(a["debits_micros"], j["cost_micros"], a)
        self.assertEqual(a["balance_micros"], network.CREDITS - j["cost_micros"], a)
        stats = self.api("GET", "/api/v1/payments/stats")
        self.assertEqual(stats["held_micros"], 0, stats)
        self.stop_orchestrator()
        self.verify_ledger()

    def test_secret_on_a_node_only_as_a_file(self):
        node = self.start_node("node1", network.PRICES[0])
        env = cli_env(RHIZOS_VAULT=os.path.join(self.tmp.name, "vault"),
                      RHIZOS_VAULT_PASSWORD="correct horse",
                      RHIZOS_VAULT_KDF="interactive", RHIZOS_API_KEY=self.key)
        args = [network.RHIZOS, "--orchestrator", self.base, "--modules", self.mods]
        for cmd, stdin in ((("vault", "init"), None),
                           (("vault", "add", "openai", "--type", "llm_api"),
                            SECRET + "\n")):
            q = run([*args, *cmd], cwd=ROOT, env=env, stdin=stdin)
            self.assertEqual(q.returncode, 0, q.stderr)
        flow = self.flow_file("sec.yaml", (
            "flux: 1\nname: ctr-secret\nsteps:\n"
            "  sec:\n    module: ctr-secret@1\n    max_cost_micros: 500000000\n"
            "    credentials:\n"
            "      api: { credentialId: openai, type: llm_api }\n"))
        p = run([*args, "flow", "deploy", flow, "--json"], cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        dep = json.loads(p.stdout)["id"]
        job = self.cli_json("flow", "status", str(dep),
                            key=self.key)["steps"]["sec"]["job"]
        inspected = []

        def watch():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not inspected:
                for cid in containers("io.rhizos.job=%d" % job):
                    status, body = engine("GET", "/containers/%s/json" % cid)
                    if status == 200 and body["State"]["Running"]:
                        inspected.append(json.dumps(body))
                time.sleep(0.2)
        t = threading.Thread(target=watch)
        t.start()
        w = self.cli("flow", "watch", str(dep), key=self.key, timeout=90)
        t.join()
        st = self.status(dep)
        out = st["steps"]["sec"]["outputs"]
        self.assertEqual(out["length"], len(SECRET))
        self.assertEqual(out["seen"], "key=[redacted]")
        self.assertEqual(out["file"], "/run/secrets/api")
        self.assertTrue(inspected, "the container was never seen running")
        self.assertIn("RZ_CRED_API_FILE=/run/secrets/api", inspected[0])
        j = self.job(job)
        self.assertTrue(j["log"], j)      # the log was kept, scrubbed
        self.assertIn("[redacted]", j["log"])
        for text in (inspected[0], json.dumps(j), json.dumps(st),
                     w.stdout + w.stderr, p.stdout + p.stderr,
                     node.output()):
            self.assertNotIn(SECRET, text)
        self.stop_orchestrator()
        node.stop()
        self.nodes.remove(node)
        for folder in (self.data, node.data):
            for dirpath, _, files in os.walk(folder):
                for f in files:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        self.assertNotIn(SECRET.encode(), fh.read(),
                                         os.path.join(dirpath, f))
        self.assertEqual(containers("io.rhizos.job=%d" % job), [])


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
