#!/usr/bin/env python3
"""End-to-end: a job's log lines reach the client while it runs on a node.

A real orchestrator and `rhizos-node` on loopback, and a step that prints a
line (with its credential in it), sleeps, prints another, sleeps and prints
a third: the first line is in the job's log (GET /api/v1/jobs/{id}) and on
the deployment's event stream (a step_log event), scrubbed of the secret,
before the step ends; `rhizos flow watch` prints it as `flow run` does; a
stream resumed with Last-Event-ID gets the later lines; at the end each
line is in the log once (the result's log replaced the streamed one).
`rhizos flow logs --follow` prints each line once as it comes, and the
snapshot (GET /api/v1/flows/{id}/logs) has them all afterwards; with
--since (?since=MS) only the lines that reached the orchestrator since.

Then the route against a hostile or confused node (fake nodes speaking the
protocol): a retried chunk is taken once; an oversized chunk, another
node's job, an unknown job, a stale attempt, bytes that are not UTF-8, a
chunk overlapping what was taken, and a chunk after the result each get a
clear 4xx and store nothing. And the node against an orchestrator played
here: a refused chunk is sent again at the same offset, the chunks taken
are the whole log and come before the result, and a chunk refused for
good ends the stream but not the job.

Usage: live_logs.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT"""
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import unittest
from http.client import HTTPConnection

import network  # noqa: E402  (reads the same argv)
from harness import FakeOrchestrator, Proc, cli_env, http, run, wait_until  # noqa: E402

ROOT, NODE, ORCH, RHIZOS = network.ROOT, network.NODE, network.ORCH, network.RHIZOS
TEST_MODULES = os.path.join(ROOT, "tests", "e2e", "modules")
SECRET = "sk-live-stream-0123456789"
NAP = 1.0   # seconds between the step's lines

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
        # Status streams: step_log events only when asked (the bindings'
        # watch() reads statuses).
        plain = Stream(self.base, "/api/v1/flows/%d/events" % dep, self.key)
        logs = Stream(self.base, "/api/v1/flows/%d/events?logs=1" % dep, self.key)
        resumed = None
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
            self.assertEqual(j["log_end"], len(j["log"].encode()), j)   # all kept
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
            wait_until(lambda: plain.of("end") and logs.of("end"), 10,
                       "the status streams' end")
        finally:
            for stream in (s, plain, logs):
                stream.close()
            if resumed:
                resumed.close()
            watch.stop()
        done = s.of("end")[0][0]
        succeeded = [e[0] for e in s.of("step")
                     if json.loads(e[3]).get("status") == "succeeded"]
        self.assertLess(first[0], min(succeeded + [done]) - NAP / 2,
                        "the first line came at least a nap before the end")
        self.assertEqual(plain.of("step_log"), [])
        self.assertIn("first line", "".join(e[3] for e in logs.of("step_log")))
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
        everything = "\n".join(s.raw + resumed.raw + logs.raw + watch.out +
                               watch.err) + log
        self.assertNotIn(SECRET, everything)
        self.assertNotIn(SECRET, "\n".join(n.output() for n in self.nodes))
        # Both stop cleanly (under ASan: nothing leaked by the log's paths).
        node = self.nodes.pop()
        node.stop_clean()
        self.stop_orchestrator()

    def test_flow_logs_follow_then_snapshot(self):
        """rhizos flow logs: --follow prints each line as it comes, once;
        afterwards the snapshot (GET /api/v1/flows/{id}/logs) has them all;
        bad requests are refused."""
        self.start_node("node1", network.PRICES[0])
        dep = self.deploy_with_secret()
        env = cli_env(RHIZOS_API_KEY=self.key)
        follow = Proc([RHIZOS, "--orchestrator", self.base, "flow", "logs", str(dep),
                       "--follow"], cwd=ROOT, env=env)
        try:
            follow.wait_for(lambda: any(l == "talk | first line, key [redacted]"
                                        for l in follow.out), 3 * NAP + 20,
                            "flow logs --follow to print the first line")
            # Before the step wrote its second line a nap later.
            self.assertFalse(any("second line" in l for l in follow.out), follow.out)
            self.assertEqual(follow.p.wait(timeout=30), 0, follow.output())
        finally:
            follow.stop()
        want = ["talk | first line, key [redacted]", "talk | second line",
                "talk | third line"]
        self.assertEqual([l for l in follow.out if l.startswith("talk |")], want,
                         follow.output())
        p = self.cli("flow", "logs", str(dep), key=self.key)
        self.assertEqual(p.stdout.splitlines(), want)
        doc = self.cli_json("flow", "logs", str(dep), "talk", key=self.key)
        self.assertEqual((doc["id"], doc["status"]), (dep, "succeeded"), doc)
        [e] = doc["steps"]
        self.assertEqual((e["step"], e["attempt"], e["status"]), ("talk", 1, "succeeded"))
        self.assertNotIn("log_end", e)   # not streaming any more
        self.assertNotIn(SECRET, p.stdout + json.dumps(doc) + "\n".join(follow.out))
        # Refused: a step the flow lacks, an empty step, someone else's
        # deployment, one that does not exist; the CLI's own usage errors.
        p = self.cli("flow", "logs", str(dep), "nope", key=self.key, code=1)
        self.assertIn('has no step "nope"', p.stderr)
        self.api("GET", "/api/v1/flows/%d/logs?step=" % dep, key=self.key, code=400)
        self.api("GET", "/api/v1/flows/999999/logs", key=self.key, code=404)
        other = self.cli_json("account", "create", "--name", "other", key=network.ADMIN)
        self.api("GET", "/api/v1/flows/%d/logs" % dep, key=other["api_key"], code=404)
        self.api("GET", "/api/v1/flows/%d/logs" % dep, key=network.ADMIN)
        self.cli("flow", "logs", key=self.key, code=2)
        self.cli("flow", "logs", str(dep), "talk", "x", key=self.key, code=2)
        node = self.nodes.pop()
        node.stop_clean()
        self.stop_orchestrator()

    def test_job_logs_follow(self):
        """rhizos job logs ID --follow: one job's lines as they come, each
        once (log_end against what was printed), ending with the job; the
        plain form prints the log; bad requests are refused."""
        self.start_node("node1", network.PRICES[0])
        dep = self.deploy_with_secret()
        job = wait_until(lambda: self.api("GET", "/api/v1/flows/%d/status" % dep,
                                          key=self.key)["steps"]["talk"].get("job"),
                         30, "the step's job")
        env = cli_env(RHIZOS_API_KEY=self.key)
        follow = Proc([RHIZOS, "--orchestrator", self.base, "job", "logs", str(job),
                       "--follow"], cwd=ROOT, env=env)
        try:
            follow.wait_for(lambda: "first line, key [redacted]" in follow.out,
                            3 * NAP + 20, "job logs --follow to print the first line")
            self.assertFalse(any("second line" in l for l in follow.out), follow.out)
            self.assertEqual(follow.p.wait(timeout=30), 0, follow.output())
        finally:
            follow.stop()
        want = ["first line, key [redacted]", "second line", "third line"]
        self.assertEqual([l for l in follow.out if "line" in l], want, follow.output())
        p = self.cli("job", "logs", str(job), key=self.key)
        self.assertEqual([l for l in p.stdout.splitlines() if "line" in l], want)
        self.assertNotIn(SECRET, p.stdout + "\n".join(follow.out))
        self.assertNotIn("log_end", self.job(job))   # not streaming any more
        other = self.cli_json("account", "create", "--name", "other2", key=network.ADMIN)
        p = self.cli("job", "logs", str(job), key=other["api_key"], code=1)
        self.assertNotIn("line", p.stdout)
        self.cli("job", "logs", key=self.key, code=2)
        self.cli("job", "logs", "x", key=self.key, code=2)
        self.cli("job", "logs", str(job), "y", key=self.key, code=2)
        node = self.nodes.pop()
        node.stop_clean()
        self.stop_orchestrator()

    def test_since(self):
        """--since: a job's and a deployment's lines timed by when they
        reached the orchestrator, kept with the log past the result's;
        durations and RFC 3339 times; malformed ones refused."""
        self.start_node("node1", network.PRICES[0])
        dep = self.deploy_with_secret()
        job = wait_until(lambda: self.api("GET", "/api/v1/flows/%d/status" % dep,
                                          key=self.key)["steps"]["talk"].get("job"),
                         30, "the step's job")
        wait_until(lambda: "second line" in (self.job(job).get("log") or ""),
                   3 * NAP + 20, "the second line")
        # The third line comes a nap after the second: T falls between them.
        t = time.time() + 0.3
        while time.time() < t:
            time.sleep(0.05)
        live = self.api("GET", "/api/v1/jobs/%d?since=%d" % (job, int(t * 1000)),
                        key=self.key)["log"] or ""
        self.assertNotIn("second line", live)
        wait_until(lambda: self.job(job)["status"] == "succeeded", 30, "the job")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + \
            (".%03dZ" % int((t % 1) * 1000))
        for args in (("job", "logs", str(job)), ("flow", "logs", str(dep)),
                     ("flow", "logs", str(dep), "talk")):
            p = self.cli(*args, "--since", stamp, key=self.key)
            lines = [l for l in p.stdout.splitlines() if "line" in l]
            self.assertEqual([l.split("| ")[-1] for l in lines], ["third line"],
                             (args, p.stdout))
            p = self.cli(*args, "--since", "1h", key=self.key)
            self.assertEqual(len([l for l in p.stdout.splitlines() if "line" in l]), 3,
                             p.stdout)
            p = self.cli(*args, "--since", "2099-01-01T00:00:00+02:00", key=self.key)
            self.assertNotIn("line", p.stdout)
            p = self.cli(*args, "--since", "yesterday", key=self.key, code=2)
            self.assertIn("--since wants a duration with its unit", p.stderr)
        doc = self.api("GET", "/api/v1/flows/%d/logs?since=%d" % (dep, int(t * 1000)),
                       key=self.key)
        self.assertEqual(doc["steps"][0]["log"].count("line"), 1, doc)
        self.api("GET", "/api/v1/jobs/%d?since=x" % job, key=self.key, code=400)
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
        # A result with no log of its own keeps the streamed one.
        st, doc = self.post(b, b_tok, job2, {"attempt": 1, "offset": 0, "lines": "only\n"})
        self.assertEqual(st, 200, doc)
        self.api("POST", "/api/v1/nodes/%d/jobs/%d/result" % (b, job2), key=b_tok,
                 body=network.KEYS[b].signed(job2, {
                     "attempt": 1, "run_ms": 40, "outputs": {"message": "hi"}}))
        self.assertEqual(self.job(job2)["log"], "only\n")


    def test_each_attempt_keeps_its_log(self):
        """A declined attempt's log stays, apart from the next attempt's:
        ?attempt=N and `rhizos job logs --attempt N` show it; the job's
        log is its last attempt's."""
        nodes = [self.fake_node(), self.fake_node()]
        job = self.submit()
        first = None
        for n, tok, _ in nodes:
            st, got = http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=0" % n, tok)
            if st == 200 and got.get("job") == job:
                first = (n, tok)
        self.assertIsNotNone(first, "a node got the job")
        st, doc = self.post(first[0], first[1], job,
                            {"attempt": 1, "offset": 0, "lines": "first try\n"})
        self.assertEqual(st, 200, doc)
        self.api("POST", "/api/v1/nodes/%d/jobs/%d/decline" % (first[0], job), key=first[1],
                 body={"attempt": 1, "reason": "test: not here"})
        n2, tok2, _ = [x for x in nodes if x[0] != first[0]][0]
        got = wait_until(lambda: (lambda r: r[1] if r[0] == 200 and r[1].get("job") == job
                                  else None)(
            http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=0" % n2, tok2)),
            10, "the job's second attempt on the other node")
        self.assertEqual(got["attempt"], 2, got)
        st, doc = self.post(n2, tok2, job, {"attempt": 2, "offset": 0,
                                            "lines": "second try\n"})
        self.assertEqual(st, 200, doc)
        j = self.job(job)
        self.assertNotIn("log_attempts", j)   # read only when ?attempt asks
        j = self.api("GET", "/api/v1/jobs/%d?attempt=0" % job, key=self.key)
        self.assertEqual((j["log"], j["log_attempts"]), ("second try\n", [1, 2]), j)
        one = self.api("GET", "/api/v1/jobs/%d?attempt=1" % job, key=self.key)
        self.assertEqual(one["log"], "first try\n")
        self.assertNotIn("log_end", one)
        two = self.api("GET", "/api/v1/jobs/%d?attempt=2" % job, key=self.key)
        self.assertEqual((two["log"], two["log_end"]), ("second try\n", 11), two)
        self.assertIsNone(self.api("GET", "/api/v1/jobs/%d?attempt=3" % job,
                                   key=self.key)["log"])
        for bad in ("x", "-1", "4294967296"):
            self.api("GET", "/api/v1/jobs/%d?attempt=%s" % (job, bad), key=self.key,
                     code=400)
        self.api("POST", "/api/v1/nodes/%d/jobs/%d/result" % (n2, job), key=tok2,
                 body=network.KEYS[n2].signed(job, {
                     "attempt": 2, "run_ms": 40, "outputs": {"message": "hi"},
                     "log": "second try\nend\n"}))
        p = self.cli("job", "logs", str(job), "--attempt", "1", key=self.key)
        self.assertEqual(p.stdout, "first try\n")
        p = self.cli("job", "logs", str(job), key=self.key)
        self.assertEqual(p.stdout, "second try\nend\n")
        self.assertEqual(self.api("GET", "/api/v1/jobs/%d?attempt=2" % job,
                                  key=self.key)["log_attempts"], [1, 2])
        self.cli("job", "logs", str(job), "--attempt", "0", key=self.key, code=2)
        self.cli("job", "logs", str(job), "--attempt", "1", "--follow", key=self.key,
                 code=2)
        other = self.cli_json("account", "create", "--name", "other3", key=network.ADMIN)
        self.api("GET", "/api/v1/jobs/%d?attempt=1" % job, key=other["api_key"], code=404)

def cbor(data, i=0):
    """(value, next index) of the CBOR item at data[i]: what the node's
    bodies hold (maps, text, integers, floats, booleans, null)."""
    major, info = data[i] >> 5, data[i] & 0x1F
    i += 1
    if major == 7:
        if info == 27:
            return struct.unpack(">d", data[i:i + 8])[0], i + 8
        if info == 26:
            return struct.unpack(">f", data[i:i + 4])[0], i + 4
        return {20: False, 21: True, 22: None}[info], i
    if info < 24:
        n = info
    else:
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        n = int.from_bytes(data[i:i + size], "big")
        i += size
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major in (2, 3):
        raw = data[i:i + n]
        return (raw.decode() if major == 3 else raw), i + n
    if major == 4:
        out = []
        for _ in range(n):
            v, i = cbor(data, i)
            out.append(v)
        return out, i
    out = {}
    for _ in range(n):
        k, i = cbor(data, i)
        out[k], i = cbor(data, i)
    return out, i


class NodeSide(unittest.TestCase):
    """The real rhizos-node against an orchestrator played here: a chunk
    refused for a while (503) is sent again at the same offset, the
    chunks taken make up the step's log exactly, all before the result;
    a chunk refused for good (409) ends the stream, not the job."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="rz-live-node-")
        self.mods = os.path.join(self.tmp.name, "modules")
        d = os.path.join(self.mods, "live-log")
        os.makedirs(d)
        with open(os.path.join(d, "module.json"), "w") as f:
            json.dump(MODULE, f)
        with open(os.path.join(d, "talk.py"), "w") as f:
            f.write(SCRIPT)
        digest = hashlib.sha256(json.dumps(MODULE, sort_keys=True, separators=(",", ":"))
                                .encode()).hexdigest()
        self.queue = [{"job": job, "attempt": 1, "step": "talk",
                       "module": {"id": "live-log", "version": "1.0.0",
                                  "digest": digest},
                       "request": {"inputs": {}, "config": {}}} for job in (3, 4)]
        self.posts, self.lock = [], threading.Lock()
        self.refuse = {3: [503], 4: [409]}   # answers to each job's first chunks
        self.fake = FakeOrchestrator(self.assign, self.post)
        self.data = os.path.join(self.tmp.name, "node")
        p = run([NODE, "init", "--data", self.data], cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stderr)

    def tearDown(self):
        self.fake.close()
        self.tmp.cleanup()

    def assign(self):
        with self.lock:
            # One job at a time: the next once the last has its result.
            done = len([p for p in self.posts if p[0].endswith("/result")])
            if self.queue and done == 2 - len(self.queue):
                return self.queue.pop(0)
        return None

    def post(self, path, body):
        doc = cbor(body)[0] if body[:1] != b"{" else json.loads(body)
        job = int(path.split("/jobs/")[1].split("/")[0])
        code = 200
        with self.lock:
            if path.endswith("/log") and self.refuse[job]:
                code = self.refuse[job].pop(0)
            self.posts.append((path, job, doc, code))
        if code != 200:
            return code, {"error": {"code": "X", "message": "no"}}
        return 200, {"accepted": True}

    def of(self, job, kind):
        with self.lock:
            return [p for p in self.posts if p[1] == job and p[0].endswith("/" + kind)]

    def test_retries_resume_at_the_offset_and_a_refusal_ends_the_stream(self):
        n = Proc([NODE, "start", "--data", self.data, "--orchestrator",
                  self.fake.url,
                  "--modules", self.mods, *network.SANDBOX], cwd=ROOT)
        try:
            n.wait_for(lambda: self.of(4, "result"), 6 * NAP + 30, "both results\n" +
                       json.dumps([p[:2] + (p[3],) for p in self.posts]))
        finally:
            self.assertEqual(n.stop(), 0, n.output())
        logs, result = self.of(3, "log"), self.of(3, "result")
        self.assertEqual(result[0][2].get("outputs"), {"ok": True}, result)
        # The refused first chunk came again, at the same offset.
        self.assertEqual([p[3] for p in logs[:2]], [503, 200], logs)
        self.assertEqual(logs[0][2]["offset"], 0)
        self.assertEqual(logs[1][2]["offset"], 0)
        self.assertTrue(logs[1][2]["lines"].startswith(logs[0][2]["lines"]))
        # The chunks taken follow each other and are the whole log.
        taken, at = "", 0
        for _, _, doc, code in logs[1:]:
            self.assertEqual((code, doc["attempt"], doc["offset"]), (200, 1, at), logs)
            taken += doc["lines"]
            at += len(doc["lines"].encode())
        self.assertEqual(taken, "first line, key none\nsecond line\nthird line\n")
        with self.lock:
            order = [p[0].rsplit("/", 1)[1] for p in self.posts if p[1] == 3]
        self.assertEqual(order[-1], "result", order)   # every chunk before it
        # Job 4: its first chunk refused for good, no more chunks; it ran on.
        self.assertEqual([p[3] for p in self.of(4, "log")], [409])
        self.assertEqual(self.of(4, "result")[0][2].get("outputs"), {"ok": True})


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
