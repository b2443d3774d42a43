#!/usr/bin/env python3
"""End-to-end: a service billed by time over the network (docs/services.md,
"Billing by time").

An orchestrator, one `rhizos-node` whose core costs $0.10 a second, and a
client with $1 deploying the trader (examples/modules/trader) as a service
with `budget: {max_micros_per_hour: 720000000, interval_s: 1}`: each
1-second interval holds $0.20 and is paid $0.10 (the node's price), 95% to
the node and 5% to the platform. After eight roll-overs the balance is 0:
the ninth interval is paid from its hold and the service is stopped, the
step failing with the reason in `flow status`. Then the same with the
orchestrator killed (kill -9) mid-run and restarted: the node runs on, the
intervals that passed meanwhile are billed once its node is heard from, and
every interval is settled exactly once (one settlement each, the ledger
verifies).

Usage: billing.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT [TEST ...]"""
import signal
import sys
import time
import unittest

import network
from harness import wait_until

PRICE = 360000000             # micros per core-hour: $0.10 a second
INTERVAL_COST = 100000        # the node's price for one second
HOLD = 200000                 # ceil(720,000,000 x 1 / 3600)
CREDIT = 1000000              # $1
PAID = 9                      # intervals: see the module's docstring
REASON = ("budget exhausted: 9 intervals paid ($0.900000); the balance "
          "($0.100000) cannot cover the next ($0.200000)")
FLOW = """flux: 1
name: billed
steps:
  hb:
    module: trader@1
    kind: service
    ready: line
    restart: {policy: never}
    budget: {max_micros_per_hour: 720000000, interval_s: 1}
    config: {trades: 10000, interval_ms: 500}
"""


class Billing(network.Base):
    def setUp(self):
        super().setUp()
        acct = self.cli_json("account", "create", "--name", "small", key=network.ADMIN)
        self.small, self.small_key = acct["id"], acct["api_key"]
        a = self.cli_json("account", "credit", self.small, "1", key=network.ADMIN)
        self.assertEqual(a["balance_micros"], CREDIT)
        self.node = self.start_node("node1", PRICE)

    def deploy(self):
        path = self.flow_file("billed.yaml", FLOW)
        dep = self.cli_json("flow", "deploy", path, key=self.small_key)["id"]
        a = self.api("GET", "/api/v1/accounts/%s" % self.small)
        self.assertEqual(a["pending_micros"], HOLD, a)   # one interval held
        return dep

    def hb(self, dep):
        return self.cli_json("flow", "status", str(dep), key=self.small_key)["steps"]["hb"]

    def paid(self, dep):
        return self.hb(dep).get("billing", {}).get("intervals_paid", 0)

    def finished(self, dep):
        st = self.cli_json("flow", "status", str(dep), key=self.small_key)
        return st if st["status"] not in ("running", "pending") else None

    def check_end(self, dep):
        st = wait_until(lambda: self.finished(dep), 60, "the service to be stopped")
        self.assertEqual(st["status"], "failed", st)
        hb = st["steps"]["hb"]
        self.assertEqual(hb["status"], "failed", hb)
        self.assertEqual(hb["error"], REASON, hb)
        self.assertEqual(hb["attempts"], 1, hb)   # stopped, not restarted
        b = hb["billing"]
        self.assertEqual((b["intervals_paid"], b["paid_micros"]),
                         (PAID, PAID * INTERVAL_COST), b)
        self.assertEqual(b["interval_hold_micros"], HOLD, b)
        self.assertEqual((st["charged_micros"], st["held_micros"]),
                         (PAID * INTERVAL_COST, HOLD), st)
        text = self.cli("flow", "status", str(dep), key=self.small_key).stdout
        self.assertIn("billed by time: 9 intervals of 1 s paid ($0.90), $0.20 held "
                      "an interval", text)
        self.assertIn(REASON, text)
        # The ledger, exactly: nine settlements of $0.10, 5% of each a fee.
        total = PAID * INTERVAL_COST
        fee = network.fee(INTERVAL_COST)
        a = self.api("GET", "/api/v1/accounts/%s" % self.small)
        self.assertEqual((a["balance_micros"], a["pending_micros"], a["debits_micros"]),
                         (CREDIT - total, 0, total), a)
        n = self.api("GET", "/api/v1/accounts/%s" % self.node.account)
        self.assertEqual(n["balance_micros"], PAID * (INTERVAL_COST - fee), n)
        stats = self.api("GET", "/api/v1/payments/stats")
        self.assertEqual((stats["fees_micros"], stats["held_micros"]), (PAID * fee, 0),
                         stats)
        pays = self.api("GET", "/api/v1/accounts/%s/payments?limit=1000" % self.small)
        settles = [p for p in pays["payments"]
                   if p.get("job") == hb["job"] and p["kind"] == "settle"]
        self.assertEqual(len(settles), PAID, settles)
        self.assertEqual({p["amount_micros"] for p in settles}, {INTERVAL_COST}, settles)
        self.assertEqual(len({p["id"] for p in settles}), PAID, settles)
        # The node was told to stop it: its process ended.
        wait_until(lambda: [e for e in self.node.events()
                            if e.get("event") in ("stopped", "submitted")
                            and e.get("job") == hb["job"]], 30, "the node to stop it")
        self.stop_orchestrator()
        self.verify_ledger()

    def test_intervals_paid_until_the_balance_runs_out(self):
        dep = self.deploy()
        wait_until(lambda: self.paid(dep) >= 2, 30, "two intervals paid")
        b = self.hb(dep)["billing"]
        self.assertEqual(b["paid_micros"], b["intervals_paid"] * INTERVAL_COST, b)
        self.check_end(dep)

    def test_orchestrator_killed_mid_interval_bills_each_once(self):
        dep = self.deploy()
        wait_until(lambda: self.paid(dep) >= 3, 30, "three intervals paid")
        time.sleep(0.4)   # into the next interval
        self.orch.stop(signal.SIGKILL)
        self.orch = None
        time.sleep(2.5)   # the service runs on; two intervals pass unbilled
        self.start_orchestrator()
        self.check_end(dep)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[5:])   # [TEST ...]
