#!/usr/bin/env python3
"""End-to-end: flows that start themselves (docs/triggers.md).

- Versions: deploying under a name makes version 1, the same content again
  is that version, a change is version 2 (digest, number, note); rollback;
  a run's status names its version; another client sees none of it.
- Cron, in real time: a `* * * * *` flow fires on the minute (its run says which),
  bound to the active version; a second client's flow whose owner cannot
  pay is refused at fire time with the reason recorded. kill -9 of the
  orchestrator right after the fire, restart: the fire is not made again.
- Webhooks: signed calls run the flow with the body as ${{ trigger.body }}
  and answer 202 with the run; unsigned, badly signed, stale (outside the
  5-minute window) calls are 401, a replayed delivery 409, a body over the
  limit 413, none of them starting a run.

- A trigger switched off and on by its owner (another account cannot):
  off, a cron trigger has no next fire and an event runs nothing, across
  a kill -9 and a new version; on again, a cron one fires from now (not
  the minutes it was off) and the event runs the flow; the CLI's `flow
  disable|enable NAME TRIGGER` and `flow schedule` showing it.

- The CLI: `rhizos flow list`, `flow versions NAME`, `flow rollback NAME V`,
  `flow schedule NAME` against the same server.

Usage: triggers.py ORCHESTRATOR SOURCE_ROOT LIBRHIZOS [RHIZOS]"""
import base64
import ctypes
import hashlib
import hmac
import json
import os
import signal
import sys
import tempfile
import time
import unittest

from harness import NodeKey, http, run, start_orchestrator, wait_until

EXE, ROOT = sys.argv[1], sys.argv[2]
LIB = sys.argv[3] if len(sys.argv) > 3 else None
RHIZOS = sys.argv[4] if len(sys.argv) > 4 else None
# One class only (e2e-triggers-overlap runs Overlap apart: minutes of real
# time that need no quiet machine, unlike the 2 s cron check).
ONLY = sys.argv[5] if len(sys.argv) > 5 else None
X25519 = "11" * 32
NODE_CAPS = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
             "storage": {"total_gb": 100, "free_gb": 100}, "adapters": ["process"],
             "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000,
                        "memory_gb_hour_micros": 0}, "max_concurrent_jobs": 4}


class Server:
    def __init__(self, tmp, env=None):
        self.env = env
        self.data = os.path.join(tmp, "data")
        self.admin = "rza_trig_" + os.urandom(16).hex()
        self.admin_file = os.path.join(tmp, "admin.key")
        with open(self.admin_file, "w") as f:
            f.write(self.admin + "\n")
        self.start()

    def start(self):
        self.proc = start_orchestrator(
            EXE, self.data, ["--admin-key-file", self.admin_file,
                             "--modules", os.path.join(ROOT, "examples", "modules"),
                             "--auth-failures", "0", "--quiet"], timeout=20,
            env=self.env)

    def call(self, method, path, body=None, key=None, raw=None, headers=None):
        return http(self.proc.base, method, path, key=key, body=body, raw=raw,
                    headers=headers, timeout=30)


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.s = Server(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.s.proc.stop_clean()
        finally:
            cls.tmp.cleanup()

    def ok(self, method, path, body=None, key=None, code=200):
        st, doc = self.s.call(method, path, body, key)
        self.assertEqual(st, code, "%s %s -> %d %r" % (method, path, st, doc))
        return doc

    def client(self, credits):
        doc = self.ok("POST", "/api/v1/accounts", {"name": "t"}, self.s.admin, 201)
        if credits:
            self.ok("POST", "/api/v1/accounts/%s/test-credits" % doc["id"],
                    {"amount_micros": credits}, self.s.admin)
        return doc["id"], doc["api_key"]

    def deps(self, key):
        return sorted(f["id"] for f in self.ok("GET", "/api/v1/flows", key=key)["flows"])


FLOW_V1 = "flux: 1\nname: nightly\nsteps:\n  s:\n    module: echo@1\n"
FLOW_V2 = "flux: 1\nname: nightly\nsteps:\n  s:\n    module: echo@1\n    timeout_s: 60\n"


class Versions(Base):
    def test_versions_rollback_and_isolation(self):
        _, key = self.client(10 ** 6)
        d1 = self.ok("POST", "/api/v1/flows/deploy", {"flow": FLOW_V1, "note": "first"},
                     key, 201)
        self.assertEqual(d1["version"], 1)
        fid = d1["flow_id"]
        # The same content (reformatted) is the same version.
        d1b = self.ok("POST", "/api/v1/flows/deploy",
                      {"flow": FLOW_V1.replace("name: nightly", "name:   nightly")}, key, 201)
        self.assertEqual((d1b["flow_id"], d1b["version"]), (fid, 1))
        d2 = self.ok("POST", "/api/v1/flows/deploy", {"flow": FLOW_V2, "note": "timeout"},
                     key, 201)
        self.assertEqual((d2["flow_id"], d2["version"]), (fid, 2))
        f = self.ok("GET", "/api/v1/named-flows/%d" % fid, key=key)
        self.assertEqual((f["name"], f["active"], f["latest"]), ("nightly", 2, 2))
        vs = f["versions"]
        self.assertEqual([v["version"] for v in vs], [1, 2])
        self.assertEqual([v["note"] for v in vs], ["first", "timeout"])
        self.assertNotEqual(vs[0]["digest"], vs[1]["digest"])
        self.assertRegex(vs[0]["digest"], "^[0-9a-f]{64}$")
        # Runs record their version.
        st = self.ok("GET", "/api/v1/flows/%d/status" % d1["id"], key=key)
        self.assertEqual((st["flow_id"], st["version"]), (fid, 1))
        st = self.ok("GET", "/api/v1/flows/%d/status" % d2["id"], key=key)
        self.assertEqual(st["version"], 2)
        lst = self.ok("GET", "/api/v1/named-flows", key=key)["flows"]
        self.assertEqual([(x["id"], x["name"], x["active"]) for x in lst],
                         [(fid, "nightly", 2)])
        # Rollback: version 1 active again; an unknown version changes nothing.
        r = self.ok("POST", "/api/v1/named-flows/%d/rollback" % fid, {"version": 1}, key)
        self.assertEqual(r["active"], 1)
        st, doc = self.s.call("POST", "/api/v1/named-flows/%d/rollback" % fid,
                              {"version": 9}, key)
        self.assertEqual(st, 404, doc)
        self.assertEqual(self.ok("GET", "/api/v1/named-flows/%d" % fid, key=key)["active"], 1)
        # Another client: nothing to see, nothing to roll back.
        _, other = self.client(10 ** 6)
        self.assertEqual(self.ok("GET", "/api/v1/named-flows", key=other)["flows"], [])
        for m, p, b in (("GET", "/api/v1/named-flows/%d" % fid, None),
                        ("POST", "/api/v1/named-flows/%d/rollback" % fid, {"version": 2})):
            st, doc = self.s.call(m, p, b, other)
            self.assertEqual(st, 404, doc)
        if RHIZOS:
            self.cli_checks(key, fid, d1["id"])
        # Its own flow of the same name is another flow.
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": FLOW_V1}, other, 201)
        self.assertNotEqual(d["flow_id"], fid)
        for dep in (d1["id"], d1b["id"], d2["id"]):
            self.s.call("DELETE", "/api/v1/flows/%d" % dep, key=key)
        self.s.call("DELETE", "/api/v1/flows/%d" % d["id"], key=other)


    def cli_checks(self, key, fid, dep):
        env = dict(os.environ, RHIZOS_URL=self.s.proc.base, RHIZOS_API_KEY=key)

        def rz(*a):
            p = run([RHIZOS, *a], env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout
        out = rz("flow", "list")
        self.assertRegex(out, r"(?m)^%d\s+nightly\s+1/2\s+-$" % fid)
        out = rz("flow", "versions", "nightly")
        self.assertRegex(out, r"(?m)^\* 1\s+[0-9a-f]{12}\s+\S+Z\s+first$")
        self.assertRegex(out, r"(?m)^  2\s+[0-9a-f]{12}\s+\S+Z\s+timeout$")
        self.assertIn("version 2 is active", rz("flow", "rollback", "nightly", "2"))
        self.assertIn("version 2", rz("flow", "schedule", str(fid)))
        self.assertIn("version 1 of named flow %d\n" % fid, rz("flow", "status", str(dep)))
        self.assertEqual(json.loads(rz("flow", "list", "--json"))["flows"][0]["active"], 2)
        p = run([RHIZOS, "flow", "versions", "nope"], env=env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no flow named 'nope'", p.stderr)
        rz("flow", "rollback", "nightly", "1")


class Cron(Base):
    def test_fires_on_the_minute_refuses_short_funds_and_survives_kill9(self):
        # Set up well inside a minute, so that its end is the first fire of
        # every flow below.
        left = 60 - time.time() % 60
        if left < 25:
            time.sleep(left + 0.5)
        # A flow whose step holds 1000 micro-dollars a run.
        cron = ("flux: 1\nname: tick\ntriggers:\n  - {type: cron, schedule: \"* * * * *\","
                " tz: Europe/Lisbon, overlap: allow}\nsteps:\n  s:\n    module: echo@1\n"
                "    max_cost_micros: 1000\n")
        _, key = self.client(10 ** 6)
        _, poor = self.client(0)
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": cron}, key, 201)
        fid = d["flow_id"]
        # The poor client can pay exactly its first (manual) run.
        held = d["held_micros"]
        self.assertEqual(held, 1000)
        acct = self.ok("GET", "/api/v1/accounts/me", key=poor)["id"]
        self.ok("POST", "/api/v1/accounts/%s/test-credits" % acct,
                {"amount_micros": held}, self.s.admin)
        dp = self.ok("POST", "/api/v1/flows/deploy",
                     {"flow": cron.replace("name: tick", "name: poor")}, poor, 201)
        # Its run ends (no node can take it), the hold comes back; the owner
        # then moves it all out: nothing left for the next fire.
        for _ in range(100):
            if self.ok("GET", "/api/v1/accounts/me", key=poor)["balance_micros"] == held:
                break
            time.sleep(0.1)
        self.ok("POST", "/api/v1/accounts/%s/withdraw" % acct,
                {"amount_micros": held, "address": "w"}, poor, 201)
        self.assertEqual(self.ok("GET", "/api/v1/accounts/me", key=poor)["balance_micros"], 0)
        f = self.ok("GET", "/api/v1/named-flows/%d?count=3" % fid, key=key)
        nxt = [n["t"] for n in f["active_triggers"][0]["next"]]
        self.assertEqual(len(nxt), 3)
        self.assertEqual(nxt[1] - nxt[0], 60)
        self.assertEqual(nxt[0] % 60, 0)
        self.assertRegex(f["active_triggers"][0]["next"][0]["local"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00[+-]\d\d:\d\d$")
        # A second server dies (SIGKILL, a test seam) after recording its fire
        # and before the engine's commit: the window a restart recovers.
        tmp2 = tempfile.TemporaryDirectory()
        self.addCleanup(tmp2.cleanup)
        s2 = Server(tmp2.name, env=dict(os.environ, RHIZOS_TEST_KILL_AFTER_FIRE="1"))
        st, a2 = s2.call("POST", "/api/v1/accounts", {"name": "t"}, s2.admin)
        s2.call("POST", "/api/v1/accounts/%s/test-credits" % a2["id"],
                {"amount_micros": 10 ** 6}, s2.admin)
        k2 = a2["api_key"]
        st, d2 = s2.call("POST", "/api/v1/flows/deploy", {"flow": cron}, k2)
        self.assertEqual(st, 201, d2)
        self.assertGreater(nxt[0] - time.time(), 1, "the setup took too long")
        before = set(self.deps(key))
        # (A minute may have turned while the above ran: count from here.)
        fired0 = f["triggers"].get("cron-0", {}).get("counts", {}).get("fired", 0)
        # Wait for the minute's run (how late it comes on a loaded machine
        # is not this test's business: its fire says which minute it is).
        fire_at = nxt[0]
        new = wait_until(lambda: set(self.deps(key)) - before,
                         fire_at + 60 - time.time(), "the minute's run")
        dep = max(new)
        st = self.ok("GET", "/api/v1/flows/%d/status" % dep, key=key)
        self.assertEqual(st["trigger"]["name"], "cron-0")
        self.assertEqual(st["trigger"]["fire"], fire_at)
        self.assertEqual((st["flow_id"], st["version"]), (fid, 1))
        # The poor owner's fire was refused, with its reason, and ran nothing.
        def poor_fire():
            pf = self.ok("GET", "/api/v1/named-flows/%d" % dp["flow_id"], key=poor)
            ev = pf["triggers"].get("cron-0", {}).get("events", [])
            return (pf, ev) if any(e["t"] == fire_at for e in ev) else None
        pf, ev = wait_until(poor_fire, 30, "the poor owner's fire")
        self.assertEqual(ev[-1]["what"], "refused", ev)
        self.assertIn("funds", ev[-1]["reason"])
        self.assertEqual(ev[-1]["t"], fire_at)
        self.assertEqual(self.deps(poor), [dp["id"]])
        if RHIZOS:   # and `flow status NAME` shows it with its reason
            env = dict(os.environ, RHIZOS_URL=self.s.proc.base, RHIZOS_API_KEY=poor)
            out = run([RHIZOS, "flow", "status", str(pf["name"])], env=env)
            self.assertRegex(out.stdout, r"(?m)^    \S+ refused: .*funds", out.stderr)
        # kill -9 now, start again: the fire is done, not made again.
        self.s.proc.stop(sig=signal.SIGKILL)
        self.s.start()
        time.sleep(1.5)
        runs = set(self.deps(key)) - before
        self.assertEqual(runs, {dep}, "the fire was made again after kill -9")
        f = self.ok("GET", "/api/v1/named-flows/%d" % fid, key=key)
        st = f["triggers"]["cron-0"]
        self.assertEqual(st["last"], fire_at)
        self.assertEqual(st["counts"]["fired"], fired0 + 1, st)
        self.assertNotIn("lost", st["counts"])
        for k, ids in ((key, self.deps(key)), (poor, self.deps(poor))):
            for i in ids:
                self.s.call("DELETE", "/api/v1/flows/%d" % i, key=k)
        # The second server killed itself at the fire; started again (without
        # the seam) it finds the run missing, records the fire as lost and
        # runs it again by the catch-up rule: one run for that minute.
        self.assertEqual(s2.proc.p.wait(timeout=30), -signal.SIGKILL)
        s2.proc.stop()     # collects what it left (pipes)
        s2.env = None
        s2.start()
        self.addCleanup(s2.proc.stop)
        def fired_twice():
            f2 = s2.call("GET", "/api/v1/named-flows/%d" % d2["flow_id"], key=k2)[1]
            st2 = f2["triggers"]["cron-0"]
            return st2 if st2.get("counts", {}).get("fired", 0) >= 2 else None
        st2 = wait_until(fired_twice, 30, "the second server's catch-up fire")
        whats = [(e["what"], e["t"]) for e in st2["events"]]
        self.assertIn(("lost", fire_at), whats)
        self.assertEqual(whats[-1], ("fired", fire_at), whats)
        runs2 = [f["id"] for f in s2.call("GET", "/api/v1/flows", key=k2)[1]["flows"]]
        self.assertEqual(sorted(runs2), [d2["id"], whats and st2["last_dep"]])
        self.assertEqual(s2.call("GET", "/api/v1/flows/%d/status" % st2["last_dep"],
                                 key=k2)[1]["trigger"]["fire"], fire_at)


class Overlap(Base):
    def test_a_fire_waits_its_turn_with_overlap_queue(self):
        """overlap: queue: a fire while the last triggered run still runs
        (an approval holds it) is queued, not run and not dropped; it runs
        as soon as that run ends. Costs up to two minutes of real time."""
        flow = ("flux: 1\nname: queued\ntriggers:\n  - {type: cron, schedule: \"* * * * *\","
                " overlap: queue}\nsteps:\n  gate:\n    approval: {timeout_s: 3600}\n")
        _, key = self.client(10 ** 6)
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, key, 201)
        fid, manual = d["flow_id"], d["id"]
        self.ok("POST", "/api/v1/flows/%d/steps/gate/approve" % manual, {}, key)

        def trig():
            return self.ok("GET", "/api/v1/named-flows/%d" % fid,
                           key=key)["triggers"].get("cron-0", {})

        def wait_for(what, n, limit):
            end = time.time() + limit
            while time.time() < end:
                if sum(1 for e in trig().get("events", []) if e["what"] == what) >= n:
                    return
                time.sleep(0.2)
            self.fail("no %d '%s' event(s) in %d s: %r" % (n, what, limit, trig()))
        wait_for("fired", 1, 65)                 # the first minute: a run, held
        first = [x for x in self.deps(key) if x != manual]
        self.assertEqual(len(first), 1, first)
        wait_for("queued", 1, 65)                # the next: it waits
        self.assertEqual([x for x in self.deps(key) if x != manual], first)
        self.assertEqual(trig()["queued"], 1)
        self.ok("POST", "/api/v1/flows/%d/steps/gate/approve" % first[0], {}, key)
        wait_for("fired", 2, 30)                 # the held run ended: the queued fire runs
        runs = [x for x in self.deps(key) if x != manual]
        self.assertEqual(len(runs), 2, runs)
        t = trig()
        self.assertEqual(t["queued"], 0, t)
        whats = [e["what"] for e in t["events"]]
        self.assertEqual(whats[-3:], ["fired", "queued", "fired"], whats)
        for x in self.deps(key):
            self.s.call("DELETE", "/api/v1/flows/%d" % x, key=key)


class Webhooks(Base):
    def seal(self, value, cid):
        lib = ctypes.CDLL(LIB)
        u8 = ctypes.c_ubyte * 32
        opk = u8(*bytes.fromhex(self.ok("GET", "/api/v1/keys", key=self.s.admin)
                                ["x25519_public_key"]))
        out, n = ctypes.c_void_p(), ctypes.c_size_t()
        self.assertEqual(lib.rz_vault_seal_value(
            ctypes.byref(out), ctypes.byref(n), value, ctypes.c_size_t(len(value)),
            b"orchestrator", cid, ctypes.c_uint64(int(time.time() * 1000) + 600000), opk), 0)
        blob = ctypes.string_at(out, n.value)
        lib.rz_free(out)
        return base64.b64encode(blob).decode()

    def test_signed_calls_run_others_do_not(self):
        if not LIB:
            self.skipTest("no librhizos given")
        probe = run([sys.executable, "-c", "import ctypes,sys; ctypes.CDLL(sys.argv[1])", LIB])
        if probe.returncode != 0:
            self.skipTest("librhizos cannot be loaded into this python (sanitizer build)")
        secret = b"hook-secret-" + os.urandom(8).hex().encode()
        flow = ("flux: 1\nname: hooked\ntriggers:\n  - webhook: {name: gh, secret: "
                "{credentialId: gh-hook}, max_body_bytes: 200}\n"
                "inputs:\n  trigger: {required: false}\n"
                "steps:\n  s:\n    module: echo@1\n"
                "    inputs: {message: \"${{ trigger.body.msg }}\"}\n")
        _, key = self.client(10 ** 6)
        st, doc = self.s.call("POST", "/api/v1/flows/deploy", {"flow": flow}, key)
        self.assertEqual(st, 422, doc)
        self.assertIn("gh-hook", doc["error"]["message"])
        d = self.ok("POST", "/api/v1/flows/deploy",
                    {"flow": flow, "credentials": {"gh-hook": self.seal(secret, b"gh-hook")}},
                    key, 201)
        self.s.call("DELETE", "/api/v1/flows/%d" % d["id"], key=key)
        path = "/api/v1/hooks/%d/gh" % d["flow_id"]
        before = set(self.deps(key))

        def call(body, ts=None, sig=None, delivery="d1", key_=secret):
            ts = str(int(time.time()) if ts is None else ts)
            if sig is None:
                sig = "sha256=" + hmac.new(key_, ts.encode() + b"." + body,
                                           hashlib.sha256).hexdigest()
            h = {"X-Rhizos-Timestamp": ts, "X-Rhizos-Delivery": delivery}
            if sig:
                h["X-Rhizos-Signature"] = sig
            return self.s.call("POST", path, raw=body, headers=h)

        body = b'{"msg": "hello from the hook"}'
        for args, code in (((body,), 202),):
            st, doc = call(*args)
            self.assertEqual(st, code, doc)
        run_id = doc["run"]
        self.assertEqual(doc["version"], 1)
        st = self.ok("GET", "/api/v1/flows/%d/status" % run_id, key=key)
        self.assertEqual(st["trigger"], {"name": "gh", "delivery": "d1"})
        # The step got the body's field: a node takes the job and sees it.
        nk = NodeKey(X25519)
        reg = self.ok("POST", "/api/v1/nodes/register", nk.register_body(NODE_CAPS), code=201)
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % reg["id"], key=reg["token"])
        self.assertEqual(a["deployment"], run_id)
        self.assertEqual(a["request"]["inputs"]["message"], "hello from the hook")
        self.s.call("DELETE", "/api/v1/nodes/%d" % reg["id"], key=self.s.admin)
        # Refused, each with no run.
        cases = [
            (dict(body=body, delivery="d1"), 409),              # replayed delivery
            (dict(body=body, sig="", delivery="d2"), 401),      # unsigned
            (dict(body=body, sig="sha256=" + "0" * 64, delivery="d3"), 401),
            (dict(body=body, key_=b"wrong", delivery="d4"), 401),
            (dict(body=body, ts=int(time.time()) - 301, delivery="d5"), 401),   # stale
            # (well past the window: the cases before it take time under load)
            (dict(body=body, ts=int(time.time()) + 360, delivery="d6"), 401),
            (dict(body=b"x" * 201, delivery="d7"), 413),        # too big
        ]
        for kw, code in cases:
            with self.subTest(code=code, delivery=kw.get("delivery")):
                st, doc = call(**kw)
                self.assertEqual(st, code, doc)
                self.assertIn("error", doc)
        st, doc = call(body, delivery="d1")
        self.assertEqual(doc.get("run"), run_id)
        self.assertEqual(set(self.deps(key)) - before, {run_id})
        # Unknown hook or flow: 404.
        self.assertEqual(self.s.call("POST", "/api/v1/hooks/%d/nope" % d["flow_id"],
                                     raw=b"{}")[0], 404)
        self.assertEqual(self.s.call("POST", "/api/v1/hooks/999999/gh", raw=b"{}")[0], 404)
        # A new delivery id with a good signature runs again.
        st, doc = call(body, delivery="d8")
        self.assertEqual(st, 202, doc)
        self.assertNotEqual(doc["run"], run_id)
        for i in set(self.deps(key)) - before:
            self.s.call("DELETE", "/api/v1/flows/%d" % i, key=key)



class Switch(Base):
    def trig(self, f, name):
        return [t for t in f["active_triggers"] if t["name"] == name][0]

    def test_disable_enable_a_trigger(self):
        _, key = self.client(10 ** 6)
        _, other = self.client(10 ** 6)
        flow = ("flux: 1\nname: switched\ntriggers:\n"
                "  - {type: cron, schedule: \"* * * * *\"}\n  - {type: event, event: poke}\n"
                "steps:\n  s:\n    module: echo@1\n")
        d = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, key, 201)
        self.s.call("DELETE", "/api/v1/flows/%d" % d["id"], key=key)
        fid = d["flow_id"]
        base = "/api/v1/named-flows/%d/triggers/" % fid
        self.assertEqual(self.s.call("POST", base + "cron-0/disable", key=other)[0], 404)
        self.assertEqual(self.s.call("POST", base + "nope/disable", key=key)[0], 404)
        self.assertIn("next", self.trig(self.ok("GET", "/api/v1/named-flows/%d" % fid,
                                                key=key), "cron-0"))
        f = self.ok("POST", base + "cron-0/disable", key=key)
        self.assertTrue(self.trig(f, "cron-0")["disabled"])
        self.assertNotIn("next", self.trig(f, "cron-0"))
        self.assertEqual(f["triggers"]["cron-0"]["events"][-1]["what"], "disabled")
        self.ok("POST", base + "event-1/disable", key=key)
        self.assertEqual(self.ok("POST", "/api/v1/events", {"event": "poke"}, key, 202)["runs"],
                         [])
        # Still off after a kill -9 and under a new version.
        self.s.proc.stop(sig=signal.SIGKILL)
        self.s.start()
        d2 = self.ok("POST", "/api/v1/flows/deploy",
                     {"flow": flow + "    timeout_s: 60\n"}, key, 201)
        self.s.call("DELETE", "/api/v1/flows/%d" % d2["id"], key=key)
        self.assertEqual(d2["version"], 2)
        f = self.ok("GET", "/api/v1/named-flows/%d" % fid, key=key)
        self.assertTrue(self.trig(f, "cron-0")["disabled"])
        self.assertNotIn("next", self.trig(f, "cron-0"))
        self.assertEqual(self.ok("POST", "/api/v1/events", {"event": "poke"}, key, 202)["runs"],
                         [])
        # On again: from now on, the minutes it was off not caught up.
        t0 = int(time.time())
        f = self.ok("POST", base + "cron-0/enable", key=key)
        self.assertNotIn("disabled", self.trig(f, "cron-0"))
        self.assertGreaterEqual(f["triggers"]["cron-0"]["last"], t0)
        self.assertGreater(self.trig(f, "cron-0")["next"][0]["t"], t0)
        self.ok("POST", base + "event-1/enable", key=key)
        runs = self.ok("POST", "/api/v1/events", {"event": "poke"}, key, 202)["runs"]
        self.assertEqual(len(runs), 1, runs)
        self.s.call("DELETE", "/api/v1/flows/%d" % runs[0]["run"], key=key)
        if not RHIZOS:
            return
        env = dict(os.environ, RHIZOS_URL=self.s.proc.base, RHIZOS_API_KEY=key)
        p = run([RHIZOS, "flow", "disable", "switched", "event-1"], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("trigger event-1 disabled", p.stdout)
        out = run([RHIZOS, "flow", "status", "switched"], env=env).stdout
        self.assertIn("event-1: event (disabled)", out)
        self.assertEqual(run([RHIZOS, "flow", "enable", "switched", "a/b"], env=env).returncode, 2)
        p = run([RHIZOS, "flow", "enable", "switched", "event-1"], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("(disabled)", run([RHIZOS, "flow", "schedule", "switched"],
                                           env=env).stdout)

if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"] +
                  ([ONLY] if ONLY else ["Versions", "Cron", "Webhooks", "Switch"]))
