#!/usr/bin/env python3
"""End-to-end: rhizos-orchestrator refuses damaged stores at start, with a
message and exit status 1, never a signal, and `rhizos-orchestrator check`
says the same without changing anything; a copy taken while stopped
restores (docs/ledger.md, "Recovery").

A ledger that `verify` calls corrupt (an account's credits changed in
data.mdb, its checksum made to match), a record whose checksum fails, an
engine data.mdb cut to half its length, a missing auth store or ledger
under the others' state.

Usage: orchestrator_stores.py ORCHESTRATOR SOURCE_ROOT"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import http, sanitizer_report, start_orchestrator

EXE, ROOT = sys.argv[1], sys.argv[2]


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def check(data):
    return subprocess.run([EXE, "check", "--data", data], capture_output=True,
                          text=True, timeout=60)


def start_refused(data, key_file):
    """Start on `data`: it must exit by itself, status 1, no signal."""
    r = subprocess.run([EXE, "--listen", "127.0.0.1:1", "--data", data,
                        "--admin-key-file", key_file, "--quiet"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, "exit %d: %s" % (r.returncode, r.stderr)
    assert not sanitizer_report(r.stderr), r.stderr
    return r.stderr


class Stores(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rz-stores-")
        self.data = os.path.join(self.tmp, "data")
        self.key_file = os.path.join(self.tmp, "admin.key")
        self.admin = "rza_stores_" + os.urandom(12).hex()
        with open(self.key_file, "w") as f:
            f.write(self.admin + "\n")
        proc = self.start()
        st, acct = http(proc.base, "POST", "/api/v1/accounts", key=self.admin,
                        body={"name": "c"})
        self.assertEqual(st, 201, acct)
        self.account = acct["id"]
        st, _ = http(proc.base, "POST",
                     "/api/v1/accounts/%s/test-credits" % self.account,
                     key=self.admin, body={"amount_micros": 500})
        self.assertEqual(st, 200)
        proc.stop_clean()
        # The documented backup: a copy of the whole directory, stopped.
        self.backup = os.path.join(self.tmp, "backup")
        shutil.copytree(self.data, self.backup)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self):
        return start_orchestrator(EXE, self.data,
                                  ["--admin-key-file", self.key_file, "--quiet",
                                   "--modules", os.path.join(ROOT, "examples",
                                                             "modules")])

    def restore_and_start(self):
        shutil.rmtree(self.data)
        shutil.copytree(self.backup, self.data)
        r = check(self.data)
        self.assertEqual(r.returncode, 0, r.stderr)
        proc = self.start()
        st, a = http(proc.base, "GET", "/api/v1/accounts/" + self.account,
                     key=self.admin)
        self.assertEqual(st, 200, a)
        self.assertEqual(a["balance_micros"], 500, a)
        proc.stop_clean()

    def edit_account(self, fix_checksum):
        """Add 1 to the account's credits_posted in every copy of its
        record in the ledger's data.mdb: its key (16 bytes, big-endian),
        then the record (version 2), credits at byte 40, CRC-32C at 64."""
        path = os.path.join(self.data, "ledger", "data.mdb")
        with open(path, "rb") as f:
            db = bytearray(f.read())
        key = bytes.fromhex(self.account) + b"\x02"
        at, n = db.find(key), 0
        while at >= 0:
            rec = at + 16
            db[rec + 40] ^= 0x01
            if fix_checksum:
                body = bytes(db[rec:rec + 64]) + b"\0\0\0\0" + bytes(db[rec + 68:rec + 72])
                db[rec + 64:rec + 68] = crc32c(body).to_bytes(4, "little")
            n += 1
            at = db.find(key, at + 1)
        self.assertGreater(n, 0)
        with open(path, "wb") as f:
            f.write(db)

    def test_corrupt_ledger_refused(self):
        """Records well formed, sums wrong: what `verify` calls corrupt."""
        self.assertEqual(check(self.data).returncode, 0)
        self.edit_account(fix_checksum=True)
        r = check(self.data)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("credits_posted", r.stderr)
        err = start_refused(self.data, self.key_file)
        self.assertIn("refusing to start", err)
        self.assertIn("credits_posted", err)
        self.assertIn("Recovery", err)
        self.restore_and_start()

    def test_damaged_record_refused(self):
        """A changed byte the checksum catches."""
        self.edit_account(fix_checksum=False)
        r = check(self.data)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("fails its checksum", r.stderr)
        err = start_refused(self.data, self.key_file)
        self.assertIn("fails its checksum", err)
        self.restore_and_start()

    def test_truncated_engine_refused(self):
        path = os.path.join(self.data, "engine", "data.mdb")
        os.truncate(path, os.path.getsize(path) // 2)
        r = check(self.data)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("meta page says", r.stderr)
        err = start_refused(self.data, self.key_file)
        self.assertIn(path, err)
        self.assertIn("meta page says", err)
        self.restore_and_start()

    def test_missing_auth_refused(self):
        shutil.rmtree(os.path.join(self.data, "auth"))
        self.assertEqual(check(self.data).returncode, 1)
        err = start_refused(self.data, self.key_file)
        self.assertIn("auth/data.mdb is missing", err)
        self.assertFalse(os.path.exists(os.path.join(self.data, "auth")))
        self.restore_and_start()

    def test_missing_ledger_refused(self):
        """A deleted ledger would start empty under the engine's jobs."""
        shutil.rmtree(os.path.join(self.data, "ledger"))
        self.assertEqual(check(self.data).returncode, 1)
        err = start_refused(self.data, self.key_file)
        self.assertIn("ledger/data.mdb is missing", err)
        self.restore_and_start()

    def test_lost_audit_log_refused(self):
        """The audit log removed while stopped: check and start see it."""
        os.unlink(os.path.join(self.data, "audit.log"))
        r = check(self.data)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("audit.log is missing", r.stderr)
        err = start_refused(self.data, self.key_file)
        self.assertIn("audit.log is missing", err)
        self.assertFalse(os.path.exists(os.path.join(self.data, "audit.log")))
        self.restore_and_start()

    def test_check_usage(self):
        r = subprocess.run([EXE, "check"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        r = check(os.path.join(self.tmp, "nowhere"))
        self.assertEqual(r.returncode, 1)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
