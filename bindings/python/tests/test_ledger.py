"""Escrow ledger through the Python bindings."""
import shutil
import tempfile
import unittest

import rhizos


class TestLedger(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rz-py-ledger-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_hold_settle_refund(self):
        client, node = 0x1001, "0x2002"
        with rhizos.Ledger(self.dir, durable=False) as l:
            l.create_account(client, "client")
            l.create_account(node, "node")
            l.create_account(client, "client")            # again: idempotent
            credit = l.test_credit(client, 10_000)
            l.test_credit(client, 10_000, id=credit)        # replay: no double credit
            self.assertEqual(l.balance(client).available, 10_000)
            l.hold(job=1, client=client, micros=5_000)
            b = l.balance(client)
            self.assertEqual((b.available, b.debits_pending), (5_000, 5_000))
            payout, fee = l.settle(job=1, node=node, micros=4_000)
            self.assertEqual((payout, fee), (3_800, 200))   # 5% fee by default
            self.assertEqual(l.fee(4_000), 200)
            self.assertEqual(l.balance(client).available, 6_000)
            self.assertEqual(l.balance(node).available, 3_800)
            self.assertEqual(l.balance(rhizos.ledger.PLATFORM).credits_posted, 200)
            l.hold(job=2, client=client, micros=1_000)
            self.assertEqual(l.refund(job=2), 1_000)
            self.assertEqual(l.balance(client).available, 6_000)
            self.assertTrue(l.verify())
            st = l.stats()
            self.assertEqual(st["fees_micros"], 200)
            self.assertEqual(st["open_pending"], 0)
            exp = l.export()
            self.assertGreaterEqual(len(exp["transfers"]), 5)
        # durable across reopen
        with rhizos.Ledger(self.dir) as l:
            self.assertEqual(l.balance(client).available, 6_000)
            self.assertEqual(l.balance(node).kind, "node")

    def test_withdrawals_and_fee_rounding(self):
        with rhizos.Ledger(self.dir, durable=False) as l:
            l.create_account(80, "client")
            l.test_credit(80, 1_000)
            w = l.withdraw_request(80, 300)
            self.assertEqual(l.balance(80).available, 700)
            l.withdraw_cancel(w)
            self.assertEqual(l.balance(80).available, 1_000)
            with self.assertRaises(rhizos.Error) as cm:
                l.withdraw_complete(w)                       # cancelled: never completes
            self.assertEqual(cm.exception.code, "RZ_EVOIDED")
            w = l.withdraw_request(80, 250)
            l.withdraw_complete(w)
            with self.assertRaises(rhizos.Error) as cm:
                l.withdraw_cancel(w)                         # completed: never cancelled
            self.assertEqual(cm.exception.code, "RZ_EPOSTED")
            self.assertEqual(l.stats()["withdrawn_micros"], 250)
            # Half a micro-dollar rounds up, the rest goes to the node.
            self.assertEqual([l.fee(n) for n in (9, 10, 29, 30, 801)], [0, 1, 1, 2, 40])

    def test_errors_carry_codes(self):
        with rhizos.Ledger(self.dir, durable=False) as l:
            l.create_account(70, "client")
            l.test_credit(70, 100)
            with self.assertRaises(rhizos.InsufficientFunds) as cm:
                l.hold(job=9, client=70, micros=101)
            self.assertEqual(cm.exception.code, "RZ_EFUNDS")
            self.assertIn("100", cm.exception.message)
            with self.assertRaises(rhizos.NotFound):
                l.balance(12345)
            with self.assertRaises(rhizos.NotFound):
                l.refund(job=404)
            l.hold(job=9, client=70, micros=50)
            with self.assertRaises(rhizos.Error) as cm:
                l.settle(job=9, node=70, micros=60)          # above the hold
            self.assertTrue(cm.exception.code.startswith("RZ_E"))
            tid = l.test_credit(70, 5)
            with self.assertRaises(rhizos.Error) as cm:
                l.test_credit(70, 6, id=tid)                # same id, other fields
            self.assertEqual(cm.exception.code, "RZ_EEXISTS_DIFFERENT")
            for bad in (-1, 1 << 64, 1.5, True):
                with self.assertRaises(rhizos.InvalidArgument):
                    l.test_credit(70, bad)
            for bad in (-1, 1 << 128, "zz", "0x", 3.0, None):
                with self.assertRaises(rhizos.InvalidArgument):
                    l.balance(bad)
            with self.assertRaises(rhizos.InvalidArgument):
                l.create_account(80, "platform")
            self.assertTrue(l.verify())

    def test_expiry_by_tick(self):
        with rhizos.Ledger(self.dir, durable=False) as l:
            l.create_account(50, "client")
            l.test_credit(50, 300)
            l.hold(job=1, client=50, micros=300, timeout=1000)
            self.assertEqual(l.tick(999), 0)
            self.assertEqual(l.tick(1000), 1)
            self.assertEqual(l.balance(50).available, 300)

    def test_single_writer(self):
        with rhizos.Ledger(self.dir, durable=False):
            with self.assertRaises(rhizos.StateError):
                rhizos.Ledger(self.dir)

    def test_ids(self):
        self.assertEqual(rhizos.parse_id("0x10"), 16)
        self.assertEqual(rhizos.parse_id("42"), 42)
        self.assertEqual(rhizos.parse_id("f" * 32), (1 << 128) - 1)
        self.assertEqual(rhizos.format_id(255), "0" * 30 + "ff")
        self.assertGreaterEqual(rhizos.new_id(), 16)

    def test_use_after_close(self):
        l = rhizos.Ledger(self.dir, durable=False)
        l.create_account(30, "client")
        l.close()
        l.close()
        for call in (lambda: l.balance(30), lambda: l.hold(1, 30, 1),
                     lambda: l.verify(), lambda: l.export(), lambda: l.tick(1)):
            with self.assertRaises(rhizos.ClosedError):
                call()
        with rhizos.Ledger(self.dir) as again:         # the writer lock is gone
            self.assertEqual(again.balance(30).available, 0)


if __name__ == "__main__":
    unittest.main()
