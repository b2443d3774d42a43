#!/usr/bin/env python3
"""End-to-end: docker steps through the network on loopback, against the
real engine of scripts/containers-up: an orchestrator, rhizos-nodes pointed
at the engine with --container-host, and the CLI deploying container flows.
Balances are checked exactly as network.py does. A node killed with -9
mid-container and restarted reaps the container it left and the job still
finishes, charged once.

Usage: containers_network.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT
Skipped (exit 77) when RHIZOS_TEST_DOCKER_HOST is unset."""
import os
import signal
import sys
import unittest

HOST = os.environ.get("RHIZOS_TEST_DOCKER_HOST", "")
if not HOST:
    print("RHIZOS_TEST_DOCKER_HOST is unset: no container engine to test "
          "against (scripts/containers-up starts one)")
    sys.exit(77)

import network  # noqa: E402  (reads the same argv)
from containers import containers  # noqa: E402
from harness import Proc, set_config, start_orchestrator, wait_until  # noqa: E402

ROOT, NODE, ORCH = network.ROOT, network.NODE, network.ORCH
TEST_MODULES = os.path.join(ROOT, "tests", "e2e", "modules")
WORDCOUNT = os.path.join(ROOT, "examples", "flows", "containers",
                         "container-wordcount.yaml")


class ContainerNetwork(network.Base):
    def start_orchestrator(self):
        self.orch = start_orchestrator(
            ORCH, self.data, ["--quiet", "--node-timeout-ms",
                              str(self.node_timeout_ms),
                              "--modules", TEST_MODULES],
            admin_key=network.ADMIN, cwd=ROOT, port=self.port)

    def init_node(self, name, price):
        data = super().init_node(name, price)
        set_config(data, "container", "host", '"%s"' % HOST)
        return data

    def run_node(self, data):
        n = Proc([NODE, "start", "--data", data, "--json", "--modules",
                  TEST_MODULES, *network.SANDBOX], cwd=ROOT)
        n.data = data
        self.nodes.append(n)
        return n

    def test_container_flow_pays_exactly(self):
        node = self.start_node("node1", network.PRICES[0])
        with open(WORDCOUNT) as f:   # the example, with a price cap per step
            text = f.read().replace("    module: ", "    max_cost_cents: 50000\n"
                                    "    module: ")
        dep = self.deploy_and_watch(self.flow_file("wordcount.yaml", text))
        st = self.status(dep)
        self.assertEqual(st["steps"]["count"]["outputs"],
                         {"words": 28, "unique": 22, "lines": 1})
        jobs = [self.job(s["job"]) for s in st["steps"].values()]
        for j in jobs:
            self.assertEqual((j["status"], j["node"]), ("succeeded", node.id), j)
        charged = self.check_money(jobs)
        self.assertEqual(st["charged_cents"], charged, st)
        count = st["steps"]["count"]["job"]
        self.assertEqual(len(self.settlements(count)), 1)
        self.assertEqual(containers("io.rhizos.job=%d" % count), [])
        self.stop_orchestrator()
        self.verify_ledger()

    def test_node_killed_mid_container_reaps_and_finishes(self):
        first = self.start_node("node1", network.PRICES[0])
        flow = self.flow_file("nap.yaml", (
            "flux: 1\nname: ctr-nap\nsteps:\n"
            "  nap:\n    module: ctr-nap@1\n    max_cost_cents: 50000\n"))
        dep = self.cli_json("flow", "deploy", flow, key=self.key)["id"]
        nap = self.cli_json("flow", "status", str(dep),
                            key=self.key)["steps"]["nap"]["job"]
        try:
            wait_until(lambda: containers("io.rhizos.job=%d" % nap), 30,
                       "the container of job %d" % nap)
        except AssertionError:
            raise AssertionError(first.output() + str(self.job(nap)))
        first.stop(signal.SIGKILL)
        self.nodes.remove(first)
        # The engine keeps it: a kill -9 of the node is not one of the
        # container.
        self.assertTrue(containers("io.rhizos.job=%d" % nap))
        again = self.run_node(first.data)
        again.id, again.account, again.name = first.id, first.account, first.name
        try:   # generous: a loaded 2-core machine answers /version slowly
            again.wait_for(lambda: [e for e in again.events()
                                    if e.get("event") == "reaped"], 90,
                           "the restarted node to reap its container")
        except AssertionError:
            raise AssertionError(again.output() + str(self.job(nap)))
        self.cli("flow", "watch", str(dep), key=self.key, timeout=120)
        st = self.status(dep)
        self.assertEqual(st["steps"]["nap"]["outputs"], {"slept": 6})
        j = self.job(nap)
        self.assertGreaterEqual(j["attempt"], 2, j)
        self.assertEqual(len(self.settlements(nap)), 1)
        self.assertEqual(containers("io.rhizos.job=%d" % nap), [])
        self.check_money(self.client_jobs())
        self.stop_orchestrator()
        self.verify_ledger()


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
