"""Matcher through the Python bindings, against the C API's fixtures."""
import json
import os
import unittest

import rhizos
from helpers import DATA


def _load(name):
    with open(os.path.join(DATA, "hw", name)) as fh:
        return json.load(fh)


class TestMatch(unittest.TestCase):
    def setUp(self):
        self.nodes = _load("nodes.json")
        self.jobs = _load("jobs.json")

    def test_place_in_order_like_the_cli(self):
        with rhizos.Matcher("cheapest", self.nodes) as m:
            self.assertEqual(len(m), len(self.nodes))
            got = m.place_all(self.jobs)
        placed = {p["job"]: p["node"] for p in got}
        self.assertEqual(placed["train-70b"], "a100-box")
        self.assertEqual(placed["render"], "rtx-4080")
        self.assertIsNone(placed["huge-vram"])
        huge = [p for p in got if p["job"] == "huge-vram"][0]
        self.assertEqual(huge["reason"],
                         "needs 81920 MB VRAM; the largest free GPU has 40960 MB")
        self.assertEqual([p for p in got if p["job"] == "train-70b"][0]["cost_micros"], 2600000)   # $2.60

    def test_reserve_and_release(self):
        node = {"id": "one-gpu", "cpu": {"cores": 8}, "memory_mb": 32768,
                "gpus": [{"vendor": "nvidia", "vram_mb": 24576,
                          "compute_capability": "8.9"}],
                "prices": {"gpu_hour_micros": 100}}
        job = {"id": "j", "requirements": {"gpu": {"count": 1}, "estimate_seconds": 1800}}
        with rhizos.Matcher() as m:
            self.assertEqual(m.add_node(node), 0)
            p = m.place(job)
            self.assertEqual((p.job, p.node, p.cost_micros), ("j", "one-gpu", 50))
            self.assertIsNone(m.place(job))           # the only GPU is taken
            self.assertIn("GPU", m.explain(job))
            self.assertEqual(m.usage("one-gpu")["gpus_used"], 1)
            m.release(p)
            self.assertEqual(m.usage(0)["gpus_used"], 0)
            with self.assertRaises(rhizos.NotFound):
                m.release(p)                          # a ticket is used once
            self.assertEqual(m.explain(job), "")
            self.assertIsNotNone(m.place(json.dumps(job)))
            st = m.stats()
            self.assertEqual((st["placements"], st["releases"]), (2, 1))
            with self.assertRaises(rhizos.Error) as cm:
                m.add_node(node)
            self.assertEqual(cm.exception.code, "RZ_EDUPLICATE")
            m.remove_node("one-gpu")
            with self.assertRaises(rhizos.NotFound):
                m.remove_node("ghost")
            with self.assertRaises(rhizos.NotFound):
                m.usage("ghost")

    def test_bad_input(self):
        with self.assertRaises(rhizos.InvalidArgument):
            rhizos.Matcher("random")
        with rhizos.Matcher() as m:
            with self.assertRaises(rhizos.Error) as cm:
                m.add_node({"id": "x", "memory_mb": -5})
            self.assertTrue(cm.exception.code.startswith("RZ_E"))
            with self.assertRaises(rhizos.Error):
                m.place("[not json")
            with self.assertRaises(rhizos.Error):
                m.add_node("{" * 10000)

    def test_cost_estimate(self):
        node = {"id": "n", "cpu": {"cores": 4}, "memory_mb": 4096,
                "prices": {"cpu_hour_micros": 10}}
        self.assertEqual(rhizos.estimate_cost(
            node, {"cpu_cores": 2, "estimate_seconds": 3600}), 20)

    def test_use_after_close(self):
        m = rhizos.Matcher(nodes=self.nodes)
        m.close()
        for call in (lambda: m.place(self.jobs[0]), lambda: m.nodes,
                     lambda: m.release(1), lambda: m.stats(), lambda: len(m)):
            with self.assertRaises(rhizos.ClosedError):
                call()

    def test_detect_hardware(self):
        caps = rhizos.detect_hardware()
        self.assertGreaterEqual(caps["cpu"]["cores"], 1)
        self.assertGreater(caps["memory_mb"], 0)


if __name__ == "__main__":
    unittest.main()
