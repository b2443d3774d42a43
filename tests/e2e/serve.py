#!/usr/bin/env python3
"""End-to-end: `rhizos flow serve` (docs/triggers.md, "On one machine").

A `* * * * *` flow served on this machine (the clock shifted through
RHIZOS_TEST_SERVE_CLOCK so a minute turns at once):
- the fire runs the flow once, recorded as serve-tick-cron-0-<time>, with
  the trigger as its input;
- kill -9 and a start within the same minute: nothing runs again;
- a server killed (a test seam) after deciding a fire and before its run
  started: started again, it runs that fire, once; a further kill -9 and
  start changes nothing;
- after three minutes down, catch-up `one` runs once, for the newest time;
- webhooks (--listen): a signed call runs the flow with its body (202 and
  the run), the same delivery again is 409, a wrong signature or a stale
  timestamp 401, an unknown hook 404, a body over max_body_bytes 413; a
  server killed after recording a call and before its run runs it at the
  next start, once; the run the 202 names is there when it comes (`flow
  runs RUN` at once finds it);
- webhook call records are removed while the server runs (not only at
  start) once past their keep time (shortened for the test);
- flow triggers: a served flow that follows another runs when a run of it
  ends, with its run, status and outputs as ${{ trigger }}; event
  triggers: `rhizos flow publish EVENT DATA` runs the flows that wait for
  it, once (kill -9 and start run nothing again); a circle of flow
  triggers is refused at start;
- overlap: queue: four fires due at once (catch-up all after downtime) run
  one after another, never two at a time, the waiting ones kept in the
  state file; overlap: skip runs one of them;
- --help, no FILE (usage), a flow without a trigger (refused).

Usage: serve.py RHIZOS SOURCE_ROOT"""
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from harness import free_port, wait_port, write_text

RHIZOS, ROOT = sys.argv[1], sys.argv[2]
MODULES = os.path.join(ROOT, "examples", "modules")
FLOW = ("flux: 1\nname: tick\ntriggers:\n  - cron: \"* * * * *\"\n"
        "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
        "    inputs: {message: \"${{ trigger.fire }}\"}\n")
HOOKED = ("flux: 1\nname: hooked\ntriggers:\n"
          "  - webhook: {name: gh, secret: {credentialId: gh-hook}, max_body_bytes: 100}\n"
          "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
          "    inputs: {message: \"${{ trigger.body.msg }}\"}\n")


AFTER = ("flux: 1\nname: after\ntriggers:\n  - {type: flow, flow: tick}\n"
         "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
         "    inputs: {message: \"${{ trigger.run }} ${{ trigger.status }} "
         "${{ trigger.outputs.s.message }}\"}\n")
ONEVENT = ("flux: 1\nname: onevent\ntriggers:\n  - event: moved\n"
           "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
           "    inputs: {message: \"${{ trigger.data.px }}\"}\n")
SLOW = ("flux: 1\nname: slow\ntriggers:\n"
        "  - {type: cron, schedule: \"* * * * *\", catchup: all, overlap: %s}\n"
        "steps:\n  s:\n    module: sleep@1\n    config: {seconds: 1.2}\n")


class Serve(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.data = os.path.join(self.tmp.name, "data")
        self.flow = write_text(os.path.join(self.tmp.name, "tick.yaml"), FLOW)
        self.base = (int(time.time()) // 60 + 2) * 60   # a minute to come, on the fake clock

    def rz(self, *args, code=0):
        p = subprocess.run([RHIZOS, "--data", self.data, "--modules", MODULES, *args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, code, p.stdout + p.stderr)
        return p.stdout + p.stderr

    def start(self, clock, args=(), files=None, **env):
        e = dict(os.environ, RHIZOS_TEST_SERVE_CLOCK=str(clock), **env)
        p = subprocess.Popen([RHIZOS, "--data", self.data, "--modules", MODULES,
                              "--no-sandbox", *args, "flow", "serve",
                              *(files or [self.flow])],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=e)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        self.addCleanup(p.stdout.close)
        return p

    def kill9(self, p):
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        return p.stdout.read()

    def runs(self):
        out = json.loads(self.rz("flow", "runs", "--limit", "0", "--json"))
        return {r["id"]: r["status"] for r in out}

    def wait_runs(self, n, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            r = self.runs()
            if len(r) >= n and all(s != "running" for s in r.values()):
                return r
            time.sleep(0.2)
        self.fail("no %d finished runs: %r" % (n, self.runs()))

    def state(self):
        with open(os.path.join(self.data, "serve", "tick.cron-0.json")) as f:
            return json.load(f)

    def test_fires_once_across_kills(self):
        t = self.base
        p = self.start(t - 2)
        runs = self.wait_runs(1)
        self.assertEqual(runs, {"serve-tick-cron-0-%d" % t: "succeeded"})
        rec = json.loads(self.rz("flow", "runs", "serve-tick-cron-0-%d" % t, "--json"))
        self.assertEqual(rec["steps"]["s"]["outputs"]["message"], str(t))
        self.kill9(p)
        # The same minute again: done, not run again.
        p = self.start(t + 5)
        time.sleep(2)
        self.assertEqual(len(self.runs()), 1)
        self.assertEqual(self.state()["last"], t)
        self.kill9(p)
        # Killed after deciding the next fire, before its run started.
        p = self.start(t + 58, RHIZOS_TEST_KILL_AFTER_FIRE="1")
        self.assertEqual(p.wait(timeout=20), -signal.SIGKILL)
        self.assertEqual(self.state(), {"last": t + 60, "fire": t + 60})
        self.assertEqual(len(self.runs()), 1)
        p = self.start(t + 63)
        runs = self.wait_runs(2)
        self.assertEqual(runs["serve-tick-cron-0-%d" % (t + 60)], "succeeded")
        time.sleep(1.5)
        self.assertEqual(len(self.runs()), 2, "the lost fire ran twice")
        out = self.kill9(p)
        self.assertIn("decided but never ran", out)
        p = self.start(t + 65)
        time.sleep(1.5)
        self.assertEqual(len(self.runs()), 2)
        self.kill9(p)
        # Down for three minutes: catch-up one runs the newest time, once.
        p = self.start(t + 243)
        runs = self.wait_runs(3)
        self.assertIn("serve-tick-cron-0-%d" % (t + 240), runs)
        time.sleep(1.5)
        self.assertEqual(len(self.runs()), 3)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=10), 0)
        self.assertIn("missed", p.stdout.read())

    def post(self, port, body, ts=None, key=b"s3cret", delivery=None, path="hooked/gh",
             upper=False, headers=None):
        ts = ts if isinstance(ts, str) else str(int(ts if ts is not None else time.time()))
        sig = hmac.new(key, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        h = {"X-Rhizos-Timestamp": ts,
             "X-Rhizos-Signature": "sha256=" + (sig.upper() if upper else sig)}
        h.update(headers or {})
        if delivery:
            h["X-Rhizos-Delivery"] = delivery
        req = urllib.request.Request("http://127.0.0.1:%d/hooks/%s" % (port, path), data=body,
                                     headers=h, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def write(self, name, text):
        return write_text(os.path.join(self.tmp.name, name), text)

    def test_flow_and_event_triggers(self):
        t = self.base
        after = self.write("after.yaml", AFTER)
        onevent = self.write("onevent.yaml", ONEVENT)
        p = self.start(t - 2, files=[self.flow, after, onevent])
        runs = self.wait_runs(2)
        src = "serve-tick-cron-0-%d" % t
        follower = "serve-after-flow-0-" + src
        self.assertEqual(runs, {src: "succeeded", follower: "succeeded"})
        rec = json.loads(self.rz("flow", "runs", follower, "--json"))
        self.assertEqual(rec["steps"]["s"]["outputs"]["message"],
                         "%s succeeded %d" % (src, t))
        # An event published on this machine runs the flow that waits for it.
        eid = self.rz("flow", "publish", "moved", '{"px": 7}').split()[0]
        runs = self.wait_runs(3)
        self.assertEqual(runs["serve-onevent-event-0-" + eid], "succeeded")
        rec = json.loads(self.rz("flow", "runs", "serve-onevent-event-0-" + eid, "--json"))
        self.assertEqual(rec["steps"]["s"]["outputs"]["message"], "7")
        # Bad events are refused and spool nothing.
        self.rz("flow", "publish", "a/b", code=2)
        self.rz("flow", "publish", "moved", "{not json", code=2)
        self.kill9(p)
        # Killed and started again: nothing fires twice.
        p = self.start(t + 5, files=[self.flow, after, onevent])
        time.sleep(2.5)
        self.assertEqual(len(self.runs()), 3)
        self.kill9(p)
        # A circle of flow triggers is refused at start.
        loop = self.write("loop.yaml", AFTER.replace("name: after", "name: tick")
                          .replace("flow: tick", "flow: after"))
        out = self.rz("flow", "serve", after, loop, code=1)
        self.assertIn("circle (after -> tick -> after)", out)

    def test_overlap_queue_runs_one_after_another(self):
        t = self.base
        for overlap, want in (("queue", 4), ("skip", 1)):
            self.data = os.path.join(self.tmp.name, "data-" + overlap)
            slow = self.write("slow.yaml", SLOW % overlap)
            state = os.path.join(self.data, "serve", "slow.cron-0.json")
            p = self.start(t - 30, files=[slow])
            for _ in range(100):
                if os.path.exists(state):
                    break
                time.sleep(0.1)
            self.kill9(p)
            # Down four minutes: four fires due at once (catchup: all).
            p = self.start(t + 183, files=[slow])
            if overlap == "queue":   # the waiting fires are kept in the state
                seen, deadline = 0, time.time() + 20   # a start slowed by load
                while seen < 3 and time.time() < deadline:
                    with open(state) as f:
                        seen = max(seen, len(json.load(f).get("queue", [])))
                    time.sleep(0.1)
                self.assertEqual(seen, 3)
            runs = self.wait_runs(want, timeout=30)
            time.sleep(1.5)
            runs = self.wait_runs(want)
            self.assertEqual(len(runs), want, runs)
            spans = []
            for r in runs:
                rec = json.loads(self.rz("flow", "runs", r, "--json"))
                o = rec["steps"]["s"]["outputs"]
                spans.append((o["started"], o["finished"]))
            spans.sort()
            for a, b in zip(spans, spans[1:]):
                self.assertGreaterEqual(b[0], a[1], "two runs at once: %r" % spans)
            p.send_signal(signal.SIGTERM)
            out = p.communicate(timeout=10)[0]
            self.assertIn("queued" if overlap == "queue" else "skipped", out)

    def hook_vault(self):
        """The webhook flow served with its secret in a vault: a free port
        to listen on."""
        env = dict(RHIZOS_VAULT=os.path.join(self.tmp.name, "vault"),
                   RHIZOS_VAULT_PASSWORD="correct horse", RHIZOS_VAULT_KDF="interactive")
        os.environ.update(env)
        self.addCleanup(lambda: [os.environ.pop(k) for k in env])
        self.rz("vault", "init")
        p = subprocess.run([RHIZOS, "vault", "add", "gh-hook", "--type", "webhook"],
                           input="s3cret", capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        write_text(self.flow, HOOKED)
        return free_port()

    def test_hook_records_expire_while_serving(self):
        port = self.hook_vault()
        p = self.start(int(time.time()), args=["--listen", "127.0.0.1:%d" % port],
                       RHIZOS_TEST_HOOK_KEEP_S="1")
        wait_port(port)
        self.assertEqual(self.post(port, b'{"msg": "x"}', delivery="old")[0], 202)
        self.wait_runs(1)
        rec = os.path.join(self.data, "serve", "hooks", "hooked.gh.old.json")
        for _ in range(60):
            if not os.path.exists(rec):
                break
            time.sleep(0.1)
        self.assertFalse(os.path.exists(rec), "the record outlived its keep time")
        self.assertIsNone(p.poll())
        self.kill9(p)

    def test_webhooks_once_across_kills(self):
        port = self.hook_vault()
        listen = ["--listen", "127.0.0.1:%d" % port]
        p = self.start(int(time.time()), args=listen)
        wait_port(port)
        body = b'{"msg": "hello"}'
        st, doc = self.post(port, body, delivery="d1")
        self.assertEqual((st, doc), (202, {"run": "serve-hooked-gh-d1"}))
        self.assertEqual(self.post(port, body, delivery="d1"), (409, doc))   # replayed
        for kw, code in ((dict(key=b"wrong"), 401), (dict(ts=time.time() - 400), 401),
                         (dict(path="hooked/nope"), 404)):
            self.assertEqual(self.post(port, body, delivery="x", **kw)[0], code, kw)
        self.assertEqual(self.post(port, b"x" * 101, delivery="big")[0], 413)
        # Without a delivery id the signature names the call, in either
        # case of its hex: the same call again is the same delivery.
        t = time.time()
        st, first = self.post(port, body, ts=t)
        self.assertEqual(st, 202, first)
        self.assertEqual(self.post(port, body, ts=t, upper=True), (409, first))
        # A timestamp that is not plain unix seconds is refused.
        self.assertEqual(self.post(port, body, ts="-1", delivery="neg")[0], 401)
        # A caller sending a byte a second is cut at 5 s, and the server
        # answers the next caller.
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0 = time.time()
        try:
            for ch in b"POST /hooks/hooked/gh HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghij":
                slow.sendall(bytes([ch]))
                time.sleep(0.5)
                if time.time() - t0 > 12:
                    break
        except OSError:
            pass
        self.assertLess(time.time() - t0, 9, "a trickling caller held the server")
        slow.close()
        self.assertEqual(self.post(port, body, delivery="after-slow")[0], 202)
        runs = self.wait_runs(3)
        self.assertEqual(runs["serve-hooked-gh-d1"], "succeeded")
        rec = json.loads(self.rz("flow", "runs", "serve-hooked-gh-d1", "--json"))
        self.assertEqual(rec["steps"]["s"]["outputs"]["message"], "hello")
        self.kill9(p)
        # Killed after recording a call, before its run: run at the next start.
        p = self.start(int(time.time()), args=listen, RHIZOS_TEST_KILL_AFTER_FIRE="1")
        wait_port(port)
        with self.assertRaises(Exception):
            self.post(port, body, delivery="d2")
        self.assertEqual(p.wait(timeout=20), -signal.SIGKILL)
        self.assertEqual(len(self.runs()), 3)
        p = self.start(int(time.time()), args=listen)
        runs = self.wait_runs(4)
        self.assertEqual(runs["serve-hooked-gh-d2"], "succeeded")
        wait_port(port)
        self.assertEqual(self.post(port, body, delivery="d2")[0], 409)
        time.sleep(1)
        self.assertEqual(len(self.runs()), 4)
        self.assertIn("never ran", self.kill9(p))

    def test_hook_run_there_at_the_202(self):
        """A caller that asks for the run the 202 named, at once, finds it."""
        port = self.hook_vault()
        p = self.start(int(time.time()), args=["--listen", "127.0.0.1:%d" % port])
        wait_port(port)
        for i in range(5):
            st, doc = self.post(port, b'{"msg": "now"}', delivery="at-once-%d" % i)
            self.assertEqual(st, 202, doc)
            rec = json.loads(self.rz("flow", "runs", doc["run"], "--json"))
            self.assertEqual(rec["id"], doc["run"])
        self.wait_runs(5)
        self.kill9(p)

    def test_usage_and_refusals(self):
        self.assertIn("flow serve FILE", self.rz("flow", "--help"))
        self.assertIn("wants FILE", self.rz("flow", "serve", code=2))
        plain = self.write("plain.yaml", "flux: 1\nname: plain\nsteps:\n  s:\n    module: echo@1\n")
        self.assertIn("no enabled cron, flow or event trigger", self.rz("flow", "serve", plain, code=1))
        self.assertIn("no such file", self.rz("flow", "serve", "/nonexistent.yaml",
                                              code=1).lower())


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
