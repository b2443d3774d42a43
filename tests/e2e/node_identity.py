#!/usr/bin/env python3
"""End-to-end: a node is its Ed25519 key (docs/api.md "Node identity").
A node killed with kill -9 is lost within the node timeout (plus one
sweep), and restarted on the same data comes back as the same node with
the same account and its earnings; register twice is one node; a
registration signed by another key, replayed or stale is refused; a
result with a bad signature is refused and a good one is kept with the
job; a retired key is refused while its token still opens its account; a
registration signed for one orchestrator is refused at another, an old
(version 1) one is refused unless --accept-v1-proofs, and a node whose
pinned orchestrator key is not what the URL answers does not register.
Usage: node_identity.py RHIZOS_NODE SOURCE_ROOT RHIZOS_ORCHESTRATOR"""
import os
import signal
import sys
import tempfile
import time
import unittest

from harness import NodeKey, Proc, http, run, sandbox_flags, start_orchestrator

NODE, ROOT, ORCH = sys.argv[1], sys.argv[2], sys.argv[3]
ADMIN = "test-admin-key-0123456789abcdef-identity"
TIMEOUT_MS = 3000
CAPS = {"cpu": {"cores": 4}, "memory_mb": 4096, "adapters": ["process"],
        "prices": {"cpu_hour_micros": 1000}}


class Identity(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.orch = start_orchestrator(
            ORCH, os.path.join(self.tmp.name, "orch"),
            ["--node-timeout-ms", str(TIMEOUT_MS), "--modules",
             os.path.join(ROOT, "tests/e2e/modules")],
            admin_key=ADMIN, cwd=ROOT, timeout=20)
        self.base = self.orch.base
        self.procs = []
        acct = self.ok("POST", "/api/v1/accounts", ADMIN, {}, code=201)
        self.key = acct["api_key"]
        self.ok("POST", "/api/v1/accounts/%s/test-credits" % acct["id"], ADMIN,
                {"amount_micros": 100000})

    def tearDown(self):
        for p in self.procs:
            p.stop(signal.SIGKILL)
        self.orch.stop()
        self.tmp.cleanup()

    def ok(self, method, path, key=None, body=None, code=200):
        st, doc = http(self.base, method, path, key, body)
        self.assertEqual(st, code, doc)
        return doc

    def node_doc(self, nid):
        nodes = self.ok("GET", "/api/v1/nodes", ADMIN)["nodes"]
        return {n["id"]: n for n in nodes}.get(nid)

    def start_node(self, data):
        n = Proc([NODE, "start", "--data", data, "--orchestrator", self.base,
                  "--json", *sandbox_flags()], cwd=ROOT)
        self.procs.append(n)
        n.wait_for(lambda: any(e.get("event") == "registered" for e in n.events()),
                   20, "the node to register")
        return [e for e in n.events() if e.get("event") == "registered"][-1]

    def run_echo(self, message):
        job = self.ok("POST", "/api/v1/jobs", self.key,
                      {"module": "echo", "inputs": {"message": message},
                       "max_cost_micros": 100}, code=201)["id"]
        end = time.time() + 30
        while time.time() < end:
            j = self.ok("GET", "/api/v1/jobs/%d" % job, self.key)
            if j["status"] in ("succeeded", "failed", "cancelled"):
                return j
            time.sleep(0.1)
        raise AssertionError("job %d still %s" % (job, j["status"]))

    def register(self, nk, body=None, code=201):
        return self.ok("POST", "/api/v1/nodes/register", None,
                       body or nk.register_body(CAPS), code=code)

    # ---- the real node ----
    def test_killed_node_is_lost_in_time_and_comes_back_the_same(self):
        data = os.path.join(self.tmp.name, "node")
        self.assertEqual(run([NODE, "init", "--data", data], cwd=ROOT).returncode, 0)
        reg = self.start_node(data)
        nid, account = reg["node"], reg["account"]
        j = self.run_echo("paid")
        self.assertEqual(j["status"], "succeeded", j)
        self.assertEqual(j["node_id"], nid)
        self.assertEqual(len(j["result_signature"]), 128)
        self.assertTrue(j["result_verified"], j)
        with open(os.path.join(data, "token")) as f:
            token = f.read().strip()
        earned = self.ok("GET", "/api/v1/accounts/%s" % account, token)["balance_micros"]
        self.assertGreater(earned, 0)

        # kill -9 while its long-poll is held: lost within the timeout of
        # its last sign of life plus one sweep, not when the poll would
        # have ended (25 s).
        time.sleep(1.0)
        t0 = time.time()
        self.procs[0].stop(signal.SIGKILL)
        while self.node_doc(nid)["state"] != "lost":
            self.assertLess(time.time() - t0, 15, "never lost")
            time.sleep(0.05)
        lost_after = time.time() - t0
        print("lost after %.2f s" % lost_after, file=sys.stderr)
        self.assertLess(lost_after, TIMEOUT_MS / 1000 + 2.0,
                        "lost only after %.1f s" % lost_after)

        # Well past the timeout, the same data: the same node and account,
        # the earnings where they were.
        time.sleep(TIMEOUT_MS / 1000)
        again = self.start_node(data)
        self.assertEqual((again["node"], again["account"]), (nid, account))
        self.assertEqual(self.node_doc(nid)["state"], "active")
        self.assertEqual(len(self.ok("GET", "/api/v1/nodes", ADMIN)["nodes"]), 1)
        with open(os.path.join(data, "token")) as f:
            token = f.read().strip()
        self.assertEqual(self.ok("GET", "/api/v1/accounts/%s" % account,
                                 token)["balance_micros"], earned)
        j = self.run_echo("again")
        self.assertEqual((j["status"], j["node_id"]), ("succeeded", nid), j)

    def test_register_command_twice_is_one_node(self):
        data = os.path.join(self.tmp.name, "node")
        self.assertEqual(run([NODE, "init", "--data", data], cwd=ROOT).returncode, 0)
        out = []
        for _ in range(2):
            p = run([NODE, "register", "--data", data, "--orchestrator", self.base,
                     "--json"], cwd=ROOT)
            self.assertEqual(p.returncode, 0, p.stderr)
            out.append(p.stdout)
        self.assertEqual(out[0], out[1])
        self.assertEqual(len(self.ok("GET", "/api/v1/nodes", ADMIN)["nodes"]), 1)

    # ---- the raw API ----
    def test_register_twice_same_node_fresh_token(self):
        nk = NodeKey()
        first = self.register(nk)
        # Used before the next registration: whom a token names may be kept
        # between its requests, and the revocation must still hold at once.
        path = "/api/v1/nodes/%d/heartbeat" % first["id"]
        for _ in range(2):
            self.ok("POST", path, first["token"], {})
        second = self.register(nk, code=200)
        self.assertEqual((first["id"], first["account"], first["new"], second["new"]),
                         (second["id"], second["account"], True, False))
        self.assertEqual([n["id"] for n in self.ok("GET", "/api/v1/nodes", ADMIN)["nodes"]],
                         [first["id"]])
        # The earlier registration's token is revoked, the new one works.
        st, _ = http(self.base, "POST", path, first["token"], {})
        self.assertEqual(st, 401)
        self.ok("POST", path, second["token"], {})
        doc = self.node_doc(first["id"])
        self.assertEqual((doc["public_key"], doc["identity"]), (nk.hex, "bound"))

    def test_forged_replayed_and_stale_registrations_are_refused(self):
        owner, thief = NodeKey(), NodeKey()
        body = owner.register_body(CAPS)
        reg = self.register(owner, body)
        # Another node's public key, signed by the thief's key.
        forged = thief.register_body(CAPS)
        forged["ed25519_public_key"] = owner.hex
        st, doc = http(self.base, "POST", "/api/v1/nodes/register", None, forged)
        self.assertEqual(st, 401, doc)
        # The owner's own request, sent again by someone who saw it.
        st, doc = http(self.base, "POST", "/api/v1/nodes/register", None, body)
        self.assertEqual(st, 401, doc)
        self.assertIn("replay", doc["error"]["message"])
        # Signed long ago, or with the capabilities' key swapped.
        old = owner.register_body(CAPS, ts=int(time.time() * 1000) - 3600 * 1000)
        st, doc = http(self.base, "POST", "/api/v1/nodes/register", None, old)
        self.assertEqual(st, 401, doc)
        other_x = owner.register_body(CAPS)
        other_x["x25519_public_key"] = "22" * 32
        st, doc = http(self.base, "POST", "/api/v1/nodes/register", None, other_x)
        self.assertEqual(st, 401, doc)
        # Unsigned (an old node agent): told what is missing.
        st, doc = http(self.base, "POST", "/api/v1/nodes/register", None,
                       {"capabilities": CAPS, "x25519_public_key": "11" * 32,
                        "ed25519_public_key": owner.hex})
        self.assertEqual(st, 400, doc)
        self.assertIn("timestamp_ms", doc["error"]["message"])
        nodes = self.ok("GET", "/api/v1/nodes", ADMIN)["nodes"]
        self.assertEqual([n["id"] for n in nodes], [reg["id"]])

    def test_result_signature_checked_and_kept(self):
        nk, thief = NodeKey(), NodeKey()
        reg = self.register(nk)
        nid, tok = reg["id"], reg["token"]
        job = self.ok("POST", "/api/v1/jobs", self.key,
                      {"module": "echo", "inputs": {"message": "x"},
                       "max_cost_micros": 100}, code=201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, tok)
        self.assertEqual(a["job"], job)
        path = "/api/v1/nodes/%d/jobs/%d/result" % (nid, job)
        outputs = {"message": "x \u00e9"}
        good = nk.result_body(job, a["attempt"], outputs, run_ms=10)
        for bad, code in ((thief.result_body(job, a["attempt"], outputs, run_ms=10), 403),
                          (dict(good, outputs={"message": "changed"}), 403),
                          (nk.result_body(job, a["attempt"] + 1, outputs, run_ms=10)
                           | {"attempt": a["attempt"]}, 403),
                          ({k: v for k, v in good.items() if k != "signature"}, 403),
                          (dict(good, signature="zz"), 400)):
            st, doc = http(self.base, "POST", path, tok, bad)
            self.assertEqual(st, code, (bad, doc))
            self.assertEqual(self.ok("GET", "/api/v1/jobs/%d" % job,
                                     self.key)["status"], "running")
        self.ok("POST", path, tok, good)
        j = self.ok("GET", "/api/v1/jobs/%d" % job, self.key)
        self.assertEqual((j["status"], j["node_id"], j["result_signature"],
                          j["result_verified"]),
                         ("succeeded", nid, good["signature"], True), j)

    def test_retired_key_refused_its_account_reachable(self):
        owner, other = NodeKey(), NodeKey()
        reg = self.register(owner)
        st, doc = http(self.base, "POST", "/api/v1/nodes/retire", None,
                       other.proof("retire") | {"ed25519_public_key": owner.hex})
        self.assertEqual(st, 401, doc)
        done = self.ok("POST", "/api/v1/nodes/retire", None, owner.proof("retire"))
        self.assertEqual((done["id"], done["state"]), (reg["id"], "retired"))
        st, doc = http(self.base, "POST", "/api/v1/nodes/register", None,
                       owner.register_body(CAPS))
        self.assertEqual(st, 403, doc)
        self.assertIn("retired", doc["error"]["message"])
        acct = self.ok("GET", "/api/v1/accounts/%s" % reg["account"], reg["token"])
        self.assertEqual(acct["id"], reg["account"])
        self.assertTrue(self.node_doc(reg["id"])["retired"])
        # The admin retires another node; a client key may not.
        reg2 = self.register(other)
        st, _ = http(self.base, "POST", "/api/v1/nodes/%d/retire" % reg2["id"],
                     self.key)
        self.assertEqual(st, 403)
        self.ok("POST", "/api/v1/nodes/%d/retire" % reg2["id"], ADMIN)
        st, _ = http(self.base, "POST", "/api/v1/nodes/register", None,
                     other.register_body(CAPS))
        self.assertEqual(st, 403)

    # ---- a proof names its orchestrator ----
    def identity(self, base):
        """GET /api/v1/identity: open, the key /api/v1/keys gives too."""
        st, doc = http(base, "GET", "/api/v1/identity")
        self.assertEqual(st, 200, doc)
        return doc["x25519_public_key"]

    def second_orchestrator(self, *args, name="orch-b"):
        b = start_orchestrator(ORCH, os.path.join(self.tmp.name, name),
                               list(args), admin_key=ADMIN, cwd=ROOT, timeout=20)
        self.procs.append(b)
        return b

    def test_registration_signed_for_one_orchestrator_refused_at_another(self):
        b = self.second_orchestrator()
        key_a, key_b = self.identity(self.base), self.identity(b.base)
        self.assertNotEqual(key_a, key_b)
        self.assertEqual(key_a, self.ok("GET", "/api/v1/keys", ADMIN)["x25519_public_key"])
        nk = NodeKey()
        body = nk.register_body(CAPS, orchestrator=key_a)
        self.register(nk, body)
        # Captured at A, replayed at B (whose replay cache never saw it).
        st, doc = http(b.base, "POST", "/api/v1/nodes/register", None, body)
        self.assertEqual(st, 401, doc)
        self.assertIn("signed for another orchestrator", doc["error"]["message"])
        # Naming B but signed under A's name: the signature fails.
        swapped = dict(nk.register_body(CAPS, orchestrator=key_a),
                       orchestrator_public_key=key_b)
        st, doc = http(b.base, "POST", "/api/v1/nodes/register", None, swapped)
        self.assertEqual(st, 401, doc)
        self.assertEqual(http(b.base, "GET", "/api/v1/nodes", ADMIN)[1]["nodes"], [])
        # Retirement is bound the same way.
        st, doc = http(b.base, "POST", "/api/v1/nodes/retire", None,
                       nk.proof("retire", orchestrator=key_a))
        self.assertEqual(st, 401, doc)
        self.assertIn("another orchestrator", doc["error"]["message"])
        # The same key registers at B with a proof naming B.
        self.assertEqual(http(b.base, "POST", "/api/v1/nodes/register", None,
                              nk.register_body(CAPS, orchestrator=key_b))[0], 201)

    def test_v1_registration_refused_unless_accepted(self):
        old = NodeKey()
        # Version 1, as nodes before the last release sign: refused by
        # default, telling the node to upgrade; nothing registered.
        st, doc = http(self.base, "POST", "/api/v1/nodes/register", None,
                       old.register_body(CAPS, v1=True))
        self.assertEqual(st, 401, doc)
        msg = doc["error"]["message"]
        self.assertIn("only proofs that name it", msg)
        self.assertIn("upgrade rhizos-node", msg)
        self.assertIn("--accept-v1-proofs", msg)
        self.assertIn(self.identity(self.base), msg)
        st, doc = http(self.base, "POST", "/api/v1/nodes/retire", None,
                       old.proof("retire", v1=True))
        self.assertEqual(st, 401, doc)
        self.assertEqual(self.ok("GET", "/api/v1/nodes", ADMIN)["nodes"], [])
        self.register(old, old.register_body(CAPS, orchestrator=self.identity(self.base)))
        # Opted in for old nodes: taken, and again (the same node).
        b = self.second_orchestrator("--accept-v1-proofs")
        st, doc = http(b.base, "POST", "/api/v1/nodes/register", None,
                       old.register_body(CAPS, v1=True))
        self.assertEqual(st, 201, doc)
        st, doc = http(b.base, "POST", "/api/v1/nodes/register", None,
                       old.register_body(CAPS, v1=True))
        self.assertEqual(st, 200, doc)
        # The old opt-out still starts, says it is deprecated, and refuses.
        c = self.second_orchestrator("--refuse-v1-proofs", name="orch-c")
        st, doc = http(c.base, "POST", "/api/v1/nodes/register", None,
                       old.register_body(CAPS, v1=True))
        self.assertEqual(st, 401, doc)
        c.stop()
        self.assertIn("--refuse-v1-proofs is deprecated and does nothing",
                      c.stderr_text())

    def test_node_signs_v2_and_honours_a_pinned_key(self):
        b = self.second_orchestrator()
        data = os.path.join(self.tmp.name, "node")
        self.assertEqual(run([NODE, "init", "--data", data], cwd=ROOT).returncode, 0)
        p = run([NODE, "register", "--data", data, "--orchestrator", b.base,
                 "--json"], cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stderr)
        # Pinned to A's key, the node will not sign for B.
        conf = os.path.join(data, "config.toml")
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace("[orchestrator]\n", "[orchestrator]\nkey = \"%s\"\n"
                                 % self.identity(self.base), 1))
        p = run([NODE, "register", "--data", data, "--orchestrator", b.base,
                 "--json"], cwd=ROOT)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("pins", p.stderr)
        p = run([NODE, "register", "--data", data, "--orchestrator", self.base,
                 "--json"], cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
