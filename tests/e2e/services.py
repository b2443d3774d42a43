#!/usr/bin/env python3
"""End-to-end: service steps and events between steps, embedded
(docs/services.md). Usage: services.py RHIZOS SOURCE_ROOT"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from harness import free_port, run, run_json, write_text

RHIZOS, ROOT = sys.argv[1], sys.argv[2]
DESK = os.path.join(ROOT, "examples", "flows", "desk.yaml")


WEB_PY = r"""
import http.server, json, sys, threading, time
c = json.load(sys.stdin).get("config", {})
time.sleep(c["delay_ms"] / 1000.0)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(c["status"] if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", c["port"]), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
print("listening", flush=True)
time.sleep(c["serve_ms"] / 1000.0)
"""


class Desk(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.data = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def flow_doc(self, path, *extra, code=0):
        """`flow run --json` of `path` that exits `code`: its document, and
        the process."""
        return run_json(self, [RHIZOS, "flow", "run", path, "--json", "--data", self.data,
                               *extra], code, cwd=ROOT, timeout=120)

    def flow_file(self, name, text):
        return write_text(os.path.join(self.data, name), text)

    def test_every_trade_announced_exactly_once(self):
        n = 40
        doc, p = self.flow_doc(DESK, "--input", "trades=%d" % n)
        self.assertEqual(doc["status"], "succeeded")
        hb, ann = doc["steps"]["hb"], doc["steps"]["announce"]
        self.assertEqual(hb["status"], "succeeded")
        self.assertEqual(hb["events"], n)
        ids = [r["event_id"] for r in ann["runs"]]
        self.assertEqual(ids, ["hb:%d" % (i + 1) for i in range(n)])
        self.assertEqual([r["status"] for r in ann["runs"]], ["succeeded"] * n)
        self.assertEqual(len(doc["outputs"]["announcements"]), n)
        for i, msg in enumerate(doc["outputs"]["announcements"]):
            self.assertTrue(msg.endswith("at %d (hb:%d)" % (42000 + i, i + 1)), msg)
        self.assertEqual(doc["outputs"]["summary"], "%d trades announced" % n)
        # The malformed line and the log line are log lines, not events.
        self.assertIn('| {"event": "trade", "data": ', p.stderr)
        self.assertIn("| connected to the paper exchange", p.stderr)
        # The record keeps the runs: `flow runs ID` shows the same.
        shown = run([RHIZOS, "flow", "runs", doc["id"], "--json", "--data",
                     self.data], cwd=ROOT, timeout=60)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn('"event_id":"hb:%d"' % n, shown.stdout.replace(" ", ""))

    def test_failing_consumer_dead_letters_without_blocking(self):
        # Event 2's run fails every attempt: it is dead-lettered, the
        # others are announced, the step (and run) fail saying which.
        flow = self.flow_file(
            "deadletter.yaml", "flux: 1\nname: dl\nsteps:\n"
            "  hb: {module: trader@1, kind: service, restart: {policy: never},"
            " config: {trades: 4, interval_ms: 0}}\n"
            "  ann:\n    module: flaky@1\n    on: {event: steps.hb.events.trade}\n"
            "    retry: {max_attempts: 2, initial_ms: 10}\n"
            "    config: {fail_times: \"${{ event.data.n == 2 ? 99 : 0 }}\"}\n")
        doc, _ = self.flow_doc(flow, code=1)
        runs = doc["steps"]["ann"]["runs"]
        self.assertEqual([(r["event_id"], r["status"], r["attempts"]) for r in runs],
                         [("hb:1", "succeeded", 1), ("hb:2", "failed", 2),
                          ("hb:3", "succeeded", 1), ("hb:4", "succeeded", 1)])
        self.assertTrue(doc["steps"]["ann"]["error"].startswith(
            "1 of 4 events dead-lettered after their retries; event hb:2: "),
            doc["steps"]["ann"]["error"])
        self.assertEqual(doc["status"], "failed")

    def test_service_runs_until_interrupted(self):
        # A service that does not end keeps the run going; Ctrl-C stops it
        # cleanly, with what was handled kept.
        flow = self.flow_file(
            "forever.yaml", "flux: 1\nname: forever\nsteps:\n"
            "  hb: {module: trader@1, kind: service, ready: line,"
            " config: {trades: 10000, interval_ms: 200}}\n"
            "  ann: {module: echo@1, on: {event: steps.hb.events.trade},"
            " inputs: {message: \"${{ event.data.n }}\"}}\n")
        p = subprocess.Popen([RHIZOS, "flow", "run", flow, "--json", "--data",
                              self.data], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)
        self.assertIsNone(p.poll(), "the run ended while its service ran")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        doc = json.loads(out)
        self.assertEqual(doc["status"], "cancelled")
        self.assertEqual(doc["steps"]["hb"]["status"], "cancelled")
        runs = doc["steps"]["ann"]["runs"]
        self.assertGreaterEqual(len(runs), 2)
        done = [r for r in runs if r["status"] == "succeeded"]
        self.assertEqual([r["outputs"]["message"] for r in done],
                         [str(i + 1) for i in range(len(done))])

    def test_flow_stop_ends_an_embedded_run(self):
        # rhizos flow stop RUN: the run's process takes it as Ctrl-C (exit
        # 128 + SIGTERM), the record says cancelled; a run that is not
        # running, or a malformed call, is refused.
        flow = os.path.join(self.data, "forever.yaml")
        with open(flow, "w") as f:
            f.write("flux: 1\nname: forever\nsteps:\n"
                    "  hb: {module: trader@1, kind: service, ready: line,"
                    " config: {trades: 10000, interval_ms: 200}}\n")
        err = open(os.path.join(self.data, "err.txt"), "w+")
        p = subprocess.Popen([RHIZOS, "flow", "run", flow, "--data", self.data],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            rid = None
            for _ in range(200):
                err.seek(0)
                words = err.read().split()
                rid = next((w for w in words if w.startswith("run-")), None)
                if rid and os.path.exists(os.path.join(self.data, "live", rid + ".pid")):
                    break
                time.sleep(0.1)
            self.assertIsNotNone(rid)
            time.sleep(1.0)
            self.assertIsNone(p.poll(), "the run ended while its service ran")
            s = run([RHIZOS, "flow", "stop", rid, "--data", self.data], cwd=ROOT)
            self.assertEqual(s.returncode, 0, s.stderr)
            self.assertEqual(s.stdout.strip(), "run %s stopped" % rid)
            self.assertEqual(p.wait(timeout=30), 128 + signal.SIGTERM)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            err.close()
        rec = json.loads(run([RHIZOS, "flow", "runs", rid, "--json", "--data", self.data],
                             cwd=ROOT).stdout)
        self.assertEqual(rec["status"], "cancelled", rec)
        self.assertFalse(os.path.exists(os.path.join(self.data, "live", rid + ".pid")))
        s = run([RHIZOS, "flow", "stop", rid, "--data", self.data], cwd=ROOT)
        self.assertEqual(s.returncode, 1)
        self.assertIn("is not running on this machine", s.stderr)
        self.assertEqual(run([RHIZOS, "flow", "stop", "--data", self.data],
                             cwd=ROOT).returncode, 2)

    def test_event_caps_refuse_with_a_logged_reason(self):
        # One quote over 64 KiB and 3,000 written at once: the big one and
        # those past 1,000 in a second are refused, each said in the log;
        # the service goes on and its trades are all taken.
        flow = self.flow_file(
            "caps.yaml", "flux: 1\nname: caps\nsteps:\n"
            "  hb: {module: trader@1, restart: {policy: never},"
            " config: {trades: 2, interval_ms: 0, burst: 3000, oversize: true}}\n"
            "  ann: {module: echo@1, on: {event: steps.hb.events.trade},"
            " inputs: {message: \"${{ event.data.n }}\"}}\n")
        doc, p = self.flow_doc(flow)
        self.assertIn("event 'quote' refused: the line is over 65536 bytes", p.stderr)
        self.assertIn("event 'quote' refused: over 1000 events a second", p.stderr)
        # One line a second for the flood, not one an event.
        self.assertLessEqual(p.stderr.count("refused: over 1000 events a second"), 3)
        events = doc["steps"]["hb"]["events"]
        self.assertGreaterEqual(events, 1000 + 2)
        self.assertLess(events, 3000 + 2)
        self.assertEqual(len(doc["steps"]["ann"]["runs"]), 2)

    def write_web(self):
        """A service that listens only after `delay_ms` and serves `status`
        on /health for `serve_ms`, then exits 0: `ready: {tcp|http}`."""
        mods = os.path.join(self.data, "mods", "web")
        os.makedirs(mods)
        with open(os.path.join(mods, "module.json"), "w") as f:
            json.dump({"id": "web", "version": "1.0.0", "name": "Web",
                       "description": "listens late", "inputs": [], "outputs": [],
                       "credentials": [],
                       "exec": {"adapter": "process",
                                "command": ["python3", "./web.py"]}}, f)
        with open(os.path.join(mods, "web.py"), "w") as f:
            f.write(WEB_PY)
        return os.path.dirname(mods)

    def web_flow(self, ready, status=200, serve_ms=1500):
        port = free_port()
        return self.flow_file(
            "web.yaml", "flux: 1\nname: web\nsteps:\n"
            "  web: {module: web@1, kind: service, restart: {policy: never},"
            " ready: %s, config: {port: %d, delay_ms: 1000,"
            " serve_ms: %d, status: %d}}\n"
            "  after: {module: echo@1, needs: [web], inputs: {message: hi}}\n"
            % (ready.replace("PORT", str(port)), port, serve_ms, status))

    def check_ready_gates(self, ready, *extra):
        mods = self.write_web()
        flow = self.web_flow(ready)
        doc, _ = self.flow_doc(flow, "--modules", mods, *extra)
        web, after = doc["steps"]["web"], doc["steps"]["after"]
        self.assertEqual((web["status"], after["status"]), ("succeeded", "succeeded"))
        # `after` waited for the port: it opens a second after the start.
        self.assertGreaterEqual(after["started_ms"] - web["started_ms"], 900, doc)

    def test_ready_by_tcp_check(self):
        self.check_ready_gates("{tcp: PORT}")

    def test_ready_by_http_check(self):
        self.check_ready_gates('{http: "http://127.0.0.1:PORT/health"}')

    def test_ready_by_check_unsandboxed(self):
        self.check_ready_gates('{http: "http://localhost:PORT/health"}', "--no-sandbox")

    def test_ready_check_never_passing_fails_the_service(self):
        # /health answers 500: never ready; past timeout_s the service is
        # stopped and fails saying why, and `after` never runs.
        mods = self.write_web()
        flow = self.web_flow('{http: "http://127.0.0.1:PORT/health", timeout_s: 2}',
                             status=500, serve_ms=20000)
        doc, _ = self.flow_doc(flow, "--modules", mods, code=1)
        err = doc["steps"]["web"]["error"]
        self.assertIn("not ready within 2 s (GET /health: status 500)", err)
        self.assertNotEqual(doc["steps"]["after"]["status"], "succeeded")

    def test_bad_ready_checks_are_located(self):
        for ready, want in (("{tcp: 70000}", "'tcp' must be a port"),
                            ('{http: "http://example.com/"}', "IPv4 address or localhost"),
                            ("{tcp: 80, http: \"http://127.0.0.1/\"}", "one check"),
                            ("{tcp: 80, every: 2}", "unknown key 'every'")):
            flow = self.flow_file("badready.yaml", "flux: 1\nname: b\nsteps:\n"
                                  "  s: {module: trader@1, kind: service, ready: %s}\n"
                                  % ready)
            p = run([RHIZOS, "flow", "validate", flow], cwd=ROOT, timeout=60)
            self.assertEqual(p.returncode, 1, ready)
            self.assertIn("badready.yaml:4:", p.stderr)
            self.assertIn(want, p.stderr)

    def test_bad_declarations_are_located(self):
        flow = self.flow_file("bad.yaml", "flux: 1\nname: bad\nsteps:\n  a: {module: echo@1}\n"
                              "  b: {module: echo@1, on: {event: steps.a.events.t}}\n")
        p = run([RHIZOS, "flow", "validate", flow], cwd=ROOT, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("bad.yaml:5:", p.stderr)
        self.assertIn("which is not a service", p.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
