#!/usr/bin/env python3
"""End-to-end: `rhizos-orchestrator backup` and `restore` (docs/ledger.md,
"Backup and restore").

Backups taken while money moves (jobs held, settled by a node, cancelled
and refunded, credits added) restore into directories the orchestrator
starts on with --verify-on-open (rz_engine_check over every job's hold,
the whole ledger verified) and that `check` passes; each backup is one
moment (a client's money adds up: credited = balance + held + spent); a
stopped server's directory is copied too; a directory locked by a server
that does not answer is refused; restore refuses a non-empty target and a
damaged backup, leaving the target as it was; the control socket takes
nothing but `backup /ABSOLUTE/PATH` and is gone after a stop.

Usage: orchestrator_backup.py ORCHESTRATOR SOURCE_ROOT"""
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import NodeKey, http, run, start_orchestrator

EXE, ROOT = sys.argv[1], sys.argv[2]
CAPS = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
        "storage": {"total_gb": 100, "free_gb": 100}, "adapters": ["process"],
        "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000,
                   "memory_gb_hour_micros": 0}, "max_concurrent_jobs": 4}
CREDIT = 1000000


def start(data, admin, *extra):
    return start_orchestrator(EXE, data, ["--quiet", "--modules",
                                          os.path.join(ROOT, "examples", "modules"),
                                          "--request-rate", "0", *extra],
                              admin_key=admin)


class Load:
    """Money moving until stopped: a client submits jobs, cancels every
    third; a node takes the others and reports them (settled); credits
    are added now and then."""

    def __init__(self, base, admin):
        self.base, self.admin, self.stop = base, admin, threading.Event()
        self.errors, self.done = [], 0
        st, acct = http(base, "POST", "/api/v1/accounts", key=admin, body={"name": "load"})
        self.acct, self.key = acct["id"], acct["api_key"]
        self.credit(CREDIT)
        self.nk = NodeKey("22" * 32)
        st, node = http(base, "POST", "/api/v1/nodes/register",
                        body=self.nk.register_body(CAPS))
        self.node, self.tok = node["id"], node["token"]
        self.threads = [threading.Thread(target=self.client, daemon=True),
                        threading.Thread(target=self.worker, daemon=True)]

    def credit(self, n):
        st, _ = http(self.base, "POST", "/api/v1/accounts/%s/test-credits" % self.acct,
                     key=self.admin, body={"amount_micros": n})
        if st != 200:
            self.errors.append("credit %d" % st)

    def client(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            st, job = http(self.base, "POST", "/api/v1/jobs", key=self.key,
                           body={"module": "echo", "max_cost_micros": 100})
            if st != 201:
                self.errors.append("submit %d %r" % (st, job))
                continue
            if i % 3 == 0:
                http(self.base, "DELETE", "/api/v1/jobs/%d" % job["id"], key=self.key)
            if i % 10 == 0:
                self.credit(1000)

    def worker(self):
        base = "/api/v1/nodes/%d" % self.node
        while not self.stop.is_set():
            st, a = http(self.base, "GET", base + "/jobs?wait=1", key=self.tok)
            if st != 200:
                continue
            out = {"message": "hi"}
            st, r = http(self.base, "POST", base + "/jobs/%d/result" % a["job"], key=self.tok,
                         body=self.nk.result_body(a["job"], a["attempt"], out, run_ms=5))
            if st == 200:
                self.done += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(20)


def backup(data, out, *extra):
    return run([EXE, "backup", "--data", data, *extra, out], timeout=120)


def restore(src, data):
    return run([EXE, "restore", src, "--data", data], timeout=120)


def tree(path):
    """Every file under path with its bytes (to see that nothing changed)."""
    out = {}
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p):
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, path)] = fh.read()
    return out


class Backup(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.t = self.tmp.name
        self.admin = "rza_backup_" + os.urandom(16).hex()
        self.data = os.path.join(self.t, "data")

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.t, name)

    def check_restored(self, backup_dir, name, load):
        """Restore, start with --verify-on-open, and see the money add up."""
        target = self.path(name)
        p = restore(backup_dir, target)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("restored", p.stdout)
        s = start(target, self.admin, "--verify-on-open")
        try:
            st, a = http(s.base, "GET", "/api/v1/accounts/%s" % load.acct, key=self.admin)
            self.assertEqual(st, 200, a)
            st, jobs = http(s.base, "GET", "/api/v1/jobs?limit=1000", key=load.key)
            self.assertEqual(st, 200)
            held = sum(j["max_cost_micros"] for j in jobs["jobs"]
                       if j["status"] in ("queued", "assigned", "running"))
            # One moment: the ledger holds exactly what the engine's open
            # jobs hold, and the account adds up.
            self.assertEqual(a["pending_micros"], held, jobs)
            self.assertEqual(a["credits_micros"] - a["debits_micros"],
                             a["balance_micros"] + a["pending_micros"])
            stats = http(s.base, "GET", "/api/v1/payments/stats", key=self.admin)[1]
            self.assertEqual(stats["held_micros"], held)
            return s, a, jobs
        except BaseException:
            s.stop()
            raise

    def test_backups_mid_load_restore_whole(self):
        s = start(self.data, self.admin)
        try:
            with Load(s.base, self.admin) as load:
                deadline = time.time() + 30
                while load.done < 5 and time.time() < deadline:
                    time.sleep(0.1)
                outs = []
                for i, extra in enumerate(((), ("--compact",), ())):
                    out = self.path("b%d" % i)
                    p = backup(self.data, out, *extra)
                    self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                    self.assertIn("backup of", p.stdout)
                    outs.append(out)
                    time.sleep(0.3)
            self.assertEqual(load.errors, [])
            self.assertGreater(load.done, 5)
            self.assertTrue(os.path.exists(os.path.join(self.data, "control.sock")))
            self.control_refuses_junk(s)
        finally:
            s.stop_clean()
        self.assertFalse(os.path.exists(os.path.join(self.data, "control.sock")))
        for out in outs:
            self.assertFalse(os.path.exists(os.path.join(out, "control.sock")))
            self.assertEqual(os.stat(out).st_mode & 0o777, 0o700)
            for f in ("audit.key", "orchestrator.key", "audit.log", "ledger/journal",
                      "engine/data.mdb", "auth/data.mdb"):
                self.assertTrue(os.path.exists(os.path.join(out, f)), (out, f))
        totals = []
        for i, out in enumerate(outs):
            s2, a, jobs = self.check_restored(out, "r%d" % i, load)
            s2.stop_clean()
            totals.append((a["credits_micros"], len(jobs["jobs"])))
        # Later backups hold at least as much as earlier ones.
        self.assertEqual(totals, sorted(totals))
        # The compacted copy's stores are no bigger than the plain one's.
        for store in ("engine", "ledger", "auth"):
            plain = os.path.getsize(os.path.join(outs[0], store, "data.mdb"))
            self.assertGreater(plain, 0)
            self.assertLessEqual(os.path.getsize(os.path.join(outs[1], store, "data.mdb")),
                                 os.path.getsize(os.path.join(outs[2], store, "data.mdb")))

    def control_refuses_junk(self, s):
        sock = os.path.join(self.data, "control.sock")
        before = sorted(os.listdir(self.t))
        for line in (b"backup relative/path\n", b"rm -rf /\n", b"backup\n",
                     b"backup /" + b"a" * 5000 + b"\n", b"\x00\xff\n"):
            c = socket.socket(socket.AF_UNIX)
            c.settimeout(10)
            c.connect(sock)
            c.sendall(line)
            reply = c.recv(1000)
            c.close()
            self.assertTrue(reply.startswith(b"error "), (line[:30], reply))
        # A client that goes away at once: the server carries on.
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)
        c.close()
        st, doc = http(s.base, "GET", "/health")
        self.assertEqual(st, 200)
        self.assertEqual(sorted(os.listdir(self.t)), before)

    def test_stopped_server_and_refusals(self):
        s = start(self.data, self.admin)
        try:
            load = Load(s.base, self.admin)
            http(s.base, "POST", "/api/v1/jobs", key=load.key,
                 body={"module": "echo", "max_cost_micros": 100})
        finally:
            s.stop_clean()
        before = tree(self.data)
        out = self.path("cold")
        p = backup(self.data, out)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(tree(self.data), before)   # the source is only read
        # Refusals: an existing target, no data directory, usage.
        p = backup(self.data, out)
        self.assertEqual(p.returncode, 1)
        self.assertIn("exists", p.stderr)
        self.assertEqual(backup(self.t, self.path("x")).returncode, 1)
        self.assertEqual(backup(self.data, self.path("no/such/x")).returncode, 1)
        self.assertEqual(run([EXE, "backup", self.path("y")]).returncode, 2)
        self.assertEqual(run([EXE, "backup", "--data", self.data]).returncode, 2)
        # Locked by a server that does not answer: refused, nothing made.
        with open(os.path.join(self.data, "ledger", "journal"), "rb") as j:
            fcntl.flock(j, fcntl.LOCK_EX)
            p = backup(self.data, self.path("locked"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("in use", p.stderr)
        self.assertFalse(os.path.exists(self.path("locked")))
        # Restore: into a new folder; not over anything; not from damage.
        s2, a, jobs = self.check_restored(out, "restored", load)
        s2.stop_clean()
        self.assertEqual(len(jobs["jobs"]), 1)
        busy = self.path("busy")
        os.mkdir(busy)
        with open(os.path.join(busy, "keep"), "w") as f:
            f.write("mine\n")
        p = restore(out, busy)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not empty", p.stderr)
        self.assertEqual(os.listdir(busy), ["keep"])
        for damage in ("truncate", "drop-engine", "drop-journal"):
            bad = self.path("bad-" + damage)
            self.assertEqual(backup(self.data, bad).returncode, 0)
            if damage == "truncate":
                f = os.path.join(bad, "ledger", "data.mdb")
                os.truncate(f, os.path.getsize(f) // 2)
            elif damage == "drop-engine":
                os.unlink(os.path.join(bad, "engine", "data.mdb"))
            else:
                os.unlink(os.path.join(bad, "ledger", "journal"))
            target = self.path("t-" + damage)
            p = restore(bad, target)
            self.assertEqual(p.returncode, 1, (damage, p.stdout))
            self.assertFalse(os.path.exists(target), damage)
        self.assertEqual(run([EXE, "restore", out]).returncode, 2)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
