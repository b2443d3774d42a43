#!/usr/bin/env python3
"""End-to-end: money in micro-dollars.

- A data directory written by the cents version (tests/data/money/
  cents-v2.tar.gz, made by make_cents_fixture.py): `check` and `rhizos
  ledger` refuse it naming the migration, `migrate` converts it (every
  amount x 10,000), and the orchestrator then serves the same balances,
  job cost and held money in micro-dollars; its pending withdrawal completes.
- Withdrawals over the API: pending -> completed with the transaction, or
  failed / cancelled with the money back; never both, never twice; owners
  see only their own; payments/stats counts them.
- accounts by wallet_address: a second create with the same address answers
  the first account.
- *_cents on input is still read (x 10,000, exactly), both spellings at
  once are refused.

Usage: orchestrator_money.py ORCHESTRATOR RHIZOS SOURCE_ROOT"""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest

from harness import http, start_orchestrator

EXE, RHIZOS, ROOT = sys.argv[1], sys.argv[2], sys.argv[3]
FIXTURE = os.path.join(ROOT, "tests", "data", "money", "cents-v2.tar.gz")
M = 10000   # micro-dollars in a cent


def keep_queued(data, job):
    """The fixture's held job waits with the longest queue timeout there
    is, a year from when the fixture was made (2026-12-04): an orchestrator
    that opens it later fails the job at once and refunds its hold, and the
    migration's checks of held money see none. Its deadline is moved to
    9999999999999 ms (the year 2286) in the engine store's record of it,
    byte for byte: the record is bare JSON (written before records had
    checksums) and the number keeps its 13 digits, so the record keeps its
    length and LMDB its pages, which carry no checksums. Every copy of the
    record in the file (LMDB's older pages too) is changed."""
    path = os.path.join(data, "engine", "data.mdb")
    with open(path, "rb") as f:
        db = f.read()
    # From the record's start to its deadline, never into another record.
    pat = re.compile(rb'(\{"id":"%d",(?:(?!\{"id":").){0,4000}?"queue_deadline":")'
                     rb'\d{13}"' % job, re.DOTALL)
    db, n = pat.subn(rb'\g<1>9999999999999"', db)
    assert n >= 1, "the held job's record was not found"
    with open(path, "r+b") as f:
        f.write(db)


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rz-money-")
        self.data = os.path.join(self.tmp, "data")
        self.proc = None

    def tearDown(self):
        if self.proc:
            self.proc.stop_clean()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, admin):
        # The fixture's jobs age: retention must not take them first.
        self.proc = start_orchestrator(EXE, self.data, ["--quiet", "--retention-days", "0"],
                                       admin_key=admin)

    def ok(self, method, path, body=None, key=None, code=200):
        st, doc = http(self.proc.base, method, path, key=key, body=body)
        self.assertEqual(st, code, (method, path, doc))
        return doc

    def err(self, code, method, path, body=None, key=None):
        st, doc = http(self.proc.base, method, path, key=key, body=body)
        self.assertEqual(st, code, (method, path, doc))
        return doc["error"]["message"]


class Migration(Base):
    def test_cents_directory_is_converted_never_misread(self):
        with tarfile.open(FIXTURE) as t:
            t.extractall(self.tmp)
        with open(os.path.join(self.data, "fixture.json")) as f:
            old = json.load(f)
        keep_queued(self.data, old["held_job"])   # whatever today's date
        # Readers refuse, naming the command; nothing changes.
        r = subprocess.run([EXE, "check", "--data", self.data], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("rhizos-orchestrator migrate", r.stderr)
        self.assertIn("cents", r.stderr)
        r = subprocess.run([RHIZOS, "ledger", "verify", "--data", self.data],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("rhizos-orchestrator migrate", r.stderr)
        r = subprocess.run([EXE, "migrate", "--data", self.data], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("converted from cents to micro-dollars", r.stdout)
        r = subprocess.run([EXE, "migrate", "--data", self.data], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("already counts micro-dollars", r.stdout)
        r = subprocess.run([EXE, "check", "--data", self.data], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.start(old["admin_key"])
        # A running server's directory: migrate refuses before any store.
        r = subprocess.run([EXE, "migrate", "--data", self.data], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("open for writing by another process", r.stderr)
        ckey, admin = old["client_key"], old["admin_key"]
        a = self.ok("GET", "/api/v1/accounts/me", key=ckey)
        for k in ("balance", "pending", "credits", "debits"):
            self.assertEqual(a[k + "_micros"], old["client_account"][k + "_cents"] * M, k)
        n = self.ok("GET", "/api/v1/accounts/%s" % old["node_account"], key=admin)
        for k in ("balance", "pending", "credits", "debits"):
            self.assertEqual(n[k + "_micros"], old["node_account_doc"][k + "_cents"] * M, k)
        j = self.ok("GET", "/api/v1/jobs/%d" % old["done_job"], key=ckey)
        self.assertEqual((j["cost_micros"], j["max_cost_micros"]),
                         (old["done_job_doc"]["cost_cents"] * M,
                          old["done_job_doc"]["max_cost_cents"] * M))
        held = self.ok("GET", "/api/v1/jobs/%d" % old["held_job"], key=ckey)
        self.assertEqual(held["max_cost_micros"], 500 * M)
        st = self.ok("GET", "/api/v1/payments/stats", key=admin)
        for k in ("fees", "held", "deposits", "volume"):
            self.assertEqual(st[k + "_micros"], old["stats"][k + "_cents"] * M, k)
        self.assertEqual(st["withdrawals"]["pending"], 1)
        # The held job is refunded exactly; the old withdrawal completes.
        ref = self.ok("DELETE", "/api/v1/jobs/%d" % old["held_job"], key=ckey)
        a = self.ok("GET", "/api/v1/accounts/me", key=ckey)
        self.assertEqual((a["balance_micros"], a["pending_micros"]), (10200 * M, 0))
        w = self.ok("POST", "/api/v1/withdrawals/%s/complete" % old["withdrawal"],
                    {"tx": "0xfeed"}, admin)
        self.assertEqual((w["status"], w["amount_micros"], w["tx"]),
                         ("completed", 50 * M, "0xfeed"))
        self.assertNotIn("address", w)   # recorded before addresses were kept
        self.assertEqual(ref["id"], old["held_job"])


ADMIN = "rza_money_" + "m" * 40


class Live(Base):
    def setUp(self):
        super().setUp()
        self.start(ADMIN)

    def client(self, micros, **body):
        doc = self.ok("POST", "/api/v1/accounts", dict(name="c", **body), ADMIN, 201)
        if micros:
            self.ok("POST", "/api/v1/accounts/%s/test-credits" % doc["id"],
                    {"amount_micros": micros}, ADMIN)
        return doc["id"], doc.get("api_key")

    def balance(self, key):
        a = self.ok("GET", "/api/v1/accounts/me", key=key)
        return a["balance_micros"], a["pending_micros"]

    def test_withdrawals(self):
        acct, key = self.client(1000000)
        other, okey = self.client(0)
        w = self.ok("POST", "/api/v1/accounts/%s/withdraw" % acct,
                    {"amount_micros": 250000, "address": "0xabc"}, key, 201)["withdrawal_id"]
        self.assertEqual(self.balance(key), (750000, 250000))
        got = self.ok("GET", "/api/v1/withdrawals/%s" % w, key=key)
        self.assertEqual((got["status"], got["address"], got["account"]),
                         ("pending", "0xabc", acct))
        # Not another owner's; not the owner's to complete.
        self.err(404, "GET", "/api/v1/withdrawals/%s" % w, key=okey)
        self.err(404, "POST", "/api/v1/withdrawals/%s/cancel" % w, key=okey)
        self.err(403, "POST", "/api/v1/withdrawals/%s/complete" % w, {"tx": "t"}, key)
        self.err(400, "POST", "/api/v1/withdrawals/%s/complete" % w, {}, ADMIN)
        self.err(400, "POST", "/api/v1/withdrawals/%s/complete" % w, {"tx": ""}, ADMIN)
        self.err(404, "POST", "/api/v1/withdrawals/%s/complete" % ("0" * 32),
                 {"tx": "t"}, ADMIN)
        done = self.ok("POST", "/api/v1/withdrawals/%s/complete" % w, {"tx": "0x1"}, ADMIN)
        self.assertEqual((done["status"], done["tx"]), ("completed", "0x1"))
        self.assertEqual(self.ok("POST", "/api/v1/withdrawals/%s/complete" % w,
                                 {"tx": "0x1"}, ADMIN), done)
        self.assertIn("another transaction", self.err(
            409, "POST", "/api/v1/withdrawals/%s/complete" % w, {"tx": "0x2"}, ADMIN))
        self.assertIn("completed", self.err(
            409, "POST", "/api/v1/withdrawals/%s/fail" % w, {}, ADMIN))
        self.assertIn("completed", self.err(
            409, "POST", "/api/v1/withdrawals/%s/cancel" % w, key=key))
        self.assertEqual(self.balance(key), (750000, 0))
        # Failed and cancelled ones give the money back and never complete.
        w2 = self.ok("POST", "/api/v1/accounts/me/withdraw", {"amount_micros": 100000},
                     key, 201)["withdrawal_id"]
        w3 = self.ok("POST", "/api/v1/accounts/me/withdraw", {"amount_micros": 1},
                     key, 201)["withdrawal_id"]
        self.assertEqual(self.balance(key), (649999, 100001))
        f = self.ok("POST", "/api/v1/withdrawals/%s/fail" % w2,
                    {"reason": "bounced", "tx": "0x3"}, ADMIN)
        self.assertEqual((f["status"], f["reason"], f["tx"]), ("failed", "bounced", "0x3"))
        c = self.ok("POST", "/api/v1/withdrawals/%s/cancel" % w3, key=key)
        self.assertEqual(c["status"], "cancelled")
        self.err(409, "POST", "/api/v1/withdrawals/%s/complete" % w2, {"tx": "t"}, ADMIN)
        self.err(409, "POST", "/api/v1/withdrawals/%s/fail" % w3, {}, ADMIN)
        self.assertEqual(self.balance(key), (750000, 0))
        mine = self.ok("GET", "/api/v1/accounts/me/withdrawals", key=key)["withdrawals"]
        self.assertEqual([(x["id"], x["status"]) for x in mine],
                         [(w3, "cancelled"), (w2, "failed"), (w, "completed")])
        every = self.ok("GET", "/api/v1/withdrawals", key=ADMIN)["withdrawals"]
        self.assertEqual({x["id"] for x in every}, {w, w2, w3})
        self.err(403, "GET", "/api/v1/withdrawals", key=key)
        st = self.ok("GET", "/api/v1/payments/stats", key=ADMIN)
        self.assertEqual(st["withdrawals_micros"], 250000)
        self.assertEqual(st["withdrawals_pending_micros"], 0)
        self.assertEqual(st["withdrawals"], {"pending": 0, "completed": 1, "cancelled": 1,
                                             "failed": 1, "complete": True})

    def test_wallet_address_is_idempotent(self):
        first = self.ok("POST", "/api/v1/accounts", {"name": "a", "wallet_address": "0xw1"},
                        ADMIN, 201)
        again = self.ok("POST", "/api/v1/accounts", {"name": "b", "wallet_address": "0xw1"},
                        ADMIN, 200)
        self.assertEqual((again["id"], again["existing"]), (first["id"], True))
        self.assertNotIn("api_key", again)
        other = self.ok("POST", "/api/v1/accounts", {"wallet_address": "0xw2"}, ADMIN, 201)
        self.assertNotEqual(other["id"], first["id"])
        self.err(400, "POST", "/api/v1/accounts", {"wallet_address": ""}, ADMIN)
        self.err(400, "POST", "/api/v1/accounts", {"wallet_address": "x" * 201}, ADMIN)

    def test_cents_on_input_for_one_release(self):
        acct, key = self.client(0)
        a = self.ok("POST", "/api/v1/accounts/%s/test-credits" % acct,
                    {"amount_cents": 123}, ADMIN)
        self.assertEqual(a["balance_micros"], 1230000)
        self.assertNotIn("balance_cents", a)
        self.err(400, "POST", "/api/v1/accounts/%s/test-credits" % acct,
                 {"amount_cents": 1, "amount_micros": 10000}, ADMIN)
        self.err(400, "POST", "/api/v1/accounts/%s/test-credits" % acct,
                 {"amount_cents": 1.5}, ADMIN)
        self.err(400, "POST", "/api/v1/accounts/%s/test-credits" % acct,
                 {"amount_cents": 2 ** 53}, ADMIN)
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo@1", "max_cost_cents": 7,
                      "requirements": {"labels": {"x": "nowhere"}}}, key, 201)
        self.assertEqual(job["max_cost_micros"], 70000)
        self.assertEqual(self.balance(key), (1160000, 70000))
        job = self.ok("POST", "/api/v1/jobs", {"module": "echo@1", "max_cost_micros": 7,
                      "requirements": {"labels": {"x": "nowhere"},
                                       "max_cost_cents": 1}}, key, 201)
        self.assertEqual(job["max_cost_micros"], 7)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
