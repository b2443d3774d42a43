#!/usr/bin/env python3
"""End-to-end: retention (docs/scale.md "Retention").

An orchestrator keeping work for 2 seconds (--retention-days 2s) runs
rounds of jobs (with logs) and one-step deployments: what finished more
than the age ago answers 410 (told apart from an id never given, 404),
its log with it; a job no node can take stays, its hold open; /metrics
counts what was removed; the engine's file stops growing over the
rounds; after a stop `check` passes and the server starts again with the
whole ledger verified (--verify-on-open), a removed job still 410.

Usage: orchestrator_retention.py ORCHESTRATOR SOURCE_ROOT"""
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

from harness import NodeKey, http, run, start_orchestrator

EXE, ROOT = sys.argv[1], sys.argv[2]
CAPS = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
        "storage": {"total_gb": 100, "free_gb": 100}, "adapters": ["process"],
        "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000,
                   "memory_gb_hour_micros": 0}, "max_concurrent_jobs": 4}
FLOW = "flux: 1\nname: one\nsteps:\n  say:\n    module: echo@1\n    inputs:\n      message: hi\n"
ADMIN = "rzk_admin_" + "r" * 40


def start(data, *extra):
    return start_orchestrator(EXE, data, ["--quiet", "--modules",
                                          os.path.join(ROOT, "examples", "modules"),
                                          "--request-rate", "0", *extra],
                              admin_key=ADMIN)


def removed(base, kind):
    st, text = http(base, "GET", "/metrics", key=ADMIN)
    m = re.search(r'rhizos_retention_removed_total\{kind="%s"\} (\d+)' % kind, text)
    return int(m.group(1)) if m else -1


class Retention(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="rz-retention-")
        self.data = os.path.join(self.tmp.name, "data")
        self.s = start(self.data, "--retention-days", "2s")
        base = self.s.base
        st, acct = http(base, "POST", "/api/v1/accounts", key=ADMIN, body={"name": "c"})
        self.key = acct["api_key"]
        st, _ = http(base, "POST", "/api/v1/accounts/%s/test-credits" % acct["id"],
                     key=ADMIN, body={"amount_micros": 10000000})
        self.assertEqual(st, 200)
        self.nk = NodeKey("33" * 32)
        st, node = http(base, "POST", "/api/v1/nodes/register",
                        body=self.nk.register_body(CAPS))
        self.node, self.tok = node["id"], node["token"]

    def tearDown(self):
        self.s.stop()
        self.tmp.cleanup()

    def work(self, base):
        """Everything queued runs; each result brings a log."""
        path = "/api/v1/nodes/%d" % self.node
        while True:
            st, a = http(base, "GET", path + "/jobs?wait=0", key=self.tok)
            if st != 200:
                return
            st, _ = http(base, "POST", path + "/jobs/%d/result" % a["job"], key=self.tok,
                         body=self.nk.result_body(a["job"], a["attempt"], {"message": "hi"},
                                                  run_ms=5, log="line one\nline two\n"))
            self.assertEqual(st, 200)

    def round(self, base, n=20):
        jobs = []
        for _ in range(n):
            st, job = http(base, "POST", "/api/v1/jobs", key=self.key,
                           body={"module": "echo", "max_cost_micros": 100})
            self.assertEqual(st, 201, job)
            jobs.append(job["id"])
        st, dep = http(base, "POST", "/api/v1/flows/deploy", key=self.key, body={"flow": FLOW})
        self.assertEqual(st, 201, dep)
        self.work(base)
        return jobs, dep["id"]

    def engine_size(self):
        return os.path.getsize(os.path.join(self.data, "engine", "data.mdb"))

    def caught_up(self, base, done_at):
        """Retention runs in batches between the server's other work, so on
        a loaded machine it may lag: wait until it has removed at least the
        jobs of every round that finished 3 s ago (2 s of age and a pass),
        so the file's size is measured over a bounded set of live work."""
        deadline = time.time() + 20
        while True:
            due = 20 * sum(1 for t in done_at if time.time() - t > 3.0)
            if removed(base, "job") >= due:
                return
            self.assertLess(time.time(), deadline,
                            "retention removed %d jobs, %d due" % (removed(base, "job"), due))
            time.sleep(0.2)

    def test_removed_bounded_verified(self):
        base = self.s.base
        st, stuck = http(base, "POST", "/api/v1/jobs", key=self.key,
                         body={"module": "echo", "max_cost_micros": 100,
                               "requirements": {"cpu_cores": 64}})
        self.assertEqual(st, 201, stuck)
        first, dep = self.round(base)
        st, j = http(base, "GET", "/api/v1/jobs/%d" % first[0], key=self.key)
        self.assertEqual((st, j.get("status")), (200, "succeeded"), j)
        self.assertIn("line one", j["log"])
        sizes, done_at = [], [time.time()]
        for r in range(8):
            self.round(base)
            done_at.append(time.time())
            time.sleep(1.2)
            self.caught_up(base, done_at)
            sizes.append(self.engine_size())
        deadline = time.time() + 20
        while time.time() < deadline:
            st, doc = http(base, "GET", "/api/v1/jobs/%d" % first[0], key=self.key)
            if st == 410:
                break
            time.sleep(0.5)
        self.assertEqual(st, 410, doc)
        self.assertIn("retention", doc["error"]["message"])
        st, doc = http(base, "GET", "/api/v1/flows/%d/status" % dep, key=self.key)
        self.assertEqual(st, 410, doc)
        st, _ = http(base, "GET", "/api/v1/jobs/%d" % 10 ** 9, key=self.key)
        self.assertEqual(st, 404)
        st, j = http(base, "GET", "/api/v1/jobs/%d" % stuck["id"], key=self.key)
        self.assertEqual((st, j["status"]), (200, "queued"))
        self.assertGreaterEqual(removed(base, "job"), 100)
        self.assertGreaterEqual(removed(base, "deployment"), 4)
        # Rounds 5 to 8 reuse the pages the first ones freed.
        self.assertLessEqual(sizes[-1], sizes[3] + sizes[3] // 4, sizes)
        self.s.stop_clean()
        r = run([EXE, "check", "--data", self.data], timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.s = start(self.data, "--retention-days", "0", "--verify-on-open")
        st, _ = http(self.s.base, "GET", "/api/v1/jobs/%d" % first[0], key=self.key)
        self.assertEqual(st, 410)
        st, j = http(self.s.base, "GET", "/api/v1/jobs/%d" % stuck["id"], key=self.key)
        self.assertEqual((st, j["status"]), (200, "queued"))

    def test_bad_age_refused(self):
        for bad in ("-1", "2w", "x", "99999d"):
            r = run([EXE, "--data", os.path.join(self.tmp.name, "other"),
                     "--retention-days", bad], timeout=30)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("--retention-days", r.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
