#!/usr/bin/env python3
"""End-to-end: a node that lies about its hardware is not paid.

A node registered through the raw API claims eight H100s and 1 TB of
memory. It ignores the orchestrator's capability challenge, or answers it
with made-up digests: its claims stay unverified, a GPU job (verified by
default) is never handed to it, its reputation falls, and its payout
account stays empty. An honest node (its answer computed by librhizos,
when that can be loaded here) is verified, runs the GPU job and is paid.

Usage: verification.py ORCHESTRATOR SOURCE_ROOT [LIBRHIZOS]"""
import ctypes
import json
import os
import sys
import tempfile
import time
import unittest

from harness import NodeKey, http, run, start_orchestrator, wait_until

EXE, ROOT = sys.argv[1], sys.argv[2]
LIB = sys.argv[3] if len(sys.argv) > 3 else None
X25519 = "22" * 32
GRACE_MS = 1500


def caps(gpus, memory_mb):
    return {"cpu": {"cores": 4, "threads": 8}, "memory_mb": memory_mb,
            "storage": {"total_gb": 100, "free_gb": 100},
            "adapters": ["process"],
            "gpus": [{"vendor": "nvidia", "model": "H100", "vram_mb": 81920,
                      "compute_capability": "9.0"}] * gpus,
            "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 360000000,
                       "memory_gb_hour_micros": 0},
            "reputation": 1.0, "max_concurrent_jobs": 4}


def money(doc, name):
    return doc[name + "_micros"]


def load_lib():
    if not LIB:
        return None
    probe = run([sys.executable, "-c", "import ctypes,sys; ctypes.CDLL(sys.argv[1])",
                 LIB])
    if probe.returncode != 0:   # a sanitizer build cannot be loaded here
        return None
    lib = ctypes.CDLL(LIB)
    lib.rz_challenge_answer.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_void_p)]
    lib.rz_free.argtypes = [ctypes.c_void_p]
    return lib


class Verification(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.admin = "rza_test_" + os.urandom(16).hex()
        cls.proc = start_orchestrator(
            EXE, os.path.join(cls.tmp.name, "data"), admin_key=cls.admin,
            args=["--challenge-grace-ms", str(GRACE_MS), "--quiet",
                  "--modules", os.path.join(ROOT, "examples", "modules")])
        cls.base = cls.proc.base

    @classmethod
    def tearDownClass(cls):
        try:
            cls.proc.stop_clean()
        finally:
            cls.tmp.cleanup()

    def call(self, method, path, body=None, key=None, code=200):
        st, doc = http(self.base, method, path, key=key, body=body, timeout=20)
        self.assertEqual(st, code, "%s %s -> %d %r" % (method, path, st, doc))
        return doc

    def client(self):
        doc = self.call("POST", "/api/v1/accounts", {"name": "c"}, self.admin, 201)
        self.call("POST", "/api/v1/accounts/%s/test-credits" % doc["id"],
                  {"amount_micros": 100000000}, self.admin)
        return doc["api_key"]

    def register(self, gpus, memory_mb):
        self.key = NodeKey(X25519)
        doc = self.call("POST", "/api/v1/nodes/register",
                        self.key.register_body(caps(gpus, memory_mb)), code=201)
        self.addCleanup(http, self.base, "DELETE", "/api/v1/nodes/%d" % doc["id"],
                        key=self.admin)
        return doc["id"], doc["token"], doc["account"]

    def node_view(self, nid):
        nodes = self.call("GET", "/api/v1/nodes?limit=1000", key=self.admin)["nodes"]
        return next(n for n in nodes if n["id"] == nid)

    def gpu_job(self, key):
        return self.call("POST", "/api/v1/jobs",
                         {"module": "echo", "inputs": {"message": "hi"},
                          "requirements": {"gpu": {"count": 1}},
                          "max_cost_micros": 1000000}, key, 201)["id"]

    def assert_not_given(self, nid, tok, job, key):
        st, doc = http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, key=tok)
        self.assertEqual(st, 204, doc)
        got = self.call("GET", "/api/v1/jobs/%d" % job, key=self.admin)
        self.assertEqual(got["status"], "queued", got)
        self.assertIn("verified", got.get("waiting_reason") or "", got)

    def assert_unpaid(self, acct, tok):
        n = self.call("GET", "/api/v1/accounts/%s" % acct, key=tok)
        self.assertEqual((n["kind"], money(n, "balance")), ("node", 0))

    def test_fake_node_ignores_challenge(self):
        key = self.client()
        nid, tok, acct = self.register(8, 1 << 20)
        v = self.node_view(nid)["verification"]
        self.assertEqual(v["state"], "unverified")
        self.assertEqual(set(v["unverified"]), {"cpu", "memory", "gpu"})
        self.assertEqual(set(v["claims"]), {"cpu", "memory", "gpu"})
        self.assertEqual(v["reputation"], 1.0)
        # It fetches the challenge, then stays silent past its time limit.
        ch = self.call("GET", "/api/v1/nodes/%d/challenge" % nid, key=tok)
        self.assertEqual(ch["memory"]["mb"], 64)   # capped: cheap to ask
        self.assertEqual(ch["gpu"]["n"], 64)
        self.assertLess(ch["time_limit_ms"], 60000)
        job = self.gpu_job(key)
        self.assert_not_given(nid, tok, job, key)
        wait_until(lambda: self.node_view(nid)["verification"]["record"]
                   ["challenges_failed"] == 1, ch["time_limit_ms"] / 1000 + 10,
                   "the unanswered challenge to count as failed")
        v = self.node_view(nid)["verification"]
        self.assertEqual(v["state"], "unverified")
        self.assertEqual(v["reputation"], 0.5)
        # Its own claim of reputation 1.0 is not what the server shows.
        self.assertEqual(self.node_view(nid)["capabilities"]["reputation"], 0.5)
        # A late answer is to no outstanding challenge.
        st, doc = http(self.base, "POST", "/api/v1/nodes/%d/challenge" % nid,
                       key=tok, body={"seq": ch["seq"], "cpu": "00"})
        self.assertEqual(st, 404, doc)
        self.assert_not_given(nid, tok, job, key)
        self.call("DELETE", "/api/v1/jobs/%d" % job, key=key)
        self.assert_unpaid(acct, tok)

    def test_fake_node_answers_wrong(self):
        key = self.client()
        nid, tok, acct = self.register(8, 1 << 20)
        ch = self.call("GET", "/api/v1/nodes/%d/challenge" % nid, key=tok)
        # The same challenge while it is outstanding.
        self.assertEqual(self.call("GET", "/api/v1/nodes/%d/challenge" % nid,
                                   key=tok), ch)
        # Malformed answers are refused and change nothing.
        for bad in ({"cpu": "00"}, {"seq": ch["seq"], "gpu": 7},
                    {"seq": ch["seq"], "extra": 1}):
            st, doc = http(self.base, "POST", "/api/v1/nodes/%d/challenge" % nid,
                           key=tok, body=bad)
            self.assertEqual(st, 400, (bad, doc))
        self.assertEqual(self.node_view(nid)["verification"]["record"]
                         ["challenges_failed"], 0)
        ans = self.call("POST", "/api/v1/nodes/%d/challenge" % nid,
                        {"seq": ch["seq"], "cpu": "ab" * 32, "memory": "cd" * 8,
                         "gpu": "ef" * 32}, tok)
        self.assertFalse(ans["passed"])
        self.assertEqual(ans["verification"]["state"], "unverified")
        self.assertEqual(ans["verification"]["reputation"], 0.5)
        # No new challenge until the next interval.
        st, _ = http(self.base, "GET", "/api/v1/nodes/%d/challenge" % nid, key=tok)
        self.assertEqual(st, 204)
        job = self.gpu_job(key)
        self.assert_not_given(nid, tok, job, key)
        self.call("DELETE", "/api/v1/jobs/%d" % job, key=key)
        self.assert_unpaid(acct, tok)

    def test_honest_node_is_verified_and_paid(self):
        lib = load_lib()
        if not lib:
            self.skipTest("librhizos cannot be loaded into this python")
        key = self.client()
        nid, tok, acct = self.register(1, 256)
        ch = http(self.base, "GET", "/api/v1/nodes/%d/challenge" % nid, key=tok)[1]
        text = json.dumps(ch).encode()
        out = ctypes.c_void_p()
        self.assertEqual(lib.rz_challenge_answer(text, len(text), ctypes.byref(out)), 0)
        answer = json.loads(ctypes.string_at(out.value).decode())
        lib.rz_free(out)
        ans = self.call("POST", "/api/v1/nodes/%d/challenge" % nid, answer, tok)
        self.assertTrue(ans["passed"], ans)
        self.assertEqual(ans["verification"]["state"], "verified")
        job = self.gpu_job(key)
        a = self.call("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        self.assertEqual(a["job"], job)
        time.sleep(1.05)
        self.call("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, job),
                  self.key.signed(job, {"attempt": a["attempt"],
                                        "outputs": {"message": "hi"},
                                        "run_ms": 1000}), tok)
        got = self.call("GET", "/api/v1/jobs/%d" % job, key=key)
        self.assertEqual(got["status"], "succeeded")
        self.assertEqual(got["node"], nid)
        self.assertEqual(got["node_verification"]["state"], "verified")
        self.assertEqual(got["node_verification"]["reputation"], 1.0)
        n = self.call("GET", "/api/v1/accounts/%s" % acct, key=tok)
        self.assertGreater(money(n, "balance"), 0)
        rec = self.node_view(nid)["verification"]["record"]
        self.assertEqual((rec["succeeded"], rec["challenges_passed"]), (1, 1))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
