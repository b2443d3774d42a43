#!/usr/bin/env python3
"""End-to-end: redundant execution, one liar among three nodes.

An orchestrator, two real `rhizos-node`s and a third node speaking the raw
API that posts invented outputs (signed with its own key, so the lie is
attributable). A client submits a job with `verify: {replicas: 3}`: the
three runs go to three distinct nodes, the two honest runs agree, the
liar's run disagrees. The job succeeds with the honest outputs; the two
honest nodes are paid their runs (cost less the fee); the liar is paid
nothing and its record counts a disagreement (its reputation falls); the
client is charged exactly the two honest runs and nothing stays held.
`verify` outside {"replicas": 1..5} is refused with a clear error. The
orchestrator killed between votes loses nothing; a deployed flow's step
with replicas keeps the majority's outputs for the next step.

Usage: replicas.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT"""
import json
import signal
import sys
import threading
import time
import unittest

from harness import http
from network import ADMIN, CREDITS, KEYS, PRICES, Base, fee


class Replicas(Base):
    def liar(self, nid, tok, taken):
        """Take one run and answer it with invented outputs."""
        st, a = http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=20" % nid, tok,
                     timeout=30)
        if st != 200:
            taken.append(None)
            return
        taken.append(a["job"])
        time.sleep(0.05)   # the run time it reports has passed
        http(self.base, "POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]),
             tok, KEYS[nid].signed(a["job"], {"attempt": a["attempt"], "run_ms": 20,
                                              "outputs": {"message": "invented"}}))

    def test_liar_is_not_paid(self):
        honest = [self.start_node("honest%d" % i, PRICES[0]) for i in (1, 2)]
        lid, ltok, lacct = self.fake_node()
        taken = []
        t = threading.Thread(target=self.liar, args=(lid, ltok, taken), daemon=True)
        t.start()
        time.sleep(0.3)   # its poll is held when the job comes
        for bad in ({"replicas": 6}, {"replicas": 0}, {"replicas": 2.5}, {"k": 2}, 3):
            st, doc = http(self.base, "POST", "/api/v1/jobs", self.key,
                           {"module": "echo", "verify": bad})
            self.assertEqual((st, doc["error"]["code"]), (400, "RZ_EINVAL"), doc)
            self.assertIn("replicas", doc["error"]["message"])
        job = self.api("POST", "/api/v1/jobs", key=self.key, code=201,
                       body={"module": "echo", "inputs": {"message": "hi"},
                             "max_cost_micros": 5000000,
                             "verify": {"replicas": 3}})
        self.assertEqual(job["verify"], {"replicas": 3})
        self.assertEqual(job["max_cost_micros"], 3 * 5000000)   # three holds
        t.join(40)
        self.assertTrue(taken and taken[0], "the liar got no run")

        def done():
            j = self.job(job["id"])
            return j if j["status"] not in ("queued", "assigned", "running") else None
        from harness import wait_until
        got = wait_until(done, 60, "the replicated job to finish")
        self.assertEqual(got["status"], "succeeded", got)
        self.assertEqual(got["outputs"], {"message": "hi"})
        runs = got["replicas"]
        self.assertEqual(len(runs), 3, runs)
        self.assertEqual(len({r["node"] for r in runs}), 3, runs)   # distinct nodes
        by_node = {r["node"]: r for r in runs}
        self.assertEqual(set(by_node), {lid} | {n.id for n in honest})
        lie = by_node[lid]
        self.assertEqual((lie["verdict"], lie["paid"], lie["cost_micros"]),
                         ("disagreed", False, 0), lie)
        self.assertEqual(lie["job"], taken[0])
        for n in honest:
            r = by_node[n.id]
            self.assertEqual((r["verdict"], r["paid"]), ("agreed", True), r)
            self.assertGreater(r["cost_micros"], 0, r)
            self.assertEqual(r["digest"], by_node[honest[0].id]["digest"])
        self.assertNotEqual(lie["digest"], by_node[honest[0].id]["digest"])
        # Each other run's own record points at the job.
        for r in runs[1:]:
            self.assertEqual(self.job(r["job"])["replica_of"], job["id"])
        # Money: the client pays the two honest runs, each honest node its
        # run less the fee, the liar nothing; nothing stays held.
        charged = sum(by_node[n.id]["cost_micros"] for n in honest)
        self.assertEqual(got["cost_micros"], charged)
        a = self.api("GET", "/api/v1/accounts/%s" % self.client)
        self.assertEqual((a["debits_micros"], a["pending_micros"]), (charged, 0), a)
        self.assertEqual(a["balance_micros"], CREDITS - charged)
        for n in honest:
            c = by_node[n.id]["cost_micros"]
            acct = self.api("GET", "/api/v1/accounts/%s" % n.account)
            self.assertEqual(acct["balance_micros"], c - fee(c), (n.id, acct))
        liar_acct = self.api("GET", "/api/v1/accounts/%s" % lacct)
        self.assertEqual(liar_acct["balance_micros"], 0, liar_acct)
        stats = self.api("GET", "/api/v1/payments/stats")
        self.assertEqual(stats["held_micros"], 0, stats)
        self.assertEqual(stats["fees_micros"],
                         sum(fee(by_node[n.id]["cost_micros"]) for n in honest))
        # Reputation: the liar's record counts the disagreement.
        nodes = {n["id"]: n for n in
                 self.api("GET", "/api/v1/nodes?limit=1000")["nodes"]}
        rec = nodes[lid]["verification"]["record"]
        self.assertEqual((rec["disagreed"], rec["succeeded"]), (1, 0), rec)
        for n in honest:
            hrec = nodes[n.id]["verification"]["record"]
            self.assertEqual((hrec["succeeded"], hrec["disagreed"]), (1, 0), hrec)
            self.assertLess(nodes[lid]["verification"]["reputation"],
                            nodes[n.id]["verification"]["reputation"])
        # The CLI shows the runs; --replicas is checked before anything is sent.
        out = self.cli("job", str(job["id"]), key=self.key).stdout
        self.assertEqual(out.count(": agreed, paid $"), 2, out)
        self.assertIn("on node %d: disagreed, paid $0" % lid, out)
        p = self.cli("run", "-t", "echo", "--replicas", "9", key=self.key, code=2)
        self.assertIn("--replicas wants a whole number from 1 to 5", p.stderr)
        self.verify_ledger()

    def test_orchestrator_killed_between_votes(self):
        """Two of three runs reported, the orchestrator is killed (-9) and
        restarted: the third report decides; nothing is lost or paid
        twice."""
        fakes = [self.fake_node() for _ in range(3)]
        job = self.api("POST", "/api/v1/jobs", key=self.key, code=201,
                       body={"module": "echo", "inputs": {"message": "hi"},
                             "max_cost_micros": 5000000,
                             "verify": {"replicas": 3}})["id"]
        got = {}
        for nid, tok, _ in fakes:
            st, a = http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, tok)
            self.assertEqual(st, 200, a)
            got[nid] = a
        self.assertEqual(sorted(a["job"] for a in got.values()),
                         [job, job + 1, job + 2])
        time.sleep(0.05)

        def post(nid, tok, outputs):
            a = got[nid]
            self.api("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]),
                     key=tok, body=KEYS[nid].signed(a["job"], {
                         "attempt": a["attempt"], "run_ms": 20, "outputs": outputs}))
        post(fakes[0][0], fakes[0][1], {"message": "hi"})
        post(fakes[1][0], fakes[1][1], {"message": "hi"})
        self.assertEqual(self.job(job)["status"], "running")
        # A run that has voted stays running until its set is decided; a
        # late log chunk must not replace the log its result brought.
        nid, tok, _ = fakes[0]
        st, body = http(self.base, "POST", "/api/v1/nodes/%d/jobs/%d/log" % (
            nid, got[nid]["job"]), tok, {"attempt": got[nid]["attempt"],
                                         "offset": 0, "lines": "late\n"})
        self.assertEqual(st, 409, body)
        self.assertIn("has reported its result", json.dumps(body))
        self.orch.stop(signal.SIGKILL)
        self.start_orchestrator()
        j = self.job(job)
        self.assertEqual([r["verdict"] for r in j["replicas"]], ["pending"] * 3, j)
        post(fakes[2][0], fakes[2][1], {"message": "hi"})
        j = self.job(job)
        self.assertEqual((j["status"], j["outputs"]), ("succeeded", {"message": "hi"}))
        self.assertEqual([r["verdict"] for r in j["replicas"]], ["agreed"] * 3, j)
        # 20 ms at 1 cent a ms: 200000 micros a run, three runs paid once.
        self.assertEqual(j["cost_micros"], 3 * 200000, j)
        a = self.api("GET", "/api/v1/accounts/%s" % self.client)
        self.assertEqual((a["debits_micros"], a["pending_micros"]), (3 * 200000, 0), a)
        for nid, _, acct in fakes:
            n = self.api("GET", "/api/v1/accounts/%s" % acct)
            self.assertEqual(n["balance_micros"], 200000 - fee(200000), (nid, n))
        self.stop_orchestrator()
        self.verify_ledger()

    def test_flow_step_with_replicas(self):
        """A deployed flow's step with verify: {replicas: 3} runs on three
        nodes, one lying: the step keeps the majority's outputs, the next
        step reads them, the liar is not paid. retry with verify, or
        credentials with verify, is refused with a located diagnostic."""
        bad = ("flux: 1\nname: v\nsteps:\n  a:\n    module: echo@1\n"
               "    retry: 3\n    verify: {replicas: 3}\n")
        st, doc = http(self.base, "POST", "/api/v1/flows/deploy", self.key,
                       {"flow": bad})
        self.assertEqual(st, 422, doc)
        d = doc["diagnostics"][0]
        self.assertEqual((d["line"], d["pointer"]), (7, "/steps/a/verify/replicas"), d)
        self.assertIn("verify replicas and retry together", d["message"])
        fakes = {nid: (tok, acct) for nid, tok, acct in
                 (self.fake_node() for _ in range(3))}
        liar = min(fakes)
        flow = ("flux: 1\nname: v\nsteps:\n  a:\n    module: echo@1\n"
                "    max_cost_micros: 5000000\n    verify: {replicas: 3}\n"
                "    inputs: {message: hi}\n"
                "  b:\n    module: echo@1\n    needs: [a]\n    max_cost_micros: 5000000\n"
                "    inputs: {message: \"${{ steps.a.outputs.message }}\"}\n")
        dep = self.api("POST", "/api/v1/flows/deploy", key=self.key, code=201,
                       body={"flow": flow})
        self.assertEqual(dep["held_micros"], 4 * 5000000)   # 3 runs of a, b

        def serve(want):
            """Each fake node takes what it is given and answers: the liar
            lies. Returns {job: node}."""
            done = {}
            for nid, (tok, _) in fakes.items():
                st, a = http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=0" % nid, tok)
                if st != 200:
                    continue
                time.sleep(0.03)
                msg = "lie" if nid == liar else want
                self.api("POST", "/api/v1/nodes/%d/jobs/%d/result" % (nid, a["job"]),
                         key=tok, body=KEYS[nid].signed(a["job"], {
                             "attempt": a["attempt"], "run_ms": 20,
                             "outputs": {"message": msg}}))
                done[a["job"]] = nid
            return done
        runs = serve("hi")
        self.assertEqual(len(runs), 3, runs)
        st = self.api("GET", "/api/v1/flows/%d/status" % dep["id"], key=self.key)
        a_job = st["steps"]["a"]["job"]
        self.assertEqual(st["steps"]["a"]["outputs"], {"message": "hi"}, st)
        ja = self.job(a_job)
        self.assertEqual({r["node"]: r["verdict"] for r in ja["replicas"]},
                         {n: ("disagreed" if n == liar else "agreed") for n in fakes})
        for _ in range(3):   # b: whoever takes it (the liar's b lies too)
            if serve("hi"):
                break
        st = self.api("GET", "/api/v1/flows/%d/status" % dep["id"], key=self.key)
        self.assertEqual(st["steps"]["a"]["status"], "succeeded", st)
        self.assertEqual(st["steps"]["b"]["status"], "succeeded", st)
        liar_acct = self.api("GET", "/api/v1/accounts/%s" % fakes[liar][1])
        jb = self.job(st["steps"]["b"]["job"])
        earned_b = jb["cost_micros"] - fee(jb["cost_micros"]) if jb["node"] == liar else 0
        self.assertEqual(liar_acct["balance_micros"], earned_b, liar_acct)
        self.assertEqual(ja["cost_micros"], 2 * 200000, ja)   # two honest runs
        self.assertEqual(st["charged_micros"], ja["cost_micros"] + jb["cost_micros"], st)
        a = self.api("GET", "/api/v1/accounts/%s" % self.client)
        self.assertEqual((a["debits_micros"], a["pending_micros"]),
                         (st["charged_micros"], 0), a)
        self.stop_orchestrator()
        self.verify_ledger()

if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
