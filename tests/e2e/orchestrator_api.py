#!/usr/bin/env python3
"""End-to-end: rhizos-orchestrator over loopback on a random free port.

The served routes equal docs/openapi.yaml's; accounts, test credits, a job
queued with no node and cancelled (refunded exactly); malformed, oversized
and hostile bodies (JSON and CBOR) answer the right 4xx and change nothing;
an invalid flow is a 422 with diagnostics; a fake node (JSON and CBOR)
polls, declines, reports; settlement is exact (client charged the cost,
node paid 95%, platform 5%); a deployment's SSE stream ends; the auth
matrix: every route x {no key, bad key, another client, node, admin} gives
no unauthorised success; SIGTERM answers a held long-poll. Every reply
matches its operation's schema in docs/openapi.yaml (openapi_check.py).

A deployment's credential, sealed to the orchestrator through librhizos
(ctypes), reaches the node sealed to the node's own key for that job.

Usage: orchestrator_api.py ORCHESTRATOR SOURCE_ROOT [LIBRHIZOS]"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest
from http.client import HTTPConnection

from harness import NodeKey, events_socket, free_port, http, run, start_orchestrator

EXE, ROOT = sys.argv[1], sys.argv[2]
LIB = sys.argv[3] if len(sys.argv) > 3 else None
MAX_BODY = 65536
NODE_CAPS = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
             "storage": {"total_gb": 100, "free_gb": 100},
             "adapters": ["process"],
             "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000,
                        "memory_gb_hour_micros": 0},
             "max_concurrent_jobs": 4}
X25519 = "11" * 32
REPLIES = []   # (method, path, status, decoded reply) of every call


# ---- a minimal CBOR codec (the subset rz_wire speaks) ----

def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for code, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | code]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor_enc(v):
    if v is None:
        return b"\xf6"
    if v is True or v is False:
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)
    if isinstance(v, float):
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        return cbor_head(3, len(b)) + b
    if isinstance(v, list):
        return cbor_head(4, len(v)) + b"".join(cbor_enc(x) for x in v)
    if isinstance(v, dict):
        return cbor_head(5, len(v)) + b"".join(cbor_enc(k) + cbor_enc(x)
                                               for k, x in v.items())
    raise TypeError(v)


def cbor_dec(b, i=0):
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if major == 7:
        if info == 20 or info == 21:
            return info == 21, i
        if info == 22:
            return None, i
        if info == 27:
            return struct.unpack(">d", b[i:i + 8])[0], i + 8
        raise ValueError("simple %d" % info)
    if info < 24:
        n = info
    else:
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        n = int.from_bytes(b[i:i + size], "big")
        i += size
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major == 3:
        return b[i:i + n].decode(), i + n
    if major == 4:
        out = []
        for _ in range(n):
            x, i = cbor_dec(b, i)
            out.append(x)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = cbor_dec(b, i)
            out[k], i = cbor_dec(b, i)
        return out, i
    raise ValueError("major %d" % major)


# ---- the server ----

def decode(ctype, data):
    """A reply by its content type: CBOR, JSON, else text."""
    if "cbor" in ctype:
        return cbor_dec(data)[0]
    if "json" in ctype:
        return json.loads(data)
    return data.decode(errors="replace")


class Server:
    def __init__(self, data, admin_file, extra=()):
        self.proc = start_orchestrator(
            EXE, data, ["--admin-key-file", admin_file, "--max-body", str(MAX_BODY),
                        *extra,
                        "--modules", os.path.join(ROOT, "examples", "modules"),
                        "--modules", os.path.join(ROOT, "tests", "e2e", "modules"),
                        # the auth matrix tries a wrong key on every route
                        "--auth-failures", "0", "--quiet"], timeout=20)
        self.port = self.proc.port

    def call(self, method, path, body=None, key=None, raw=None, ctype=None,
             accept=None, timeout=30):
        st, doc = http(self.proc.base, method, path, key=key, body=body, raw=raw,
                       ctype=ctype, accept=accept, timeout=timeout, decode=decode)
        REPLIES.append((method, path.split("?")[0], st, doc, body))
        return st, doc

    def stop(self):
        self.proc.stop()

    def stop_clean(self):
        """Stop; the exit must be clean (0, no sanitizer report)."""
        self.proc.stop_clean()


def openapi_routes():
    routes, path = set(), None
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        lines = f.read().splitlines()
    for line in lines:
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path = m.group(1)
            continue
        m = re.match(r"^    (get|post|delete|put|patch):\s*$", line)
        if m and path:
            routes.add((m.group(1).upper(), path))
        if re.match(r"^\S", line):
            path = None
    return routes


class OrchestratorApi(unittest.TestCase):
    node_keys = {}   # node id -> its NodeKey, to sign its results

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = os.path.join(cls.tmp.name, "data")
        cls.admin_file = os.path.join(cls.tmp.name, "admin.key")
        cls.admin = "rza_test_" + os.urandom(16).hex()
        with open(cls.admin_file, "w") as f:
            f.write(cls.admin + "\n")
        cls.metrics_key = os.urandom(24).hex()
        cls.metrics_file = os.path.join(cls.tmp.name, "metrics.key")
        with open(cls.metrics_file, "w") as f:
            f.write(cls.metrics_key + "\n")
        cls.s = Server(cls.data, cls.admin_file, ["--metrics-key-file", cls.metrics_file])

    @classmethod
    def tearDownClass(cls):
        try:
            cls.s.stop_clean()
        finally:
            cls.tmp.cleanup()

    # helpers
    def ok(self, method, path, body=None, key=None, code=200, **kw):
        st, doc = self.s.call(method, path, body, key, **kw)
        self.assertEqual(st, code, "%s %s -> %d %r" % (method, path, st, doc))
        return doc

    def err(self, code, rz, method, path, body=None, key=None, **kw):
        st, doc = self.s.call(method, path, body, key, **kw)
        self.assertEqual(st, code, "%s %s -> %d %r" % (method, path, st, doc))
        self.assertIsInstance(doc, dict, doc)
        self.assertIn("error", doc)
        if rz:
            self.assertEqual(doc["error"]["code"], rz, doc)
        self.assertTrue(doc["error"]["message"])
        return doc

    def client(self, credits=0):
        doc = self.ok("POST", "/api/v1/accounts", {"name": "t"}, self.admin, 201)
        self.assertTrue(doc["api_key"].startswith("rzk_"))
        self.assertRegex(doc["id"], r"^[0-9a-f]{32}$")
        if credits:
            a = self.ok("POST", "/api/v1/accounts/%s/test-credits" % doc["id"],
                        {"amount_micros": credits}, self.admin)
            self.assertEqual(a["balance_micros"], credits)
        return doc["id"], doc["api_key"]

    def balance(self, key):
        a = self.ok("GET", "/api/v1/accounts/me", key=key)
        return a["balance_micros"], a["pending_micros"]

    def node(self):
        nk = NodeKey(X25519)
        doc = self.ok("POST", "/api/v1/nodes/register",
                      nk.register_body(NODE_CAPS), code=201)
        self.node_keys[doc["id"]] = nk
        self.assertTrue(doc["token"].startswith("rzn_"))
        # Tests share the server: a node must not take another test's work.
        self.addCleanup(self.s.call, "DELETE", "/api/v1/nodes/%d" % doc["id"],
                        key=self.admin)
        return doc["id"], doc["token"], doc["account"]

    # ---- tests ----
    def test_routes_match_openapi(self):
        p = run([EXE, "--routes"])
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout
        served = {tuple(l.split(" ", 1)) for l in out.splitlines() if l}
        self.assertEqual(served, openapi_routes())
        self.assertGreaterEqual(len(served), 29)

    def test_health_and_errors(self):
        doc = self.ok("GET", "/health")
        self.assertEqual(doc["status"], "ok")
        self.err(404, "RZ_ENOENT", "GET", "/api/v1/nope")
        self.err(401, "RZ_EAUTH", "GET", "/api/v1/stats")
        self.err(401, "RZ_EAUTH", "GET", "/api/v1/stats", key="rzk_" + "0" * 64)
        st = self.ok("GET", "/api/v1/stats", key=self.admin)
        self.assertIn("queue_depth", st)
        # The builder's routes answer (their shapes: ZRepliesMatchOpenapi).
        flow = "flux: 1\nname: m\nsteps:\n  s:\n    module: echo@1\n"
        self.assertTrue(self.ok("POST", "/api/v1/flows/validate", {"flow": flow},
                                self.admin)["valid"])
        self.assertEqual(self.ok("POST", "/api/v1/flows/estimate", {"flow": flow},
                                 self.admin)["steps"][0]["step"], "s")
        self.assertGreater(self.ok("GET", "/api/v1/modules?q=echo", key=self.admin)["total"], 0)
        keys = self.ok("GET", "/api/v1/keys", key=self.admin)
        self.assertRegex(keys["x25519_public_key"], r"^[0-9a-f]{64}$")
        m = self.ok("GET", "/metrics", key=self.admin)
        for name in ("rhizos_jobs{state=\"queued\"}", "rhizos_nodes{state=\"active\"}",
                     "rhizos_queue_depth", "rhizos_deployments{state=\"running\"}",
                     "rhizos_dispatch_latency_seconds_bucket{le=\"+Inf\"}",
                     "rhizos_ledger_fees_micros_total", "rhizos_ledger_held_micros",
                     "rhizos_ledger_volume_micros_total",
                     "rhizos_http_responses_total{code=\"200\"}",
                     'rhizos_jobs_finished_total{outcome="succeeded"}',
                     'rhizos_build_info{version="', "process_start_time_seconds",
                     "process_resident_memory_bytes", "process_open_fds",
                     "rhizos_audit_records_total", "rhizos_audit_seconds_total"):
            self.assertIn(name, m)
        # The admin's client creation above was audited: records and their time.
        audit = dict(l.split(" ") for l in m.splitlines() if l.startswith("rhizos_audit_"))
        self.assertGreaterEqual(int(audit["rhizos_audit_records_total"]), 2)
        self.assertGreater(float(audit["rhizos_audit_seconds_total"]), 0)

    def test_metrics_by_route_for_the_metrics_key(self):
        def count(text, line):
            for l in text.splitlines():
                if l.startswith(line + " "):
                    return int(l.rsplit(" ", 1)[1])
            return 0
        health = 'rhizos_http_requests_total{method="GET",route="/health",code="200"}'
        job404 = ('rhizos_http_requests_total{method="GET",route="/api/v1/jobs/{id}",'
                  'code="404"}')
        unmatched = 'rhizos_http_requests_total{method="any",route="unmatched",code="404"}'
        before = self.ok("GET", "/metrics", key=self.metrics_key)
        for _ in range(3):
            self.ok("GET", "/health")
        # Ids and unknown paths never become label values: one series each.
        for i in range(5):
            self.err(404, "RZ_ENOENT", "GET", "/api/v1/jobs/%d" % (900000 + i),
                     key=self.admin)
            # (under /api/: elsewhere the console answers its own paths)
            self.err(404, "RZ_ENOENT", "GET", "/api/v1/probe-%d" % i)
        after = self.ok("GET", "/metrics", key=self.metrics_key)
        self.assertEqual(count(after, health) - count(before, health), 3)
        self.assertEqual(count(after, job404) - count(before, job404), 5)
        self.assertEqual(count(after, unmatched) - count(before, unmatched), 5)
        self.assertNotIn("900000", after)
        self.assertNotIn("probe", after)
        self.assertIn('rhizos_http_request_duration_seconds_count{method="GET",'
                      'route="/health"}', after)
        # The metrics key reads metrics and nothing else.
        for method, path in (("GET", "/api/v1/stats"), ("GET", "/api/v1/jobs"),
                             ("POST", "/api/v1/accounts")):
            self.err(401, "RZ_EAUTH", method, path, {} if method == "POST" else None,
                     key=self.metrics_key)
        if not shutil.which("promtool"):
            self.skipTest("no promtool (Debian's prometheus package)")
        p = run(["promtool", "check", "metrics"], stdin=after)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_queue_cancel_refund(self):
        _, key = self.client(10000)
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo@1", "inputs":
                      {"message": "hi"}, "max_cost_micros": 700}, key, 201)
        self.assertEqual(job["status"], "queued")
        self.assertIsNone(job["node"])
        self.assertEqual(job["module"], "echo")
        self.assertEqual(job["version"], "1.0.0")
        self.assertEqual(self.balance(key), (9300, 700))
        # The default maximum is the engine's reference estimate (>= 1).
        j2 = self.ok("POST", "/api/v1/jobs", {"type": "echo"}, key, 201)
        self.assertGreaterEqual(j2["max_cost_micros"], 1)
        got = self.ok("DELETE", "/api/v1/jobs/%d" % job["id"], key=key)
        self.assertEqual(got["status"], "cancelled")
        self.err(409, "RZ_ESTATE", "DELETE", "/api/v1/jobs/%d" % job["id"], key=key)
        ref = self.ok("POST", "/api/v1/jobs/%d/refund" % job["id"], key=key)
        self.assertEqual((ref["refunded_micros"], ref["charged_micros"]), (700, 0))
        ref = self.ok("POST", "/api/v1/jobs/%d/refund" % j2["id"], key=key)
        self.assertEqual(ref["charged_micros"], 0)
        self.assertEqual(self.balance(key), (10000, 0))
        jobs = self.ok("GET", "/api/v1/jobs?limit=5", key=key)["jobs"]
        self.assertEqual([j["id"] for j in jobs], [j2["id"], job["id"]])

    def test_bad_bodies_change_nothing(self):
        acct, key = self.client(1000)
        before = (self.balance(key), self.ok("GET", "/api/v1/jobs", key=key))
        J = "/api/v1/jobs"
        cases = [
            (400, "RZ_ESYNTAX", dict(raw=b"{\"module\":", ctype="application/json")),
            (400, "RZ_ESYNTAX", dict(raw=b"[" * 50000, ctype="application/json")),
            (400, "RZ_ESYNTAX", dict(raw=b"{} trailing", ctype="application/json")),
            (400, "RZ_EINVAL", dict(raw=b"[1,2]", ctype="application/json")),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "evil": 1})),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "type": "echo"})),
            (400, "RZ_EINVAL", dict(body={"module": 7})),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "max_cost_micros": -5})),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "max_cost_micros": 1e300})),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "max_cost_micros": 1.5})),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "max_cost_micros": "9"})),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "max_cost_micros": 0})),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "priority": 2 ** 40})),
            (400, "RZ_EINVAL", dict(body={"module": "echo", "inputs": []})),
            (413, "RZ_ETOOBIG", dict(body={"module": "echo", "inputs":
                                           {"x": "a" * (MAX_BODY + 10)}})),
            (402, "RZ_EFUNDS", dict(body={"module": "echo", "max_cost_micros": 1001})),
            (422, "RZ_EMODULE", dict(body={"module": "no-such-module"})),
            (422, "RZ_EINVALID", dict(body={"module": "echo", "config": {"bogus": 1}})),
            (422, "RZ_EINVALID", dict(body={"module": "echo", "config": {"prefix": 5}})),
            # Inputs are checked against the module's, as a flow step's are.
            (422, "RZ_EINVALID", dict(body={"module": "echo", "inputs": {"mesage": "x"}})),
            (422, "RZ_EINVALID", dict(body={"module": "compare", "inputs": {}})),
            (400, "RZ_ETYPE", dict(body={"module": "compare", "inputs": {"value": "x"}})),
            (400, "RZ_ESYNTAX", dict(raw=b"\xff\x00", ctype="application/cbor")),
            (400, "RZ_ESYNTAX", dict(raw=b"\x5f\x41\x00\xff", ctype="application/cbor")),
        ]
        for code, rz, kw in cases:
            with self.subTest(code=code, rz=rz, kw=str(kw)[:80]):
                self.err(code, rz, "POST", J, key=key, **kw)
        # The first node design's job shape: refused, saying what to send.
        seed = {"requirements": {"mcp_adapter": "docker", "max_cost_cents": 100,
                                 "currency": "USDC"},
                "payload": {"type": "docker", "image": "hello-world"}}
        for body in (seed, {"module": "echo", "requirements": {"mcp_adapter": "docker"}},
                     {"module": "echo", "requirements": {"currency": "USDC"}}):
            with self.subTest(seed=body):
                doc = self.err(400, "RZ_EINVAL", "POST", J, body, key)
                msg = doc["error"]["message"]
                self.assertIn("first node design", msg)
                self.assertIn('"max_cost_micros"', msg)
                self.assertIn("1 cent = 10000", msg)
        # A body far over the limit is refused too (by the HTTP layer).
        st, _ = self.s.call("POST", J, raw=b"x" * (MAX_BODY * 5), key=key,
                            ctype="application/json")
        self.assertEqual(st, 413)
        # CBOR bodies are accepted where JSON is.
        doc = self.ok("POST", J, key=key, code=201,
                      raw=cbor_enc({"module": "echo", "max_cost_micros": 3}),
                      ctype="application/cbor")
        self.ok("DELETE", "%s/%d" % (J, doc["id"]), key=key)
        after = (self.balance(key), self.ok("GET", J, key=key))
        self.assertEqual(after[0], before[0])
        self.assertEqual(len(after[1]["jobs"]), len(before[1]["jobs"]) + 1)
        # Accounts: bad amounts and unknown fields change nothing either.
        path = "/api/v1/accounts/%s/test-credits" % acct
        self.err(400, "RZ_EINVAL", "POST", path, {"amount_micros": -1}, self.admin)
        self.err(400, "RZ_EINVAL", "POST", path, {"amount_micros": 5, "x": 1}, self.admin)
        self.err(402, "RZ_EFUNDS", "POST", "/api/v1/accounts/%s/withdraw" % acct,
                 {"amount_micros": 999999}, key)
        self.assertEqual(self.balance(key), before[0])

    def test_invalid_flow_422(self):
        _, key = self.client(1000)
        bad = "flux: 1\nname: bad\nsteps:\n  a:\n    module: no-such@1\n"
        doc = self.err(422, "RZ_EINVALID", "POST", "/api/v1/flows/deploy",
                       {"flow": bad}, key)
        self.assertTrue(doc["diagnostics"])
        for d in doc["diagnostics"]:
            for k in ("file", "line", "column", "code", "message"):
                self.assertIn(k, d)
        self.err(400, "RZ_EINVAL", "POST", "/api/v1/flows/deploy", {"flow": 5}, key)
        self.err(400, "RZ_EINVAL", "POST", "/api/v1/flows/deploy",
                 {"flow": bad, "credentials": {"k": "not base64!"}}, key)
        cred = ("flux: 1\nname: c\nsteps:\n  a:\n    module: echo@1\n"
                "    credentials:\n      token: { credentialId: tok, type: api_key }\n")
        doc = self.err(422, "RZ_EINVALID", "POST", "/api/v1/flows/deploy",
                       {"flow": cred}, key)
        # An input the flow does not declare: the message names it.
        good = "flux: 1\nname: g\nsteps:\n  a:\n    module: echo@1\n"
        doc = self.err(422, "RZ_EINVALID", "POST", "/api/v1/flows/deploy",
                       {"flow": good, "inputs": {"nope": 1}}, key)
        self.assertIn("nope", doc["error"]["message"])
        self.assertEqual(self.balance(key), (1000, 0))
        self.assertEqual(self.ok("GET", "/api/v1/flows", key=key)["flows"], [])

    def test_named_subflows_expand_at_deploy(self):
        # flow://NAME@N runs version N of the caller's own named flow: the
        # orchestrator puts its steps in at deploy (its own sub-flows named
        # too); a file, another account's flow or a missing version is a 422.
        _, key = self.client(100000)
        _, other = self.client(100000)
        shout = ("flux: 1\nname: shout\ninputs:\n  text: {type: string}\n"
                 "steps:\n  say:\n    module: echo@1\n"
                 "    inputs: {message: \"${{ inputs.text }}!\"}\n"
                 "outputs:\n  loud: \"${{ steps.say.outputs.message }}\"\n")
        made = []     # their jobs are no other test's: cancelled at the end
        self.addCleanup(lambda: [self.s.call("DELETE", "/api/v1/flows/%d" % i, key=key)
                                 for i in made])
        v1 = self.ok("POST", "/api/v1/flows/deploy", {"flow": shout, "inputs": {"text": "a"}},
                     key, 201)
        made.append(v1["id"])
        self.assertEqual(v1["version"], 1)
        v2 = self.ok("POST", "/api/v1/flows/deploy",
                     {"flow": shout.replace("}!", "}?"), "inputs": {"text": "a"}}, key, 201)
        made.append(v2["id"])
        self.assertEqual(v2["version"], 2)
        wrap = ("flux: 1\nname: wrap\ninputs:\n  t: {type: string}\nsteps:\n"
                "  inner:\n    flow: flow://shout\n    inputs: {text: \"${{ inputs.t }}\"}\n"
                "outputs:\n  loud: \"${{ steps.inner.outputs.loud }}\"\n")
        v3 = self.ok("POST", "/api/v1/flows/deploy", {"flow": wrap, "inputs": {"t": "b"}},
                     key, 201)
        made.append(v3["id"])
        top = ("flux: 1\nname: top\nsteps:\n"
               "  a:\n    flow: flow://shout@1\n    inputs: {text: hey}\n"
               "  w:\n    flow: flow://wrap\n    needs: [a]\n    inputs: {t: \"${{ steps.a.outputs.loud }}\"}\n"
               "  b:\n    module: echo@1\n    needs: [w]\n"
               "    inputs: {message: \"${{ steps.w.outputs.loud }}\"}\n")
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": top}, key, 201)
        made.append(dep["id"])
        st = self.ok("GET", "/api/v1/flows/%d/status" % dep["id"], key=key)
        self.assertEqual(sorted(st["steps"]), ["a-say", "b", "w-inner-say"])
        # Each names the sub-flow step it came from, for the console to group.
        self.assertEqual({k: s.get("group") for k, s in st["steps"].items()},
                         {"a-say": "a", "w-inner-say": "w-inner", "b": None})
        # validate and estimate read named flows the same way
        v = self.ok("POST", "/api/v1/flows/validate", {"flow": top}, key)
        self.assertTrue(v["valid"], v)
        est = self.ok("POST", "/api/v1/flows/estimate", {"flow": top}, key)
        self.assertEqual(len(est["steps"]), 3, est)
        text = self.ok("GET", "/api/v1/named-flows/%d" % dep["flow_id"], key=key)
        self.assertEqual(text["name"], "top")
        for flow, want in [
                (top.replace("@1", "@7"), "flow 'shout' has no version 7 (its latest is 2)"),
                (top.replace("@1", "@1.2"), "the version after '@' is a number"),
                (top.replace("flow://shout@1", "child.yaml"), "files are not read here"),
                (top.replace("flow://wrap", "flow://../x"), "does not start with '.'")]:
            doc = self.err(422, "RZ_EINVALID", "POST", "/api/v1/flows/deploy", {"flow": flow}, key)
            self.assertTrue(any(want in d["message"] for d in doc["diagnostics"]), doc)
        doc = self.err(422, "RZ_EINVALID", "POST", "/api/v1/flows/deploy", {"flow": top}, other)
        self.assertIn("you have no flow named 'shout'",
                      " ".join(d["message"] for d in doc["diagnostics"]))
        self.assertEqual({(d["line"], d["column"]) for d in doc["diagnostics"]},
                         {(5, 11), (8, 11)})    # each step's `flow:`

    def test_node_settlement_decline_sse(self):
        acct, key = self.client(10000)
        nid, tok, nacct = self.node()
        # Nothing to do: 204 at once with wait=0; CBOR heartbeat.
        st, _ = self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, key=tok)
        self.assertEqual(st, 204)
        st, hb = self.s.call("POST", "/api/v1/nodes/%d/heartbeat" % nid, key=tok,
                             raw=cbor_enc({"load": 0.25}), ctype="application/cbor")
        self.assertEqual((st, hb), (200, {"stop": []}))
        self.err(400, "RZ_ESYNTAX", "POST", "/api/v1/nodes/%d/heartbeat" % nid,
                 key=tok, raw=b"\xa1\x61", ctype="application/cbor")
        self.err(400, "RZ_EINVAL", "POST", "/api/v1/nodes/%d/heartbeat" % nid,
                 {"load": 7}, tok)
        # A held long-poll is woken by a submission.
        box = {}
        t = threading.Thread(target=lambda: box.update(r=self.s.call(
            "GET", "/api/v1/nodes/%d/jobs?wait=20" % nid, key=tok,
            accept="application/cbor")))
        t.start()
        time.sleep(0.3)
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo@1", "inputs":
                      {"message": "hi"}, "config": {"prefix": ">"},
                      "max_cost_micros": 1000}, key, 201)
        t.join(25)
        st, a = box["r"]
        self.assertEqual(st, 200, a)
        self.assertEqual(a["job"], job["id"])
        self.assertEqual(a["attempt"], 1)
        self.assertEqual(a["module"]["id"], "echo")
        self.assertRegex(a["module"]["digest"], r"^[0-9a-f]{64}$")
        self.assertEqual(a["request"]["inputs"], {"message": "hi"})
        self.assertEqual(a["request"]["config"]["prefix"], ">")
        self.assertEqual(a["timeout_s"], 10)
        self.assertEqual(a["credentials"], [])
        # Results for an attempt it does not hold are refused.
        R = "/api/v1/nodes/%d/jobs/%d/result" % (nid, job["id"])
        nk = self.node_keys[nid]
        self.err(409, "RZ_ESTATE", "POST", R, nk.result_body(job["id"], 2, {}), tok)
        self.err(400, "RZ_EINVAL", "POST", R, {"attempt": 1, "outputs": {},
                 "error": "x", "run_ms": 1}, tok)
        # 3 s on 1 core at 36000 micros/hour: 30 micros; fee 5% (1.5 -> 2). The
        # server bills no more than it measured from the hand-over to the
        # result, so the run takes 3 s here.
        time.sleep(3.05)
        self.ok("POST", R, nk.result_body(job["id"], 1, {"message": ">hi"},
                run_ms=3000, log="hello log"), tok)
        self.ok("POST", R, nk.result_body(job["id"], 1, {"message": ">hi"},
                run_ms=3000), tok)   # an exact repeat
        got = self.ok("GET", "/api/v1/jobs/%d" % job["id"], key=key)
        self.assertEqual(got["status"], "succeeded")
        self.assertEqual(got["cost_micros"], 30)
        self.assertEqual(got["outputs"], {"message": ">hi"})
        self.assertEqual(got["log"], "hello log")
        self.assertEqual(got["node"], nid)
        self.assertEqual(self.balance(key), (9970, 0))
        n = self.ok("GET", "/api/v1/accounts/%s" % nacct, key=tok)
        self.assertEqual((n["kind"], n["balance_micros"]), ("node", 28))   # fee 1.5 -> 2
        ref = self.ok("POST", "/api/v1/jobs/%d/refund" % job["id"], key=key)
        self.assertEqual((ref["refunded_micros"], ref["charged_micros"]), (970, 30))
        pays = self.ok("GET", "/api/v1/accounts/%s/payments" % acct, key=key)["payments"]
        self.assertIn("settle", [p["kind"] for p in pays])
        self.assertTrue(any(p.get("job") == job["id"] for p in pays))
        stats = self.ok("GET", "/api/v1/payments/stats", key=self.admin)
        self.assertGreaterEqual(stats["fees_micros"], 1)
        self.assertGreaterEqual(stats["volume_micros"], 30)

        # Decline: the job goes back and never to this node again.
        j2 = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 50},
                     key, 201)
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, key=tok)
        self.assertEqual(a["job"], j2["id"])
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/decline" % (nid, j2["id"]),
                {"attempt": 1, "reason": "digest differs"}, tok)
        st, _ = self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, key=tok)
        self.assertEqual(st, 204)
        self.assertEqual(self.ok("GET", "/api/v1/jobs/%d" % j2["id"], key=key)["status"],
                         "queued")
        self.ok("DELETE", "/api/v1/jobs/%d" % j2["id"], key=key)

        # A deployment's live stream: status now, status on change, end.
        flow = ("flux: 1\nname: one\nsteps:\n  say:\n    module: echo@1\n"
                "    inputs:\n      message: hello\n")
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, key, 201)
        self.assertEqual(dep["status"], "running")
        self.assertGreaterEqual(dep["held_micros"], 1)
        c = HTTPConnection("127.0.0.1", self.s.port, timeout=20)
        c.request("GET", "/api/v1/flows/%d/events" % dep["id"],
                  headers={"Authorization": "Bearer " + key})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn("text/event-stream", r.getheader("Content-Type"))
        first = r.readline().decode()
        self.assertEqual(first, "event: status\n")
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        self.assertEqual(a["step"], "say")
        self.assertEqual(a["deployment"], dep["id"])
        time.sleep(3.65)   # 3.6 s billed: never more than the server measured
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]),
                nk.result_body(a["job"], a["attempt"], {"message": "hello"},
                               run_ms=3600), tok)
        rest = r.read().decode()   # the server closes the stream at the end
        c.close()
        step_job = self.ok("GET", "/api/v1/jobs/%d" % a["job"], key=key)
        self.assertEqual((step_job["node_id"], step_job["result_verified"]),
                         (nid, True), step_job)
        self.assertIn("event: end\n", rest)
        end = rest.split("event: end\ndata: ", 1)[1].split("\n", 1)[0]
        self.assertEqual(json.loads(end)["status"], "succeeded")
        st = self.ok("GET", "/api/v1/flows/%d/status" % dep["id"], key=key)
        self.assertEqual(st["steps"]["say"]["status"], "succeeded")
        self.assertEqual(st["charged_micros"], min(10, st["held_micros"]))
        self.err(409, "RZ_ESTATE", "DELETE", "/api/v1/flows/%d" % dep["id"], key=key)
        flows = self.ok("GET", "/api/v1/flows", key=key)["flows"]
        self.assertEqual(flows[0], {"id": dep["id"], "flow": "one", "status": "succeeded"})

    def test_sse_changes(self):
        """?changes=1: the status once, then one "step" event per changed
        step with an id; a stream resumed with Last-Event-ID gets only what
        changed since; an id of another run (or none) gets the status."""
        _, key = self.client(1000)
        nid, tok, _ = self.node()
        nk = self.node_keys[nid]
        flow = ("flux: 1\nname: three\nsteps:\n"
                "  a: {module: echo@1}\n"
                "  b: {module: echo@1, needs: [a]}\n"
                "  c: {module: echo@1, needs: [a]}\n")
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, key, 201)["id"]
        # A malformed query string is a 400, as on every other route.
        st, doc = self.s.call("GET", "/api/v1/flows/%d/events?changes" % dep, key=key)
        self.assertEqual(st, 400, doc)
        self.assertIn("malformed query string", doc["error"]["message"])

        def stream(headers=None, query="?changes=1"):
            c = HTTPConnection("127.0.0.1", self.s.port, timeout=20)
            h = {"Authorization": "Bearer " + key}
            h.update(headers or {})
            c.request("GET", "/api/v1/flows/%d/events%s" % (dep, query), headers=h)
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            return c, r

        def next_event(r):
            ev = {}
            while True:
                line = r.readline().decode()
                self.assertTrue(line, "the stream ended early")
                if line == "\n" and "event" in ev:
                    return ev
                if line.startswith(":"):
                    continue
                k, _, v = line.rstrip("\n").partition(": ")
                ev[k] = v

        def finish(step_job):
            a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
            self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]),
                    nk.result_body(a["job"], a["attempt"], {"message": "x"},
                                   run_ms=1), tok)
            return a["step"]

        c, r = stream()
        first = next_event(r)
        self.assertEqual(first["event"], "status")
        self.assertRegex(first["id"], r"^[0-9]+-[0-9]+$")
        self.assertEqual(json.loads(first["data"])["steps"]["a"]["status"], "running")
        self.assertEqual(finish(None), "a")
        seen, last = {}, first["id"]
        while not ("b" in seen and "c" in seen and seen.get("a") == "succeeded"):
            ev = next_event(r)
            self.assertEqual(ev["event"], "step")
            d = json.loads(ev["data"])
            self.assertEqual(set(d) >= {"step", "status", "attempts", "job",
                                        "job_status", "dispatches"}, True, d)
            seen[d["step"]] = d["status"]
            last = ev.get("id", last)
        c.close()
        self.assertNotEqual(last, first["id"])
        # Resumed: what changed since (the step just finished among it),
        # no whole status first.
        done = finish(None)
        c, r = stream({"Last-Event-ID": last}, query="")
        while True:
            ev = next_event(r)
            self.assertEqual(ev["event"], "step", ev)
            d = json.loads(ev["data"])
            if d["step"] == done and d["status"] == "succeeded":
                break
        c.close()
        # An id of another run: the whole status again.
        c, r = stream({"Last-Event-ID": "1-5"}, query="")
        self.assertEqual(next_event(r)["event"], "status")
        finish(None)
        ev = next_event(r)
        while ev["event"] == "step":
            ev = next_event(r)
        self.assertEqual(ev["event"], "end")
        self.assertEqual(json.loads(ev["data"])["status"], "succeeded")
        c.close()

    def test_disconnects(self):
        """A poll or stream whose client went away is never answered into
        the void: the work waits for the node's next poll."""
        _, key = self.client(1000)
        nid, tok, _ = self.node()
        raw = ("GET /api/v1/nodes/%d/jobs?wait=30 HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (nid, tok)).encode()
        sock = socket.create_connection(("127.0.0.1", self.s.port))
        sock.sendall(raw)
        time.sleep(0.3)
        sock.close()
        time.sleep(0.3)
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 9},
                      key, 201)
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, key=tok)
        self.assertEqual(a["job"], job["id"])
        flow = "flux: 1\nname: d\nsteps:\n  s:\n    module: echo@1\n"
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, key, 201)["id"]
        sock = events_socket(self.s.port, dep, key)
        self.assertIn(b"event: status", sock.recv(65536))
        sock.close()
        time.sleep(0.3)
        self.ok("DELETE", "/api/v1/flows/%d" % dep, key=key)
        self.ok("DELETE", "/api/v1/jobs/%d" % job["id"], key=key)
        self.assertEqual(self.ok("GET", "/health")["status"], "ok")

    def test_credentials_resealed(self):
        if not LIB:
            self.skipTest("no librhizos given")
        # A sanitizer-built library cannot be loaded into a plain python
        # (it may even abort it): probe in a child first.
        probe = run([sys.executable, "-c", "import ctypes,sys; "
                     "ctypes.CDLL(sys.argv[1])", LIB])
        if probe.returncode != 0:
            self.skipTest("librhizos cannot be loaded into this python "
                          "(sanitizer build)")
        lib = ctypes.CDLL(LIB)
        u8 = ctypes.c_ubyte * 32
        npk, nsk = u8(), u8()
        self.assertEqual(lib.rz_vault_node_keypair(npk, nsk), 0)
        opk = u8(*bytes.fromhex(self.ok("GET", "/api/v1/keys", key=self.admin)
                                ["x25519_public_key"]))
        now = int(time.time() * 1000)

        def seal(value, cid):
            out, n = ctypes.c_void_p(), ctypes.c_size_t()
            self.assertEqual(lib.rz_vault_seal_value(
                ctypes.byref(out), ctypes.byref(n), value, ctypes.c_size_t(len(value)),
                b"orchestrator", cid, ctypes.c_uint64(now + 600000), opk), 0)
            blob = ctypes.string_at(out, n.value)
            lib.rz_free(out)
            return blob
        sealed = seal(b"s3cret", b"openai")
        # Another credential whose id differs only in case, listed first:
        # ids are case-sensitive, so it must not stand in for "openai".
        decoy = seal(b"decoy!", b"OpenAI")
        _, key = self.client(1000)
        reg = self.ok("POST", "/api/v1/nodes/register",
                      NodeKey(bytes(npk).hex()).register_body(NODE_CAPS), code=201)
        self.addCleanup(self.s.call, "DELETE", "/api/v1/nodes/%d" % reg["id"],
                        key=self.admin)
        with open(os.path.join(ROOT, "tests", "e2e", "secret_flow.yaml")) as f:
            flow = f.read()
        self.err(422, "RZ_EINVALID", "POST", "/api/v1/flows/deploy", {"flow": flow}, key)
        import base64
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow, "credentials":
                      {"OpenAI": base64.b64encode(decoy).decode(),
                       "openai": base64.b64encode(sealed).decode()}}, key, 201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % reg["id"], key=reg["token"])
        self.assertEqual(a["deployment"], dep)
        self.assertEqual(len(a["credentials"]), 1)
        c = a["credentials"][0]
        self.assertEqual((c["field"], c["credential_id"]), ("api", "openai"))
        blob = base64.b64decode(c["sealed"])
        self.assertNotEqual(blob, sealed)
        secret, cid = ctypes.c_void_p(), ctypes.c_char_p()
        lib.rz_secret_data.restype = ctypes.c_void_p
        lib.rz_secret_len.restype = ctypes.c_size_t
        rc = lib.rz_vault_unseal(ctypes.byref(secret), None, blob, ctypes.c_size_t(len(blob)),
                                 npk, nsk, str(a["job"]).encode(), ctypes.c_uint64(0))
        self.assertEqual(rc, 0)
        got = ctypes.string_at(lib.rz_secret_data(secret), lib.rz_secret_len(secret))
        lib.rz_secret_free(secret)
        self.assertEqual(got, b"s3cret")
        # Sealed for this job only.
        rc = lib.rz_vault_unseal(ctypes.byref(secret), None, blob, ctypes.c_size_t(len(blob)),
                                 npk, nsk, b"999999", ctypes.c_uint64(0))
        self.assertNotEqual(rc, 0)
        self.ok("DELETE", "/api/v1/flows/%d" % dep, key=key)
        # A flow running it by name (flow://secret-use@1) brings no
        # credentials: its step keeps those that version was deployed with.
        wrap = "flux: 1\nname: wrap-secret\nsteps:\n  inner: {flow: 'flow://secret-use@1'}\n"
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": wrap}, key, 201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % reg["id"], key=reg["token"])
        self.assertEqual((a["deployment"], a["step"]), (dep, "inner-call"))
        c = a["credentials"][0]
        self.assertEqual((c["field"], c["credential_id"]), ("api", "openai"))
        blob = base64.b64decode(c["sealed"])
        rc = lib.rz_vault_unseal(ctypes.byref(secret), None, blob, ctypes.c_size_t(len(blob)),
                                 npk, nsk, str(a["job"]).encode(), ctypes.c_uint64(0))
        self.assertEqual(rc, 0)
        got = ctypes.string_at(lib.rz_secret_data(secret), lib.rz_secret_len(secret))
        lib.rz_secret_free(secret)
        self.assertEqual(got, b"s3cret")
        self.ok("DELETE", "/api/v1/flows/%d" % dep, key=key)
        # another account's flow of that name is not theirs to run
        _, other = self.client(1000)
        self.err(422, "RZ_EINVALID", "POST", "/api/v1/flows/deploy", {"flow": wrap}, other)
        # Stored once (PUT /api/v1/credentials/openai), named by id only:
        # the node gets the stored value, sealed for its job.
        self.err(400, "RZ_EINVAL", "PUT", "/api/v1/credentials/openai",
                 {"type": "llm_api", "sealed": base64.b64encode(decoy).decode()}, other)
        st = self.ok("PUT", "/api/v1/credentials/openai",
                     {"type": "llm_api", "sealed": base64.b64encode(seal(b"st0red", b"openai"))
                      .decode()}, other)
        self.assertEqual((st["id"], st["type"]), ("openai", "llm_api"))
        self.assertEqual(self.ok("GET", "/api/v1/credentials", key=other)["credentials"], [st])
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, other, 201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % reg["id"], key=reg["token"])
        self.assertEqual(a["deployment"], dep)
        blob = base64.b64decode(a["credentials"][0]["sealed"])
        rc = lib.rz_vault_unseal(ctypes.byref(secret), None, blob, ctypes.c_size_t(len(blob)),
                                 npk, nsk, str(a["job"]).encode(), ctypes.c_uint64(0))
        self.assertEqual(rc, 0)
        got = ctypes.string_at(lib.rz_secret_data(secret), lib.rz_secret_len(secret))
        lib.rz_secret_free(secret)
        self.assertEqual(got, b"st0red")
        self.ok("DELETE", "/api/v1/flows/%d" % dep, key=other)
        # At most 256 per account: a new id past them is refused, a
        # replacement is not.
        for i in range(255):
            cid = b"c%03d" % i
            self.ok("PUT", "/api/v1/credentials/" + cid.decode(),
                    {"type": "t", "sealed": base64.b64encode(seal(b"v", cid)).decode()}, other)
        self.err(409, "RZ_ESTATE", "PUT", "/api/v1/credentials/more",
                 {"type": "t", "sealed": base64.b64encode(seal(b"v", b"more")).decode()}, other)
        self.ok("PUT", "/api/v1/credentials/openai",
                {"type": "llm_api", "sealed": base64.b64encode(seal(b"again", b"openai"))
                 .decode()}, other)
        self.assertEqual(len(self.ok("GET", "/api/v1/credentials", key=other)["credentials"]), 256)
        self.assertEqual(self.ok("DELETE", "/api/v1/credentials/openai", key=other), {})
        self.err(404, "RZ_ENOENT", "DELETE", "/api/v1/credentials/openai", None, other)

    def test_whoami_and_step_needs(self):
        acct, key = self.client(5000)
        nid, tok, nacct = self.node()
        self.assertEqual(self.ok("GET", "/api/v1/whoami", key=key),
                         {"role": "client", "account": acct, "node": None})
        self.assertEqual(self.ok("GET", "/api/v1/whoami", key=tok),
                         {"role": "node", "account": nacct, "node": nid})
        me = self.ok("GET", "/api/v1/whoami", key=self.admin)
        self.assertEqual(me, {"role": "admin", "account": None, "node": None})
        self.assertNotIn(self.admin, json.dumps(me))
        self.err(401, None, "GET", "/api/v1/whoami", key="rzk_" + "0" * 64)
        # The status carries each step's module and what it waits for: a
        # viewer with nothing but the status draws the edges.
        flow = ("flux: 1\nname: shape\nsteps:\n  a:\n    module: echo@1\n"
                "    inputs:\n      message: hi\n  b:\n    module: echo@1\n"
                "    needs: a\n    inputs:\n      message: ${{ steps.a.outputs.message }}\n"
                "  c:\n    module: echo@1\n    needs: [b]\n"
                "    inputs:\n      message: ${{ steps.a.outputs.message }}\n")
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, key, 201)["id"]
        self.addCleanup(self.s.call, "DELETE", "/api/v1/flows/%d" % dep, key=self.admin)
        st = self.ok("GET", "/api/v1/flows/%d/status" % dep, key=key)
        self.assertEqual({k: v["needs"] for k, v in st["steps"].items()},
                         {"a": [], "b": ["a"], "c": ["a", "b"]})   # c reads a, needs b
        self.assertEqual({v["module"] for v in st["steps"].values()}, {"echo"})

    def test_auth_matrix(self):
        acct_a, key_a = self.client(5000)
        acct_b, key_b = self.client(5000)
        nid, tok, nacct = self.node()
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 20},
                      key_a, 201)["id"]
        flow = "flux: 1\nname: m\nsteps:\n  s:\n    module: echo@1\n"
        deployed = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, key_a, 201)
        dep, fid = deployed["id"], deployed["flow_id"]
        self.addCleanup(self.s.call, "DELETE", "/api/v1/jobs/%d" % job, key=self.admin)
        self.addCleanup(self.s.call, "DELETE", "/api/v1/flows/%d" % dep, key=self.admin)
        dreq = self.ok("POST", "/api/v1/accounts/%s/deposit" % acct_a,
                       {"amount_micros": 5}, key_a, 201)["deposit_id"]
        wreq = self.ok("POST", "/api/v1/accounts/%s/withdraw" % acct_a,
                       {"amount_micros": 7}, key_a, 201)["withdrawal_id"]
        before_a, before_b = self.balance(key_a), self.balance(key_b)
        # Who may use each route; everyone else must fail. Ids are A's (a
        # client), the node's own, or A's deposit.
        C, A, N, M, ANY = "client", "admin", "node", "metrics", "anyone"
        allowed = {
            ("GET", "/health"): {ANY},
            ("GET", "/metrics"): {A, M},
            ("GET", "/api/v1/stats"): {C, A, N},
            ("GET", "/api/v1/keys"): {C, A, N},
            ("GET", "/api/v1/identity"): {ANY},
            ("GET", "/api/v1/nodes"): {C, A},
            ("POST", "/api/v1/nodes/register"): {ANY},
            ("POST", "/api/v1/nodes/retire"): {ANY},
            ("POST", "/api/v1/nodes/{id}/retire"): {A},
            ("POST", "/api/v1/nodes/{id}/heartbeat"): {N},
            ("GET", "/api/v1/nodes/{id}/jobs"): {N},
            ("POST", "/api/v1/nodes/{id}/jobs/{job}/result"): {N},
            ("POST", "/api/v1/nodes/{id}/jobs/{job}/decline"): {N},
            ("POST", "/api/v1/nodes/{id}/jobs/{job}/log"): {N},
            ("POST", "/api/v1/nodes/{id}/jobs/{job}/events"): {N},
            ("DELETE", "/api/v1/nodes/{id}"): {N, A},
            ("GET", "/api/v1/nodes/{id}/challenge"): {N, A},
            ("POST", "/api/v1/nodes/{id}/challenge"): {N},
            ("POST", "/api/v1/jobs"): {C},
            ("GET", "/api/v1/jobs"): {C, A},
            ("GET", "/api/v1/models"): {C, A},
            ("GET", "/api/v1/jobs/{id}"): {A},
            ("DELETE", "/api/v1/jobs/{id}"): {A},
            ("POST", "/api/v1/jobs/{id}/refund"): {A},
            ("POST", "/api/v1/accounts"): {A},
            ("GET", "/api/v1/accounts/{id}"): {A},
            ("POST", "/api/v1/accounts/{id}/deposit"): set(),
            ("POST", "/api/v1/accounts/{id}/test-credits"): {A},
            ("POST", "/api/v1/accounts/{id}/withdraw"): set(),
            ("GET", "/api/v1/accounts/{id}/payments"): {A},
            ("GET", "/api/v1/accounts/{id}/withdrawals"): {A},
            ("GET", "/api/v1/withdrawals"): {A},
            ("GET", "/api/v1/withdrawals/{id}"): {A},
            ("POST", "/api/v1/withdrawals/{id}/complete"): {A},
            ("POST", "/api/v1/withdrawals/{id}/fail"): {A},
            ("POST", "/api/v1/withdrawals/{id}/cancel"): set(),
            ("GET", "/api/v1/payments/stats"): {A},
            ("POST", "/api/v1/deposits/{id}/confirm"): {A},
            ("DELETE", "/api/v1/deposits/{id}"): {A},
            ("POST", "/api/v1/flows/deploy"): {C},
            ("GET", "/api/v1/flows"): {C, A},
            ("GET", "/api/v1/flows/{id}/status"): {A},
            ("GET", "/api/v1/flows/{id}/events"): {A},
            ("GET", "/api/v1/flows/{id}/logs"): {A},
            ("DELETE", "/api/v1/flows/{id}"): {A},
            ("GET", "/api/v1/named-flows"): {C, A},
            ("GET", "/api/v1/named-flows/{id}"): {A},
            ("POST", "/api/v1/named-flows/{id}/rollback"): {A},
            ("POST", "/api/v1/hooks/{flow}/{name}"): {ANY},
            ("POST", "/api/v1/flows/{id}/pause"): {A},
            ("POST", "/api/v1/flows/{id}/resume"): {A},
            ("POST", "/api/v1/flows/{id}/steps/{step}/approve"): {A},
            ("POST", "/api/v1/flows/{id}/steps/{step}/reject"): {A},
            ("POST", "/api/v1/events"): {C},
            ("GET", "/api/v1/named-flows/{id}/diff"): {A},
            ("POST", "/api/v1/flows/validate"): {C, A},
            ("POST", "/api/v1/flows/estimate"): {C, A},
            ("GET", "/api/v1/modules"): {C, A},
            ("GET", "/api/v1/whoami"): {C, A, N},
            ("DELETE", "/api/v1/cache"): {C},
            ("POST", "/api/v1/named-flows/{id}/triggers/{name}/disable"): {A},
            ("POST", "/api/v1/named-flows/{id}/triggers/{name}/enable"): {A},
            ("GET", "/api/v1/credentials"): {C},
            ("PUT", "/api/v1/credentials/{id}"): {C},
            ("DELETE", "/api/v1/credentials/{id}"): {C},
            # A's job is on no node and has no files: nobody reads or
            # uploads one for it.
            ("PUT", "/api/v1/blobs/{sha256}"): set(),
            ("GET", "/api/v1/blobs/{sha256}"): set(),
        }
        self.assertEqual(set(allowed), openapi_routes())
        bodies = {"/api/v1/jobs": {"module": "echo", "max_cost_micros": 1},
                  "/api/v1/flows/deploy": {"flow": flow},
                  "/api/v1/flows/validate": {"flow": flow},
                  "/api/v1/flows/estimate": {"flow": flow},
                  "/api/v1/accounts": {},
                  "/api/v1/withdrawals/{id}/complete": {"tx": "t"},
                  "/api/v1/withdrawals/{id}/fail": {},
                  "/api/v1/named-flows/{id}/rollback": {"version": 1},
                  "/api/v1/events": {"event": "e"},
                  "/api/v1/withdrawals/{id}/cancel": None,
                  "/api/v1/nodes/register": NodeKey(X25519).register_body(NODE_CAPS)}
        keys = {"none": None, "bad": "rzk_" + "f" * 64, "other": key_b,
                "node": tok, "admin": self.admin, "metrics": self.metrics_key}
        kind = {"none": None, "bad": None, "other": C, "node": N, "admin": A,
                "metrics": M}
        for (method, path), who in sorted(allowed.items()):
            if ANY in who:
                continue
            if path.startswith("/api/v1/accounts/{id}"):
                concrete = path.replace("{id}", acct_a)
            elif path.startswith("/api/v1/deposits"):
                concrete = path.replace("{id}", dreq)
            elif path.startswith("/api/v1/withdrawals"):
                concrete = path.replace("{id}", wreq)
            elif path.startswith("/api/v1/nodes/{id}"):
                concrete = path.replace("{id}", str(nid)).replace("{job}", str(job))
            elif path.startswith("/api/v1/flows/{id}"):
                concrete = path.replace("{id}", str(dep)).replace("{step}", "s")
            elif path.startswith("/api/v1/named-flows/{id}"):
                concrete = path.replace("{id}", str(fid))
            elif path.startswith("/api/v1/blobs"):
                concrete = path.replace("{sha256}", "ab" * 32) + \
                    "?job=%d&offset=0&size=1" % job
            else:
                concrete = path.replace("{id}", str(job))
            body = bodies.get(path, {"amount_micros": 1, "attempt": 1, "run_ms": 1,
                                     "outputs": {}}) if method == "POST" else None
            if path.endswith("/decline"):
                body = {"attempt": 1}
            if path.endswith("/log"):
                body = {"attempt": 1, "offset": 0, "lines": "x\n"}
            if path.endswith("/heartbeat"):
                body = {"load": 0.5}
            for name, k in keys.items():
                if kind[name] in who:
                    continue
                with self.subTest(route=f"{method} {path}", who=name):
                    st, doc = self.s.call(method, concrete, body, k, timeout=10)
                    if name in ("none", "bad", "metrics"):
                        self.assertEqual(st, 401, doc)
                    else:
                        self.assertIn(st, (403, 404), doc)
                    self.assertIn("error", doc)
        # B's lists hold nothing of A's; nothing moved.
        self.assertNotIn(job, [j["id"] for j in
                               self.ok("GET", "/api/v1/jobs", key=key_b)["jobs"]])
        self.assertNotIn(dep, [f["id"] for f in
                               self.ok("GET", "/api/v1/flows", key=key_b)["flows"]])
        self.assertEqual(self.balance(key_a), before_a)
        self.assertEqual(self.balance(key_b), before_b)
        self.assertEqual(self.ok("GET", "/api/v1/jobs/%d" % job, key=key_a)["status"],
                         "queued")
        # The admin confirms the deposit (twice: idempotent).
        for _ in range(2):
            d = self.ok("POST", "/api/v1/deposits/%s/confirm" % dreq, key=self.admin)
            self.assertEqual(d["status"], "confirmed")
        self.assertEqual(self.balance(key_a)[0], before_a[0] + 5)
        # Still pending after all that; its owner takes it back.
        w = self.ok("GET", "/api/v1/withdrawals/%s" % wreq, key=key_a)
        self.assertEqual((w["status"], w["amount_micros"]), ("pending", 7))
        self.ok("POST", "/api/v1/withdrawals/%s/cancel" % wreq, key=key_a)
        self.assertEqual(self.balance(key_a)[0], before_a[0] + 5 + 7)


class Lifecycle(unittest.TestCase):
    def test_sigterm_answers_held_poll_and_restart_keeps_state(self):
        with tempfile.TemporaryDirectory() as tmp:
            admin_file = os.path.join(tmp, "admin.key")
            with open(admin_file, "w") as f:
                f.write("rza_lifecycle_key_0123456789abcdef\n")
            data = os.path.join(tmp, "data")
            s = Server(data, admin_file)
            try:
                # A second server on the same data fails clearly.
                other = run(
                    [EXE, "--listen", "127.0.0.1:%d" % free_port(), "--data", data,
                     "--admin-key-file", admin_file], timeout=30)
                self.assertEqual(other.returncode, 1)
                self.assertIn("another orchestrator", other.stderr)
                # The port taken: a clear error too.
                taken = run(
                    [EXE, "--listen", "127.0.0.1:%d" % s.port, "--data",
                     os.path.join(tmp, "d2"), "--admin-key-file", admin_file],
                    timeout=30)
                self.assertEqual(taken.returncode, 1)
                self.assertIn("cannot listen", taken.stderr)
                self.assertNotIn("rza_lifecycle_key_0123456789abcdef", taken.stderr + other.stderr)
                doc = s.call("POST", "/api/v1/accounts", {}, "rza_lifecycle_key_0123456789abcdef")[1]
                s.call("POST", "/api/v1/accounts/%s/test-credits" % doc["id"],
                       {"amount_micros": 77}, "rza_lifecycle_key_0123456789abcdef")
                reg = s.call("POST", "/api/v1/nodes/register",
                             NodeKey(X25519).register_body(NODE_CAPS))[1]
                box = {}
                t = threading.Thread(target=lambda: box.update(r=s.call(
                    "GET", "/api/v1/nodes/%d/jobs?wait=30" % reg["id"],
                    key=reg["token"])))
                t.start()
                time.sleep(0.5)
                t0 = time.time()
                s.proc.p.send_signal(signal.SIGTERM)
                t.join(20)
                self.assertEqual(box["r"][0], 204)
                self.assertEqual(s.proc.p.wait(20), 0)
                self.assertLess(time.time() - t0, 15)
            finally:
                s.stop()
            s = Server(data, admin_file)
            try:
                st, acct = s.call("GET", "/api/v1/accounts/me", key=doc["api_key"])
                self.assertEqual((st, acct["balance_micros"]), (200, 77))
            finally:
                s.stop_clean()


class ZRepliesMatchOpenapi(unittest.TestCase):
    """Last (by name): every reply the tests above got has its status
    documented for its operation and matches the documented schema."""

    def test_replies_match_schemas(self):
        import openapi_check
        if openapi_check.available():
            self.skipTest(openapi_check.available())
        self.assertGreater(len(REPLIES), 100)
        problems = openapi_check.problems(ROOT, REPLIES)
        self.assertEqual(problems, [], "\n".join(problems[:40]))

    def test_typescript_client_types_fit_replies(self):
        """The types openapi-typescript makes from the document take every
        reply (tsc --strict): no field undocumented, none of a wrong type."""
        import openapi_check
        with tempfile.TemporaryDirectory() as work:
            problems = openapi_check.typescript_problems(ROOT, REPLIES, work)
        if problems is None:
            self.skipTest("no openapi-typescript: run `npm ci` in tools/openapi")
        self.assertEqual(problems, [], "\n".join(problems))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
