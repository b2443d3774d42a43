#!/usr/bin/env python3
"""End-to-end: the real `rhizos-node` binary. Its own files and refusals
always; with the orchestrator binary, a round trip on a free loopback port:
two nodes, a job that succeeds, a job declined for a module that differs
on one node, and a node killed mid-job whose job ends on the other.
Usage: node_agent.py RHIZOS_NODE SOURCE_ROOT [RHIZOS_ORCHESTRATOR]"""
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import harness  # noqa: E402
from harness import (Proc, free_port, http, run, sandbox_flags, set_config,
                     start_orchestrator)

NODE, ROOT = sys.argv[1], sys.argv[2]
ORCH = sys.argv[3] if len(sys.argv) > 3 else ""
SECRET_FILES = ("keys/ed25519.key", "keys/x25519.key")


def node(*args, timeout=30):
    return run([NODE, *args], cwd=ROOT, timeout=timeout)


def read(path):
    with open(path) as f:
        return f.read().strip()


class Help(unittest.TestCase):
    def test_each_command_has_its_help(self):
        for cmd in ("init", "register", "start", "info", "benchmark", "status"):
            for args in (["help", cmd], [cmd, "--help"]):
                with self.subTest(args=args):
                    p = node(*args)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertTrue(p.stdout.startswith("usage: rhizos-node " + cmd),
                                    p.stdout)
        self.assertIn("--once", node("start", "--help").stdout)
        self.assertNotIn("--once", node("init", "--help").stdout)
        self.assertIn("COMMAND", node("help").stdout)
        p = node("help", "fly")
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command 'fly'", p.stderr)


class NodeFiles(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.data = os.path.join(self.tmp.name, "node")

    def tearDown(self):
        self.tmp.cleanup()

    def test_init_makes_private_files_and_prints_no_secret(self):
        p = node("init", "--data", self.data, "--orchestrator",
                 "http://127.0.0.1:9")
        self.assertEqual(p.returncode, 0, p.stderr)
        for rel in ("config.toml", "keys/ed25519.key", "keys/ed25519.pub",
                    "keys/x25519.key", "keys/x25519.pub"):
            mode = stat.S_IMODE(os.stat(os.path.join(self.data, rel)).st_mode)
            self.assertEqual(mode, 0o600, rel)
        for rel in ("", "keys"):
            mode = stat.S_IMODE(os.stat(os.path.join(self.data, rel)).st_mode)
            self.assertEqual(mode, 0o700, rel or "data")
        self.assertEqual(len(read(os.path.join(self.data, "keys/ed25519.key"))), 128)
        self.assertEqual(len(read(os.path.join(self.data, "keys/x25519.key"))), 64)
        for rel in SECRET_FILES:
            secret = read(os.path.join(self.data, rel))
            self.assertNotIn(secret, p.stdout + p.stderr)
            self.assertNotIn(secret[:32], p.stdout + p.stderr)
        self.assertIn(read(os.path.join(self.data, "keys/ed25519.pub")), p.stdout)
        cfg = read(os.path.join(self.data, "config.toml"))
        for want in ('url = "http://127.0.0.1:9"', "[pricing]", "gpu_hour_micros",
                     "[limits]", "max_concurrent_jobs", "sandbox = true"):
            self.assertIn(want, cfg)

    def test_opened_data_dir_is_tightened_and_benchmark_private(self):
        os.makedirs(self.data)
        os.chmod(self.data, 0o777)
        p = node("init", "--data", self.data, "--orchestrator",
                 "http://127.0.0.1:9")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(self.data).st_mode), 0o700)
        os.chmod(self.data, 0o755)
        old = os.umask(0o022)
        try:
            p = node("benchmark", "--data", self.data)
        finally:
            os.umask(old)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(self.data).st_mode), 0o700)
        path = os.path.join(self.data, "node-benchmark.json")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertIn("cpu_mops", json.loads(read(path)))

    def test_init_twice_refuses_and_force_replaces(self):
        self.assertEqual(node("init", "--data", self.data).returncode, 0)
        key = read(os.path.join(self.data, "keys/ed25519.key"))
        p = node("init", "--data", self.data)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--force", p.stderr)
        self.assertEqual(read(os.path.join(self.data, "keys/ed25519.key")), key)
        p = node("init", "--data", self.data, "--force", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ed25519_public_key", json.loads(p.stdout))
        self.assertNotEqual(read(os.path.join(self.data, "keys/ed25519.key")), key)

    def test_register_closed_port_fails_clearly(self):
        port = free_port()
        node("init", "--data", self.data)
        p = node("register", "--data", self.data, "--orchestrator",
                 "http://127.0.0.1:%d" % port)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("cannot reach", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.data, "state.json")))

    def test_register_without_init(self):
        p = node("register", "--data", self.data)
        self.assertEqual(p.returncode, 1)
        self.assertIn("rhizos-node init", p.stderr)

    def test_start_backs_off_and_stops_on_sigterm(self):
        port = free_port()
        node("init", "--data", self.data)
        s = Proc([NODE, "start", "--data", self.data, "--orchestrator",
                  "http://127.0.0.1:%d" % port, *sandbox_flags()], cwd=ROOT)
        s.wait_for(lambda: any("cannot reach" in l for l in s.err), 20,
                   "no outage message")
        time.sleep(2.5)     # more attempts (1 s, then 2 s backoff)
        self.assertEqual(s.stop(), 0)
        said = [l for l in s.err if "cannot reach" in l]
        self.assertEqual(len(said), 1, s.err)   # once per outage
        self.assertIn("retrying with backoff", said[0])

    def test_bad_config_names_file_and_line(self):
        node("init", "--data", self.data)
        set_config(self.data, "limits", "max_concurrent_jobs", "many")
        p = node("start", "--data", self.data)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"config\.toml:\d+: malformed value")


class FakeOrchestrator(unittest.TestCase):
    """An orchestrator that hands out hostile assignments (JSON replies:
    the agent reads JSON or CBOR; its CBOR bodies are checked as bytes)."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.queue, self.posts = [], []
        self.release = threading.Event()
        self.fake = harness.FakeOrchestrator(self.assign, self.post)
        self.data = os.path.join(self.tmp.name, "node")
        self.assertEqual(node("init", "--data", self.data).returncode, 0)

    def tearDown(self):
        self.release.set()
        self.fake.close()
        self.tmp.cleanup()

    def assign(self):
        return self.queue.pop(0) if self.queue else None

    def post(self, path, body):
        self.posts.append((path, body))
        if "/jobs/8/" in path and b"another attempt" not in body:
            self.release.wait(20)   # keeps job 8 attempt 1 in flight
        return 200, {"accepted": True}

    @staticmethod
    def attempt_of(body):
        """The CBOR unsigned integer after the text key "attempt"."""
        i = body.index(b"gattempt") + 8
        info = body[i] & 0x1F
        if info < 24:
            return info
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        return int.from_bytes(body[i + 1:i + 1 + size], "big")

    def declined(self, job):
        return [b for p, b in self.posts if p.endswith("/jobs/%d/decline" % job)]

    def test_hostile_assignments_are_refused(self):
        mod = {"id": "echo", "version": "*", "digest": "ab" * 32}
        asg = lambda job, att, **m: {"job": job, "attempt": att,
                                     "module": dict(mod, **m), "request": {}}
        self.queue += [asg(1e300, 1), asg(-1, 1), asg(5, 1.5), asg(6, 0),
                       asg(6, 1),                       # a version range
                       asg(7, 1, version="1.0.0", digest=None),
                       asg(8, 1), asg(8, 2), asg(8, 1)]
        n = Proc([NODE, "start", "--data", self.data, "--orchestrator",
                  self.fake.url,
                  *sandbox_flags()], cwd=ROOT)
        try:
            n.wait_for(lambda: not self.queue and len(self.declined(8)) == 2
                       and self.declined(6) and self.declined(7), 20,
                       "the assignments were not all answered")
            n.wait_for(lambda: any("is already running here" in l for l in n.err),
                       20, "the second job 8 attempt 1 was not ignored")
            self.release.set()
        finally:
            n.stop()
        err = "\n".join(n.err)
        self.assertEqual(err.count("without a valid job and attempt"), 4, err)
        self.assertEqual(err.count("is already running here"), 1, err)
        self.assertIn(b"version range", self.declined(6)[0])
        self.assertIn(b"no module digest", self.declined(7)[0])
        dup = [b for b in self.declined(8) if b"another attempt" in b]
        self.assertEqual(len(dup), 1)
        self.assertEqual(self.attempt_of(dup[0]), 2)
        first = [b for b in self.declined(8) if self.attempt_of(b) == 1]
        self.assertEqual(len(first), 1)   # the repeat of attempt 1 ran nothing
        for job in (1, 5):
            self.assertFalse([p for p, _ in self.posts if "/jobs/%d/" % job in p])


class NextJobWhileReporting(unittest.TestCase):
    """A node of one slot asks for its next job while its last result is
    on its way, its poll saying which attempt ended ("ended": the
    orchestrator frees that slot and hands the next job over at once), yet
    never runs two jobs at once, and with two results unanswered it asks
    for nothing (its slots are bounded)."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.steps = os.path.join(self.tmp.name, "steps.log")
        mods = os.path.join(self.tmp.name, "modules")
        os.makedirs(os.path.join(mods, "nap"))
        manifest = {
            "id": "nap", "version": "1.0.0", "name": "nap", "description": "a nap",
            "inputs": [], "outputs": [], "config": {"type": "object"},
            "credentials": [], "estimate": {"seconds": 1},
            "requirements": {"adapter": "process", "cpu_cores": 1, "memory_mb": 16},
            "exec": {"adapter": "process", "timeout_s": 30, "command": [
                "/bin/sh", "-c", "echo s >> %s; sleep 0.2; echo e >> %s; echo {}"
                % (self.steps, self.steps)]}}
        with open(os.path.join(mods, "nap", "module.json"), "w") as f:
            json.dump(manifest, f)
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":"))
                                .encode()).hexdigest()
        self.queue = [{"job": job, "attempt": 1, "step": "nap",
                       "module": {"id": "nap", "version": "1.0.0", "digest": digest},
                       "request": {"inputs": {}, "config": {}}} for job in (1, 2, 3)]
        self.lock = threading.Lock()
        self.held, self.came, self.asks, self.results = set(), set(), [], []
        self.second_held, self.first_answered = threading.Event(), threading.Event()
        self.fake = harness.FakeOrchestrator(self.assign, self.post)
        self.data = os.path.join(self.tmp.name, "node")
        self.assertEqual(node("init", "--data", self.data).returncode, 0)
        set_config(self.data, "limits", "max_concurrent_jobs", 1)
        set_config(self.data, "node", "modules", json.dumps(mods))
        set_config(self.data, "node", "heartbeat_s", 60)   # no GETs but polls

    def tearDown(self):
        self.second_held.set()
        self.first_answered.set()
        self.fake.close()
        self.tmp.cleanup()

    def assign(self):
        query = urllib.parse.urlparse(self.fake.polls[-1]).query
        ended = urllib.parse.parse_qs(query).get("ended", [""])[0]
        with self.lock:
            # As the orchestrator: the next job once the last attempt
            # ended (its result may be on its way) or its result came.
            done = self.came | {int(e.split(".")[0]) for e in ended.split(",") if e}
            free = 3 - len(self.queue) == len(done)
            got = self.queue.pop(0) if self.queue and free else None
            self.asks.append((frozenset(self.held), got and got["job"], ended))
            return got

    def post(self, path, body):
        job = int(path.split("/jobs/")[1].split("/")[0])
        with self.lock:
            self.held.add(job)
            self.came.add(job)
        if job == 1:   # answered once job 2's result waits too, a while later
            self.second_held.wait(15)
            time.sleep(0.6)
        elif job == 2:
            self.second_held.set()
            self.first_answered.wait(15)
        with self.lock:
            self.held.discard(job)
            self.results.append((job, b"outputs" in body))
        if job == 1:
            self.first_answered.set()
        return 200, {"accepted": True}

    def test_polls_while_the_result_is_on_its_way(self):
        n = Proc([NODE, "start", "--data", self.data, "--orchestrator",
                  self.fake.url, "--no-sandbox"], cwd=ROOT)
        try:
            n.wait_for(lambda: len(self.results) == 3, 30, "three results")
        finally:
            n.stop()
        with self.lock:
            asks = list(self.asks)
        # Job 2 was asked for while job 1's result was on its way, the poll
        # saying that job 1's attempt 1 had ended.
        self.assertIn(2, [a[1] for a in asks if a[2] == "1.1" and 2 not in a[0]], asks)
        # Two results unanswered: both slots taken, nothing asked.
        self.assertFalse([a for a in asks if len(a[0]) > 1], asks)
        self.assertIn(3, [a[1] for a in asks], asks)
        self.assertEqual(sorted(self.results), [(1, True), (2, True), (3, True)])
        with open(self.steps) as f:   # one job at a time: never s s
            self.assertEqual(f.read().split(), ["s", "e"] * 3)


def where_node(test, assign, post):
    """Module `where` (prints its output's path) in test.tmp, a fake
    orchestrator with `assign` and `post` as test.fake, and a node's data
    folder (one job at a time) as test.data; the assignments of its jobs
    from where_job(test, job)."""
    mods = os.path.join(test.tmp.name, "modules")
    os.makedirs(os.path.join(mods, "where"))
    manifest = {
        "id": "where", "version": "1.0.0", "name": "where", "description": "its folder",
        "inputs": [], "outputs": [], "config": {"type": "object"},
        "credentials": [], "estimate": {"seconds": 1},
        "requirements": {"adapter": "process", "cpu_cores": 1, "memory_mb": 16},
        "exec": {"adapter": "process", "timeout_s": 30, "command": [
            "/bin/sh", "-c", "printf '{\"at\": \"%s\"}' \"$RZ_OUTPUT\""]}}
    with open(os.path.join(mods, "where", "module.json"), "w") as f:
        json.dump(manifest, f)
    test.digest = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":"))
                                 .encode()).hexdigest()
    test.fake = harness.FakeOrchestrator(assign, post)
    test.data = os.path.join(test.tmp.name, "node")
    test.assertEqual(node("init", "--data", test.data).returncode, 0)
    set_config(test.data, "limits", "max_concurrent_jobs", 1)
    set_config(test.data, "node", "modules", json.dumps(mods))


def where_job(test, job):
    return {"job": job, "attempt": 1, "step": "where",
            "module": {"id": "where", "version": "1.0.0", "digest": test.digest},
            "request": {"inputs": {}, "config": {}}}


class ScratchReuse(unittest.TestCase):
    """Unsandboxed, a slot's jobs refill the scratch folder the last one
    left (as the embedded runner's steps do) instead of each making and
    removing its own; the folders go when the node stops."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.lock = threading.Lock()
        self.results = []
        self.kept = []
        self.gate = False
        where_node(self, self.assign, self.post)
        self.queue = [where_job(self, job) for job in range(1, 7)]

    def tearDown(self):
        self.fake.close()
        self.tmp.cleanup()

    def assign(self):
        # test_results_refill_one_file: the next once the last result's
        # file is the spare (the node renames it once the reply comes).
        if self.queue and len(self.queue) < 6 and self.gate and \
                self.outbox() != ["spare-0.tmp"]:
            return None
        with self.lock:   # one at a time: the next once the last result came
            if self.queue and len(self.results) == 6 - len(self.queue):
                return self.queue.pop(0)
        return None

    def outbox(self):
        box = os.path.join(self.data, "outbox")
        return sorted(os.listdir(box)) if os.path.isdir(box) else []

    def post(self, path, body):
        # The body is CBOR: the folder is read out of its bytes.
        at = re.search(rb"(/[!-~]*?/rz-[0-9a-f]+-[0-9]+-\w{6})/out/outputs\.json", body)
        job = int(path.split("/")[-2])
        # Written before its first delivery: here while it is on its way.
        kept = os.stat(os.path.join(self.data, "outbox", "%d-1.json" % job)).st_ino
        with self.lock:
            self.results.append(at and at.group(1).decode())
            self.kept.append(kept)
        return 200, {"accepted": True}

    def test_a_slot_refills_its_folder(self):
        n = Proc([NODE, "start", "--data", self.data, "--orchestrator",
                  self.fake.url, "--no-sandbox"], cwd=ROOT)
        try:
            n.wait_for(lambda: len(self.results) == 6, 30, "six results")
        finally:
            n.stop()
        self.assertNotIn(None, self.results)
        folders = set(self.results)
        # Two slots (one running, one reporting): at most two folders.
        self.assertLessEqual(len(folders), 2, folders)
        self.assertFalse([f for f in folders if os.path.exists(f)], folders)

    def test_results_refill_one_file(self):
        """An accepted result's outbox file is kept as a spare and the next
        result is written into it: one file for the six (each made and
        removed cost the node a tenth of its CPU); none is left at stop."""
        self.gate = True
        n = Proc([NODE, "start", "--data", self.data, "--orchestrator",
                  self.fake.url, "--no-sandbox"], cwd=ROOT)
        try:
            n.wait_for(lambda: len(self.results) == 6, 30, "six results")
            # The last reply reaches the node after post() returned.
            harness.wait_until(lambda: self.outbox() == ["spare-0.tmp"], 10,
                               "the last result's file kept as the spare")
            spare = os.stat(os.path.join(self.data, "outbox", "spare-0.tmp")).st_ino
        finally:
            n.stop()
        # Each result went out in the file the one before had left.
        self.assertEqual(set(self.kept), {spare}, self.kept)
        self.assertEqual(self.outbox(), [])


class LeftSpares(unittest.TestCase):
    """A node killed while it filled an outbox spare leaves
    outbox/spare-K.tmp, maybe with a whole result's document in it: the
    next start never takes it for a result (only .json names are), takes
    it up as a spare (the next result is written into it), and removes it
    at stop with the other spares."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.lock = threading.Lock()
        self.jobs = []
        self.posted = []   # (job, its outbox file's inode as it was sent)
        where_node(self, self.assign, self.post)
        self.box = os.path.join(self.data, "outbox")

    def tearDown(self):
        self.fake.close()
        self.tmp.cleanup()

    def assign(self):
        with self.lock:
            return self.jobs.pop(0) if self.jobs else None

    def post(self, path, body):
        job = int(path.split("/")[-2])
        ino = os.stat(os.path.join(self.box, "%d-1.json" % job)).st_ino
        with self.lock:
            self.posted.append((job, ino))
        return 200, {"accepted": True}

    def start(self):
        return Proc([NODE, "start", "--data", self.data, "--orchestrator",
                     self.fake.url, "--no-sandbox"], cwd=ROOT)

    def plant(self, name, job):
        """A result of this registration for `job`, as the node writes one."""
        doc = {"node": 1, "orchestrator": self.fake.url, "job": job, "attempt": 1,
               "result": {"outputs": {"at": "planted"}}}
        with open(os.path.join(self.box, name), "w") as f:
            json.dump(doc, f)
        return os.stat(os.path.join(self.box, name)).st_ino

    def test_left_spares_are_spares_again(self):
        n = self.start()   # registered, then stopped
        try:
            n.wait_for(lambda: self.fake.polls, 30, "the node to poll")
        finally:
            n.stop()
        os.makedirs(self.box, exist_ok=True)
        left = self.plant("spare-0.tmp", 77)
        self.plant("spare-5.tmp", 78)
        self.plant("79-1.json", 79)   # the same under a result's name
        self.jobs.append(where_job(self, 1))
        n = self.start()
        try:
            n.wait_for(lambda: len(self.posted) == 2, 30, "two results")
            # Both replies taken in (the files become spares): none left.
            harness.wait_until(lambda: not [f for f in os.listdir(self.box)
                                            if f.endswith(".json")], 30,
                               "the results' files kept as spares")
        finally:
            n.stop()
        with self.lock:
            posted = dict(self.posted)
        self.assertEqual(sorted(posted), [1, 79], self.posted)
        self.assertEqual(posted[1], left)   # written into the left spare
        self.assertEqual(os.listdir(self.box), [])


@unittest.skipUnless(ORCH and os.access(ORCH, os.X_OK), "no orchestrator binary")
class RoundTrip(unittest.TestCase):
    ADMIN = "test-admin-key-0123456789abcdef-node-agent"

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.orch = start_orchestrator(
            ORCH, os.path.join(self.tmp.name, "orch"),
            ["--node-timeout-ms", "3000", "--modules",
             os.path.join(ROOT, "tests/e2e/modules")],
            admin_key=self.ADMIN, cwd=ROOT, timeout=20)
        self.base = self.orch.base
        self.nodes = []
        st, acct = http(self.base, "POST", "/api/v1/accounts", self.ADMIN, {})
        self.assertEqual(st, 201, acct)
        self.key = acct["api_key"]
        st, body = http(self.base, "POST", "/api/v1/accounts/%s/test-credits"
                        % acct["id"], self.ADMIN, {"amount_micros": 100000})
        self.assertEqual(st, 200, body)

    def tearDown(self):
        for n in self.nodes:
            n.stop(signal.SIGKILL)
        self.orch.stop()
        self.tmp.cleanup()

    def start_node(self, name, *extra, config=()):
        data = os.path.join(self.tmp.name, name)
        self.assertEqual(node("init", "--data", data).returncode, 0)
        for section, key, value in config:
            set_config(data, section, key, value)
        n = Proc([NODE, "start", "--data", data, "--orchestrator", self.base,
                  "--json", *sandbox_flags(), *extra], cwd=ROOT)
        n.data = data
        n.wait_for(lambda: any(e.get("event") == "registered" for e in n.events()),
                   15, "%s did not register" % name)
        n.id = [e for e in n.events() if e.get("event") == "registered"][0]["node"]
        self.nodes.append(n)
        return n

    def submit(self, module, **fields):
        st, job = http(self.base, "POST", "/api/v1/jobs", self.key,
                       dict(module=module, max_cost_micros=100, **fields))
        self.assertEqual(st, 201, job)
        return job["id"]

    def wait_job(self, job, states=("succeeded", "failed", "cancelled"), timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            st, j = http(self.base, "GET", "/api/v1/jobs/%d" % job, self.key)
            self.assertEqual(st, 200, j)
            if j["status"] in states:
                return j
            time.sleep(0.1)
        raise AssertionError("job %d still %s" % (job, j))

    def modified_echo(self):
        mods = os.path.join(self.tmp.name, "mods")
        shutil.copytree(os.path.join(ROOT, "examples/modules/echo"),
                        os.path.join(mods, "echo"))
        path = os.path.join(mods, "echo", "module.json")
        with open(path) as f:
            manifest = json.load(f)
        manifest["description"] += " (changed on this node)"
        with open(path, "w") as f:
            json.dump(manifest, f)
        return mods

    def test_outputs_over_the_cap_fail_the_job_once(self):
        # Over the node's cap (512 KiB by default): one failed attempt with
        # a clear reason, not a body the orchestrator refuses attempt after
        # attempt. Under it, the outputs and a cut log arrive.
        self.start_node("big", "--modules", os.path.join(ROOT, "tests/e2e/modules"))
        over = self.submit("big-output")
        j = self.wait_job(over)
        self.assertEqual((j["status"], j["attempt"]), ("failed", 1), j)
        self.assertIn("outputs over 512 KiB", j["error"])
        under = self.submit("big-output", config={"kib": 400})
        j = self.wait_job(under)
        self.assertEqual(j["status"], "succeeded", j)
        self.assertEqual(len(j["outputs"]["blob"]), 400 * 1024)

    def ended_counting(self, job):
        """The job once it ended, and how many requests (connections) the
        asking took."""
        asked = 0
        while True:
            st, j = http(self.base, "GET", "/api/v1/jobs/%d" % job, self.key)
            asked += 1
            if j["status"] not in ("queued", "assigned", "running"):
                return j, asked
            time.sleep(0.1)

    def metric(self, name):
        st, text = http(self.base, "GET", "/metrics", self.ADMIN,
                        decode=lambda ctype, data: data.decode())
        self.assertEqual(st, 200, text)
        for line in text.splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        self.fail("no %s in /metrics" % name)

    def test_the_node_keeps_its_connections(self):
        # A node's calls (long polls, results, heartbeats) go over a few
        # kept-alive connections, not one each: 8 jobs (16 calls or more)
        # open at most a handful. Each of the test's own requests is one
        # connection, counted and taken off.
        self.start_node("keep", config=[("node", "heartbeat_s", 0.5)])
        time.sleep(0.5)   # its first poll, heartbeat and challenge
        before = self.metric("rhizos_http_connections_accepted_total")
        mine = 0
        jobs = [self.submit("echo", inputs={"message": "m%d" % i}) for i in range(8)]
        mine += len(jobs)
        for job in jobs:
            j, asked = self.ended_counting(job)
            mine += asked
            self.assertEqual(j["status"], "succeeded", j)
        node_conns = self.metric("rhizos_http_connections_accepted_total") - before - mine - 1
        self.assertLessEqual(node_conns, 4, "the node made %d connections for 8 jobs"
                             % node_conns)

    def test_file_jobs_keep_the_nodes_connections(self):
        # A job's file output goes up, part by part, over the node's own
        # kept-alive connections too (node/blobs.c takes a client of the
        # node's), not a connection of its own each job: 6 jobs with a
        # 1 MiB file each open at most a handful.
        self.start_node("filekeep", "--modules", os.path.join(ROOT, "tests/e2e/modules"),
                        config=[("node", "heartbeat_s", 0.5)])
        time.sleep(0.5)   # its first poll, heartbeat and challenge
        before = self.metric("rhizos_http_connections_accepted_total")
        mine = 0
        for _ in range(6):
            j, asked = self.ended_counting(self.submit("file-make", config={"mb": 1}))
            mine += 1 + asked
            self.assertEqual(j["status"], "succeeded", j)
            self.assertIn("$file", j["outputs"]["data"])
        node_conns = self.metric("rhizos_http_connections_accepted_total") - before - mine - 1
        self.assertLessEqual(node_conns, 4, "the node made %d connections for 6 file jobs"
                             % node_conns)

    def test_file_output_of_a_standalone_job(self):
        # A file output goes to the orchestrator (docs/flow-format.md,
        # "File outputs"): the job succeeds with a reference that names no
        # folder of the node, its owner reads the bytes back by job, and
        # the node keeps no copy.
        n = self.start_node("files", "--modules", os.path.join(ROOT, "tests/e2e/modules"))
        job = self.submit("file-make", config={"mb": 1})
        j = self.wait_job(job)
        self.assertEqual(j["status"], "succeeded", j)
        ref = j["outputs"]["data"]["$file"]
        self.assertEqual((ref["size"], ref["name"]), (1 << 20, "sub/data.bin"))
        self.assertNotIn("path", ref)
        got, off = hashlib.sha256(), 0
        while off < ref["size"]:
            st, part = http(self.base, "GET", "/api/v1/blobs/%s?job=%d&offset=%d"
                            % (ref["sha256"], job, off), self.key,
                            decode=lambda ctype, data: data)
            self.assertEqual(st, 200)
            self.assertTrue(part)
            got.update(part)
            off += len(part)
        self.assertEqual(got.hexdigest(), ref["sha256"])
        left = [f for _, _, fs in os.walk(os.path.join(n.data, "blobs")) for f in fs]
        self.assertEqual(left, [])

    def test_max_scratch_mb_reaches_the_step(self):
        # [limits] max_scratch_mb = 1: a module asking for 2 MiB fails to
        # start, naming the node's maximum; under the default it runs.
        mods = ("--modules", os.path.join(ROOT, "tests/e2e/modules"))
        small = self.start_node("small", *mods,
                                config=[("limits", "max_scratch_mb", "1")])
        j = self.wait_job(self.submit("scratch-ask"))
        self.assertEqual((j["status"], j["node_id"]), ("failed", small.id), j)
        self.assertIn("over this runner's maximum of 1 MiB", j["error"])
        small.stop(signal.SIGKILL)
        self.nodes.remove(small)
        st, _ = http(self.base, "DELETE", "/api/v1/nodes/%d" % small.id, self.ADMIN)
        self.assertEqual(st, 200)
        self.start_node("default", *mods)
        j = self.wait_job(self.submit("scratch-ask"))
        self.assertEqual((j["status"], j["outputs"]), ("succeeded", {"ok": True}), j)

    def test_jobs_run_decline_and_survive_a_killed_node(self):
        # A node whose echo differs declines it; the job waits for another.
        odd = self.start_node("odd", "--modules", self.modified_echo())
        first = self.submit("echo", inputs={"message": "hello"})
        odd.wait_for(lambda: any(e.get("event") == "declined" and e["job"] == first
                                 for e in odd.events()), 20, "no decline")
        good = self.start_node("good")
        j = self.wait_job(first)
        self.assertEqual(j["status"], "succeeded", j)
        self.assertEqual(j["outputs"], {"message": "hello"})
        self.assertEqual(j["node"], good.id)
        self.assertTrue(any(e.get("event") == "succeeded" and e["job"] == first
                            for e in good.events()))

        # kill -9 of the node running a job: it ends on the other one.
        slow = self.submit("sleep", config={"seconds": 3})
        self.wait_job(slow, states=("running",))
        deadline = time.time() + 10
        while time.time() < deadline and not any(
                e.get("event") == "started" and e["job"] == slow
                for n in self.nodes for e in n.events()):
            time.sleep(0.05)
        holder = [n for n in self.nodes if any(
            e.get("event") == "started" and e["job"] == slow for e in n.events())][0]
        other = odd if holder is good else good
        holder.stop(signal.SIGKILL)
        j = self.wait_job(slow, timeout=40)
        self.assertEqual(j["status"], "succeeded", j)
        self.assertEqual(j["node"], other.id, j)
        self.assertGreaterEqual(j["attempt"], 2)

        # Secrets never reach the output of a node.
        for n in self.nodes:
            token = read(os.path.join(n.data, "token"))
            text = "\n".join(n.out + n.err)
            self.assertNotIn(token, text)
            for rel in SECRET_FILES:
                self.assertNotIn(read(os.path.join(n.data, rel)), text)
            mode = stat.S_IMODE(os.stat(os.path.join(n.data, "token")).st_mode)
            self.assertEqual(mode, 0o600)
        self.assertEqual(other.stop(), 0)

    def status(self, n):
        p = node("status", "--data", n.data, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def test_local_api_shows_what_the_node_does(self):
        port = free_port()
        n = self.start_node("local", config=[
            ("api", "listen", '"127.0.0.1:%d"' % port),
            ("node", "heartbeat_s", "0.3")])
        self.assertEqual(read(os.path.join(n.data, "api.addr")), "127.0.0.1:%d" % port)
        api = "http://127.0.0.1:%d" % port
        st = self.status(n)
        self.assertEqual(st["node"]["id"], n.id)
        self.assertEqual(st["slots"], {"total": 4, "busy": 0})
        self.assertEqual(st["recent"], [])
        self.assertIn("cpu", st["capabilities"])
        n.wait_for(lambda: self.status(n)["orchestrator"]["state"] == "connected",
                   10, "not connected")

        job = self.submit("echo", inputs={"message": "hi"})
        self.assertEqual(self.wait_job(job)["status"], "succeeded")
        n.wait_for(lambda: self.status(n)["jobs"]["succeeded"] == 1, 10, "no count")
        st = self.status(n)
        last = st["recent"][0]
        self.assertEqual((last["job"], last["outcome"]), (job, "succeeded"), last)
        self.assertTrue(last["module"].startswith("echo"), last)
        self.assertEqual(st["verification"], "passed")
        # The balance it shows is the ledger's, read after the result.
        account = st["node"]["account"]
        def same_balance():
            _, acct = http(self.base, "GET", "/api/v1/accounts/" + account, self.ADMIN)
            e = self.status(n)["earnings"]
            return e is not None and e["balance_micros"] == acct["balance_micros"]
        n.wait_for(same_balance, 10, "earnings differ from the ledger's")
        text = node("status", "--data", n.data).stdout
        self.assertIn("node      %d" % n.id, text)
        self.assertIn("job %d attempt 1 succeeded" % job, text)

        code, metrics = http(api, "GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn('rhizos_node_jobs_finished_total{outcome="succeeded"} 1', metrics)
        self.assertIn("process_open_fds", metrics)
        if shutil.which("promtool"):
            p = run(["promtool", "check", "metrics"], stdin=metrics)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # Read-only, and only for this machine's names.
        code, body = http(api, "POST", "/status", body={})
        self.assertEqual(code, 405, body)
        self.assertEqual(http(api, "GET", "/keys")[0], 404)
        code, body = http(api, "GET", "/status", headers={"Host": "evil.example:%d" % port})
        self.assertEqual(code, 403, body)
        self.assertEqual(http(api, "GET", "/status", headers={"Host": "localhost"})[0], 200)
        token = read(os.path.join(n.data, "token"))
        self.assertNotIn(token, json.dumps(st) + metrics)

        # A second node asking for the same address does not start.
        other = os.path.join(self.tmp.name, "other")
        self.assertEqual(node("init", "--data", other).returncode, 0)
        set_config(other, "api", "listen", '"127.0.0.1:%d"' % port)
        p = node("start", "--data", other, "--orchestrator", self.base,
                 *sandbox_flags(), timeout=20)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("[api] listen 127.0.0.1:%d" % port, p.stderr)
        self.assertIn("in use", p.stderr)

        self.assertEqual(n.stop(), 0)
        self.nodes.remove(n)
        self.assertFalse(os.path.exists(os.path.join(n.data, "api.addr")))
        p = node("status", "--data", n.data)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("no node is running", p.stderr)

    def test_default_address_taken_moves_to_a_free_port(self):
        # Two nodes on one machine with no [api] set: the second serves
        # elsewhere, and each `status` finds its own.
        a = self.start_node("a")
        b = self.start_node("b")
        addrs = {read(os.path.join(n.data, "api.addr")) for n in (a, b)}
        self.assertEqual(len(addrs), 2, addrs)
        self.assertEqual(self.status(a)["node"]["id"], a.id)
        self.assertEqual(self.status(b)["node"]["id"], b.id)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
