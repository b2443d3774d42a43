#!/usr/bin/env python3
"""Jobs no node can run: the orchestrator says why (the job JSON's
"waiting_reason", `rhizos job`, `rhizos run --wait`), and a queue timeout
fails such a job and refunds its hold in full. Ad-hoc images (`rhizos run
-t docker -i IMAGE`) only under --allow-images, and only on a node that
advertises rhizos.adhoc_images (its [container] allow_images); their
assignment carries the image instead of a module.

A process-only node is registered over the API (no agent needed: it never
polls); the container module wc-container and a label no node has then
wait for a reason.

usage: placement.py RHIZOS SOURCE_ROOT ORCHESTRATOR"""
import json
import os
import sys
import tempfile
import unittest

from harness import NodeKey, cli_env, http, run, start_orchestrator

RHIZOS, ROOT, ORCH = sys.argv[1], sys.argv[2], sys.argv[3]
ADMIN = "admin-placement-" + "p" * 40
NODE_CAPS = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
             "storage": {"total_gb": 100, "free_gb": 100},
             "adapters": ["process"],
             "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000000,
                        "memory_gb_hour_micros": 0},
             "max_concurrent_jobs": 4}
DOCKER_WHY = "no node offers adapter 'docker'"
M = 10000   # micro-dollars in a cent: the test's amounts are in cents


class Placement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.proc = start_orchestrator(ORCH, os.path.join(cls.tmp.name, "data"),
                                      admin_key=ADMIN, cwd=ROOT)
        st, reg = http(cls.proc.base, "POST", "/api/v1/nodes/register",
                       body=NodeKey("22" * 32).register_body(NODE_CAPS))
        assert st == 201 or st == 200, (st, reg)

    @classmethod
    def tearDownClass(cls):
        cls.proc.stop()
        cls.tmp.cleanup()

    def cli(self, *args, key=None, code=0):
        cmd = [RHIZOS, "--orchestrator", self.proc.base]
        if key:
            cmd += ["--api-key", key]
        p = run(cmd + list(args), cwd=ROOT, env=cli_env())
        self.assertEqual(p.returncode, code, "%s\n%s%s" % (args, p.stdout, p.stderr))
        return p

    def client(self, cents):
        acct = json.loads(self.cli("account", "create", "--name", "p", "--json",
                                   key=ADMIN).stdout)
        self.cli("account", "credit", acct["id"], "%d.%02d" % divmod(cents, 100),
                 key=ADMIN)
        return acct["api_key"]

    def balance(self, key):
        return json.loads(self.cli("account", "balance", "--json", key=key).stdout)

    def test_docker_job_on_process_nodes_says_why(self):
        key = self.client(1000)
        job = json.loads(self.cli("run", "-t", "wc-container", "--input", "text=a b",
                                  "--max-cost", "0.40", "--json", key=key).stdout)
        self.assertEqual(job["status"], "queued")
        self.assertEqual(job["waiting_reason"], DOCKER_WHY)
        out = self.cli("job", str(job["id"]), key=key).stdout
        self.assertIn("queued: " + DOCKER_WHY, out)
        self.cli("cancel", str(job["id"]), key=key)
        self.assertEqual(self.balance(key)["balance_micros"], 1000 * M)

    def test_nodes_table(self):
        # Prices in dollars, the GPU price only on a node with GPUs, and
        # columns that line up however long a node's hardware line is.
        gpu_caps = dict(NODE_CAPS, gpus=[{"vendor": "nvidia", "model": "H100 80GB HBM3",
                                          "vram_mb": 81920}] * 8,
                        prices=dict(NODE_CAPS["prices"], gpu_hour_micros=2500000))
        st, reg = http(self.proc.base, "POST", "/api/v1/nodes/register",
                       body=NodeKey("33" * 32).register_body(gpu_caps))
        self.assertIn(st, (200, 201), reg)
        key = self.client(1)
        lines = self.cli("nodes", key=key).stdout.splitlines()
        self.assertTrue(lines[0].startswith("ID"), lines)
        cpu = [l for l in lines if "H100" not in l and "cores" in l]
        gpu = [l for l in lines if "8x H100 80GB HBM3 80 GiB" in l]
        self.assertTrue(cpu and gpu, lines)
        self.assertIn("gpu $2.50/h, cpu $36.00/h, mem $0.00/GB-h", gpu[0])
        self.assertNotIn("gpu", cpu[0])
        self.assertIn("cpu $36.00/h", cpu[0])
        col = lines[0].index("PRICES")
        for l in lines[1:]:
            self.assertEqual(l[col - 2:col], "  ", lines)
            self.assertNotEqual(l[col], " ", lines)

    def test_queue_timeout_fails_and_refunds(self):
        key = self.client(1000)
        p = self.cli("run", "-t", "wc-container", "--input", "text=a", "--max-cost", "0.40",
                     "--queue-timeout", "1", "--wait", key=key, code=1)
        self.assertIn("queued: " + DOCKER_WHY, p.stderr)
        self.assertIn("no node could run it within 1 s: " + DOCKER_WHY, p.stdout)
        # `rhizos job ID` of a failed job is a failure too (exit 1), saying why.
        job = json.loads(self.cli("job", "--json", key=key).stdout)["jobs"][0]
        self.assertEqual(job["status"], "failed")
        out = self.cli("job", str(job["id"]), key=key, code=1).stdout
        self.assertIn("error: no node could run it within 1 s", out)
        self.cli("job", str(job["id"]), "--json", key=key, code=1)
        a = self.balance(key)
        self.assertEqual((a["balance_micros"], a["pending_micros"]), (1000 * M, 0))

    def test_label_no_node_has(self):
        key = self.client(1000)
        job = json.loads(self.cli("run", "-t", "echo", "--input", "message=x",
                                  "--label", "zone=mars", "--config", "prefix=hi",
                                  "--max-cost", "0.05", "--queue-timeout", "1", "--json",
                                  key=key, code=0).stdout)
        self.assertEqual(job["waiting_reason"], "needs label zone=mars; no node has it")
        p = self.cli("run", "-t", "echo", "--queue-timeout", "0", key=key, code=2)
        self.assertIn("--queue-timeout", p.stderr)
        st, body = http(self.proc.base, "POST", "/api/v1/jobs", key=key,
                        body={"module": "echo", "queue_timeout_s": 0})
        self.assertEqual(st, 400, body)
        self.assertIn("queue_timeout_s", body["error"]["message"])

    def test_images_refused_by_default(self):
        key = self.client(1000)
        p = self.cli("run", "-t", "docker", "-i", "localhost/wc", "--cmd", "true",
                     key=key, code=1)
        self.assertIn("--allow-images", p.stderr)
        self.assertEqual(self.balance(key)["pending_micros"], 0)
        self.cli("run", "-t", "echo", "-i", "localhost/wc", key=key, code=2)
        self.cli("run", "-t", "docker", key=key, code=2)
        self.cli("run", "-t", "echo", "--gpus", "1", key=key, code=2)


class Images(unittest.TestCase):
    """--allow-images: a matching image becomes a docker job without a
    module; the node that takes it gets "adhoc" {image, command}."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.proc = start_orchestrator(ORCH, os.path.join(cls.tmp.name, "data"),
                                      ["--allow-images", "localhost/*",
                                       "--allow-images", "busybox:1.36"],
                                      admin_key=ADMIN, cwd=ROOT)

    @classmethod
    def tearDownClass(cls):
        cls.proc.stop()
        cls.tmp.cleanup()

    cli = Placement.cli
    client = Placement.client
    balance = Placement.balance

    def test_image_job_placed_on_a_docker_node(self):
        key = self.client(1000)
        job = json.loads(self.cli(
            "run", "-t", "docker", "-i", "localhost/wc", "--cmd", "sh", "--cmd", "-c",
            "--cmd", "cat /rz/in/request.json", "--memory", "64", "--cpus", "1",
            "--config", "n=2", "--label", "pool=a", "--max-cost", "0.30", "--json",
            key=key).stdout)
        self.assertEqual((job["image"], job["command"], job["module"]),
                         ("localhost/wc", ["sh", "-c", "cat /rz/in/request.json"], ""))
        self.assertEqual(job["waiting_reason"], "no active node")
        self.assertIn("image localhost/wc", self.cli("job", str(job["id"]), key=key).stdout)
        # Not matching any pattern: 403 naming the image; nothing held.
        st, body = http(self.proc.base, "POST", "/api/v1/jobs", key=key,
                        body={"image": "evil/miner", "max_cost_micros": 5})
        self.assertEqual(st, 403, body)
        self.assertIn("evil/miner", body["error"]["message"])
        for bad in ({"image": "busybox:1.36", "command": "ls"},
                    {"image": "busybox:1.36", "command": [1]},
                    {"image": "busybox:1.36", "module": "echo"},
                    {"module": "echo", "command": ["x"]}):
            st, body = http(self.proc.base, "POST", "/api/v1/jobs", key=key, body=bad)
            self.assertEqual(st, 400, (bad, body))
        self.assertEqual(self.balance(key)["pending_micros"], 30 * M)
        # A docker node whose operator allows no ad-hoc images does not
        # advertise the label such a job requires: it is not offered it.
        caps = dict(NODE_CAPS, adapters=["process", "docker"], labels={"pool": "a"})
        st, plain = http(self.proc.base, "POST", "/api/v1/nodes/register",
                         body=NodeKey("44" * 32).register_body(caps))
        self.assertEqual(st, 201, plain)
        st, a = http(self.proc.base, "GET", "/api/v1/nodes/%d/jobs?wait=0" % plain["id"],
                     key=plain["token"])
        self.assertNotEqual((a or {}).get("job"), job["id"])
        got = json.loads(self.cli("job", str(job["id"]), "--json", key=key).stdout)
        self.assertIn("rhizos.adhoc_images", got["waiting_reason"] or "")
        caps = dict(NODE_CAPS, adapters=["process", "docker"],
                    labels={"pool": "a", "rhizos.adhoc_images": "yes"})
        st, reg = http(self.proc.base, "POST", "/api/v1/nodes/register",
                       body=NodeKey("33" * 32).register_body(caps))
        self.assertEqual(st, 201, reg)
        st, a = http(self.proc.base, "GET", "/api/v1/nodes/%d/jobs?wait=0" % reg["id"],
                     key=reg["token"])
        self.assertEqual(st, 200, a)
        self.assertEqual(a["job"], job["id"])
        self.assertNotIn("module", a)
        self.assertEqual(a["adhoc"], {"adapter": "docker", "image": "localhost/wc",
                                      "command": ["sh", "-c", "cat /rz/in/request.json"]})
        self.assertEqual(a["request"], {"inputs": {}, "config": {"n": 2}})
        got = json.loads(self.cli("job", str(job["id"]), "--json", key=key).stdout)
        self.assertEqual(got["status"], "running")
        self.assertIsNone(got["waiting_reason"])


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
