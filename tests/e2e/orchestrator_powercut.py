#!/usr/bin/env python3
"""End-to-end: power cuts under a running rhizos-orchestrator, with every
file write in play: LMDB's pages and meta pages (engine, ledger, auth),
the ledger's journal and the audit log (tests/unit/powercut_preload.c,
preloaded: it keeps an undo log of unsynced writes and cuts the power at
a random write or sync; `test_powercut --play` then plays a disk that lost
a random subset of them).

Each round starts the server under the shim on the same data directory,
sends credits and job submissions until the power goes (or 30 calls), and
restarts it plainly: it must start (a power cut is not damage), every
acknowledged job must be there, the client's money must hold every
acknowledged credit and no more than was sent, `check --data` must
pass (ledger verified, engine and ledger agreeing), and every
acknowledged call must have its begin record in the audit log (a pass's
end records are synced with the log's next sync: a cut may take them).
A node takes the jobs and reports signed results with logs: every
acknowledged result keeps its log and verified signature (the auth store
commits them up to 50 ms after the reply; the engine's commit holds their
redo copies, put back at the next start).

Usage: orchestrator_powercut.py ORCHESTRATOR SOURCE_ROOT PRELOAD.so TEST_POWERCUT
RZ_POWERCUT_ROUNDS (default 8) and RZ_POWERCUT_SEED for longer runs."""
import os
import json
import random
import subprocess
import sys
import tempfile
import time
import unittest

from collections import Counter

from harness import (NodeKey, Proc, free_port, http, run, sanitizer_report,
                     start_orchestrator)

EXE, ROOT, PRELOAD, PLAYER = sys.argv[1:5]
ROUNDS = int(os.environ.get("RZ_POWERCUT_ROUNDS", "8"))
SEED = int(os.environ.get("RZ_POWERCUT_SEED", "20261205"))
CUT_EXIT = 42
CAPS = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
        "adapters": ["process"], "max_concurrent_jobs": 4,
        "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000,
                   "memory_gb_hour_micros": 0}}


class PowerCut(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="rz-powercut-")
        self.data = os.path.join(self.tmp.name, "data")
        self.log = os.path.join(self.tmp.name, "undo.log")
        self.admin = "rza_powercut_" + os.urandom(12).hex()
        self.key_file = os.path.join(self.tmp.name, "admin.key")
        with open(self.key_file, "w") as f:
            f.write(self.admin + "\n")
        self.args = ["--admin-key-file", self.key_file, "--quiet", "--modules",
                     os.path.join(ROOT, "examples", "modules"), "--request-rate", "0"]

    def tearDown(self):
        self.tmp.cleanup()

    def plain(self):
        return start_orchestrator(EXE, self.data, self.args, timeout=30)

    def under_shim(self, cut_at, seed):
        env = dict(os.environ, LD_PRELOAD=PRELOAD, RZ_POWERCUT_DIR=self.data,
                   RZ_POWERCUT_LOG=self.log, RZ_POWERCUT_AT=str(cut_at),
                   RZ_POWERCUT_SEED=str(seed))
        port = free_port()
        proc = Proc([EXE, "--listen", "127.0.0.1:%d" % port, "--data", self.data,
                     *self.args], env=env)
        proc.base = "http://127.0.0.1:%d" % port
        deadline = time.time() + 30
        while time.time() < deadline and proc.alive():
            try:
                if http(proc.base, "GET", "/health", timeout=1)[0] == 200:
                    return proc
            except OSError:
                time.sleep(0.05)
        return proc   # it died starting (the power went), or the wait ends

    def reaped(self, proc):
        """The shim's cut or a clean stop, nothing else (no crash)."""
        rc = proc.stop()
        self.assertIn(rc, (0, CUT_EXIT, -15), proc.output())
        self.assertFalse(sanitizer_report(proc.stderr_text()), proc.output())
        return rc == CUT_EXIT

    def test_acknowledged_calls_survive_power_cuts(self):
        proc = self.plain()
        st, acct = http(proc.base, "POST", "/api/v1/accounts", key=self.admin,
                        body={"name": "c"})
        self.assertEqual(st, 201, acct)
        self.node_key = NodeKey("22" * 32)
        st, node = http(proc.base, "POST", "/api/v1/nodes/register",
                        body=self.node_key.register_body(CAPS))
        self.assertEqual(st, 201, node)
        self.node = (node["id"], node["token"])
        proc.stop_clean()
        acct_id, key = acct["id"], acct["api_key"]
        results = {}
        rng = random.Random(SEED)
        acked_sum = sent_sum = cuts = lost = 0
        jobs, acked = [], Counter()
        for rnd in range(ROUNDS):
            if os.path.exists(self.log):
                os.unlink(self.log)
            proc = self.under_shim(rng.randint(1, 400), rng.randrange(1 << 32))
            for i in range(30):
                if not proc.alive():
                    break
                try:
                    if i % 3 == 1:
                        self.take_one(proc, results)
                    elif i % 3 == 2:
                        st, doc = http(proc.base, "POST", "/api/v1/jobs", key=key,
                                       body={"module": "echo@1", "max_cost_micros": 1000},
                                       timeout=10)
                        if st == 201:
                            jobs.append(doc["id"])
                        else:
                            self.assertIn(st, (402, 500), doc)
                    else:
                        amount = rng.randint(1000, 9000)
                        sent_sum += amount
                        st, doc = http(proc.base, "POST",
                                       "/api/v1/accounts/%s/test-credits" % acct_id,
                                       key=self.admin, body={"amount_micros": amount},
                                       timeout=10)
                        if st == 200:
                            acked_sum += amount
                            acked[amount] += 1
                        else:
                            self.assertEqual(st, 500, doc)   # a failed sync
                except OSError:
                    break   # the power went mid-call: not acknowledged
            cuts += self.reaped(proc)
            lost += int(subprocess.run([PLAYER, "--play", self.log, str(rnd)],
                                       capture_output=True, text=True,
                                       check=True).stdout.strip() or 0)
            r = subprocess.run([EXE, "check", "--data", self.data],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, "round %d: %s%s" % (rnd, r.stdout, r.stderr))
            proc = self.plain()
            spent = 0   # what the results the store holds cost
            for job in jobs:
                st, doc = http(proc.base, "GET", "/api/v1/jobs/%s" % job, key=key)
                self.assertEqual(st, 200, "round %d: acknowledged job %s lost: %r"
                                 % (rnd, job, doc))
                spent += doc["cost_micros"] or 0
            st, me = http(proc.base, "GET", "/api/v1/accounts/me", key=key)
            self.assertEqual(st, 200, me)
            total = me["balance_micros"] + me["pending_micros"] + spent
            self.assertGreaterEqual(total, acked_sum, "round %d: acknowledged "
                                    "credits lost" % rnd)
            self.assertLessEqual(total, sent_sum, "round %d" % rnd)
            self.results_kept(proc, rnd, key, results)
            proc.stop_clean()
            self.begun_all(rnd, acct_id, acked, len(jobs))
        print("%d rounds: %d power cuts, %d unsynced writes lost; %d jobs, %d "
              "results and %d micro-dollars of credits acknowledged, all there"
              % (ROUNDS, cuts, lost, len(jobs), len(results), acked_sum))
        self.assertGreater(cuts, 0)

    def take_one(self, proc, results):
        """The node takes a job, if one waits, and reports its result with a
        log; an acknowledged one is kept in `results` (job -> log)."""
        nid, tok = self.node
        st, a = http(proc.base, "GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, key=tok,
                     timeout=10)
        if st != 200:
            return
        log = "log of %d\n" % a["job"]
        body = self.node_key.result_body(a["job"], a["attempt"], {"message": "x"},
                                         run_ms=5, log=log)
        st, doc = http(proc.base, "POST", "/api/v1/nodes/%d/jobs/%d/result"
                       % (nid, a["job"]), key=tok, body=body, timeout=10)
        if st == 200:
            results[a["job"]] = log
        else:
            self.assertEqual(st, 500, doc)   # a failed sync

    def results_kept(self, proc, rnd, key, results):
        for job, log in results.items():
            st, doc = http(proc.base, "GET", "/api/v1/jobs/%s" % job, key=key)
            self.assertEqual(st, 200, doc)
            self.assertEqual((doc["status"], doc["log"], doc["result_verified"]),
                             ("succeeded", log, True),
                             "round %d: an acknowledged result lost: %r" % (rnd, doc))

    def begun_all(self, rnd, acct_id, acked, n_jobs):
        """Every acknowledged call's begin record is in the audit log."""
        r = run([EXE, "audit", "--data", self.data], timeout=60)
        self.assertEqual(r.returncode, 0, "round %d: %s" % (rnd, r.stderr))
        begins = [json.loads(l) for l in r.stdout.splitlines()]
        begins = [b for b in begins if b["phase"] == "begin"]
        credits = Counter(b.get("amount_micros") for b in begins if b["op"] ==
                          "POST /api/v1/accounts/%s/test-credits" % acct_id)
        self.assertEqual(acked - credits, Counter(), "round %d: acknowledged credits "
                         "without their begin record" % rnd)
        self.assertGreaterEqual(sum(b["op"] == "POST /api/v1/jobs" for b in begins),
                                n_jobs, "round %d" % rnd)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
