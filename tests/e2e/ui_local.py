#!/usr/bin/env python3
"""End-to-end: `rhizos ui`, the web console on one machine.

The address it prints (loopback, a fresh 64-hex token in the fragment);
the console's files without the token, the API only with it (401 and
WWW-Authenticate otherwise, also for a token one character off or a
prefix of it); Host must be an IP literal or localhost (DNS rebinding);
--listen refuses anything but loopback. The routes the builder and the
run views ask, answered from the library: modules (search, limits),
validate (JSON pointers), estimate, deploy (an embedded run, recorded in
the run store of --data so `rhizos flow runs` lists it), the runs list,
a run's status and its steps' logs, the live stream to its "end", cancel
of a running run (then 409), a run of another process killed (told
"process_gone", its stream ended), and refusals: bad JSON, an oversized body,
unknown fields, a flow that needs credentials, unknown ids and paths,
wrong methods. SIGTERM stops it cleanly.

Usage: ui_local.py RHIZOS SOURCE_ROOT"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from http.client import HTTPConnection

from harness import Proc, cli_env, raw_request, run, sandbox_flags, wait_until

EXE, ROOT = sys.argv[1], sys.argv[2]
URL_RE = re.compile(r"open (http://127\.0\.0\.1:(\d+)/#token=([0-9a-f]+))$")
INDEX = b"<!doctype html><title>RhizOS</title>\n"
SLEEP = "flux: 1\nname: nap\nsteps:\n  nap:\n    module: sleep@1\n    config: {seconds: 30}\n"


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def start(data, *args, console=None):
    """`rhizos ui` on a free loopback port: (Proc, port, token)."""
    cmd = [EXE, "--data", data, "ui", "--listen", "127.0.0.1:0"] + sandbox_flags()
    if console:
        cmd += ["--ui-dir", console]
    p = Proc(cmd + list(args), env=cli_env())
    m = p.wait_for(lambda: next((URL_RE.search(l) for l in p.out if URL_RE.search(l)), None),
                   30, "the address rhizos ui prints")
    return p, int(m.group(2)), m.group(3)


def request(port, method, path, body=None, token=None, headers=None):
    """(status, lowercase headers, parsed JSON or the bytes)."""
    c = HTTPConnection("127.0.0.1", port, timeout=30)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    raw = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    c.request(method, path, body=raw, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    if "json" in hdrs.get("content-type", ""):
        data = json.loads(data)
    return r.status, hdrs, data


def cpu_seconds(pid):
    """User and system CPU time a process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))


class UiLocal(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = os.path.join(cls.tmp.name, "data")
        cls.console = os.path.join(cls.tmp.name, "console")
        os.makedirs(os.path.join(cls.console, "assets"))
        with open(os.path.join(cls.console, "index.html"), "wb") as f:
            f.write(INDEX)
        with open(os.path.join(cls.console, ".env"), "w") as f:
            f.write("SECRET=1\n")
        cls.p, cls.port, cls.token = start(cls.data, "--modules",
                                           os.path.join(ROOT, "tests", "e2e", "modules"),
                                           console=cls.console)

    @classmethod
    def tearDownClass(cls):
        rc = cls.p.stop()
        cls.tmp.cleanup()
        if rc != 0:
            raise AssertionError("rhizos ui exit %d:\n%s" % (rc, cls.p.output()))

    def api(self, method, path, body=None, token=True, **kw):
        return request(self.port, method, "/api/v1/" + path, body,
                       self.token if token is True else token, **kw)

    def wait_status(self, rid, want, timeout=60):
        def done():
            st, _, doc = self.api("GET", "flows/" + rid)
            self.assertEqual(st, 200, doc)
            return doc if doc["status"] in want else None
        return wait_until(done, timeout, "run %s %s" % (rid, want), proc=self.p)

    def test_address_and_token(self):
        self.assertEqual(len(self.token), 64)
        other = os.path.join(self.tmp.name, "other")
        # --open hands the address to the desktop's xdg-open (a fake here).
        bin_dir = os.path.join(self.tmp.name, "bin")
        os.makedirs(bin_dir, exist_ok=True)
        opened = os.path.join(self.tmp.name, "opened")
        with open(os.path.join(bin_dir, "xdg-open"), "w") as f:
            f.write("#!/bin/sh\nprintf '%%s' \"$1\" > %s\n" % opened)
        os.chmod(os.path.join(bin_dir, "xdg-open"), 0o755)
        path = os.environ["PATH"]
        os.environ["PATH"] = bin_dir + os.pathsep + path
        try:
            p2, port2, token2 = start(other, "--open")
        finally:
            os.environ["PATH"] = path
        try:
            wait_until(lambda: os.path.exists(opened) and os.path.getsize(opened), 10,
                       "xdg-open to be run")
            with open(opened) as f:
                self.assertEqual(f.read(), "http://127.0.0.1:%d/#token=%s" % (port2, token2))
            self.assertNotEqual(port2, self.port)
            self.assertNotEqual(token2, self.token)   # a fresh one each start
            self.assertEqual(request(port2, "GET", "/api/v1/stats", token=self.token)[0], 401)
            self.assertEqual(request(port2, "GET", "/api/v1/stats", token=token2)[0], 200)
        finally:
            self.assertEqual(p2.stop(), 0, p2.output())

    def test_files_without_token(self):
        st, h, body = request(self.port, "GET", "/")
        self.assertEqual((st, body), (200, INDEX))
        self.assertIn("frame-ancestors 'none'", h["content-security-policy"])
        self.assertEqual(h["x-frame-options"], "DENY")
        self.assertEqual(h["cache-control"], "no-cache")
        self.assertEqual(request(self.port, "GET", "/", headers={"If-None-Match": h["etag"]})[0], 304)
        self.assertEqual(request(self.port, "GET", "/flows/run-1")[2], INDEX)   # the app's path
        for path in ("/.env", "/assets/../.env", "/%2e%2e/%2e%2e/etc/passwd", "/assets/x.js"):
            self.assertEqual(request(self.port, "GET", path)[0], 404, path)
        st, h, _ = request(self.port, "POST", "/", body=b"x")
        self.assertEqual((st, h.get("allow")), (405, "GET, HEAD"))

    def test_token_required(self):
        wrong = [None, "", self.token[:-1], self.token[:-1] + ("0" if self.token[-1] != "0" else "1"),
                 self.token + "0", "x" * 64]
        for t in wrong:
            st, h, doc = self.api("GET", "stats", token=t)
            self.assertEqual(st, 401, t)
            self.assertEqual(h["www-authenticate"], "Bearer")
            self.assertEqual(doc["error"]["code"], "RZ_EAUTH")
            self.assertIn("#token=", doc["error"]["message"])
        st, _, doc = self.api("GET", "stats", token=None,
                              headers={"Authorization": "Basic " + self.token})
        self.assertEqual(st, 401)
        self.assertEqual(self.api("POST", "flows/deploy", {"flow": SLEEP}, token=None)[0], 401)
        st, _, doc = self.api("GET", "stats")
        self.assertEqual((st, doc["mode"]), (200, "local"))
        # Who the token is: the machine's one user (the console asks).
        st, _, doc = self.api("GET", "whoami")
        self.assertEqual((st, doc), (200, {"role": "local", "account": None, "node": None}))
        self.assertEqual(self.api("GET", "whoami", token=None)[0], 401)

    def test_host_header(self):
        for host in ("evil.example", "evil.example:%d" % self.port, "127.0.0.1.nip.io",
                     "[::1", "localhost.evil"):
            st, _, doc = self.api("GET", "stats", headers={"Host": host})
            self.assertEqual(st, 403, host)
            self.assertIn("IP address or localhost", doc["error"]["message"])
        st, _, body = request(self.port, "GET", "/", headers={"Host": "rebind.example"})
        self.assertEqual(st, 403)   # not even the files
        for host in ("localhost:%d" % self.port, "127.0.0.1", "[::1]:%d" % self.port):
            self.assertEqual(self.api("GET", "stats", headers={"Host": host})[0], 200, host)
        # HTTP/1.0 without a Host: refused too.
        reply = raw_request(self.port, b"GET /api/v1/stats HTTP/1.0\r\n"
                            b"Authorization: Bearer %s\r\n\r\n" % self.token.encode())
        self.assertTrue(reply.startswith(b"HTTP/1.0 403") or reply.startswith(b"HTTP/1.1 403"),
                        reply[:80])

    def test_listen_loopback_only(self):
        for addr in ("0.0.0.0:0", "192.0.2.1:7190", "[::]:0", "example.com:80", "127.0.0.1",
                     "127.0.0.1:70000"):
            r = run([EXE, "--data", os.path.join(self.tmp.name, "x"), "ui", "--listen", addr],
                    env=cli_env(), timeout=30)
            self.assertEqual(r.returncode, 2, (addr, r.stderr))
            self.assertIn("--listen", r.stderr)
        r = run([EXE, "ui", "--help"], env=cli_env())
        self.assertEqual(r.returncode, 0)
        self.assertIn("#token=", r.stdout)
        r = run([EXE, "ui", "extra"], env=cli_env())
        self.assertEqual(r.returncode, 2)

    def test_modules(self):
        st, _, doc = self.api("GET", "modules?q=WORDCOUNT&limit=2")
        self.assertEqual(st, 200)
        self.assertEqual(len(doc["modules"]), 2)
        self.assertGreaterEqual(doc["total"], 3)
        self.assertTrue(all("wordcount" in m["id"] for m in doc["modules"]))
        self.assertIn("config", doc["modules"][0]["manifest"])
        self.assertEqual(self.api("GET", "modules?q=no-such-thing-here")[2]["modules"], [])
        for q in ("limit=abc", "limit=-1", "limit=1001", "q=" + "a" * 201):
            st, _, doc = self.api("GET", "modules?" + q)
            self.assertEqual(st, 400, q)

    def test_validate_and_estimate(self):
        wc = read("examples", "flows", "wordcount.yaml")
        st, _, doc = self.api("POST", "flows/validate", {"flow": wc})
        self.assertEqual((st, doc["valid"], doc["errors"]), (200, True, 0))
        bad = wc.replace("parts: 3", "parts: 0")
        self.assertNotEqual(bad, wc)
        st, _, doc = self.api("POST", "flows/validate", {"flow": bad})
        self.assertEqual((st, doc["valid"]), (200, False))
        self.assertTrue(any(d.get("pointer", "").startswith("/steps/split/config")
                            for d in doc["diagnostics"]), doc)
        st, _, doc = self.api("POST", "flows/estimate", {"flow": wc})
        self.assertEqual(st, 200)
        self.assertEqual(len(doc["steps"]), 6)
        st, _, doc = self.api("POST", "flows/estimate", {"flow": bad})
        self.assertEqual(st, 422)
        self.assertTrue(doc["diagnostics"])
        # As an object too (the builder's JSON).
        st, _, doc = self.api("POST", "flows/validate",
                              {"flow": json.loads(read("examples", "flows", "wordcount.json"))})
        self.assertEqual((st, doc["valid"]), (200, True), doc)

    def test_bad_input(self):
        cases = [(b"{", 400), (b"[1]", 400), (b"\"x\"", 400), (b"{\"flow\": 3}", 400),
                 (b"{\"flow\": \"x\", \"extra\": 1}", 400), (b"{}", 400),
                 (b"{\"flow\": \"x\0y\"}", 400)]
        for path in ("flows/validate", "flows/estimate", "flows/deploy"):
            for body, want in cases:
                st, _, doc = self.api("POST", path, body)
                self.assertEqual(st, want, (path, body[:40]))
            # Over 1 MiB: refused from its Content-Length, before the body.
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.sendall(b"POST /api/v1/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n{" %
                      (path.encode(), self.token.encode(), (1 << 20) + 1))
            self.assertIn(b" 413 ", s.recv(4096).split(b"\r\n")[0])
            s.close()
        st, _, doc = self.api("POST", "flows/deploy", {"flow": SLEEP, "inputs": [1]})
        self.assertEqual(st, 400)
        st, _, doc = self.api("POST", "flows/validate", {"flow": "flux: 1\nname: [\n"})
        self.assertEqual((st, doc["valid"]), (200, False))
        # Nothing above started a run.
        self.assertFalse([f for f in self.api("GET", "flows")[2]["flows"] if f["flow"] == "nap"])

    def test_credentials_refused(self):
        flow = read("tests", "e2e", "secret_flow.yaml")
        st, _, doc = self.api("POST", "flows/validate", {"flow": flow})
        self.assertEqual((st, doc["valid"]), (200, True), doc)   # a valid flow...
        st, _, doc = self.api("POST", "flows/deploy", {"flow": flow})
        self.assertEqual(st, 422, doc)   # ...that needs a vault: not run here
        self.assertIn("credentials", doc["error"]["message"])
        self.assertNotIn("secret-use", [f["flow"] for f in self.api("GET", "flows")[2]["flows"]])

    def test_run_to_the_end(self):
        wc = read("examples", "flows", "wordcount.yaml")
        st, _, doc = self.api("POST", "flows/deploy", {"flow": wc})
        self.assertEqual(st, 201, doc)
        rid = doc["id"]
        self.assertRegex(rid, r"^run-\d{8}-\d{6}-[0-9a-f]{4}$")
        listed = self.api("GET", "flows")[2]["flows"]
        self.assertIn(rid, [f["id"] for f in listed])
        doc = self.wait_status(rid, ("succeeded", "failed"))
        self.assertEqual(doc["status"], "succeeded", doc)
        self.assertEqual(set(doc["steps"]), {"source", "split", "count1", "count2", "count3",
                                             "merge"})
        self.assertTrue(all(s["status"] == "succeeded" for s in doc["steps"].values()))
        st, _, logs = self.api("GET", "flows/%s/logs?step=split" % rid)
        self.assertEqual(st, 200)
        self.assertEqual([s["step"] for s in logs["steps"]], ["split"])
        self.assertIn("split", logs["steps"][0]["log"])
        self.assertEqual(self.api("GET", "flows/%s/logs?step=nope" % rid)[0], 404)
        # The stream: the status, the logs once each, then "end".
        st, h, body = self.api("GET", "flows/%s/events?logs=1" % rid)
        self.assertEqual((st, h["content-type"]), (200, "text/event-stream"))
        text = body.decode()
        self.assertIn("event: end\n", text)
        self.assertEqual(text.count("\"step\":\"split\""), 1)
        # HEAD of a running run's stream, the connection to be closed
        # (HTTP/1.0): when the run ends, ending the reply frees the
        # connection at once (no body, not chunked), and the server must not
        # free the stream twice (found by review).
        for _ in range(2):
            st, _, short = self.api("POST", "flows/deploy",
                                    {"flow": SLEEP.replace("30", "1"), "inputs": {}})
            self.assertEqual(st, 201, short)
            got = raw_request(self.port, ("HEAD /api/v1/flows/%s/events HTTP/1.0\r\n"
                                          "Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n"
                                          % (short["id"], self.token)).encode())
            self.assertTrue(got.startswith(b"HTTP/1."), got[:80])
        self.assertEqual(self.api("GET", "stats")[0], 200)   # still serving
        # On record: `rhizos flow runs` lists it (the store of --data).
        r = run([EXE, "--data", self.data, "--json", "flow", "runs"], env=cli_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        runs = {x["id"]: x for x in json.loads(r.stdout)}
        self.assertEqual(runs[rid]["status"], "succeeded")
        # Resumable as a CLI run: its record keeps the step cache and names
        # the flow, kept in --data, so `flow resume RUN` runs nothing again.
        self.assertIsInstance(runs[rid].get("file"), str)
        r = run([EXE, "--data", self.data, "--json", "flow", "resume", rid] + sandbox_flags(),
                env=cli_env(), timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        steps = json.loads(r.stdout)["steps"]
        self.assertEqual({s: v.get("reused") for s, v in steps.items()},
                         {s: True for s in doc["steps"]}, r.stderr)
        self.assertEqual(steps["merge"]["reused_from"], "run %s step merge" % rid)
        self.assertEqual(steps["merge"]["outputs"], doc["steps"]["merge"]["outputs"])
        # Finished: cancel refused.
        self.assertEqual(self.api("DELETE", "flows/" + rid)[0], 409)
        # The next deploy lets the finished run go from memory: it is then
        # answered from its record, the same.
        st, _, other = self.api("POST", "flows/deploy",
                                {"flow": SLEEP.replace("30", "0.1"), "inputs": {}})
        self.assertEqual(st, 201, other)
        again = self.api("GET", "flows/" + rid)[2]
        self.assertEqual((again["status"], again["steps"]["split"]["log"]),
                         (doc["status"], doc["steps"]["split"]["log"]))
        self.assertIn("split", self.api("GET", "flows/%s/logs?step=split" % rid)[2]["steps"][0]["log"])
        self.assertEqual(self.api("DELETE", "flows/" + rid)[0], 409)
        self.assertEqual(self.wait_status(other["id"], ("succeeded", "failed"))["status"],
                         "succeeded")

    def test_chatty_step(self):
        # 60,000 lines of 100 bytes streamed in many pieces: the server keeps
        # each step's last 64 KiB (as a record keeps a log) and does work
        # linear in the lines (before, it copied the whole log on every line
        # and parsed it on every tick: quadratic, memory unbounded).
        lines = 60000
        flow = ("flux: 1\nname: chatty\nsteps:\n  talk:\n    module: big-output@1\n"
                "    config: {kib: 1, lines: %d}\n" % lines)
        cpu0 = cpu_seconds(self.p.pid)
        st, _, doc = self.api("POST", "flows/deploy", {"flow": flow})
        self.assertEqual(st, 201, doc)
        rid = doc["id"]
        peak = 0
        def watch():
            nonlocal peak
            st, _, d = self.api("GET", "flows/" + rid)
            self.assertEqual(st, 200, d)
            peak = max(peak, len(d["steps"]["talk"].get("log") or ""))
            return d if d["status"] in ("succeeded", "failed") else None
        doc = wait_until(watch, 120, "the chatty run", proc=self.p)
        self.assertEqual(doc["status"], "succeeded", doc)
        last = "line %07d " % (lines - 1)
        self.assertLessEqual(peak, 64 * 1024)
        log = doc["steps"]["talk"]["log"]
        self.assertLessEqual(len(log.encode()), 64 * 1024)
        self.assertIn(last, log)
        self.assertNotIn("line 0000000 ", log)
        # The stream after the fact: the log once, bounded, then "end".
        st, _, body = self.api("GET", "flows/%s/events" % rid)
        events = [json.loads(l[6:]) for l in body.decode().splitlines()
                  if l.startswith("data: ") and "\"lines\"" in l]
        self.assertEqual(len(events), 1)
        self.assertLessEqual(len(events[0]["lines"]), 64 * 1024)
        self.assertIn(last, events[0]["lines"])
        used = cpu_seconds(self.p.pid) - cpu0
        self.assertLess(used, 20, "rhizos ui used %.1f s of CPU" % used)
        self.assertLess(vm_hwm_kib(self.p.pid), 512 * 1024)

    def test_inputs(self):
        st, _, doc = self.api("POST", "flows/deploy", {"flow": read("examples", "flows",
                                                                     "inputs.yaml"),
                                                       "inputs": {"who": "Ada"}})
        self.assertEqual(st, 201, doc)
        doc = self.wait_status(doc["id"], ("succeeded", "failed"))
        self.assertEqual(doc["steps"]["greet"]["outputs"]["message"], "Hello, Ada!", doc)

    def test_cancel(self):
        st, _, doc = self.api("POST", "flows/deploy", {"flow": SLEEP})
        self.assertEqual(st, 201, doc)
        rid = doc["id"]
        self.wait_status(rid, ("running",))
        self.assertEqual(self.api("GET", "stats")[2]["flows"]["running"], 1)
        t0 = time.monotonic()
        st, _, doc = self.api("DELETE", "flows/" + rid)
        self.assertEqual(st, 200, doc)
        doc = self.wait_status(rid, ("cancelled", "failed", "succeeded"), timeout=25)
        self.assertEqual(doc["status"], "cancelled", doc)
        self.assertLess(time.monotonic() - t0, 25)
        self.assertEqual(self.api("DELETE", "flows/" + rid)[0], 409)

    def test_killed_run_of_another_process(self):
        # A `rhizos flow run` killed with SIGKILL keeps "status":"running"
        # in its record: the console's list and single view are told
        # "process_gone" by the store (shown as killed), and its live
        # stream ends instead of waiting for an end that never comes.
        path = os.path.join(self.tmp.name, "nap-killed.yaml")
        with open(path, "w") as f:
            f.write(SLEEP)
        before = {x["id"] for x in self.api("GET", "flows")[2]["flows"]}
        cli = subprocess.Popen([EXE, "--data", self.data, "flow", "run", path, "--modules",
                                os.path.join(ROOT, "tests", "e2e", "modules")] + sandbox_flags(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=cli_env())
        try:
            def recorded():
                got = [x for x in self.api("GET", "flows")[2]["flows"]
                       if x["id"] not in before and x["status"] == "running"]
                return got[0] if got else None
            rec = wait_until(recorded, 30, "the CLI's run on record", proc=self.p)
            self.assertNotIn("process_gone", rec)
            self.assertNotIn("process_gone", self.api("GET", "flows/" + rec["id"])[2])
        finally:
            cli.kill()
            cli.wait(timeout=30)
        rid = rec["id"]
        listed = {x["id"]: x for x in self.api("GET", "flows")[2]["flows"]}
        self.assertEqual((listed[rid]["status"], listed[rid].get("process_gone")),
                         ("running", True))
        st, _, doc = self.api("GET", "flows/" + rid)
        self.assertEqual((st, doc["status"], doc.get("process_gone")), (200, "running", True))
        st, _, body = self.api("GET", "flows/%s/events" % rid)
        self.assertEqual(st, 200)
        self.assertIn("event: end\n", body.decode())
        self.assertIn("\"process_gone\":true", body.decode())

    def test_unknown(self):
        self.assertEqual(self.api("GET", "flows/run-19990101-000000-0000")[0], 404)
        self.assertEqual(self.api("DELETE", "flows/run-19990101-000000-0000")[0], 404)
        self.assertEqual(self.api("GET", "flows/..%2f..%2fetc")[0], 404)
        self.assertEqual(self.api("GET", "flows/" + "a" * 200)[0], 404)
        for path in ("nodes", "jobs", "accounts/me", "stats/x"):
            st, _, doc = self.api("GET", path)
            self.assertEqual(st, 404, path)
        st, h, _ = self.api("PUT", "flows/validate", {"flow": SLEEP})
        self.assertEqual((st, h["allow"]), (405, "POST"))
        st, h, _ = self.api("POST", "flows", {})
        self.assertEqual((st, h["allow"]), (405, "GET, HEAD"))
        self.assertEqual(self.api("GET", "named-flows")[2], {"flows": []})


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
