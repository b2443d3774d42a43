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
- --help, no FILE (usage), a flow without a cron trigger (refused).

Usage: serve.py RHIZOS SOURCE_ROOT"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

RHIZOS, ROOT = sys.argv[1], sys.argv[2]
MODULES = os.path.join(ROOT, "examples", "modules")
FLOW = ("flux: 1\nname: tick\ntriggers:\n  - cron: \"* * * * *\"\n"
        "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
        "    inputs: {message: \"${{ trigger.fire }}\"}\n")


class Serve(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.data = os.path.join(self.tmp.name, "data")
        self.flow = os.path.join(self.tmp.name, "tick.yaml")
        with open(self.flow, "w") as f:
            f.write(FLOW)
        self.base = (int(time.time()) // 60 + 2) * 60   # a minute to come, on the fake clock

    def rz(self, *args, code=0):
        p = subprocess.run([RHIZOS, "--data", self.data, "--modules", MODULES, *args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, code, p.stdout + p.stderr)
        return p.stdout + p.stderr

    def start(self, clock, **env):
        e = dict(os.environ, RHIZOS_TEST_SERVE_CLOCK=str(clock), **env)
        p = subprocess.Popen([RHIZOS, "--data", self.data, "--modules", MODULES,
                              "--no-sandbox", "flow", "serve", self.flow],
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

    def test_usage_and_refusals(self):
        self.assertIn("flow serve FILE", self.rz("flow", "--help"))
        self.assertIn("wants FILE", self.rz("flow", "serve", code=2))
        plain = os.path.join(self.tmp.name, "plain.yaml")
        with open(plain, "w") as f:
            f.write("flux: 1\nname: plain\nsteps:\n  s:\n    module: echo@1\n")
        self.assertIn("no enabled cron trigger", self.rz("flow", "serve", plain, code=1))
        self.assertIn("no such file", self.rz("flow", "serve", "/nonexistent.yaml",
                                              code=1).lower())


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
