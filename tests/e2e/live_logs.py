#!/usr/bin/env python3
"""End-to-end: a job's log lines reach the client while it runs on a node.

A real orchestrator and `rhizos-node` on loopback, and a step that prints a
line (with its credential in it), sleeps, prints another, sleeps and prints
a third: the first line is in the job's log (GET /api/v1/jobs/{id}) and on
the deployment's event stream (a step_log event), scrubbed of the secret,
before the step ends; `rhizos flow watch` prints it as `flow run` does; a
stream resumed with Last-Event-ID gets the later lines; at the end each
line is in the log once (the result's log replaced the streamed one).

Then the route against a hostile or confused node (fake nodes speaking the
protocol): a retried chunk is taken once; an oversized chunk, another
node's job, an unknown job, a stale attempt, bytes that are not UTF-8, a
chunk overlapping what was taken, and a chunk after the result each get a
clear 4xx and store nothing.

Usage: live_logs.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT"""
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest
from http.client import HTTPConnection

import network  # noqa: E402  (reads the same argv)
from harness import Proc, cli_env, http, run, wait_until  # noqa: E402

ROOT, NODE, ORCH, RHIZOS = network.ROOT, network.NODE, network.ORCH, network.RHIZOS
TEST_MODULES = os.path.join(ROOT, "tests", "e2e", "modules")
SECRET = "sk-live-stream-0123456789"
NAP = 2.0   # seconds between the step's lines

MODULE = {
    "id": "live-log", "version": "1.0.0", "name": "Live log",
    "description": "Test module: three log lines, a nap between each; the "
                   "first carries its credential.",
    "inputs": [], "outputs": [{"name": "ok", "type": "boolean"}],
    "credentials": [{"name": "api", "type": "llm_api", "required": False}],
    "requirements": {"adapter": "process", "cpu_cores": 1, "memory_mb": 64},
    "estimate": {"seconds": 5},
    "exec": {"adapter": "process", "command": ["python3", "./talk.py"],
             "timeout_s": 30},
}
SCRIPT = """import json, os, sys, time
json.load(sys.stdin)
print("first line, key " + os.environ.get("RZ_CRED_API", "none"),
      file=sys.stderr, flush=True)
time.sleep(%g)
print("second line", file=sys.stderr, flush=True)
time.sleep(%g)
print("third line", file=sys.stderr, flush=True)
json.dump({"ok": True}, sys.stdout)
""" % (NAP, NAP)
FLOW = """flux: 1
name: live
steps:
  talk:
    module: live-log@1
    max_cost_micros: 500000000
    credentials:
      api: { credentialId: streamkey, type: llm_api }
"""


class Stream:
    """An SSE stream read on a thread: events as (time, event, id, data)."""

    def __init__(self, base, path, key, last_id=None):
        host, _, port = base.split("://", 1)[1].partition(":")
        self.c = HTTPConnection(host, int(port), timeout=60)
        headers = {"Authorization": "Bearer " + key}
        if last_id:
            headers["Last-Event-ID"] = last_id
        self.c.request("GET", path, headers=headers)
        self.r = self.c.getresponse()
        self.events, self.raw = [], []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        ev, eid, data = None, None, []
        try:
            for line in self.r:
                line = line.decode().rstrip("\n")
                self.raw.append(line)
                if line.startswith("event: "):
                    ev = line[7:]
                elif line.startswith("id: "):
                    eid = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and ev:
                    self.events.append((time.monotonic(), ev, eid, "\n".join(data)))
                    if ev == "end":
                        return
                    ev, eid, data = None, None, []
        except (OSError, ValueError):
            pass

    def of(self, kind):
        return [e for e in list(self.events) if e[1] == kind]

    def close(self):
        self.c.close()


class LiveLogs(network.Base):
    @classmethod
    def setUpClass(cls):
        cls.mods_dir = tempfile.TemporaryDirectory(prefix="rz-live-mods-")
        cls.mods = os.path.join(cls.mods_dir.name, "modules")
        shutil.copytree(TEST_MODULES, cls.mods)
        d = os.path.join(cls.mods, "live-log")
        os.makedirs(d)
        with open(os.path.join(d, "module.json"), "w") as f:
            json.dump(MODULE, f)
        with open(os.path.join(d, "talk.py"), "w") as f:
            f.write(SCRIPT)

    @classmethod
    def tearDownClass(cls):
        cls.mods_dir.cleanup()

    def start_orchestrator(self):
        self.orch = network.start_orchestrator(
            ORCH, self.data, ["--quiet", "--node-timeout-ms",
                              str(self.node_timeout_ms), "--modules", self.mods],
            admin_key=network.ADMIN, cwd=ROOT, port=self.port)

    def run_node(self, data):
        n = Proc([NODE, "start", "--data", data, "--json", "--modules",
                  self.mods, *network.SANDBOX], cwd=ROOT)
        n.data = data
        self.nodes.append(n)
        return n

    def deploy_with_secret(self):
        vault = os.path.join(self.tmp.name, "e2e.vault")
        env = cli_env(RHIZOS_VAULT=vault, RHIZOS_VAULT_PASSWORD="e2e password",
                      RHIZOS_API_KEY=self.key)
        args = [RHIZOS, "--orchestrator", self.base, "--modules", self.mods]
        for cmd, stdin in ((["vault", "init"], None),
                           (["vault", "add", "streamkey", "--type", "llm_api"], SECRET)):
            p = run(args + cmd, cwd=ROOT, env=env, stdin=stdin)
            self.assertEqual(p.returncode, 0, p.stderr)
        p = run(args + ["flow", "deploy", self.flow_file("live.yaml", FLOW), "--json"],
                cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["id"]

    def test_lines_reach_the_client_before_the_step_ends(self):
        self.start_node("node1", network.PRICES[0])
        dep = self.deploy_with_secret()
        path = "/api/v1/flows/%d/events?changes=1" % dep
        s = Stream(self.base, path, self.key)
        watch = Proc([RHIZOS, "--orchestrator", self.base, "flow", "watch", str(dep)],
                     cwd=ROOT, env=cli_env(RHIZOS_API_KEY=self.key))
        try:
            job = wait_until(lambda: self.api("GET", "/api/v1/flows/%d/status" % dep,
                                              key=self.key)["steps"]["talk"].get("job"),
                             30, "the step's job")
            # The first line, in the job's log while the job still runs.
            j = wait_until(lambda: (lambda j: j if "first line" in (j.get("log") or "")
                                    else None)(self.job(job)), 3 * NAP + 20,
                           "the first line in the job's log")
            self.assertEqual(j["status"], "running", j)
            self.assertNotIn("third line", j["log"])
            self.assertNotIn(SECRET, j["log"])
            # ... and on the stream, before the step's end.
            wait_until(lambda: s.of("step_log"), 10, "a step_log event")
            first = s.of("step_log")[0]
            doc = json.loads(first[3])
            self.assertEqual((doc["job"], doc["step"], doc["attempt"], doc["offset"]),
                             (job, "talk", 1, 0), doc)
            self.assertIn("first line, key [redacted]\n", doc["lines"])
            self.assertIsNone(first[2], "a step_log event moves no resume point")
            # A stream resumed from its first event's id gets the later lines.
            resumed = Stream(self.base, path, self.key, last_id=s.events[0][2])
            watch.wait_for(lambda: any("| first line" in l for l in watch.out), 10,
                           "flow watch to print the first line")
            wait_until(lambda: s.of("end"), 3 * NAP + 30, "the end")
            wait_until(lambda: resumed.of("end"), 10, "the resumed stream's end")
            self.assertEqual(watch.p.wait(timeout=30), 0, watch.output())
        finally:
            s.close()
            watch.stop()
        done = s.of("end")[0][0]
        succeeded = [e[0] for e in s.of("step")
                     if json.loads(e[3]).get("status") == "succeeded"]
        self.assertLess(first[0], min(succeeded + [done]) - NAP / 2,
                        "the first line came at least a nap before the end")
        later = "".join(json.loads(e[3])["lines"] for e in resumed.of("step_log"))
        self.assertIn("third line", later)
        # flow watch: the line before the step's success, as `flow run` shows it.
        out = watch.out
        at = [i for i, l in enumerate(out) if "| first line" in l]
        ok = [i for i, l in enumerate(out) if "talk" in l and "succeeded" in l]
        self.assertTrue(at and ok and at[0] < ok[0], "\n".join(out))
        # At the end: each line once (the result's log replaced the streamed one).
        log = self.job(job)["log"]
        for line in ("first line", "second line", "third line"):
            self.assertEqual(log.count(line), 1, log)
        everything = "\n".join(s.raw + resumed.raw + watch.out + watch.err) + log
        self.assertNotIn(SECRET, everything)
        self.assertNotIn(SECRET, "\n".join(n.output() for n in self.nodes))
        # Both stop cleanly (under ASan: nothing leaked by the log's paths).
        node = self.nodes.pop()
        node.stop_clean()
        self.stop_orchestrator()

    # ---- the route against fake nodes ----

    def post(self, node, tok, job, body=None, raw=None, ctype=None):
        return http(self.base, "POST", "/api/v1/nodes/%d/jobs/%d/log" % (node, job),
                    tok, body, raw=raw, ctype=ctype)

    def test_bad_chunks_are_refused_and_store_nothing(self):
        a, a_tok, _ = self.fake_node()
        b, b_tok, _ = self.fake_node()
        job1 = self.submit()
        got = self.api("GET", "/api/v1/nodes/%d/jobs?wait=0" % a, key=a_tok)
        self.assertEqual((got["job"], got["attempt"]), (job1, 1))
        job2 = self.submit()
        got = self.api("GET", "/api/v1/nodes/%d/jobs?wait=0" % b, key=b_tok)
        self.assertEqual(got["job"], job2)
        chunk = {"attempt": 1, "offset": 0, "lines": "hello\n"}
        st, doc = self.post(a, a_tok, job1, chunk)
        self.assertEqual((st, doc["duplicate"], doc["next_offset"]), (200, False, 6), doc)
        st, doc = self.post(a, a_tok, job1, chunk)   # a retried POST
        self.assertEqual((st, doc["duplicate"]), (200, True), doc)
        st, doc = self.post(a, a_tok, job1, {"attempt": 1, "offset": 6, "lines": "again\n"})
        self.assertEqual(st, 200, doc)
        kept = "hello\nagain\n"
        self.assertEqual(self.job(job1)["log"], kept)
        cases = [
            ("oversized", a, a_tok, job1, {"attempt": 1, "offset": 12,
                                           "lines": "x" * (64 * 1024 + 1)}, 413),
            ("another node's job", b, b_tok, job1, dict(chunk, offset=12), 403),
            ("another node's path", a, b_tok, job1, dict(chunk, offset=12), 404),
            ("unknown job", a, a_tok, 99999, chunk, 404),
            ("stale attempt", a, a_tok, job1, {"attempt": 2, "offset": 12,
                                               "lines": "x\n"}, 409),
            ("overlap", a, a_tok, job1, {"attempt": 1, "offset": 8, "lines": "zzzzzz\n"}, 409),
            ("no lines", a, a_tok, job1, {"attempt": 1, "offset": 12}, 400),
            ("empty lines", a, a_tok, job1, {"attempt": 1, "offset": 12, "lines": ""}, 400),
            ("unknown field", a, a_tok, job1, dict(chunk, offset=12, x=1), 400),
            ("negative offset", a, a_tok, job1, dict(chunk, offset=-1), 400),
            ("client key", a, self.key, job1, dict(chunk, offset=12), 403),
        ]
        for what, node, tok, job, body, code in cases:
            st, doc = self.post(node, tok, job, body)
            self.assertEqual(st, code, (what, doc))
            self.assertIn("error", doc, what)
        bad = b'{"attempt":1,"offset":12,"lines":"caf\xe9\\n"}'
        st, doc = self.post(a, a_tok, job1, raw=bad, ctype="application/json")
        self.assertEqual(st, 400, doc)
        self.assertEqual(self.job(job1)["log"], kept)
        self.assertIsNone(self.job(job2)["log"])
        # A gap (lines the node dropped) is said, not hidden.
        st, doc = self.post(a, a_tok, job1, {"attempt": 1, "offset": 20, "lines": "late\n"})
        self.assertEqual(st, 200, doc)
        self.assertEqual(self.job(job1)["log"],
                         kept + "[8 bytes of the log missing here]\nlate\n")
        # The result replaces the streamed log; then the log is closed.
        self.api("POST", "/api/v1/nodes/%d/jobs/%d/result" % (a, job1), key=a_tok,
                 body=network.KEYS[a].signed(job1, {
                     "attempt": 1, "run_ms": 40, "outputs": {"message": "hi"},
                     "log": "hello\nagain\nlate\n"}))
        st, doc = self.post(a, a_tok, job1, {"attempt": 1, "offset": 25, "lines": "after\n"})
        self.assertEqual(st, 409, doc)
        self.assertEqual(self.job(job1)["log"], "hello\nagain\nlate\n")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
