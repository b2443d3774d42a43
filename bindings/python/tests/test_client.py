"""rhizos.Client against a fake orchestrator serving docs/api.md shapes."""
import base64
import gc
import json
import os
import shutil
import tempfile
import socket
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import rhizos
from rhizos import errors

from helpers import flow_path, node_keypair, unseal

KEY = "rzk_test"
WITHDRAWAL = {"id": "0" * 31 + "b", "account": "0" * 31 + "a", "amount_micros": 834,
              "status": "completed", "seq": 3, "address": "0xabc", "tx": "0xfeed"}
ACCOUNT = {"id": "0" * 31 + "a", "kind": "client", "balance_micros": 1000,
           "pending_micros": 0, "credits_micros": 1000, "debits_micros": 0}


def job_doc(job, status="queued", **extra):
    doc = {"id": job, "status": status, "attempt": 0, "node": None, "module": "text-source",
           "version": "1.0.0", "deployment": None, "step": None, "priority": 0,
           "max_cost_micros": 1000, "cost_micros": 0, "run_ms": 0, "outputs": None,
           "error": None, "waiting_reason": "no active node", "node_id": None}
    doc.update(extra)
    return doc


def status_doc(dep, status, outputs=None):
    return {"id": dep, "flow": "wordcount", "status": status,
            "steps": {"merge": {"status": status, "attempts": 1,
                                "outputs": outputs or {}, "job": 3}},
            "outputs": {"merge": outputs} if outputs else {},
            "held_micros": 0, "charged_micros": 4}


class Fake(BaseHTTPRequestHandler):
    """Routes: deploy (201, or 422 with diagnostics when the flow says
    "broken"), status 7, events 7 (status, status, end), events 8 (a status
    every 20 ms until the client goes), cancel 7 (409), accounts/me, and 401
    without the key."""
    protocol_version = "HTTP/1.1"
    server_version = "fake-orchestrator"
    log = []
    pk = sk = b""           # the orchestrator's X25519 key pair
    key_asks = 0

    def log_message(self, *a):
        pass

    def reply(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, name, msg, **extra):
        self.reply(code, dict({"error": {"code": name, "message": msg}}, **extra))

    def authed(self):
        if self.headers.get("Authorization") != "Bearer " + KEY:
            self.error(401, "RZ_EAUTH", "missing or unknown API key")
            return False
        return True

    def do_GET(self):
        if not self.authed():
            return
        if self.path == "/api/v1/accounts/me":
            self.reply(200, ACCOUNT)
        elif self.path == "/api/v1/accounts/me/withdrawals":
            self.reply(200, {"withdrawals": [WITHDRAWAL]})
        elif self.path == "/api/v1/flows/7/status":
            self.reply(200, status_doc(7, "running"))
        elif self.path == "/api/v1/flows/7/events":
            self.sse([("status", status_doc(7, "running")),
                      ("status", status_doc(7, "running")),
                      ("end", status_doc(7, "succeeded", {"top": [["to", 2]]}))])
        elif self.path == "/api/v1/flows/8/events":
            self.sse_forever()
        elif self.path == "/api/v1/flows/9/events":
            self.sse_raw(b"event: status\ndata: {not json\n\n")
        elif self.path == "/api/v1/jobs/5":
            self.reply(200, job_doc(5, "succeeded", node=2, node_id=2, attempt=1,
                                    outputs={"text": "hi", "length": 2}, run_ms=40,
                                    cost_micros=7, waiting_reason=None))
        elif self.path == "/api/v1/jobs/6":
            self.reply(200, job_doc(6, status=3))          # not a job the API sends
        elif self.path.split("?")[0] == "/api/v1/jobs":
            Fake.log.append(self.path)
            self.reply(200, {"jobs": [job_doc(6), job_doc(5, "succeeded")]})
        elif self.path == "/api/v1/stats":
            self.reply(200, {"queue_depth": 0})
        elif self.path == "/api/v1/keys":
            Fake.key_asks += 1
            self.reply(200, {"x25519_public_key": Fake.pk.hex()})
        else:
            self.error(404, "RZ_ENOENT", "no such route")

    def do_POST(self):
        if not self.authed():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Fake.log.append(body)
        if self.path == "/api/v1/accounts/me/withdraw":
            self.reply(201, {"withdrawal_id": WITHDRAWAL["id"],
                             "amount_micros": body["amount_micros"], "status": "pending"})
        elif self.path == "/api/v1/jobs":
            if "image" in body:
                self.reply(201, job_doc(9, module="", image=body["image"],
                                        command=body.get("command")))
            else:
                self.reply(201, job_doc(8, module=body["module"].split("@")[0]))
        elif self.path != "/api/v1/flows/deploy":
            self.error(404, "RZ_ENOENT", "no such route")
        elif "broken" in json.dumps(body["flow"]):
            self.error(422, "RZ_EINVALID", "the flow is not valid",
                       diagnostics=[{"file": "flow.yaml", "line": 3, "column": 5,
                                     "code": "RZ_EMODULE", "message": "unknown module nope"}])
        elif body.get("inputs", {}).get("text") == "poor":
            self.error(402, "RZ_EFUNDS", "balance too low")
        else:
            self.reply(201, {"id": 7, "status": "running", "held_micros": 12})

    def do_DELETE(self):
        if not self.authed():
            return
        if self.path == "/api/v1/jobs/8":
            self.reply(200, job_doc(8, "cancelled", waiting_reason=None))
            return
        self.error(409, "RZ_ESTATE", "deployment 7 has finished")

    def sse_head(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def sse(self, events):
        self.sse_head()
        for name, doc in events:
            self.wfile.write(("event: %s\ndata: %s\n\n" % (name, json.dumps(doc))).encode())
            self.wfile.flush()

    def sse_raw(self, raw):
        self.sse_head()
        self.wfile.write(raw)

    def sse_forever(self):
        self.sse_head()
        Fake.forever_open += 1
        try:
            while True:
                self.wfile.write(("event: status\ndata: %s\n\n"
                                  % json.dumps(status_doc(8, "running"))).encode())
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:
            pass
        finally:
            Fake.forever_open -= 1

    forever_open = 0


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TestClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
        cls.server.daemon_threads = True
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.url = "http://127.0.0.1:%d" % cls.server.server_address[1]
        Fake.pk, Fake.sk = node_keypair()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def client(self, key=KEY):
        c = rhizos.Client(self.url, key, timeout=10)
        self.addCleanup(c.close)
        return c

    def test_deploy_status_balance(self):
        c = self.client()
        Fake.log.clear()
        self.assertEqual(c.deploy(flow_path("wordcount.yaml"), {"text": "a b"}), 7)
        sent = Fake.log[-1]
        self.assertIn("wordcount-split@1", sent["flow"])      # the file's text
        self.assertEqual(sent["inputs"], {"text": "a b"})
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            self.assertEqual(c.deploy(f), 7)
        self.assertEqual(json.loads(Fake.log[-1]["flow"])["name"], "wordcount")
        self.assertEqual(c.deploy({"nodes": [], "connections": []}), 7)
        self.assertEqual(Fake.log[-1]["flow"], {"nodes": [], "connections": []})
        self.assertEqual(c.status(7)["status"], "running")
        self.assertEqual(c.balance(), ACCOUNT)
        self.assertEqual(c.request("GET", "/api/v1/stats"), {"queue_depth": 0})

    def test_jobs_typed(self):
        c = self.client()
        Fake.log.clear()
        job = c.submit_job("text-source@1", {"text": "hi"}, requirements={"cpu_cores": 1},
                           max_cost_micros=1000, replicas=2)
        self.assertEqual(Fake.log[-1], {"module": "text-source@1", "inputs": {"text": "hi"},
                                        "requirements": {"cpu_cores": 1},
                                        "max_cost_micros": 1000, "verify": {"replicas": 2}})
        self.assertIsInstance(job, rhizos.Job)
        self.assertEqual((job.id, job.status, job.module, job.node), (8, "queued", "text-source", None))
        self.assertEqual(job.waiting_reason, "no active node")
        self.assertFalse(job.finished)

        img = c.submit_job(image="busybox", command=["echo", "hi"])
        self.assertEqual(Fake.log[-1], {"image": "busybox", "command": ["echo", "hi"]})
        self.assertEqual((img.module, img.image, img.command), ("", "busybox", ["echo", "hi"]))

        done = c.get_job(5)
        self.assertEqual((done.status, done.node, done.outputs, done.cost_micros, done.run_ms),
                         ("succeeded", 2, {"text": "hi", "length": 2}, 7, 40))
        self.assertTrue(done.finished)
        self.assertEqual(done.raw["node_id"], 2)          # fields not mirrored stay readable

        self.assertEqual([j.id for j in c.list_jobs()], [6, 5])
        self.assertEqual(Fake.log[-1], "/api/v1/jobs")
        c.list_jobs(limit=1)
        self.assertEqual(Fake.log[-1], "/api/v1/jobs?limit=1")

        cancelled = c.cancel_job(8)
        self.assertEqual((cancelled.id, cancelled.status), (8, "cancelled"))
        with self.assertRaises(errors.StateError) as cm:
            c.cancel_job(7)                                # the fake's 409
        self.assertEqual(cm.exception.http_status, 409)

    def test_jobs_refuse_bad_arguments_and_replies(self):
        c = self.client()
        Fake.log.clear()
        for bad in (lambda: c.submit_job(), lambda: c.submit_job("m@1", image="busybox"),
                    lambda: c.submit_job("m@1", command=["x"]), lambda: c.get_job(True),
                    lambda: c.get_job(-1), lambda: c.list_jobs(limit=-1)):
            with self.assertRaises(errors.InvalidArgument):
                bad()
        self.assertEqual(Fake.log, [])                     # nothing was sent
        with self.assertRaises(errors.ProtocolError) as cm:
            c.get_job(6)
        self.assertIn("'status'", str(cm.exception))
        with self.assertRaises(errors.NotFound):
            c.get_job(4)

    def test_deploy_seals_credentials_from_a_vault(self):
        c = self.client()
        tmp = tempfile.mkdtemp(prefix="rz-py-client-")
        self.addCleanup(shutil.rmtree, tmp, True)
        secret_flow = os.path.join(os.environ.get("RZ_SOURCE_ROOT", "."), "tests",
                                   "e2e", "secret_flow.yaml")
        with rhizos.Vault(os.path.join(tmp, "v"), "pw", kdf=(1, 8192)) as v:
            eid = v.add("openai", "llm_api", "sk-live-123")
            Fake.log.clear()
            self.assertEqual(c.deploy(secret_flow, vault=v), 7)
            box = base64.b64decode(Fake.log[-1]["credentials"]["openai"])
            self.assertEqual(unseal(box, Fake.pk, Fake.sk), (b"sk-live-123", eid))
            self.assertNotIn("sk-live", json.dumps(Fake.log[-1]))
            # A flow without references: no key asked, no credentials sent.
            asks = Fake.key_asks
            self.assertEqual(c.deploy(flow_path("wordcount.yaml"), vault=v), 7)
            self.assertNotIn("credentials", Fake.log[-1])
            self.assertEqual(Fake.key_asks, asks)
            with self.assertRaises(rhizos.InvalidArgument):
                c.deploy(secret_flow, credentials={}, vault=v)
            v.remove("openai")
            sent = len(Fake.log)
            with self.assertRaises(rhizos.NotFound):
                c.deploy(secret_flow, vault=v)
            self.assertEqual(len(Fake.log), sent)              # nothing deployed

    def test_withdraw_and_list(self):
        c = self.client()
        w = c.withdraw(834, address="0xabc")
        self.assertEqual((w["amount_micros"], w["status"]), (834, "pending"))
        self.assertEqual(Fake.log[-1], {"amount_micros": 834, "address": "0xabc"})
        c.withdraw(5)
        self.assertEqual(Fake.log[-1], {"amount_micros": 5})
        self.assertEqual(c.withdrawals(), [WITHDRAWAL])

    def test_invalid_flow_carries_diagnostics(self):
        c = self.client()
        with self.assertRaises(rhizos.ValidationError) as cm:
            c.deploy("flux: 1\nname: broken\nsteps: {a: {module: nope}}\n")
        e = cm.exception
        self.assertEqual(e.code, "RZ_EINVALID")
        self.assertEqual(e.http_status, 422)
        self.assertIn("not valid", e.message)
        self.assertEqual(len(e.diagnostics), 1)
        d = e.diagnostics[0]
        self.assertEqual((d.file, d.line, d.column, d.code), ("flow.yaml", 3, 5, "RZ_EMODULE"))
        self.assertEqual(str(d), "flow.yaml:3:5: error: unknown module nope")

    def test_error_codes(self):
        c = self.client()
        with self.assertRaises(rhizos.InsufficientFunds) as cm:
            c.deploy(flow_path("wordcount.yaml"), {"text": "poor"})
        self.assertEqual(cm.exception.code, "RZ_EFUNDS")
        with self.assertRaises(rhizos.StateError) as cm:
            c.cancel(7)
        self.assertIn("has finished", cm.exception.message)
        with self.assertRaises(rhizos.NotFound):
            c.status(12)
        with self.assertRaises(rhizos.AuthError):
            self.client("rzk_wrong").balance()
        with self.assertRaises(rhizos.AuthError):
            self.client(None).balance()
        with self.assertRaises(rhizos.NotFound):
            c.deploy("/nonexistent/flow.yaml")
        with self.assertRaises(rhizos.InvalidArgument):
            c.status(-1)

    def test_unreachable_server(self):
        c = rhizos.Client("http://127.0.0.1:%d" % closed_port(), KEY)
        with c:
            with self.assertRaises(rhizos.ConnectError) as cm:
                c.balance()
            self.assertIsInstance(cm.exception, ConnectionError)
            self.assertEqual(cm.exception.code, "RZ_ECONNECT")
            with self.assertRaises(rhizos.ConnectError):
                list(c.watch(7))

    def test_watch_to_the_end(self):
        c = self.client()
        seen = list(c.watch(7))
        self.assertEqual([s["status"] for s in seen], ["running", "running", "succeeded"])
        self.assertEqual(seen[-1]["outputs"]["merge"]["top"], [["to", 2]])

    def test_watch_stops_early(self):
        c = self.client()
        before = threading.active_count()
        for _ in range(3):
            it = c.watch(8)
            self.assertEqual(next(it)["id"], 8)
            it.close()                       # returns at once
            with self.assertRaises(StopIteration):
                next(it)
        for s in c.watch(8):                 # and a plain break
            break
        # each reader thread ends at the next event and frees its connection
        deadline = time.monotonic() + 10
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertLessEqual(threading.active_count(), before)
        while Fake.forever_open and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(Fake.forever_open, 0)

    def test_watch_bad_event_is_protocol_error(self):
        with self.assertRaises(rhizos.ProtocolError):
            list(self.client().watch(9))

    def test_close_ends_watch(self):
        c = self.client()
        it = c.watch(8)
        next(it)
        c.close()
        with self.assertRaises(rhizos.ClosedError):
            for _ in it:
                pass

    def test_use_after_close(self):
        c = rhizos.Client(self.url, KEY)
        c.close()
        c.close()
        for call in (c.balance, lambda: c.status(7), lambda: c.deploy("x.yaml"),
                     lambda: c.cancel(7), lambda: c.watch(7),
                     lambda: c.request("GET", "/health"), lambda: c.set_key("k")):
            with self.assertRaises(rhizos.ClosedError):
                call()
        self.assertIn("closed", repr(c))
        with rhizos.Client(self.url, KEY) as c2:
            self.assertEqual(c2.balance()["kind"], "client")
        self.assertTrue(c2.closed)
        c3 = rhizos.Client(self.url, KEY)
        del c3
        gc.collect()

    def test_key_never_in_repr_or_errors(self):
        c = self.client("rzk_secret_value")
        self.assertNotIn("rzk_secret", repr(c))
        try:
            c.balance()
        except rhizos.Error as e:
            self.assertNotIn("rzk_secret", str(e))

    def test_bad_arguments(self):
        with self.assertRaises(rhizos.InvalidArgument):
            rhizos.Client("not a url", KEY).balance()
        with self.assertRaises(ValueError):
            rhizos.Client(self.url, "a\0b")

    def test_error_classes(self):
        self.assertIs(type(errors.from_status(-37)), rhizos.ConnectError)
        self.assertIs(type(errors.from_status(-38)), rhizos.ProtocolError)
        self.assertIsInstance(errors.from_status(-36), PermissionError)


class TestEstimate(unittest.TestCase):
    def test_wordcount(self):
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            with self.assertRaises(rhizos.StateError):
                rhizos.estimate(f)               # not validated yet
            self.assertEqual(f.validate(), [])
            est = rhizos.estimate(f)
            self.assertEqual([s["step"] for s in est["steps"]],
                             ["source", "split", "count1", "count2", "count3", "merge"])
            self.assertEqual(est["total_micros"], sum(s["cost_micros"] for s in est["steps"]))
            self.assertTrue(est["complete"])
            with rhizos.Prices() as p:
                self.assertGreater(p.node_classes, 0)
                self.assertEqual(rhizos.estimate(f, p), est)

    def test_bad_table(self):
        with self.assertRaises(rhizos.ValidationError):
            rhizos.Prices([]).add_json({"nodes": [{"id": 3}]})
        with self.assertRaises(rhizos.NotFound):
            rhizos.Prices(["/nonexistent/prices.json"])


if __name__ == "__main__":
    unittest.main()
