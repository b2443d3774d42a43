#!/usr/bin/env python3
"""End-to-end: one client cannot exhaust what others share, a node cannot
bill more than it ran, and every admin and money operation is in a
tamper-evident audit log that fails closed.

- A node reporting run_ms 2^53 a moment after taking its job is billed the
  time the server measured (min of the two), not the whole hold.
- A node's poll that says its attempt ended ("ended") gets its next job
  before that attempt's result, also across a crash (SIGKILL) between the
  two; a poll without it waits for the result; a malformed "ended" is a
  400 and changes nothing.
- A result's signed record and log make no commit of the auth store in
  their pass (their redo copies go with the engine's), and a kill after
  the reply and before the auth store's commit loses neither.
- A client flooding deposit requests is stopped at its cap (429) and at the
  per-request maximum; others still deposit and are confirmed, also after a
  restart; requests expire (--deposit-ttl) and can be cancelled.
- Thousands of requests made and cancelled do not hide older open ones
  from the cap (it counts from the ledger's open-transfer index).
- A key's request rate (429 with Retry-After), its event streams and its
  pending withdrawals are capped; another key is unaffected.
- The audit log holds a begin and an end record for each admin and money
  route and each job submit, cancel and result, no key; its hashes are
  keyed with audit.key; `audit --verify` finds an altered or removed
  record; a log removed, cut short or rewritten while the server is stopped
  refuses the start (its head is kept in the auth store) until restored or
  accepted (`audit --accept`); an
  audit log that cannot be written (a full disk, simulated with /dev/full)
  makes the operation fail with 500 and change nothing.

Usage: orchestrator_abuse.py ORCHESTRATOR SOURCE_ROOT"""
import ctypes
import ctypes.util
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from http.client import HTTPConnection

from harness import (NodeKey, events_socket, free_port, http, read_to_close, run,
                     start_orchestrator, wait_until)

EXE, ROOT = sys.argv[1], sys.argv[2]
CAPS = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
        "adapters": ["process"], "max_concurrent_jobs": 4,
        "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000,
                   "memory_gb_hour_micros": 0}}
X25519 = "11" * 32


def decode(ctype, data):
    return json.loads(data) if "json" in ctype else data


class Server:
    def __init__(self, tmp, extra=()):
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.admin = "rza_abuse_" + os.urandom(16).hex()
        self.key_file = os.path.join(tmp, "admin.key")
        with open(self.key_file, "w") as f:
            f.write(self.admin + "\n")
        self.extra = list(extra)
        self.start()

    def start(self, env=None):
        self.proc = start_orchestrator(
            EXE, self.data, ["--admin-key-file", self.key_file,
                             "--modules", os.path.join(ROOT, "examples", "modules"),
                             "--quiet", *self.extra], env=env, timeout=20)
        self.port = self.proc.port

    def restart(self):
        self.proc.stop_clean()
        self.start()

    def call(self, method, path, body=None, key=None):
        return http(self.proc.base, method, path, key=key, body=body, timeout=20,
                    decode=decode)

    def get_with_headers(self, path, key):
        c = HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            c.request("GET", path, headers={"Authorization": "Bearer " + key})
            r = c.getresponse()
            return r.status, json.loads(r.read()), r.getheader("Retry-After")
        finally:
            c.close()

    def audit(self, *args):
        return run([EXE, "audit", "--data", self.data, *args], timeout=30)


class Base(unittest.TestCase):
    extra = ()

    def setUp(self):
        self.tmpd = tempfile.TemporaryDirectory()
        self.s = Server(self.tmpd.name, self.extra)

    def tearDown(self):
        try:
            self.s.proc.stop_clean()
        finally:
            self.tmpd.cleanup()

    def ok(self, method, path, body=None, key=None, code=200):
        st, doc = self.s.call(method, path, body, key)
        self.assertEqual(st, code, "%s %s -> %d %r" % (method, path, st, doc))
        return doc

    def client(self, credits=0):
        doc = self.ok("POST", "/api/v1/accounts", {"name": "t"}, self.s.admin, 201)
        if credits:
            self.ok("POST", "/api/v1/accounts/%s/test-credits" % doc["id"],
                    {"amount_micros": credits}, self.s.admin)
        return doc["id"], doc["api_key"]

    def node(self):
        self.node_key = NodeKey(X25519)   # signs the node's results
        doc = self.ok("POST", "/api/v1/nodes/register",
                      self.node_key.register_body(CAPS), code=201)
        return doc["id"], doc["token"]

    def balance(self, acct, key):
        return self.ok("GET", "/api/v1/accounts/%s" % acct, key=key)["balance_micros"]


class RunTime(Base):
    def test_reported_run_time_is_bounded_by_the_server_clock(self):
        acct, key = self.client(10000)
        nid, tok = self.node()
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 5000,
                      "inputs": {"message": "x"}}, key, 201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        self.assertEqual(a["job"], job)
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, job),
                self.node_key.result_body(job, a["attempt"], {"message": "x"},
                                     run_ms=2 ** 53), tok)
        got = self.ok("GET", "/api/v1/jobs/%d" % job, key=key)
        self.assertEqual(got["status"], "succeeded")
        # Well under 2 s seen by the server: at most 2 s x 10 micros/s.
        self.assertLessEqual(got["cost_micros"], 20, got)
        self.assertLess(got["run_ms"], 5000, got)
        self.assertGreaterEqual(self.balance(acct, key), 10000 - 20)
        n = self.ok("GET", "/api/v1/accounts/me", key=tok)
        self.assertLessEqual(n["balance_micros"], 20)


class EngineCommits(Base):
    def test_a_poll_that_finds_nothing_commits_nothing(self):
        # The result's pass commits and pays; the job's paid mark waits for
        # the next commit with a change of its own, so the node's next
        # poll (nothing to hand out) commits nothing; idle, the engine's
        # wake-up stores the mark about 50 ms later.
        acct, key = self.client(10000)
        nid, tok = self.node()
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 5000,
                      "inputs": {"message": "x"}}, key, 201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        cb, t0 = self.commits(), time.monotonic()
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, job),
                self.node_key.result_body(job, a["attempt"], {"message": "x"},
                                          run_ms=10), tok)
        c0 = self.commits()
        st, _ = self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, key=tok)
        self.assertEqual(st, 204)
        c1 = self.commits()
        # Read before the wake-up (armed by the result's pass, 50 ms on):
        # the pass committed once and the poll nothing. A loaded machine
        # may be slower than that, and the wake-up's commit is in c0 or c1.
        if time.monotonic() - t0 < 0.045:
            self.assertEqual((c0, c1), (cb + 1, cb + 1))
        wait_until(lambda: self.commits() >= cb + 2, 10, "the wake-up's commit")
        self.assertEqual(self.commits(), cb + 2)
        self.assertEqual(self.ok("GET", "/api/v1/jobs/%d" % job, key=key)["status"],
                         "succeeded")

    def commits(self):
        st, text = self.s.call("GET", "/metrics", key=self.s.admin)
        self.assertEqual(st, 200)
        text = text.decode() if isinstance(text, bytes) else text
        return int(next(l.split(" ")[1] for l in text.splitlines()
                        if l.startswith("rhizos_engine_commits_total ")))


class AuthCommits(Base):
    """A result's signed record and log go to the auth store with a redo
    copy in the engine's commit: the pass commits the engine only, the
    auth store follows within 50 ms, and a crash before it loses nothing."""

    def metric(self, name):
        st, text = self.s.call("GET", "/metrics", key=self.s.admin)
        self.assertEqual(st, 200)
        text = text.decode() if isinstance(text, bytes) else text
        return int(next(l.split(" ")[1] for l in text.splitlines()
                        if l.startswith(name + " ")))

    def metrics(self):
        """One scrape: {name: value} of the lines without labels."""
        st, text = self.s.call("GET", "/metrics", key=self.s.admin)
        self.assertEqual(st, 200)
        text = text.decode() if isinstance(text, bytes) else text
        return {l.split(" ")[0]: float(l.split(" ")[1]) for l in text.splitlines()
                if l and not l.startswith("#") and "{" not in l}

    def run_job(self, nid, tok, key, i):
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 5000,
                      "inputs": {"message": "m%d" % i}}, key, 201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        self.assertEqual(a["job"], job)
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, job),
                self.node_key.result_body(job, a["attempt"], {"message": "m%d" % i},
                                          run_ms=10, log="line %d\n" % i), tok)
        return job

    def kept(self, key, jobs):
        for i, job in enumerate(jobs):
            doc = self.ok("GET", "/api/v1/jobs/%d" % job, key=key)
            self.assertEqual(doc["status"], "succeeded", doc)
            self.assertEqual(doc["log"], "line %d\n" % i, doc)
            self.assertTrue(doc["result_signature"], doc)
            self.assertTrue(doc["result_verified"], doc)

    def test_results_commit_no_auth_store_of_their_own(self):
        acct, key = self.client(100000)
        nid, tok = self.node()
        p0 = self.metric("rhizos_auth_pass_commits_total")
        jobs = [self.run_job(nid, tok, key, i) for i in range(5)]
        # Submissions, polls and results hold no auth write without a copy
        # (main: one commit of the auth store a result, two syncs).
        self.assertEqual(self.metric("rhizos_auth_pass_commits_total"), p0)
        self.kept(key, jobs)   # read through the group kept open
        self.s.restart()
        self.kept(key, jobs)

    def test_a_crash_before_the_auth_commit_loses_nothing(self):
        # The server dies (a test hook) when the kept group's timer fires
        # with copies in it: after the result's reply, before the auth
        # store's commit. The next start puts the copies back.
        acct, key = self.client(100000)
        nid, tok = self.node()
        self.s.proc.stop_clean()
        self.s.start(env=dict(os.environ, RHIZOS_TEST_AUTH_FAULT="kill"))
        job = self.run_job(nid, tok, key, 0)
        self.assertEqual(self.s.proc.p.wait(timeout=10), -signal.SIGKILL)
        self.s.start()
        self.kept(key, [job])
        doc = self.ok("GET", "/api/v1/jobs/%d" % job, key=key)
        self.assertEqual(self.balance(acct, key), 100000 - doc["cost_micros"])
        self.s.restart()   # replayed once more: the same records
        self.kept(key, [job])
        self.s.proc.stop_clean()
        r = self.s.audit("--verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.s.start()


    def test_a_timer_inside_a_pass_keeps_the_group(self):
        # A test hook fires the kept group's timer inside the next pass (as
        # on a busy server): that pass keeps the group and commits it after
        # its replies, so the kill hook (at a kept group's commit between
        # passes) fires, and the next start puts the copies back.
        acct, key = self.client(100000)
        nid, tok = self.node()
        self.s.proc.stop_clean()
        self.s.start(env=dict(os.environ, RHIZOS_TEST_AUTH_FAULT="kill",
                              RHIZOS_TEST_AUTH_TIMERS="in-pass"))
        job = self.run_job(nid, tok, key, 0)
        try:   # the pass the timer fires in
            self.s.call("GET", "/api/v1/jobs/%d" % job, None, key)
        except OSError:
            pass   # killed before its reply was written
        self.assertEqual(self.s.proc.p.wait(timeout=10), -signal.SIGKILL)
        self.s.start()
        self.kept(key, [job])

    def log_of(self, key, job):
        return self.ok("GET", "/api/v1/jobs/%d" % job, key=key).get("log")

    def test_a_stop_keeps_the_newest_streamed_log(self):
        # The first chunk reaches the store in its pass, the second stays
        # in memory (stored at most every 2 s; an hour here, so however
        # slow the machine) until the stop writes it. No older copy of the
        # log may come back over it at a start.
        acct, key = self.client(100000)
        nid, tok = self.node()
        self.s.proc.stop_clean()
        self.s.start(env=dict(os.environ, RHIZOS_TEST_LIVE_PUT_MS="3600000"))
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 5000,
                      "inputs": {"message": "x"}}, key, 201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        p = "/api/v1/nodes/%d/jobs/%d/log" % (nid, job)
        self.ok("POST", p, {"attempt": a["attempt"], "offset": 0, "lines": "A\n"}, tok)
        self.ok("POST", p, {"attempt": a["attempt"], "offset": 2, "lines": "B\n"}, tok)
        self.assertEqual(self.log_of(key, job), "A\nB\n")
        for _ in range(2):
            self.s.restart()
            self.assertEqual(self.log_of(key, job), "A\nB\n")

    def test_a_failed_auth_commit_is_rebuilt_from_the_copies(self):
        # The kept group's first commit fails (a test hook): its records
        # are put back from the engine's copies while the server runs.
        acct, key = self.client(100000)
        nid, tok = self.node()
        self.s.proc.stop_clean()
        self.s.start(env=dict(os.environ, RHIZOS_TEST_AUTH_FAULT="fail"))
        job = self.run_job(nid, tok, key, 0)
        deadline = time.time() + 20
        while self.metric("rhizos_auth_commit_failures_total") < 1:
            self.assertLess(time.time(), deadline, "no failed commit")
            time.sleep(0.05)
        while self.metric("rhizos_auth_redo_rebuilds_total") < 1:
            self.assertLess(time.time(), deadline, "the records were not put back")
            time.sleep(0.05)
        self.kept(key, [job])
        self.s.proc.p.kill()   # no stop's commit: the store has them already
        self.s.proc.p.wait(timeout=10)
        self.s.start()
        self.kept(key, [job])

    def test_a_rebuild_due_inside_a_pass_is_made_at_its_end(self):
        # A test hook fires the auth store's timers inside the next pass (a
        # busy server always has one open): the rebuild after the failed
        # commit is made at the end of the first pass after the failure,
        # not put off again (/metrics is a pass too).
        acct, key = self.client(100000)
        nid, tok = self.node()
        self.s.proc.stop_clean()
        self.s.start(env=dict(os.environ, RHIZOS_TEST_AUTH_FAULT="fail",
                              RHIZOS_TEST_AUTH_TIMERS="in-pass"))
        job = self.run_job(nid, tok, key, 0)
        deadline = time.time() + 20
        while True:   # each scrape is a pass: the first after the failure rebuilds
            m = self.metrics()
            if m["rhizos_auth_commit_failures_total"] >= 1:
                break
            self.assertLess(time.time(), deadline, "no failed commit")
        self.assertEqual(m["rhizos_auth_redo_failing"], 1)
        m = self.metrics()
        self.assertEqual((m["rhizos_auth_redo_rebuilds_total"],
                          m["rhizos_auth_redo_failing"]), (1, 0))
        self.kept(key, [job])
        self.s.proc.p.kill()
        self.s.proc.p.wait(timeout=10)
        self.s.start()
        self.kept(key, [job])


class AuthCopiesOfRemovedJobs(Base):
    extra = ("--retention-days", "1s")
    metric = AuthCommits.metric
    run_job = AuthCommits.run_job

    def test_a_removed_jobs_copies_are_not_put_back(self):
        # Every commit of copies fails (a test hook), so the job's copies
        # stay in the engine while retention removes the job; the next
        # start must not put its log and signed record back.
        acct, key = self.client(100000)
        nid, tok = self.node()
        self.s.proc.stop_clean()
        self.s.start(env=dict(os.environ, RHIZOS_TEST_AUTH_FAULT="fail-always"))
        job = self.run_job(nid, tok, key, 0)
        deadline = time.time() + 20
        while self.s.call("GET", "/api/v1/jobs/%d" % job, None, key)[0] != 410:
            self.assertLess(time.time(), deadline, "retention did not remove the job")
            time.sleep(0.1)
        self.assertGreaterEqual(self.metric("rhizos_auth_commit_failures_total"), 1)
        self.s.restart()
        st, text = self.s.call("GET", "/metrics", key=self.s.admin)
        text = text.decode() if isinstance(text, bytes) else text
        self.assertIn('rhizos_auth_redo_start_records{kind="put"} 0\n', text)
        self.assertIn('rhizos_auth_redo_start_records{kind="removed"} 2\n', text)
        self.s.restart()   # deleted: none found again
        st, text = self.s.call("GET", "/metrics", key=self.s.admin)
        text = text.decode() if isinstance(text, bytes) else text
        self.assertIn('rhizos_auth_redo_start_records{kind="removed"} 0\n', text)


class MDBVal(ctypes.Structure):
    _fields_ = [("mv_size", ctypes.c_size_t), ("mv_data", ctypes.c_void_p)]


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def engine_extra(data, key, value=None):
    """Put (value) or delete one record of the stopped engine's "extra"
    table, sealed as the engine seals it: "RZc1", the CRC-32C of the key
    and value (little-endian), the value."""
    lib = ctypes.CDLL(ctypes.util.find_library("lmdb") or "liblmdb.so.0")
    env, txn, dbi = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint()
    assert lib.mdb_env_create(ctypes.byref(env)) == 0
    lib.mdb_env_set_maxdbs(env, 16)
    lib.mdb_env_set_mapsize(env, ctypes.c_size_t(4 << 30))
    assert lib.mdb_env_open(env, os.path.join(data, "engine").encode(), 0, 0o600) == 0
    try:
        assert lib.mdb_txn_begin(env, None, 0, ctypes.byref(txn)) == 0
        assert lib.mdb_dbi_open(txn, b"extra", 0, ctypes.byref(dbi)) == 0
        kb = ctypes.create_string_buffer(key, len(key))
        k = MDBVal(len(key), ctypes.cast(kb, ctypes.c_void_p))
        if value is None:
            assert lib.mdb_del(txn, dbi, ctypes.byref(k), None) == 0
        else:
            sealed = b"RZc1" + crc32c(key + value).to_bytes(4, "little") + value
            vb = ctypes.create_string_buffer(sealed, len(sealed))
            v = MDBVal(len(sealed), ctypes.cast(vb, ctypes.c_void_p))
            assert lib.mdb_put(txn, dbi, ctypes.byref(k), ctypes.byref(v), 0) == 0
        assert lib.mdb_txn_commit(txn) == 0
    finally:
        lib.mdb_env_close(env)


class AuthReplayOnceTheStoresAgree(Base):
    metric = AuthCommits.metric
    run_job = AuthCommits.run_job
    kept = AuthCommits.kept

    def start_refused(self):
        r = subprocess.run([EXE, "--listen", "127.0.0.1:%d" % free_port(), "--data",
                            self.s.data, "--admin-key-file", self.s.key_file, "--quiet"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 1, r.stderr)
        return r.stderr

    def test_a_refused_start_puts_no_copy_back(self):
        # The copies stay in the engine (every commit of them fails, a test
        # hook); a start that refuses the stores (a damaged ledger record)
        # must neither put them into the auth store nor delete them.
        acct, key = self.client(100000)
        nid, tok = self.node()
        self.s.proc.stop_clean()
        self.s.start(env=dict(os.environ, RHIZOS_TEST_AUTH_FAULT="fail-always"))
        job = self.run_job(nid, tok, key, 0)
        self.s.proc.stop_clean()
        path = os.path.join(self.s.data, "ledger", "data.mdb")
        with open(path, "rb") as f:
            good = f.read()
        db, rec = bytearray(good), bytes.fromhex(acct) + b"\x02"
        at = db.find(rec)
        self.assertGreaterEqual(at, 0)
        while at >= 0:
            db[at + 16 + 40] ^= 0x01   # credits_posted: its checksum fails
            at = db.find(rec, at + 1)
        with open(path, "wb") as f:
            f.write(db)
        self.assertIn("refusing to start", self.start_refused())
        with open(path, "wb") as f:
            f.write(good)
        self.s.start()
        st, text = self.s.call("GET", "/metrics", key=self.s.admin)
        text = text.decode() if isinstance(text, bytes) else text
        put = [l for l in text.splitlines()
               if l.startswith('rhizos_auth_redo_start_records{kind="put"} ')]
        self.assertEqual(put, ['rhizos_auth_redo_start_records{kind="put"} 2'])
        self.kept(key, [job])

    def test_a_copy_of_a_job_never_removed_refuses_the_start(self):
        # A copy whose job the engine lacks though retention removed no
        # such id (damage, a mixed-up data directory) is not dropped as a
        # removed job's: the start says so and changes nothing.
        self.s.proc.stop_clean()
        k = b"ar" + (1000000).to_bytes(8, "big")
        engine_extra(self.s.data, k, (1 << 40).to_bytes(8, "big") + b"{}")
        err = self.start_refused()
        self.assertIn("the engine has no job 1000000", err)
        engine_extra(self.s.data, k)   # it was left there: deleted now
        self.s.start()


class AuditReadOnly(Base):
    def test_audit_reads_beside_a_writer(self):
        # `audit --verify` opens the auth store for reading only: a writer
        # holding the store (as a running server's kept group does) does
        # not hold it up.
        self.s.proc.stop_clean()
        lib = ctypes.CDLL(ctypes.util.find_library("lmdb") or "liblmdb.so.0")
        env, txn = ctypes.c_void_p(), ctypes.c_void_p()
        self.assertEqual(lib.mdb_env_create(ctypes.byref(env)), 0)
        lib.mdb_env_set_maxdbs(env, 16)
        lib.mdb_env_set_mapsize(env, ctypes.c_size_t(4 << 30))
        MDB_NOTLS = 0x200000
        self.assertEqual(lib.mdb_env_open(env, os.path.join(self.s.data, "auth").encode(),
                                          MDB_NOTLS, 0o600), 0)
        self.assertEqual(lib.mdb_txn_begin(env, None, 0, ctypes.byref(txn)), 0)
        try:
            r = subprocess.run([EXE, "audit", "--data", self.s.data, "--verify"],
                               capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("audit --verify waited for the writer")
        finally:
            lib.mdb_txn_abort(txn)
            lib.mdb_env_close(env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.s.start()

    def auth_table(self, name, drop=False):
        """Whether the stopped server's auth store has table `name` (read
        only), or (drop) remove it."""
        lib = ctypes.CDLL(ctypes.util.find_library("lmdb") or "liblmdb.so.0")
        env, txn, dbi = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint()
        self.assertEqual(lib.mdb_env_create(ctypes.byref(env)), 0)
        lib.mdb_env_set_maxdbs(env, 16)
        lib.mdb_env_set_mapsize(env, ctypes.c_size_t(4 << 30))
        MDB_RDONLY = 0x20000
        flags = 0 if drop else MDB_RDONLY
        try:
            self.assertEqual(lib.mdb_env_open(env, os.path.join(self.s.data, "auth").encode(),
                                              flags, 0o600), 0)
            self.assertEqual(lib.mdb_txn_begin(env, None, flags, ctypes.byref(txn)), 0)
            found = lib.mdb_dbi_open(txn, name, 0, ctypes.byref(dbi)) == 0
            if drop:
                self.assertTrue(found)
                self.assertEqual(lib.mdb_drop(txn, dbi, 1), 0)
                self.assertEqual(lib.mdb_txn_commit(txn), 0)
            else:
                lib.mdb_txn_abort(txn)
            return found
        finally:
            lib.mdb_env_close(env)

    def test_verify_reports_a_missing_table_and_changes_nothing(self):
        self.s.proc.stop_clean()
        self.auth_table(b"ids", drop=True)
        r = self.s.audit("--verify")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("read-only", r.stderr)
        self.assertFalse(self.auth_table(b"ids"), "audit --verify made the table")
        self.s.start()   # a start adds it
        self.s.proc.stop_clean()
        self.assertTrue(self.auth_table(b"ids"))
        self.assertEqual(self.s.audit("--verify").returncode, 0)
        self.s.start()


class EndedAttempts(Base):
    """A poll's "ended" frees the node's slot before the result comes."""

    def setUp(self):
        super().setUp()
        self.acct, self.key = self.client(100000)
        self.node_key = NodeKey(X25519)
        doc = self.ok("POST", "/api/v1/nodes/register", self.node_key.register_body(
            dict(CAPS, max_concurrent_jobs=1)), code=201)
        self.nid, self.tok = doc["id"], doc["token"]

    def submit(self):
        return self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 5000,
                       "inputs": {"message": "x"}}, self.key, 201)["id"]

    def poll(self, ended=""):
        return self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=0%s" % (self.nid, ended),
                           key=self.tok)

    def result(self, job, attempt):
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (self.nid, job),
                self.node_key.result_body(job, attempt, {"message": "x"}, run_ms=10),
                self.tok)

    def test_next_job_before_the_result_and_across_a_crash(self):
        jobs = [self.submit() for _ in range(3)]
        a1 = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % self.nid, key=self.tok)
        self.assertEqual(a1["job"], jobs[0])
        # An old node's poll (no "ended"): its one slot is busy until the result.
        self.assertEqual(self.poll()[0], 204)
        st, a2 = self.poll("&ended=%d.%d" % (jobs[0], a1["attempt"]))
        self.assertEqual(st, 200, a2)
        self.assertEqual(a2["job"], jobs[1])
        self.assertEqual(self.metric("rhizos_node_attempts_ended_total"), 1)
        # Said again, or of an attempt it does not run: nothing more is freed.
        self.assertEqual(self.poll("&ended=%d.%d,%d.7" % (jobs[0], a1["attempt"],
                                                          jobs[1]))[0], 204)
        j1 = self.ok("GET", "/api/v1/jobs/%d" % jobs[0], key=self.key)
        self.assertEqual(j1["status"], "running")
        # A crash now: the hand-over and the mark were committed before the
        # reply; the result comes after the start, as from the node's outbox.
        self.s.proc.stop(signal.SIGKILL)
        self.s.start()
        self.assertEqual(self.poll()[0], 204)   # job 2 holds the slot
        self.result(jobs[0], a1["attempt"])
        self.assertEqual(self.poll()[0], 204)
        self.result(jobs[1], a2["attempt"])
        st, a3 = self.poll()
        self.assertEqual((st, a3["job"]), (200, jobs[2]))
        self.result(jobs[2], a3["attempt"])
        cost = 0
        for job in jobs:
            j = self.ok("GET", "/api/v1/jobs/%d" % job, key=self.key)
            self.assertEqual(j["status"], "succeeded", j)
            cost += j["cost_micros"]
        self.assertEqual(self.balance(self.acct, self.key), 100000 - cost)

    def test_bad_ended_changes_nothing(self):
        job = self.submit()
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % self.nid, key=self.tok)
        self.submit()
        good = "%d.%d" % (job, a["attempt"])
        for bad in ("", "x", "1", "1.", ".1", "0.1", "1.0", "1.2.3", good + ",",
                    good + ";1.1", "9007199254740993.1", "1.4294967296",
                    "1" * 40 + ".1", ",".join([good] * 65)):
            st, doc = self.poll("&ended=" + bad)
            self.assertEqual(st, 400, (bad, doc))
            self.assertIn('"ended" must be', doc["error"]["message"])
        st, doc = self.poll("&ended")   # a malformed query string
        self.assertEqual(st, 400, doc)
        self.assertIn("malformed query string", doc["error"]["message"])
        self.assertEqual(self.metric("rhizos_node_attempts_ended_total"), 0)
        self.assertEqual(self.poll()[0], 204)
        self.assertEqual(self.ok("GET", "/api/v1/jobs/%d" % job, key=self.key)["status"],
                         "running")

    def metric(self, name):
        st, text = self.s.call("GET", "/metrics", key=self.s.admin)
        text = text.decode() if isinstance(text, bytes) else text
        return int(next(l.split(" ")[1] for l in text.splitlines()
                        if l.startswith(name + " ")))


class Deposits(Base):
    extra = ("--max-open-deposits", "4", "--deposit-ttl", "5")

    def deposit(self, acct, key, cents=100):
        return self.s.call("POST", "/api/v1/accounts/%s/deposit" % acct,
                           {"amount_micros": cents}, key)

    def test_one_client_cannot_block_deposits(self):
        bad, bkey = self.client()
        good, gkey = self.client()
        # The attack that filled the shared external account: 2^53 each.
        st, doc = self.deposit(bad, bkey, 2 ** 53)
        self.assertEqual(st, 400, doc)
        self.assertIn("at most 1000000000000 micros", doc["error"]["message"])
        flood_at = time.time()
        codes = [self.deposit(bad, bkey, 100000000)[0] for _ in range(40)]
        self.assertEqual(codes[:4], [201] * 4)
        self.assertEqual(set(codes[4:]), {429})
        # Another client is unaffected, before and after a restart.
        for restart in (False, True):
            if restart:
                self.s.restart()
            st, d = self.deposit(good, gkey, 700)
            self.assertEqual(st, 201, d)
            self.assertGreater(d["expires_at_ms"], time.time() * 1000)
            self.ok("POST", "/api/v1/deposits/%s/confirm" % d["deposit_id"],
                    key=self.s.admin)
        self.assertEqual(self.balance(good, gkey), 1400)
        # Cancelling frees a place; others' requests are not one's to cancel.
        st, d = self.deposit(good, gkey, 5)
        self.assertEqual(st, 201)
        st, _ = self.s.call("DELETE", "/api/v1/deposits/%s" % d["deposit_id"],
                            key=bkey)
        self.assertEqual(st, 404)
        self.ok("DELETE", "/api/v1/deposits/%s" % d["deposit_id"], key=gkey)
        st, doc = self.s.call("POST", "/api/v1/deposits/%s/confirm" % d["deposit_id"],
                              key=self.s.admin)
        self.assertEqual((st, doc["error"]["code"]), (409, "RZ_EVOIDED"))
        self.assertEqual(self.balance(good, gkey), 1400)
        # Past the TTL the flood's requests expire: no longer confirmable,
        # and they free the attacker's places too.
        time.sleep(max(0.0, flood_at + 5.2 - time.time()))
        st, d = self.deposit(bad, bkey, 1)
        self.assertEqual(st, 201, d)
        pays = self.ok("GET", "/api/v1/accounts/%s/payments" % bad, key=bkey)["payments"]
        self.assertEqual(sum(p["status"] == "expired" for p in pays), 4, pays)
        old = [p["id"] for p in pays if p["status"] == "expired"][0]
        st, doc = self.s.call("POST", "/api/v1/deposits/%s/confirm" % old,
                              key=self.s.admin)
        self.assertEqual((st, doc["error"]["code"]), (409, "RZ_EEXPIRED"))
        self.assertEqual(self.balance(bad, bkey), 0)


class DepositBypass(Base):
    """The cap counts every open request, not the newest transfers: a few
    thousand requests made and cancelled (two transfers each) used to push
    older open ones out of a 4,096-transfer window."""
    extra = ("--max-open-deposits", "4", "--request-rate", "100000")

    def setUp(self):
        # 4,200 audited requests, each two fsync'd records: on tmpfs where
        # there is one, so the test measures the count, not the disk.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.tmpd = tempfile.TemporaryDirectory(dir=shm)
        self.s = Server(self.tmpd.name, self.extra)

    def test_cancelled_requests_do_not_hide_open_ones(self):
        acct, key = self.client()
        path = "/api/v1/accounts/%s/deposit" % acct
        for _ in range(3):
            self.ok("POST", path, {"amount_micros": 7}, key, 201)
        c = HTTPConnection("127.0.0.1", self.s.port, timeout=20)
        hdr = {"Authorization": "Bearer " + key,
               "Content-Type": "application/json"}
        try:
            for _ in range(2100):
                c.request("POST", path, json.dumps({"amount_micros": 1}), hdr)
                r = c.getresponse()
                d = json.loads(r.read())
                self.assertEqual(r.status, 201, d)
                c.request("DELETE", "/api/v1/deposits/%s" % d["deposit_id"],
                          headers=hdr)
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
        finally:
            c.close()
        codes = [self.s.call("POST", path, {"amount_micros": 7}, key)[0]
                 for _ in range(4)]
        self.assertEqual(codes, [201, 429, 429, 429])


class Rate(Base):
    extra = ("--request-rate", "5", "--request-burst", "10", "--max-streams", "2",
             "--max-pending-withdrawals", "2", "--max-queued-jobs", "2",
             "--max-running-deployments", "1")

    def test_rate_streams_withdrawals_per_key(self):
        a, akey = self.client(1000)
        b, bkey = self.client(1000)
        codes = []
        for _ in range(30):
            st, doc, after = self.s.get_with_headers("/api/v1/accounts/me", akey)
            codes.append(st)
            if st == 429:
                self.assertEqual(doc["error"]["code"], "RZ_EDENIED")
                self.assertGreaterEqual(int(after), 1)
        self.assertIn(429, codes)
        self.assertLessEqual(codes.count(200), 14)
        # Another key is served meanwhile.
        self.assertEqual(self.s.call("GET", "/api/v1/accounts/me", key=bkey)[0], 200)
        time.sleep(1.2)   # refilled
        # Withdrawals: two pending at most for a key.
        for i in range(3):
            st, doc = self.s.call("POST", "/api/v1/accounts/%s/withdraw" % b,
                                  {"amount_micros": 10, "address": "w"}, bkey)
            self.assertEqual(st, 201 if i < 2 else 429, doc)
        time.sleep(1.2)
        # Streams: two per key.
        flow = ("flux: 1\nname: d\nsteps:\n  s:\n    module: echo@1\n"
                "    timeout_s: 3600\n")
        dep = self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, akey, 201)["id"]
        socks = []
        for _ in range(2):
            s = events_socket(self.s.port, dep, akey)
            self.assertIn(b"event: status", s.recv(65536))
            socks.append(s)
        st, doc = self.s.call("GET", "/api/v1/flows/%d/events" % dep, key=akey)
        self.assertEqual(st, 429, doc)
        for s in socks:
            s.close()
        time.sleep(1.2)
        # One running deployment and two unfinished jobs per account; the
        # other account still submits; a finished one frees its place.
        st, doc = self.s.call("POST", "/api/v1/flows/deploy", {"flow": flow}, akey)
        self.assertEqual(st, 429, doc)
        self.ok("POST", "/api/v1/flows/deploy", {"flow": flow}, bkey, 201)
        job = {"module": "echo", "max_cost_micros": 5}
        ids = [self.ok("POST", "/api/v1/jobs", job, akey, 201)["id"] for _ in range(2)]
        st, doc = self.s.call("POST", "/api/v1/jobs", job, akey)
        self.assertEqual(st, 429, doc)
        self.ok("POST", "/api/v1/jobs", job, bkey, 201)
        self.ok("DELETE", "/api/v1/jobs/%d" % ids[0], key=akey)
        self.ok("POST", "/api/v1/jobs", job, akey, 201)


class NodeRate(Base):
    """A node's polls and reports on its jobs are counted only when refused:
    a node of short jobs makes two calls a job, and counting them all once
    stopped its results with 429 (bench/orchestrator/fanout.py, 18 s lost)."""
    extra = ("--request-rate", "2", "--request-burst", "4")

    def test_work_is_not_throttled_refusals_are(self):
        acct, key = self.client(100000)
        nid, tok = self.node()
        steps = "".join("  s%d:\n    module: echo@1\n" % i for i in range(12))
        dep = self.ok("POST", "/api/v1/flows/deploy",
                      {"flow": "flux: 1\nname: many\nsteps:\n" + steps}, key, 201)["id"]
        for _ in range(12):   # 24 calls in well under a second, burst 4
            a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
            self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]),
                    self.node_key.result_body(a["job"], a["attempt"],
                                              {"message": ""}), tok)
        time.sleep(1.2)
        self.assertEqual(self.ok("GET", "/api/v1/flows/%d/status" % dep, key=key)["status"],
                         "succeeded")
        # Reports on a job it does not hold are refused, and those count.
        codes = [self.s.call("POST", "/api/v1/nodes/%d/jobs/999999/result" % nid,
                             self.node_key.result_body(999999, 1, {}), tok)[0]
                 for _ in range(8)]
        self.assertEqual(codes[0], 404, codes)
        self.assertIn(429, codes)
        self.assertEqual(self.s.call("GET", "/api/v1/nodes/%d/jobs?wait=0" % nid,
                                     key=tok)[0], 429)


class Audit(Base):
    def records(self):
        # A running server's last end records reach the log with its next
        # write, the head's timer's at the latest (50 ms).
        time.sleep(0.2)
        r = self.s.audit()
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines()]

    def test_every_admin_and_money_route_is_recorded(self):
        acct, key = self.client(1000)
        st, d = self.s.call("POST", "/api/v1/accounts/%s/deposit" % acct,
                            {"amount_micros": 300}, key)
        self.assertEqual(st, 201)
        self.ok("POST", "/api/v1/deposits/%s/confirm" % d["deposit_id"], key=self.s.admin)
        st, d2 = self.s.call("POST", "/api/v1/accounts/%s/deposit" % acct,
                             {"amount_micros": 5}, key)
        self.ok("DELETE", "/api/v1/deposits/%s" % d2["deposit_id"], key=key)
        self.ok("POST", "/api/v1/accounts/%s/withdraw" % acct,
                {"amount_micros": 10, "address": "w"}, key, 201)
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 50},
                      key, 201)["id"]
        self.ok("POST", "/api/v1/jobs/%d/refund" % job, key=key)
        # A job's submit, cancel and result are recorded too.
        job2 = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 40,
                       "inputs": {"message": "x"}}, key, 201)["id"]
        nid, tok = self.node()
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        self.assertEqual(a["job"], job2)
        self.ok("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, job2),
                self.node_key.result_body(job2, a["attempt"], {"message": "x"},
                                          run_ms=5), tok)
        job3 = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 30},
                       key, 201)["id"]
        self.ok("DELETE", "/api/v1/jobs/%d" % job3, key=key)
        node_st, _ = self.s.call("DELETE", "/api/v1/nodes/%d" % nid, key=self.s.admin)
        self.assertIn(node_st, (200, 204))
        # A refused money operation is recorded with its status too.
        st, _ = self.s.call("POST", "/api/v1/accounts/%s/withdraw" % acct,
                            {"amount_micros": 10 ** 9, "address": "w"}, key)
        self.assertEqual(st, 402)
        recs = self.records()
        begins = {r["seq"]: r for r in recs if r["phase"] == "begin"}
        ends = {r["of"]: r for r in recs if r["phase"] == "end"}
        self.assertEqual(set(begins), set(ends))
        # (op's last path segment, who, status) in order.
        ops = [(begins[s]["op"].split("/")[-1], begins[s]["who"], ends[s]["status"])
               for s in sorted(begins)]
        who = "client:" + acct
        self.assertEqual(ops, [
            ("accounts", "admin", 201),
            ("test-credits", "admin", 200),
            ("deposit", who, 201),
            ("confirm", "admin", 200),
            ("deposit", who, 201),
            (d2["deposit_id"], who, 200),
            ("withdraw", who, 201),
            ("jobs", who, 201),
            ("refund", who, 200),
            ("jobs", who, 201),
            ("result", "node:%d" % nid, 200),
            ("jobs", who, 201),
            (str(job3), who, 200),
            (str(nid), "admin", node_st),
            ("withdraw", who, 402),
        ])
        self.assertTrue(all(r["time_ms"] > 0 for r in recs))
        self.assertEqual([r["amount_micros"] for r in recs
                          if r["phase"] == "begin" and r["op"].endswith("/deposit")],
                         [300, 5])
        self.assertEqual([r["max_cost_micros"] for r in recs
                          if r["phase"] == "begin" and r["op"] == "POST /api/v1/jobs"],
                         [50, 40, 30])
        # Keyed: each hash is BLAKE2b keyed with audit.key, which the log
        # never shows.
        with open(os.path.join(self.s.data, "audit.key"), "rb") as f:
            akey = f.read()
        self.assertEqual(len(akey), 32)
        for line in open(os.path.join(self.s.data, "audit.log")):
            body, h = line.rstrip("\n").rsplit(',"hash":"', 1)
            self.assertEqual(hashlib.blake2b((body + "}").encode(), digest_size=32,
                                             key=akey).hexdigest(), h[:-2])
        with open(os.path.join(self.s.data, "audit.log")) as f:
            text = f.read()
        self.assertNotIn(key, text)
        self.assertNotIn(self.s.admin, text)
        self.assertNotIn("rzk_", text)
        self.assertNotIn(akey.hex(), text)
        # The chain survives a restart and goes on from where it was.
        n = len(recs)
        self.s.restart()
        self.client()
        self.assertEqual(len(self.records()), n + 2)
        r = self.s.audit("--verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("%d records" % (n + 2), r.stdout)

    def test_tampering_is_found(self):
        acct, key = self.client(1000)
        self.s.call("POST", "/api/v1/accounts/%s/deposit" % acct, {"amount_micros": 300}, key)
        self.s.proc.stop_clean()
        path = os.path.join(self.s.data, "audit.log")
        with open(path) as f:
            lines = f.read().splitlines(True)
        self.assertEqual(len(lines), 6)
        good = "".join(lines)

        def verify_fails(text, what):
            with open(path, "w") as f:
                f.write(text)
            r = self.s.audit("--verify")
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn(what, r.stderr)
            return r.stderr
        # An amount altered.
        verify_fails(good.replace('"amount_micros":300', '"amount_micros":900'),
                     "record 5 (byte %d) was altered" % len("".join(lines[:4])))
        # A record removed.
        verify_fails("".join(lines[:2] + lines[3:]), "record 3")
        # Any edit of a record changes its hash.
        verify_fails("".join(lines[:2]) + lines[2].replace('"phase":"begin"',
                     '"phase":"begun"') + "".join(lines[3:]), "record 3")
        # A torn last record (a crash mid-append: never durable, so past
        # the head the auth store keeps): verify names it; a start cuts it
        # and says so, and the chain is whole again.
        verify_fails(good + lines[5][:40], "record 7")
        # `check`, which judges whether a start would go, takes it as the
        # start does (the crash's own trace), and says so.
        r = run([EXE, "check", "--data", self.s.data], timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("cut short", r.stderr)
        self.s.start()
        self.s.proc.stop_clean()
        self.assertIn("record 7", self.s.proc.stderr_text())
        with open(path) as f:
            self.assertEqual(f.read(), good)
        self.assertEqual(self.s.audit("--verify").returncode, 0)
        # The server refuses to start on a broken log.
        with open(path, "w") as f:
            f.write("".join(lines[:2] + lines[3:]))
        with self.assertRaises(AssertionError):
            self.s.start()
        with open(path, "w") as f:
            f.write(good)
        self.assertEqual(self.s.audit("--verify").returncode, 0)
        self.s.start()

    def start_refused(self):
        r = run([EXE, "--listen", "127.0.0.1:%d" % free_port(), "--data", self.s.data,
                 "--admin-key-file", self.s.key_file, "--quiet",
                 "--modules", os.path.join(ROOT, "examples", "modules")],
                timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        return r.stderr

    def test_log_lost_while_stopped_is_found(self):
        acct, key = self.client(1000)
        self.s.call("POST", "/api/v1/accounts/%s/deposit" % acct, {"amount_micros": 300}, key)
        self.s.proc.stop_clean()
        path = os.path.join(self.s.data, "audit.log")
        with open(path) as f:
            good = f.read()
        lines = good.splitlines(True)
        with open(os.path.join(self.s.data, "audit.key"), "rb") as f:
            akey = f.read()

        def refused(text, what, recovery="audit --data DIR --accept"):
            if text is None:
                os.unlink(path)
            else:
                with open(path, "w") as f:
                    f.write(text)
            err = self.start_refused()
            self.assertIn(what, err)
            self.assertIn(path, err)
            self.assertIn(recovery, err)
            r = self.s.audit("--verify")
            self.assertEqual(r.returncode, 1, r.stdout)
        # Removed, cut by whole records (a chain that holds on its own), or
        # its last record rewritten with the key (the head still differs).
        refused(None, "is missing: it ends at record 0 but record 6")
        refused("".join(lines[:4]), "is behind: it ends at record 4 but record 6")
        body, _ = lines[5].rstrip("\n").rsplit(',"hash":"', 1)
        body = body.replace('"status":201', '"status":500')
        forged = body + ',"hash":"%s"}\n' % hashlib.blake2b(
            (body + "}").encode(), digest_size=32, key=akey).hexdigest()
        refused("".join(lines[:5]) + forged, "has diverged")
        # Without the key a rewritten chain is found by the log alone.
        body, _ = lines[4].rstrip("\n").rsplit(',"hash":"', 1)
        body = body.replace('"amount_micros":300', '"amount_micros":900')
        unkeyed = body + ',"hash":"%s"}\n' % hashlib.blake2b(
            (body + "}").encode(), digest_size=32).hexdigest()
        refused("".join(lines[:4]) + unkeyed, "record 5", "from a backup")
        # One durable record past the head (a crash between the log's fsync
        # and the head's commit) follows the head: accepted.
        last = lines[5].rstrip("\n").rsplit(',"hash":"', 1)[1][:-2]
        body = ('{"time_ms":1,"phase":"end","of":5,"status":201,"keyed":true,'
                '"seq":7,"prev":"%s"' % last)
        ahead = body + ',"hash":"%s"}\n' % hashlib.blake2b(
            (body + "}").encode(), digest_size=32, key=akey).hexdigest()
        with open(path, "w") as f:
            f.write(good + ahead)
        self.s.start()
        self.s.proc.stop_clean()
        self.assertIn("7 records", self.s.audit("--verify").stdout)
        # Restored from an older backup: behind the head again.
        with open(path, "w") as f:
            f.write(good)
        self.assertIn("is behind: it ends at record 6 but record 7",
                      self.start_refused())
        with open(path, "w") as f:
            f.write(good + ahead)
        self.s.start()
        self.s.proc.stop_clean()
        with open(path, "w") as f:
            f.write("".join(lines[:2]))
        r = self.s.audit("--accept")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("the head said 7", r.stdout)
        self.s.start()
        self.client()
        recs = self.records()
        self.assertEqual([r["phase"] for r in recs[2:]], ["accept", "begin", "end"])
        self.assertEqual(recs[2]["head_was"], 7)

    def test_unkeyed_rewrite_refused(self):
        # The whole chain rewritten without the key (every record unkeyed,
        # so the log alone holds): the auth store says since when the chain
        # is keyed, so a start, --verify and --accept refuse it.
        acct, key = self.client(1000)
        self.s.call("POST", "/api/v1/accounts/%s/deposit" % acct, {"amount_micros": 300}, key)
        self.s.proc.stop_clean()
        path = os.path.join(self.s.data, "audit.log")
        with open(path) as f:
            good = f.read()
        prev, out = "0" * 64, []
        for line in good.splitlines():
            rec = json.loads(line)
            del rec["hash"], rec["keyed"]
            rec["prev"] = prev
            if "amount_micros" in rec:
                rec["amount_micros"] = 900
            body = json.dumps(rec, separators=(",", ":"))
            prev = hashlib.blake2b(body.encode(), digest_size=32).hexdigest()
            out.append(body[:-1] + ',"hash":"%s"}\n' % prev)
        with open(path, "w") as f:
            f.write("".join(out))
        what = "record 1 is not keyed, but the auth store says the chain is keyed from record 1"
        self.assertIn(what, self.start_refused())
        r = self.s.audit("--verify")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(what, r.stderr)
        r = self.s.audit("--accept")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(what, r.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), "".join(out))
        # A copy without DATA/auth: the chain alone holds, and --verify
        # says what it cannot prove.
        copy = os.path.join(self.tmpd.name, "copy")
        os.mkdir(copy)
        for name in ("audit.log", "audit.key"):
            with open(os.path.join(self.s.data, name), "rb") as f, \
                 open(os.path.join(copy, name), "wb") as g:
                g.write(f.read())
        r = run([EXE, "audit", "--data", copy, "--verify"], timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cannot prove the log is whole", r.stderr)
        self.assertNotIn("auth store keeps", r.stdout)
        with open(path, "w") as f:
            f.write(good)
        r = self.s.audit("--verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("keyed from where it says", r.stdout)
        self.assertNotIn("cannot prove", r.stderr)
        self.s.start()

    def test_end_records_of_a_pass_share_one_sync(self):
        # Thirty audited requests arriving together are answered in one or
        # a few passes: a pass's begin records go in one write and one
        # fdatasync before its calls run, and its end records in another
        # kept until the log's next write (the next pass's begin records,
        # or the head's timer), which syncs them with it.
        acct, _ = self.client()
        body = json.dumps({"amount_micros": 1}).encode()
        req = (b"POST /api/v1/accounts/%s/test-credits HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
               % (acct.encode(), self.s.admin.encode(), len(body), body))
        socks = [socket.create_connection(("127.0.0.1", self.s.port), timeout=20)
                 for _ in range(30)]
        m0 = self.metrics()
        for c in socks:
            c.sendall(req)
        for c in socks:
            reply = read_to_close(c)
            c.close()
            self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply[:200])
        m1 = self.metrics()
        records = m1["rhizos_audit_records_total"] - m0["rhizos_audit_records_total"]
        syncs = m1["rhizos_audit_syncs_total"] - m0["rhizos_audit_syncs_total"]
        self.assertEqual(records, 60)
        self.assertLess(syncs, 30)   # fewer than one a call
        self.assertGreaterEqual(syncs, 1)   # the begins'
        time.sleep(0.3)   # idle: the timer writes the last ends, then moves the head
        m2 = self.metrics()
        self.assertLessEqual(m2["rhizos_audit_syncs_total"] - m1["rhizos_audit_syncs_total"], 1)
        self.assertEqual(self.balance(acct, self.s.admin), 30)
        # Each begin has its end, in order, and the chain holds.
        recs = self.records()
        ends = {r["of"] for r in recs if r["phase"] == "end"}
        self.assertEqual(ends, {r["seq"] for r in recs if r["phase"] == "begin"})
        for r in recs:
            if r["phase"] == "end":
                self.assertLess(r["of"], r["seq"])
        # Stopped after a pass's end records were written but before the
        # head moved: records past the head that follow it are taken.
        self.s.proc.stop_clean()
        path = os.path.join(self.s.data, "audit.log")
        with open(os.path.join(self.s.data, "audit.key"), "rb") as f:
            akey = f.read()
        with open(path) as f:
            good = f.read()
        last = json.loads(good.splitlines()[-1])
        extra, prev = "", last["hash"]
        for i in (1, 2):
            b = ('{"time_ms":1,"phase":"end","of":%d,"status":200,"keyed":true,'
                 '"seq":%d,"prev":"%s"' % (last["seq"] - 1, last["seq"] + i, prev))
            prev = hashlib.blake2b((b + "}").encode(), digest_size=32,
                                   key=akey).hexdigest()
            extra += b + ',"hash":"%s"}\n' % prev
        with open(path, "w") as f:
            f.write(good + extra)
        self.s.start()
        self.s.proc.stop_clean()
        r = self.s.audit("--verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("%d records" % (last["seq"] + 2), r.stdout)
        self.assertIn("ends at the head", r.stdout)
        self.s.start()

    def test_the_head_moves_with_the_next_pass(self):
        # A pass's end records do not move the head with a commit of their
        # own: the next pass's commit of the auth store carries it (here
        # the next call's begin records), or a timer when none comes.
        # The timer counts from the last head the passes moved: a stream
        # of calls longer than many of its periods commits none of its own.
        acct, _ = self.client()
        m0 = self.metrics()
        t0, calls, sent, slow = time.monotonic(), 0, None, 0
        while calls < 20 or time.monotonic() - t0 < 0.5:
            before = time.monotonic()
            self.ok("POST", "/api/v1/accounts/%s/test-credits" % acct,
                    {"amount_micros": 1}, self.s.admin)
            # The server's time between the last call's end records and
            # this call's begin records is under this: 50 ms of it (a
            # loaded machine) lets the timer commit once.
            slow += sent is not None and time.monotonic() - sent >= 0.05
            sent = before
            calls += 1
        m1 = self.metrics()
        own = m1["rhizos_audit_head_commits_total"] - m0["rhizos_audit_head_commits_total"]
        self.assertEqual(m1["rhizos_audit_records_total"] - m0["rhizos_audit_records_total"],
                         2 * calls)
        self.assertLess(own, 4 + slow)   # its timer every 50 ms: about 10
        # One fdatasync a call: its begin record's, which also covers the
        # end record of the call before (each end's own sync: 2 a call);
        # the timer adds one each time it fires (its own head commits, or
        # rarely one inside a pass's group).
        syncs = m1["rhizos_audit_syncs_total"] - m0["rhizos_audit_syncs_total"]
        self.assertLessEqual(syncs, calls + own + 2)
        # Idle: the last end's head is committed on its own.
        wait_until(lambda: self.metrics()["rhizos_audit_head_commits_total"] >
                   m0["rhizos_audit_head_commits_total"], 10, "the head's own commit")
        # Stopped cleanly, the head is at the log's end: verify agrees.
        self.s.proc.stop_clean()
        r = self.s.audit("--verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.s.start()

    def test_a_result_killed_before_its_end_record(self):
        # A result's pass answers once the commits are durable; its end
        # record waits in memory for the log's next write (the next pass's
        # begin records, or the head's timer 50 ms later). Killed in that
        # window: the log has the result's begin record and no end, the
        # result stands once, is paid once, and sent again changes nothing.
        acct, key = self.client(10000)
        nid, tok = self.node()
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo", "max_cost_micros": 5000,
                      "inputs": {"message": "x"}}, key, 201)["id"]
        a = self.ok("GET", "/api/v1/nodes/%d/jobs?wait=5" % nid, key=tok)
        body = self.node_key.result_body(job, a["attempt"], {"message": "x"}, run_ms=10)
        route = "/api/v1/nodes/%d/jobs/%d/result" % (nid, job)
        t0 = time.monotonic()
        self.ok("POST", route, body, tok)
        self.s.proc.stop(signal.SIGKILL)
        window = time.monotonic() - t0 < 0.04   # before the timer's write
        recs = self.records()
        begun = [r["seq"] for r in recs if r["phase"] == "begin" and r["op"] == "POST " + route]
        self.assertEqual(len(begun), 1)
        ended = [r for r in recs if r["phase"] == "end" and r["of"] == begun[0]]
        if window:
            self.assertEqual(ended, [])
        self.s.start()
        doc = self.ok("GET", "/api/v1/jobs/%d" % job, key=key)
        self.assertEqual(doc["status"], "succeeded")
        self.assertGreater(doc["cost_micros"], 0)
        self.assertEqual(self.balance(acct, key), 10000 - doc["cost_micros"])
        paid = self.ok("GET", "/api/v1/accounts/%s/payments" % acct, key=key)["payments"]
        st, _ = self.s.call("POST", route, body, tok)
        self.assertNotEqual(st, 500)
        self.assertEqual(self.balance(acct, key), 10000 - doc["cost_micros"])
        self.assertEqual(self.ok("GET", "/api/v1/accounts/%s/payments" % acct,
                                 key=key)["payments"], paid)
        self.assertEqual(self.ok("GET", "/api/v1/jobs/%d" % job, key=key)["cost_micros"],
                         doc["cost_micros"])
        r = self.s.audit("--verify")
        self.assertEqual(r.returncode, 0, r.stderr)

    def metrics(self):
        st, text = self.s.call("GET", "/metrics", key=self.s.admin)
        self.assertEqual(st, 200)
        text = text.decode() if isinstance(text, bytes) else text
        return {k: float(v) for k, v in (l.split(" ") for l in text.splitlines()
                                          if l.startswith("rhizos_audit_"))}

    def test_cut_audit_key_refused_log_untouched(self):
        # A key cut short (a crash inside its first write, or a bad copy)
        # refuses the start before the log is read, and cuts nothing.
        self.client(1000)
        self.s.proc.stop_clean()
        path = os.path.join(self.s.data, "audit.log")
        with open(path, "ab") as f:
            f.write(b'{"seq":99,"torn')      # a torn tail that must stay
        with open(path, "rb") as f:
            before = f.read()
        kpath = os.path.join(self.s.data, "audit.key")
        with open(kpath, "r+b") as f:
            f.truncate(5)
        err = self.start_refused()
        self.assertIn("is not an audit key", err)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_unwritable_audit_log_fails_closed(self):
        acct, key = self.client(1000)
        path = os.path.join(self.s.data, "audit.log")
        os.rename(path, path + ".real")
        os.symlink("/dev/full", path)   # every write: ENOSPC
        try:
            st, doc = self.s.call("POST", "/api/v1/accounts/%s/test-credits" % acct,
                                  {"amount_micros": 5}, self.s.admin)
            self.assertEqual(st, 500, doc)
            self.assertEqual(doc["error"]["code"], "RZ_EIO")
            st, doc = self.s.call("POST", "/api/v1/accounts/%s/deposit" % acct,
                                  {"amount_micros": 5}, key)
            self.assertEqual(st, 500, doc)
            st, doc = self.s.call("POST", "/api/v1/accounts", {"name": "x"},
                                  self.s.admin)
            self.assertEqual(st, 500, doc)
            self.assertNotIn("api_key", doc)
            st, doc = self.s.call("POST", "/api/v1/jobs",
                                  {"module": "echo", "max_cost_micros": 5}, key)
            self.assertEqual(st, 500, doc)
        finally:
            os.unlink(path)
            os.rename(path + ".real", path)
        # Nothing happened: no credit, no deposit request, no account.
        self.assertEqual(self.balance(acct, key), 1000)
        pays = self.ok("GET", "/api/v1/accounts/%s/payments" % acct, key=key)["payments"]
        self.assertEqual([p["kind"] for p in pays], ["test_credit"])
        stats = self.ok("GET", "/api/v1/payments/stats", key=self.s.admin)
        self.assertEqual(stats["accounts"], 1 + 3)   # platform, escrow, external
        self.assertEqual(self.ok("GET", "/api/v1/jobs", key=key)["jobs"], [])
        # A deleted log is not started over: it fails too.
        os.rename(path, path + ".gone")
        st, _ = self.s.call("POST", "/api/v1/accounts/%s/test-credits" % acct,
                            {"amount_micros": 5}, self.s.admin)
        self.assertEqual(st, 500)
        os.rename(path + ".gone", path)
        # Writable again: served, and the chain holds.
        self.ok("POST", "/api/v1/accounts/%s/test-credits" % acct,
                {"amount_micros": 5}, self.s.admin)
        self.assertEqual(self.balance(acct, key), 1005)
        r = self.s.audit("--verify")
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
