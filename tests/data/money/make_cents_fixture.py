#!/usr/bin/env python3
"""Make tests/data/money/cents-v2.tar.gz: a data directory written by
rhizos-orchestrator from before micro-dollars (ledger format 2, amounts in
cents), for the migration test (tests/e2e/orchestrator_money.py). Run once
with a binary of that version; kept for the record of how it was made.

Usage: make_cents_fixture.py OLD_ORCHESTRATOR OUT.tar.gz"""
import json
import os
import shutil
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "e2e"))
from harness import http, start_orchestrator  # noqa: E402

EXE, OUT = sys.argv[1], sys.argv[2]
ADMIN = "rza_fixture_0123456789abcdef01234567"
CAPS = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
        "storage": {"total_gb": 100, "free_gb": 100}, "adapters": ["process"],
        "prices": {"gpu_hour_cents": 0, "cpu_hour_cents": 36000,
                   "memory_gb_hour_cents": 0},
        "max_concurrent_jobs": 4}


def ok(proc, method, path, body=None, key=None, code=200):
    st, doc = http(proc.base, method, path, key=key, body=body)
    assert st == code, (method, path, st, doc)
    return doc


def main():
    tmp = tempfile.mkdtemp(prefix="rz-fixture-")
    data = os.path.join(tmp, "data")
    proc = start_orchestrator(EXE, data, ["--quiet"], admin_key=ADMIN)
    try:
        c = ok(proc, "POST", "/api/v1/accounts", {"name": "client"}, ADMIN, 201)
        ok(proc, "POST", "/api/v1/accounts/%s/test-credits" % c["id"],
           {"amount_cents": 10000}, ADMIN)
        dep = ok(proc, "POST", "/api/v1/accounts/%s/deposit" % c["id"],
                 {"amount_cents": 300}, c["api_key"], 201)
        ok(proc, "POST", "/api/v1/deposits/%s/confirm" % dep["deposit_id"],
           key=ADMIN)
        n = ok(proc, "POST", "/api/v1/nodes/register",
               {"capabilities": CAPS, "x25519_public_key": "11" * 32}, code=201)
        # 10 s on 1 core at 36000 cents/hour: 100 cents, fee 5.
        job = ok(proc, "POST", "/api/v1/jobs",
                 {"module": "echo@1", "inputs": {"message": "hi"},
                  "max_cost_cents": 1000}, c["api_key"], 201)
        a = ok(proc, "GET", "/api/v1/nodes/%d/jobs?wait=5" % n["id"], key=n["token"])
        assert a["job"] == job["id"], a
        ok(proc, "POST", "/api/v1/nodes/%d/jobs/%d/result" % (n["id"], job["id"]),
           {"attempt": 1, "outputs": {"message": "hi"}, "run_ms": 10000}, n["token"])
        w = ok(proc, "POST", "/api/v1/accounts/%s/withdraw" % n["account"],
               {"amount_cents": 50, "address": "addr-old"}, n["token"], 201)
        ok(proc, "DELETE", "/api/v1/nodes/%d" % n["id"], key=ADMIN)
        # Still held: a job no node takes. Its queue timeout is the longest
        # allowed, a year; the test opens this directory later than that,
        # so it moves the deadline first (orchestrator_money.py keep_queued).
        held = ok(proc, "POST", "/api/v1/jobs",
                  {"module": "echo@1", "inputs": {"message": "hi"},
                   "max_cost_cents": 500, "queue_timeout_s": 31536000},
                  c["api_key"], 201)
        state = {
            "admin_key": ADMIN, "client": c["id"], "client_key": c["api_key"],
            "node_account": n["account"], "node_token": n["token"],
            "done_job": job["id"], "held_job": held["id"],
            "withdrawal": w["withdrawal_id"],
            "client_account": ok(proc, "GET", "/api/v1/accounts/me", key=c["api_key"]),
            "node_account_doc": ok(proc, "GET", "/api/v1/accounts/%s" % n["account"],
                                   key=ADMIN),
            "stats": ok(proc, "GET", "/api/v1/payments/stats", key=ADMIN),
            "done_job_doc": ok(proc, "GET", "/api/v1/jobs/%d" % job["id"],
                               key=c["api_key"]),
        }
    finally:
        proc.stop_clean()
    with open(os.path.join(data, "fixture.json"), "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
    with tarfile.open(OUT, "w:gz") as t:
        t.add(data, arcname="data")
    shutil.rmtree(tmp)
    print(json.dumps(state, indent=1, sort_keys=True))


main()
