#!/usr/bin/env python3
"""End-to-end: pause/resume of a deployment and approval steps
(docs/triggers.md, "Pause, resume, approval").

- A flow with an approval step waits in awaiting_approval after its first
  step; a stranger cannot see or decide it (404); a listed approver can.
- Paused, then kill -9 of the orchestrator: after the restart it is still
  paused and still awaiting; the approver's decision is taken, nothing
  starts until the resume, then the rest runs with the decision's outputs.
  Each step is charged once (the ledger is checked); the gate costs nothing.
- A rejection fails the gate and skips what follows; bad calls (decided
  twice, unknown step, a step that is no gate, a bad comment, a finished
  run) change nothing.
- A pause holds a job already queued: no node gets it, across a kill -9,
  until the resume.
- The CLI: rhizos flow pause/resume/approve/reject.
- Resume with a step cache: a failed deployment resumed runs only what did
  not succeed (the rest "reused", not paid again: the ledger is checked),
  across a kill -9 of the orchestrator; a changed flow deployed with
  resume_from re-runs only the changed step; nobody resumes from another
  account's run; `rhizos flow resume ID [FILE]`.
- Flow and event triggers: a flow that follows another runs when it
  succeeds, with its outputs as ${{ trigger.outputs }}; one waiting for a
  failure does not; a cycle is refused at deploy; an event published
  through the API runs the flows that wait for it (the caller's only); a
  kill -9 after the fire does not fire again; a fire lost to a crash
  (recorded, its run not yet committed) runs once when the end it follows
  is replayed.
- flow diff: steps added, removed, changed (which fields) between versions.

Usage: approvals.py ORCHESTRATOR SOURCE_ROOT LIBRHIZOS [RHIZOS]"""
import json
import os
import signal
import sys
import tempfile
import unittest

from triggers import LIB, NODE_CAPS, RHIZOS, ROOT, X25519, Base, Server
from harness import NodeKey, run

GATED = ("flux: 1\nname: gated\nsteps:\n"
         "  a:\n    module: echo@1\n    inputs: {message: first}\n"
         "  gate:\n    needs: [a]\n    approval: {timeout_s: 3600, approvers: [\"%s\"]}\n"
         "  b:\n    module: echo@1\n    needs: [gate]\n"
         "    inputs: {message: \"${{ steps.gate.outputs.comment }}\"}\n")


class Helpers(Base):
    def node(self):
        nk = NodeKey(X25519)
        reg = self.ok("POST", "/api/v1/nodes/register", nk.register_body(NODE_CAPS), code=201)
        self.addCleanup(lambda: self.s.call("DELETE", "/api/v1/nodes/%d" % reg["id"],
                                            key=self.s.admin))
        return nk, reg["id"], reg["token"]

    def take(self, nk, nid, tok, wait=5):
        """Take one job and report it done with its message; its request,
        or None when none came."""
        st, a = self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=%d" % (nid, wait), key=tok)
        if st == 204:
            return None
        self.assertEqual(st, 200, a)
        out = {"message": str(a["request"]["inputs"].get("message"))}
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]),
                nk.result_body(a["job"], a["attempt"], out, run_ms=100), tok)
        return a

    def status(self, dep, key):
        return self.ok("GET", "/api/v1/flows/%d/status" % dep, key=key)


class Approvals(Helpers):
    def test_pause_holds_a_queued_job_across_kill9(self):
        _, key = self.client(10 ** 6)
        one = "flux: 1\nname: one\nsteps:\n  a:\n    module: echo@1\n    inputs: {message: hi}\n"
        # Deployed before any node exists: its one job waits in the queue.
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": one}, key, 201)["id"]
        self.assertTrue(self.ok("POST", "/api/v1/flows/%d/pause" % dep, key=key)["paused"])
        nk, nid, tok = self.node()
        self.assertIsNone(self.take(nk, nid, tok, wait=1))   # held, not assigned
        st = self.status(dep, key)
        self.assertEqual(st["steps"]["a"]["waiting_reason"], "its deployment is paused", st)
        self.s.proc.stop(sig=signal.SIGKILL)
        self.s.start()
        self.assertIsNone(self.take(nk, nid, tok, wait=1))   # still held after kill -9
        self.assertTrue(self.status(dep, key).get("paused"))
        self.ok("POST", "/api/v1/flows/%d/resume" % dep, key=key)
        a = self.take(nk, nid, tok)
        self.assertEqual(a["step"], "a")
        self.assertEqual(self.status(dep, key)["status"], "succeeded")

    def test_pause_approve_across_kill9_then_reject(self):
        owner, key = self.client(10 ** 6)
        approver, akey = self.client(0)
        _, stranger = self.client(0)
        bal0 = self.ok("GET", "/api/v1/accounts/me", key=key)["balance_micros"]
        nk, nid, tok = self.node()
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": GATED % approver}, key, 201)
        dep = d["id"]
        self.assertEqual(self.take(nk, nid, tok)["step"], "a")
        self.assertIsNone(self.take(nk, nid, tok, wait=0))   # the gate queues nothing
        st = self.status(dep, key)
        self.assertEqual(st["steps"]["gate"]["status"], "running")
        self.assertEqual([w["step"] for w in st["awaiting_approval"]], ["gate"])
        self.assertEqual(st["awaiting_approval"][0]["approvers"], [approver])
        # Strangers see nothing and decide nothing.
        for path in ("/api/v1/flows/%d/steps/gate/approve" % dep,
                     "/api/v1/flows/%d/pause" % dep):
            code, doc = self.s.call("POST", path, {}, stranger)
            self.assertEqual(code, 404, doc)
        # Bad calls change nothing.
        for path, body, code in (
                ("/api/v1/flows/%d/steps/gate/approve" % dep, {"comment": "a\x01b"}, 400),
                ("/api/v1/flows/%d/steps/gate/approve" % dep, {"comment": "x" * 1001}, 400),
                ("/api/v1/flows/%d/steps/gate/approve" % dep, {"other": 1}, 400),
                ("/api/v1/flows/%d/steps/a/approve" % dep, {}, 422),
                ("/api/v1/flows/%d/steps/nope/approve" % dep, {}, 404),
                ("/api/v1/flows/999999/steps/gate/approve", {}, 404)):
            got, doc = self.s.call("POST", path, body, key)
            self.assertEqual(got, code, (path, body, doc))
        self.assertIn("awaiting_approval", self.status(dep, key))
        # Paused, then kill -9: both stand after the restart.
        self.assertTrue(self.ok("POST", "/api/v1/flows/%d/pause" % dep, key=key)["paused"])
        self.s.proc.stop(sig=signal.SIGKILL)
        self.s.start()
        st = self.status(dep, key)
        self.assertTrue(st.get("paused"), st)
        self.assertEqual([w["step"] for w in st["awaiting_approval"]], ["gate"])
        # The approver decides; nothing starts while paused.
        st = self.ok("POST", "/api/v1/flows/%d/steps/gate/approve" % dep,
                     {"comment": "ship it"}, akey)
        gate = st["steps"]["gate"]
        self.assertEqual(gate["status"], "succeeded")
        self.assertEqual(gate["outputs"], {"approved": True, "by": approver,
                                           "comment": "ship it"})
        code, doc = self.s.call("POST", "/api/v1/flows/%d/steps/gate/reject" % dep, {}, key)
        self.assertEqual(code, 409, doc)
        self.assertIsNone(self.take(nk, nid, tok, wait=1))
        st = self.ok("POST", "/api/v1/flows/%d/resume" % dep, key=key)
        self.assertNotIn("paused", st)
        b = self.take(nk, nid, tok)
        self.assertEqual((b["step"], b["request"]["inputs"]["message"]), ("b", "ship it"))
        st = self.status(dep, key)
        self.assertEqual(st["status"], "succeeded", st)
        # Each step paid once; the gate's hold came back.
        charged = st["charged_micros"]
        self.assertGreater(charged, 0)
        ledger = [self.ok("GET", "/api/v1/jobs/%d" % st["steps"][s]["job"], key=key)
                  for s in ("a", "gate", "b")]
        self.assertEqual(ledger[1]["cost_micros"], 0)
        self.assertEqual(ledger[0]["cost_micros"] + ledger[2]["cost_micros"], charged)
        self.assertEqual(self.ok("GET", "/api/v1/accounts/me", key=key)["balance_micros"],
                         bal0 - charged)
        code, doc = self.s.call("POST", "/api/v1/flows/%d/pause" % dep, None, key)
        self.assertEqual(code, 409, doc)
        # A rejection fails the gate and skips the rest.
        d2 = self.ok("POST", "/api/v1/flows/deploy", {"flow": GATED % approver}, key, 201)
        self.assertEqual(self.take(nk, nid, tok)["step"], "a")
        st = self.ok("POST", "/api/v1/flows/%d/steps/gate/reject" % d2["id"],
                     {"comment": "not today"}, key)
        self.assertEqual(st["status"], "failed")
        self.assertEqual(st["steps"]["gate"]["error"], "rejected by %s: not today" % owner)
        self.assertEqual(st["steps"]["b"]["status"], "skipped")
        if RHIZOS:
            self.cli_checks(key, nk, nid, tok, approver)
        self.python_checks(key, nk, nid, tok, approver)

    def python_checks(self, key, nk, nid, tok, approver):
        probe = run([sys.executable, "-c", "import ctypes,sys; ctypes.CDLL(sys.argv[1])", LIB])
        if not LIB or probe.returncode != 0:
            return   # a sanitizer build: ctypes cannot load it
        os.environ["RHIZOS_LIB"] = LIB
        sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
        import rhizos
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": GATED % approver}, key, 201)["id"]
        with rhizos.Client(self.s.proc.base, key) as c:
            self.assertTrue(c.pause(dep)["paused"])
            self.assertIsNone(self.take(nk, nid, tok, wait=0))   # a: queued, held
            with self.assertRaises(rhizos.errors.StateError):   # paused: not reached
                c.approve(dep, "gate")
            self.assertNotIn("paused", c.resume(dep))
            self.assertEqual(self.take(nk, nid, tok)["step"], "a")
            with self.assertRaises(rhizos.errors.ValidationError):
                c.approve(dep, "b")
            st = c.approve(dep, "gate", "py")
            self.assertEqual(st["steps"]["gate"]["outputs"]["comment"], "py")
            self.assertEqual(self.take(nk, nid, tok)["request"]["inputs"]["message"], "py")
            with self.assertRaises(rhizos.errors.StateError):
                c.reject(dep, "gate")

    def cli_checks(self, key, nk, nid, tok, approver):
        env = dict(os.environ, RHIZOS_URL=self.s.proc.base, RHIZOS_API_KEY=key)

        def rz(*a, code=0):
            p = run([RHIZOS, *a], env=env)
            self.assertEqual(p.returncode, code, p.stdout + p.stderr)
            return p.stdout + p.stderr
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": GATED % approver}, key, 201)["id"]
        # (a was queued at the deploy: the pause holds it in the queue.)
        self.assertIn("paused", rz("flow", "pause", str(dep)))
        self.assertIsNone(self.take(nk, nid, tok, wait=0))
        out = rz("flow", "status", str(dep))
        self.assertRegex(out, r"(?m)^  a .*running \(queued for a node: its deployment is paused\)$")
        self.assertIn("paused: no step starts", out)
        self.assertIn("resumed", rz("flow", "resume", str(dep)))
        self.assertEqual(self.take(nk, nid, tok)["step"], "a")
        self.assertIn("awaiting approval: gate", rz("flow", "status", str(dep)))
        self.assertIn("not an approval step", rz("flow", "approve", str(dep), "a", code=1))
        out = rz("flow", "approve", str(dep), "gate", "--comment", "from the cli")
        self.assertIn("gate approved", out)
        self.assertEqual(self.take(nk, nid, tok)["request"]["inputs"]["message"],
                         "from the cli")
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": GATED % approver}, key, 201)["id"]
        self.take(nk, nid, tok)
        self.assertIn("gate rejected", rz("flow", "reject", str(dep), "gate"))
        rz("flow", "approve", code=2)


class LostFire(Helpers):
    """A flow trigger's fire lost to a crash runs once: the orchestrator dies
    (a test seam) after recording the fire and before the engine's commit of
    its run and of the end it follows; started again, the node's result is
    sent again, the end is replayed and the follower runs, once."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.s = Server(cls.tmp.name, env=dict(os.environ, RHIZOS_TEST_KILL_AFTER_FOLLOW="1"))

    def test_fire_lost_to_a_crash_runs_once(self):
        _, key = self.client(10 ** 6)
        nk, nid, tok = self.node()
        after = ("flux: 1\nname: after\ntriggers:\n  - {type: flow, flow: first}\n"
                 "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
                 "    inputs: {message: \"${{ trigger.outputs.a.message }}\"}\n")
        first = "flux: 1\nname: first\nsteps:\n  a:\n    module: echo@1\n    inputs: {message: hi}\n"
        fa = self.ok("POST", "/api/v1/flows/deploy", {"flow": after}, key, 201)
        self.assertEqual(self.take(nk, nid, tok)["deployment"], fa["id"])   # its own run
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": first}, key, 201)["id"]
        st, a = self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        self.assertEqual((st, a["deployment"]), (200, d))
        body = nk.result_body(a["job"], a["attempt"], {"message": "hi"}, run_ms=10)
        try:   # the fire is recorded, then the server dies before its commit
            self.s.call("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]), body, tok)
        except Exception:
            pass
        self.assertEqual(self.s.proc.p.wait(timeout=30), -signal.SIGKILL)
        self.s.proc.stop()   # collects what it left (pipes)
        self.s.env = None
        self.s.start()
        # The end was lost with the fire: the node sends its result again.
        self.assertEqual(self.status(d, key)["status"], "running")
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]), body, tok)
        self.assertEqual(self.status(d, key)["status"], "succeeded")
        f = self.ok("GET", "/api/v1/named-flows/%d" % fa["flow_id"], key=key)
        ev = [e["what"] for e in f["triggers"]["flow-0"]["events"]]
        self.assertEqual(ev, ["fired", "lost", "fired"], ev)
        runs = sorted(x["id"] for x in self.ok("GET", "/api/v1/flows", key=key)["flows"])
        self.assertEqual(len(runs), 3, runs)   # after's own run, first, one fire
        fired = f["triggers"]["flow-0"]["events"][-1]["deployment"]
        st = self.status(fired, key)
        self.assertEqual((st["trigger"]["name"], st["version"]), ("flow-0", 1))
        b = self.take(nk, nid, tok)
        self.assertEqual((b["deployment"], b["request"]["inputs"]["message"]), (fired, "hi"))
        self.assertIsNone(self.take(nk, nid, tok, wait=1))   # once, not twice
        # Another restart changes nothing: the fire is done.
        self.s.proc.stop(sig=signal.SIGKILL)
        self.s.start()
        self.assertIsNone(self.take(nk, nid, tok, wait=1))
        self.assertEqual(sorted(x["id"] for x in
                                self.ok("GET", "/api/v1/flows", key=key)["flows"]), runs)


CHAIN = ("flux: 1\nname: chain\nsteps:\n"
         "  a:\n    module: echo@1\n    inputs: {message: one}\n"
         "  b:\n    module: echo@1\n    needs: [a]\n"
         "    inputs: {message: \"${{ steps.a.outputs.message }}\"}\n"
         "  c:\n    module: echo@1\n    needs: [b]\n    inputs: {message: %s}\n")


class Resume(Helpers):
    def take_as(self, nk, nid, tok, fail=False):
        st, a = self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        if st == 204:
            return None
        self.assertEqual(st, 200, a)
        if fail:
            body = nk.result_body(a["job"], a["attempt"], error="boom", run_ms=100)
        else:
            body = nk.result_body(a["job"], a["attempt"],
                                  {"message": str(a["request"]["inputs"]["message"])}, run_ms=100)
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]), body, tok)
        return a["step"]

    def balance(self, key):
        return self.ok("GET", "/api/v1/accounts/me", key=key)["balance_micros"]

    def test_resume_reuses_and_pays_once(self):
        _, key = self.client(10 ** 6)
        _, other = self.client(10 ** 6)
        bal0 = self.balance(key)
        nk, nid, tok = self.node()
        d1 = self.ok("POST", "/api/v1/flows/deploy", {"flow": CHAIN % "three"}, key, 201)["id"]
        self.assertEqual(self.take_as(nk, nid, tok), "a")
        self.assertEqual(self.take_as(nk, nid, tok, fail=True), "b")
        st1 = self.status(d1, key)
        self.assertEqual(st1["status"], "failed")
        paid1 = st1["charged_micros"]
        # Nobody else resumes it, nor resumes from it.
        self.assertEqual(self.s.call("POST", "/api/v1/flows/%d/resume" % d1, None, other)[0], 404)
        code, doc = self.s.call("POST", "/api/v1/flows/deploy",
                                {"flow": CHAIN % "three", "resume_from": d1}, other)
        self.assertEqual(code, 404, doc)
        code, doc = self.s.call("POST", "/api/v1/flows/deploy",
                                {"flow": CHAIN % "three", "resume_from": "x"}, key)
        self.assertEqual(code, 400, doc)
        # Resumed: a is reused at once; kill -9 before b runs.
        r = self.ok("POST", "/api/v1/flows/%d/resume" % d1, None, key, 201)
        d2 = r["id"]
        self.assertEqual(r["resumed_from"], d1)
        self.s.proc.stop(sig=signal.SIGKILL)
        self.s.start()
        st = self.status(d2, key)
        self.assertTrue(st["steps"]["a"]["reused"], st)
        self.assertEqual(st["steps"]["a"]["reused_from"], "deployment %d step a" % d1)
        self.assertEqual(self.take_as(nk, nid, tok), "b")
        self.assertEqual(self.take_as(nk, nid, tok), "c")
        st2 = self.status(d2, key)
        self.assertEqual(st2["status"], "succeeded", st2)
        jobs = {s: self.ok("GET", "/api/v1/jobs/%d" % st2["steps"][s]["job"], key=key)
                for s in "abc"}
        self.assertEqual(jobs["a"]["cost_micros"], 0)
        self.assertEqual(st2["charged_micros"], jobs["b"]["cost_micros"] + jobs["c"]["cost_micros"])
        self.assertEqual(self.balance(key), bal0 - paid1 - st2["charged_micros"])
        # Nothing to resume in a run that succeeded.
        self.assertEqual(self.s.call("POST", "/api/v1/flows/%d/resume" % d2, None, key)[0], 409)
        # A change to c only: a and b are reused from d2, c runs.
        d3 = self.ok("POST", "/api/v1/flows/deploy",
                     {"flow": CHAIN % "changed", "resume_from": d2, "note": "c changed"},
                     key, 201)["id"]
        self.assertEqual(self.take_as(nk, nid, tok), "c")
        st3 = self.status(d3, key)
        self.assertEqual(st3["status"], "succeeded", st3)
        self.assertEqual([s for s in "abc" if st3["steps"][s].get("reused")], ["a", "b"])
        self.assertEqual(st3["steps"]["a"]["reused_from"], "deployment %d step a" % d1)
        if RHIZOS:
            self.cli_resume(key, nk, nid, tok)

    def python_clear(self, key):
        """The Python binding's clear_cache."""
        probe = run([sys.executable, "-c", "import ctypes,sys; ctypes.CDLL(sys.argv[1])", LIB])
        if not LIB or probe.returncode != 0:
            return   # a sanitizer build: ctypes cannot load it
        os.environ["RHIZOS_LIB"] = LIB
        sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
        import rhizos
        with rhizos.Client(self.s.proc.base, key) as c:
            doc = c.clear_cache(flow="chain", step="a")
            self.assertEqual((doc["flow"], doc["step"]), ("chain", "a"))
            self.assertIsNone(c.clear_cache()["flow"])
            with self.assertRaises(rhizos.errors.Error):
                c.clear_cache(flow="a/b")

    def fail_chain(self, key, nk, nid, tok, text):
        """A chain deployed whose a succeeds and b fails: its id."""
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": text}, key, 201)["id"]
        self.assertEqual(self.take_as(nk, nid, tok), "a")
        self.assertEqual(self.take_as(nk, nid, tok, fail=True), "b")
        return d

    def test_cache_clear_is_per_account(self):
        _, key = self.client(10 ** 6)
        _, other = self.client(10 ** 6)
        nk, nid, tok = self.node()
        mine = self.fail_chain(key, nk, nid, tok, CHAIN % "mine")
        theirs = self.fail_chain(other, nk, nid, tok, CHAIN % "theirs")
        # Bad filters change nothing.
        for q in ("?flow=a/b", "?step=", "?flow=" + "x" * 129, "?other=1"):
            self.assertEqual(self.s.call("DELETE", "/api/v1/cache" + q, None, key)[0], 400, q)
        # A clear of another flow's or another step's results: a reused.
        self.ok("DELETE", "/api/v1/cache?flow=nothere", key=key)
        c = self.ok("DELETE", "/api/v1/cache?flow=chain&step=b", key=key)
        self.assertEqual((c["flow"], c["step"]), ("chain", "b"))
        d = self.ok("POST", "/api/v1/flows/%d/resume" % mine, None, key, 201)["id"]
        self.assertTrue(self.status(d, key)["steps"]["a"].get("reused"))
        self.ok("DELETE", "/api/v1/flows/%d" % d, key=key)
        # Mine cleared (step a of flow chain): a runs and is paid again.
        c = self.ok("DELETE", "/api/v1/cache?flow=chain&step=a", key=key)
        self.assertIsInstance(c["cleared_before_ms"], int)
        bal = self.balance(key)
        d = self.ok("POST", "/api/v1/flows/%d/resume" % mine, None, key, 201)["id"]
        self.assertFalse(self.status(d, key)["steps"]["a"].get("reused"))
        for want in "abc":
            self.assertEqual(self.take_as(nk, nid, tok), want)
        st = self.status(d, key)
        self.assertEqual(st["status"], "succeeded", st)
        self.assertGreater(self.ok("GET", "/api/v1/jobs/%d" % st["steps"]["a"]["job"],
                                   key=key)["cost_micros"], 0)
        self.assertEqual(self.balance(key), bal - st["charged_micros"])
        self.python_clear(key)
        # Theirs untouched: the other account's resume still reuses a.
        d = self.ok("POST", "/api/v1/flows/%d/resume" % theirs, None, other, 201)["id"]
        st = self.status(d, other)
        self.assertTrue(st["steps"]["a"].get("reused"), st)
        # A clear of all: a result carried from run to run is not reused either.
        self.assertEqual(self.take_as(nk, nid, tok, fail=True), "b")
        self.ok("DELETE", "/api/v1/cache", key=other)
        after = self.ok("POST", "/api/v1/flows/%d/resume" % d, None, other, 201)["id"]
        self.assertFalse(self.status(after, other)["steps"]["a"].get("reused"))
        self.ok("DELETE", "/api/v1/flows/%d" % after, key=other)

    def cli_resume(self, key, nk, nid, tok):
        env = dict(os.environ, RHIZOS_URL=self.s.proc.base, RHIZOS_API_KEY=key)
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": CHAIN % "cli"}, key, 201)["id"]
        self.take_as(nk, nid, tok)
        self.take_as(nk, nid, tok, fail=True)
        p = run([RHIZOS, "flow", "resume", str(d)], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        new = int(p.stdout.strip())
        self.assertIn("resumed as flow %d" % new, p.stderr)
        self.take_as(nk, nid, tok)
        self.take_as(nk, nid, tok)
        out = run([RHIZOS, "flow", "status", str(new)], env=env).stdout
        self.assertRegex(out, r"(?m)^  a .*succeeded \(reused from deployment %d step a\)$" % d)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "chain.yaml")
            with open(path, "w") as f:
                f.write(CHAIN % "cli2")
            p = run([RHIZOS, "flow", "resume", str(new), path, "--note", "from a file",
                     "--modules", os.path.join(ROOT, "examples", "modules")], env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            third = int(p.stdout.strip())
            self.assertEqual(self.take_as(nk, nid, tok), "c")
            st = self.status(third, key)
            self.assertEqual(st["status"], "succeeded", st)
            f = self.ok("GET", "/api/v1/named-flows/%d" % st["flow_id"], key=key)
            self.assertEqual(f["versions"][-1]["note"], "from a file")
        p = run([RHIZOS, "flow", "cache", "clear", "--remote", "--flow", "chain", "--step",
                 "a", "--json"], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["step"], "a")
        p = run([RHIZOS, "flow", "resume", "x"], env=env)
        self.assertEqual(p.returncode, 2)


class FlowTriggers(Helpers):
    def drain(self, nk, nid, tok):
        """Every job queued now, done; {deployment: message}."""
        got = {}
        while True:
            st, a = self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=1" % nid, key=tok)
            if st == 204:
                return got
            self.assertEqual(st, 200, a)
            msg = a["request"]["inputs"].get("message")
            self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]),
                    nk.result_body(a["job"], a["attempt"], {"message": str(msg)}, run_ms=10),
                    tok)
            got[a["deployment"]] = msg

    def test_flow_and_event_triggers(self):
        _, key = self.client(10 ** 6)
        _, other = self.client(10 ** 6)
        nk, nid, tok = self.node()
        after = ("flux: 1\nname: after\ntriggers:\n  - {type: flow, flow: first}\n"
                 "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
                 "    inputs: {message: \"${{ trigger.outputs.a.message }}\"}\n")
        onfail = after.replace("name: after", "name: onfail").replace(
            "flow: first}", "flow: first, status: failed}")
        first = "flux: 1\nname: first\nsteps:\n  a:\n    module: echo@1\n    inputs: {message: hello}\n"
        fa = self.ok("POST", "/api/v1/flows/deploy", {"flow": after}, key, 201)
        self.ok("POST", "/api/v1/flows/deploy", {"flow": onfail}, key, 201)
        self.drain(nk, nid, tok)   # their own first runs
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": first}, key, 201)["id"]
        got = self.drain(nk, nid, tok)
        self.assertEqual(got.pop(d), "hello")
        self.assertEqual(list(got.values()), ["hello"], got)   # after ran, onfail did not
        fired = list(got)[0]
        st = self.status(fired, key)
        self.assertEqual((st["status"], st["trigger"]["name"]), ("succeeded", "flow-0"))
        f = self.ok("GET", "/api/v1/named-flows/%d" % fa["flow_id"], key=key)
        self.assertEqual(f["triggers"]["flow-0"]["counts"]["fired"], 1)
        # kill -9 now: the fire is not made again.
        before = sorted(x["id"] for x in self.ok("GET", "/api/v1/flows", key=key)["flows"])
        self.s.proc.stop(sig=signal.SIGKILL)
        self.s.start()
        self.assertEqual(self.drain(nk, nid, tok), {})
        self.assertEqual(sorted(x["id"] for x in self.ok("GET", "/api/v1/flows", key=key)["flows"]),
                         before)
        # A cycle is refused, naming it; nothing is deployed.
        loop = first.replace("steps:", "triggers:\n  - flow: after\nsteps:")
        code, doc = self.s.call("POST", "/api/v1/flows/deploy", {"flow": loop}, key)
        self.assertEqual(code, 422, doc)
        self.assertIn("first -> after -> first", doc["error"]["message"])
        # Events: the caller's flows waiting for it run, with its data.
        ev = ("flux: 1\nname: onev\ntriggers:\n  - event: price-moved\n"
              "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
              "    inputs: {message: \"${{ trigger.data.p }}\"}\n")
        self.ok("POST", "/api/v1/flows/deploy", {"flow": ev}, key, 201)
        self.drain(nk, nid, tok)
        r = self.ok("POST", "/api/v1/events", {"event": "price-moved", "data": {"p": "42"}},
                    key, 202)
        self.assertEqual(len(r["runs"]), 1, r)
        self.assertEqual(self.drain(nk, nid, tok), {r["runs"][0]["run"]: "42"})
        self.assertEqual(self.ok("POST", "/api/v1/events", {"event": "price-moved"}, other,
                                 202)["runs"], [])
        for body in ({"event": "a b"}, {}, {"event": "x", "extra": 1}):
            code, doc = self.s.call("POST", "/api/v1/events", body, key)
            self.assertEqual(code, 400, (body, doc))

    def test_service_events_run_event_triggers(self):
        _, key = self.client(10 ** 6)
        _, other = self.client(10 ** 6)
        nk, nid, tok = self.node()
        self.drain(nk, nid, tok)
        waits = ("flux: 1\nname: onalert\ntriggers:\n  - event: alert\n"
                 "inputs:\n  trigger: {required: false}\nsteps:\n  s:\n    module: echo@1\n"
                 "    inputs: {message: \"${{ trigger.data.px }}\"}\n")
        for k in (key, other):   # the other account's flow must not run
            d = self.ok("POST", "/api/v1/flows/deploy", {"flow": waits}, k, 201)["id"]
            self.drain(nk, nid, tok)
            self.s.call("DELETE", "/api/v1/flows/%d" % d, key=k)
        svc = ("flux: 1\nname: desk\nsteps:\n  hb:\n    module: trader@1\n"
               "    kind: service\n    ready: line\n    restart: {policy: never}\n")
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": svc}, key, 201)["id"]
        st, a = self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        self.assertEqual(st, 200, a)
        before, theirs = set(self.deps(key)), set(self.deps(other))
        path = "/api/v1/nodes/%d/jobs/%d/events" % (nid, a["job"])
        body = {"attempt": a["attempt"], "ready": True,
                "events": [{"seq": 1, "name": "alert", "data": {"px": 9}},
                           {"seq": 2, "name": "other", "data": {}}]}
        for _ in range(2):   # the node sends again: taken once, fired once
            self.ok("POST", path, body, tok)
        new = set(self.deps(key)) - before
        self.assertEqual(len(new), 1, new)
        self.assertEqual(self.drain(nk, nid, tok), {new.pop(): 9})
        self.assertEqual(set(self.deps(other)), theirs)
        self.s.call("DELETE", "/api/v1/flows/%d" % dep, key=key)


class Diff(Helpers):
    def test_flow_diff(self):
        _, key = self.client(10 ** 6)
        _, other = self.client(10 ** 6)
        v1 = ("flux: 1\nname: d\nsteps:\n  a:\n    module: echo@1\n"
              "  b:\n    module: echo@1\n    needs: [a]\n")
        v2 = ("flux: 1\nname: d\ntriggers:\n  - event: go\nsteps:\n  a:\n    module: echo@1\n"
              "    timeout_s: 30\n  c:\n    module: echo@1\n    needs: [a]\n")
        d1 = self.ok("POST", "/api/v1/flows/deploy", {"flow": v1}, key, 201)
        self.ok("POST", "/api/v1/flows/deploy", {"flow": v2, "note": "two"}, key, 201)
        fid = d1["flow_id"]
        d = self.ok("GET", "/api/v1/named-flows/%d/diff?from=1&to=2" % fid, key=key)
        self.assertEqual(d["steps"], {"added": ["c"], "removed": ["b"],
                                      "changed": [{"step": "a", "fields": ["timeout_s"]}]})
        self.assertEqual(d["flow"], ["triggers"])
        self.assertEqual(self.ok("GET", "/api/v1/named-flows/%d/diff?from=1" % fid,
                                 key=key)["to"], 2)
        for q, code in (("from=9", 404), ("", 400), ("from=x", 400)):
            st, doc = self.s.call("GET", "/api/v1/named-flows/%d/diff?%s" % (fid, q), key=key)
            self.assertEqual(st, code, (q, doc))
        self.assertEqual(self.s.call("GET", "/api/v1/named-flows/%d/diff?from=1" % fid,
                                     key=other)[0], 404)
        if RHIZOS:
            env = dict(os.environ, RHIZOS_URL=self.s.proc.base, RHIZOS_API_KEY=key)
            p = run([RHIZOS, "flow", "diff", "d", "1", "2"], env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout, "flow d: version 1 -> 2\n  + step c\n  - step b\n"
                             "  ~ step a: timeout_s\n  ~ triggers\n")
            self.assertEqual(run([RHIZOS, "flow", "diff", "d", "x"], env=env).returncode, 2)


class Embedded(unittest.TestCase):
    """rhizos flow run: a gate with a timeout takes its default; one without
    is refused before anything runs (nobody can decide it)."""

    def test_flow_run_gate(self):
        if not RHIZOS:
            self.skipTest("no rhizos given")
        flow = ("flux: 1\nname: g\nsteps:\n"
                "  gate:\n    approval: {timeout_s: 1, default: approve}\n"
                "  b:\n    module: echo@1\n    needs: [gate]\n"
                "    inputs: {message: \"${{ steps.gate.outputs.by }}\"}\n")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "g.yaml")
            base = [RHIZOS, "flow", "run", path, "--data", os.path.join(d, "data"), "--modules",
                    os.path.join(ROOT, "examples", "modules"), "--no-sandbox", "--json"]
            with open(path, "w") as f:
                f.write(flow)
            p = run(base)
            self.assertEqual(p.returncode, 0, p.stderr)
            rec = json.loads(p.stdout)
            self.assertEqual(rec["steps"]["gate"]["outputs"],
                             {"approved": True, "by": "timeout",
                              "comment": "no decision in time: the step's default was taken"})
            self.assertEqual(rec["steps"]["b"]["outputs"]["message"], "timeout")
            with open(path, "w") as f:
                f.write(flow.replace("timeout_s: 1, default: approve", "default: approve"))
            p = run(base)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertIn("approval step 'gate' has no timeout_s", p.stderr)
            self.assertIn("nothing was run", p.stderr)

    def test_flow_resume_on_this_machine(self):
        if not RHIZOS:
            self.skipTest("no rhizos given")
        flow = ("flux: 1\nname: chain\ninputs:\n  msg: {type: string}\nsteps:\n"
                "  a:\n    module: echo@1\n    inputs: {message: \"${{ inputs.msg }}\"}\n"
                "  b:\n    module: flaky@1\n    needs: [a]\n    config: {fail_times: 1}\n"
                "    inputs: {value: \"${{ steps.a.outputs.message }}\"}\n"
                "  c:\n    module: echo@1\n    needs: [b]\n"
                "    inputs: {message: \"${{ steps.b.outputs.value }}\"}\n")
        with tempfile.TemporaryDirectory() as d:
            path, fixed = os.path.join(d, "chain.yaml"), os.path.join(d, "fixed.yaml")
            with open(path, "w") as f:
                f.write(flow)
            with open(fixed, "w") as f:
                f.write(flow.replace("fail_times: 1", "fail_times: 0"))
            opts = ["--data", os.path.join(d, "data"), "--modules",
                    os.path.join(ROOT, "examples", "modules"), "--no-sandbox"]

            def last_run():
                p = run([RHIZOS, "flow", "runs", "--json"] + opts[:2])
                return json.loads(p.stdout)[0]["id"]
            p = run([RHIZOS, "flow", "run", path, "--input", "msg=hi"] + opts)
            self.assertEqual(p.returncode, 1, p.stderr)
            first = last_run()
            # b changed: a is reused (its inputs came back from the record), b and c run.
            p = run([RHIZOS, "flow", "resume", first, fixed, "--json"] + opts)
            self.assertEqual(p.returncode, 0, p.stderr)
            rec = json.loads(p.stdout)
            self.assertEqual(rec["steps"]["a"]["reused_from"], "run %s step a" % first)
            self.assertNotIn("reused", rec["steps"]["b"])
            self.assertEqual(rec["steps"]["c"]["outputs"], {"message": "hi"})
            self.assertIn("succeeded (reused from run %s step a)" % first, p.stderr)
            second = last_run()
            # Nothing changed: everything is reused, nothing runs.
            p = run([RHIZOS, "flow", "resume", second, fixed, "--json"] + opts)
            self.assertEqual(p.returncode, 0, p.stderr)
            steps = json.loads(p.stdout)["steps"]
            self.assertEqual({s: v.get("reused") for s, v in steps.items()},
                             {"a": True, "b": True, "c": True})
            self.assertEqual(steps["a"]["reused_from"], "run %s step a" % first)
            self.assertNotIn("| hi", p.stderr)   # no step printed a line: none ran
            self.cache_on_this_machine(second, fixed, opts)
            p = run([RHIZOS, "flow", "resume", "run-nope"] + opts)
            self.assertEqual(p.returncode, 1)
            self.assertIn("no run 'run-nope'", p.stderr)

    def cache_on_this_machine(self, second, fixed, opts):
        """rhizos flow cache list | stats | clear over the runs here."""
        data = opts[:2]
        p = run([RHIZOS, "flow", "cache", "list", "--json"] + data)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [(e["run"], e["step"]) for e in json.loads(p.stdout)]
        self.assertTrue({(second, s) for s in "abc"} <= set(rows), rows)
        p = run([RHIZOS, "flow", "cache", "stats", "--json"] + data)
        st = json.loads(p.stdout)
        self.assertEqual(st["entries"], len(rows))
        self.assertEqual(st["flows"]["chain"], len(rows))
        for bad in (["--step", "a/b"], ["--flow", ""]):
            p = run([RHIZOS, "flow", "cache", "clear"] + bad + data)
            self.assertEqual(p.returncode, 2, bad)
        self.assertEqual(run([RHIZOS, "flow", "cache", "drop"] + data).returncode, 2)
        self.assertFalse(os.path.exists(os.path.join(data[1], "cache-clears.json")))
        # Another flow's clear changes nothing; step b's: b runs again, its
        # output is the same, so c (same inputs) is still reused.
        p = run([RHIZOS, "flow", "cache", "clear", "--flow", "other"] + data)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run([RHIZOS, "flow", "cache", "clear", "--flow", "chain", "--step", "b"] + data)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("step cache cleared", p.stdout)
        p = run([RHIZOS, "flow", "cache", "list", "--json", "--step", "b"] + data)
        self.assertEqual(json.loads(p.stdout), [])
        p = run([RHIZOS, "flow", "resume", second, fixed, "--json"] + opts)
        self.assertEqual(p.returncode, 0, p.stderr)
        steps = json.loads(p.stdout)["steps"]
        self.assertEqual({s: bool(v.get("reused")) for s, v in steps.items()},
                         {"a": True, "b": False, "c": True})
        # Everything cleared: the next resume runs every step.
        p = run([RHIZOS, "flow", "cache", "clear"] + data)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run([RHIZOS, "flow", "cache", "stats", "--json"] + data)
        self.assertEqual(json.loads(p.stdout)["entries"], 0)
        p = run([RHIZOS, "flow", "resume", second, fixed, "--json"] + opts)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(any(v.get("reused") for v in json.loads(p.stdout)["steps"].values()))
        # A clear on the network needs an orchestrator.
        p = run([RHIZOS, "flow", "cache", "list", "--remote"] + data)
        self.assertEqual(p.returncode, 2)
        p = run([RHIZOS, "flow", "--help"])
        self.assertIn("rhizos flow cache clear", p.stdout)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
