#!/usr/bin/env python3
"""End-to-end: the real `rhizos` binary on every example flow and on broken
flows. Usage: flow_cli.py RHIZOS SOURCE_ROOT"""
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from harness import run

RHIZOS, ROOT = sys.argv[1], sys.argv[2]
FLOWS = os.path.join(ROOT, "examples", "flows")
DIAG = re.compile(r"^(.+):(\d+):(\d+): error: (.+)$")


def rhizos(*args, data=None, stdin=None):
    cmd = [RHIZOS, *args]
    if data:
        cmd += ["--data", data]
    return run(cmd, cwd=ROOT, stdin=stdin, timeout=120)


class FlowRunExamples(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.data = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def run_json(self, name, *extra):
        p = rhizos("flow", "run", os.path.join(FLOWS, name), "--json", *extra,
                   data=self.data)
        self.assertTrue(p.stdout.strip(), p.stderr)
        return p, json.loads(p.stdout)

    def examples(self, folder=FLOWS):
        return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                      if f.endswith((".yaml", ".yml", ".json")))

    def test_every_example_validates(self):
        files = self.examples() + self.examples(os.path.join(FLOWS, "catalog"))
        self.assertGreaterEqual(len(files), 6)
        p = rhizos("flow", "validate", *files)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_every_example_runs(self):
        for path in self.examples():
            with self.subTest(flow=os.path.basename(path)):
                p = rhizos("flow", "run", path, "--json", data=self.data)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(json.loads(p.stdout)["status"], "succeeded")

    def test_catalog_flows_say_why_they_cannot_run_here(self):
        # The catalog's modules run in containers: without an engine that
        # answers, the run says so, naming the steps, before anything runs.
        path = os.path.join(FLOWS, "catalog", "transcribe-summarize.yaml")
        p = rhizos("flow", "run", path, "--json", "--container-host",
                   "unix:///nonexistent/rhizos-engine.sock", data=self.data)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, "")
        self.assertRegex(p.stderr, r"step '\w+' \(image [^)]+\)")
        self.assertIn("no container engine answers at "
                      "/nonexistent/rhizos-engine.sock", p.stderr)
        self.assertIn("nothing was run", p.stderr)
        runs = rhizos("flow", "runs", "--json", data=self.data)
        self.assertEqual(json.loads(runs.stdout), [])

    def test_wordcount_counts_words(self):
        p, doc = self.run_json("wordcount.yaml")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(doc["status"], "succeeded")
        for step in doc["steps"].values():
            self.assertEqual(step["status"], "succeeded")
            self.assertEqual(step["attempts"], 1)
        self.assertTrue(doc["outputs"], "final step outputs are reported")

    def test_wordcount_builder_json_runs(self):
        p, doc = self.run_json("wordcount.json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(doc["status"], "succeeded")

    def test_flaky_step_is_retried(self):
        p, doc = self.run_json("flaky.yaml")
        self.assertEqual(p.returncode, 0, p.stderr)
        attempts = [s["attempts"] for s in doc["steps"].values()]
        self.assertIn(3, attempts)

    def test_branch_skips_one_side(self):
        p, doc = self.run_json("branch.yaml")
        self.assertEqual(p.returncode, 0, p.stderr)
        states = sorted(s["status"] for s in doc["steps"].values())
        self.assertIn("skipped", states)
        self.assertIn("succeeded", states)

    def test_join_runs_after_either_branch(self):
        # if/else: exactly one branch runs; `report` (join: any_succeeded)
        # runs after whichever it was.
        for value, ran, other in (("42", "high", "low"), ("3", "low", "high")):
            p, doc = self.run_json("join.yaml", "--input", "value=" + value)
            self.assertEqual(p.returncode, 0, p.stderr)
            st = doc["steps"]
            self.assertEqual(st[ran]["status"], "succeeded")
            self.assertEqual(st[other]["status"], "skipped")
            self.assertEqual(st["report"]["status"], "succeeded")
            self.assertEqual(st["report"]["outputs"]["message"],
                             st[ran]["outputs"]["message"])

    def test_on_exit_and_flow_outputs(self):
        # primary fails (handled): on_exit runs last and sees it; the
        # flow's declared outputs are the record's "outputs".
        p, doc = self.run_json("on_exit.yaml")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(doc["status"], "succeeded")
        self.assertEqual(doc["failed_steps"], ["primary"])
        self.assertEqual(doc["outputs"], {
            "primary": "failed", "attempts": 2,
            "alert": "run succeeded; failed steps: [primary]"})
        p = rhizos("flow", "run", os.path.join(FLOWS, "on_exit.yaml"), "--input",
                   "failures=0", data=self.data)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('alert: "run succeeded; failed steps: []"', p.stdout)
        self.assertNotIn("failed (handled)", p.stdout)

    def test_for_each_runs_each_element(self):
        # Lists in element order; each element retried on its own; the
        # record and `flow runs RUN_ID` show every element as it ran.
        p, doc = self.run_json("for_each.yaml", "--input",
                               'cities=["rome","oslo","lima","kyiv","nuuk"]')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(doc["outputs"]["greetings"],
                         ["0: hello rome", "1: hello oslo", "2: hello lima",
                          "3: hello kyiv", "4: hello nuuk"])
        self.assertEqual(doc["outputs"]["attempts"], [1, 2, 3])
        els = doc["steps"]["retries"]["elements"]
        self.assertEqual([(e["status"], e["attempts"]) for e in els],
                         [("succeeded", 1), ("succeeded", 2), ("succeeded", 3)])
        self.assertEqual(doc["steps"]["retries"]["attempts"], 6)
        shown = rhizos("flow", "runs", doc["id"], data=self.data)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn("  element 2: succeeded, 3 attempts", shown.stdout)
        self.assertIn('      inputs   {"message":"4: hello nuuk"}', shown.stdout)
        # Each step's and element's time is its own run time (seconds, not
        # the epoch: the record's started_ms counts from the run's start).
        times = re.findall(r"attempts?, ([0-9.]+)s", shown.stdout)
        self.assertTrue(times, shown.stdout)
        for t in times:
            self.assertLess(float(t), 120, shown.stdout)
        # An empty list succeeds with empty lists; a list too long fails
        # the step, saying so.
        p, doc = self.run_json("for_each.yaml", "--input", "cities=[]")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(doc["outputs"]["greetings"], [])
        p, doc = self.run_json("for_each.yaml", "--input",
                               "cities=" + json.dumps(["x"] * 10001))
        self.assertEqual(p.returncode, 1)
        self.assertEqual(doc["steps"]["greet"]["error"],
                         "for_each gives 10001 elements; a step runs at most 10000")

    def test_run_cost_recorded(self):
        # An embedded run is charged nothing; its record says what its
        # steps' time would cost to rent at the shipped prices, per step,
        # per for_each element and in all, and `flow runs` shows it.
        p, doc = self.run_json("for_each.yaml")
        self.assertEqual(p.returncode, 0, p.stderr)
        steps = doc["steps"]
        for s in steps.values():
            self.assertGreater(s["run_ms"], 0)
            self.assertIn("cost_micros", s)
            els = s.get("elements", [])
            if els:
                self.assertEqual(s["run_ms"], sum(e["run_ms"] for e in els))
                self.assertEqual(s["cost_micros"], sum(e["cost_micros"] for e in els))
        self.assertEqual(doc["run_ms"], sum(s["run_ms"] for s in steps.values()))
        self.assertEqual(doc["cost_micros"], sum(s["cost_micros"] for s in steps.values()))
        self.assertGreater(doc["cost_micros"], 0)
        self.assertNotIn("unpriced_steps", doc)
        listed = rhizos("flow", "runs", data=self.data)
        money = "$%d.%s" % (doc["cost_micros"] // 1000000,
                            ("%06d" % (doc["cost_micros"] % 1000000)).rstrip("0").ljust(2, "0"))
        self.assertRegex(listed.stdout, r"%s +succeeded +3 +[0-9.]+ +%s  " % (
            re.escape(doc["id"]), re.escape(money)))
        shown = rhizos("flow", "runs", doc["id"], data=self.data)
        self.assertIn("cost: %s to rent for " % money, shown.stdout)
        # A node table no step fits: the steps are named, nothing is priced.
        table = os.path.join(self.tmp.name, "tiny.json")
        with open(table, "w") as f:
            json.dump({"source": "t", "date": "2026-01-01", "nodes": [
                {"id": "tiny", "cpu": {"cores": 1}, "memory_mb": 16,
                 "adapters": ["wasm"], "prices": {"gpu_hour_micros": 0,
                 "cpu_hour_micros": 1, "memory_gb_hour_micros": 1}}]}, f)
        p, doc = self.run_json("wordcount.yaml", "--prices", table)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(doc["cost_micros"], 0)
        self.assertEqual(doc["unpriced_steps"], list(doc["steps"]))
        # Tables that cannot be read: an error, and nothing runs.
        p = rhizos("flow", "run", os.path.join(FLOWS, "wordcount.yaml"), "--prices",
                   os.path.join(self.tmp.name, "nope.json"), data=self.data)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(json.loads(rhizos("flow", "runs", "--json",
                                               data=self.data).stdout)), 2)

    def test_runs_pruned(self):
        # The run history's retention: --prune by hand, and the pass each
        # recorded run makes (RHIZOS_RUNS_KEEP); a killed run's stale live
        # log goes too, a held one stays.
        def flow_run(keep):
            env = dict(os.environ, RHIZOS_RUNS_KEEP=keep)
            p = run([RHIZOS, "flow", "run", os.path.join(FLOWS, "wordcount.yaml"), "--json",
                     "--data", self.data], cwd=ROOT, env=env, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            return json.loads(p.stdout)["id"]

        def listed():
            return [r["id"] for r in json.loads(rhizos("flow", "runs", "--json", "--limit",
                                                       "0", data=self.data).stdout)]
        a, b = flow_run("0"), flow_run("0")
        live = os.path.join(self.data, "live")
        os.makedirs(live, exist_ok=True)
        old = os.path.join(live, "gone.log")
        with open(old, "w") as f:
            f.write("a | line\n")
        os.utime(old, (time.time() - 40 * 86400,) * 2)
        held = os.path.join(live, "running.log")
        with open(held, "w") as f:
            f.write("a | line\n")
        os.utime(held, (time.time() - 40 * 86400,) * 2)
        hf = open(held)
        fcntl.flock(hf, fcntl.LOCK_EX)   # as a run that still writes it
        p = rhizos("flow", "runs", "--prune", "--older-than", "30d", "--json", data=self.data)
        hf.close()
        self.assertEqual(json.loads(p.stdout), {"removed_runs": 0, "removed_live_logs": 1,
                                                "removed_blobs": 0, "removed_blob_bytes": 0})
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(held))
        self.assertEqual(sorted(listed()), sorted([a, b]))
        # Each run prunes what ended more than RHIZOS_RUNS_KEEP ago.
        time.sleep(1.2)
        c = flow_run("1s")
        self.assertEqual(listed(), [c])
        p = rhizos("flow", "runs", "--prune", "--older-than", "0s", data=self.data)
        self.assertIn("removed 1 run ", p.stdout)
        self.assertEqual(listed(), [])
        for bad in (["--prune", "--older-than", "2w"], ["--older-than", "3d"],
                    ["--prune", "--older-than", "-1"]):
            p = rhizos("flow", "runs", *bad, data=self.data)
            self.assertEqual(p.returncode, 2, bad)

    def test_subflow_three_levels(self):
        # A sub-flow whose sub-flow runs a third: the child's steps run as
        # steps of this run (ids <step>-<child step>), its outputs come back
        # through the step that ran it, on both branches of the child.
        for value, branch, msg in (("42", "high", "above"), ("3", "low", "at or below")):
            p, doc = self.run_json("subflow.yaml", "--input", "value=" + value)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(doc["outputs"], {
                "report": "classifying %s: %s (%s)" % (value, msg, branch),
                "branch": branch, "shout": "classifying %s: %s!" % (value, msg)})
            self.assertEqual(list(doc["steps"]), [
                "start", "classify-check", "classify-high", "classify-low",
                "classify-pick", "classify-note-say", "report"])
            skipped = "classify-low" if branch == "high" else "classify-high"
            self.assertEqual(doc["steps"][skipped]["status"], "skipped")
        shown = rhizos("flow", "runs", doc["id"], data=self.data)
        self.assertIn("step classify-note-say: succeeded, 1 attempt", shown.stdout)
        # export keeps the flow as written: the step still names its file.
        p = rhizos("flow", "export", os.path.join(FLOWS, "subflow.yaml"), "--format",
                   "json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["steps"]["classify"]["flow"],
                         "subflows/classify.yaml")

    def test_subflow_mistakes_are_located(self):
        # Cycles between files, a child with an error, an unknown output:
        # exit 1, each at its file:line:column, in YAML and builder JSON.
        d = self.tmp.name
        files = {
            "a.yaml": "flux: 1\nsteps:\n  s: {module: echo@1}\n  b:\n    flow: b.json\n",
            "b.json": '{"nodes": [{"id": "back", "flow": "a.yaml"}]}',
            "p.yaml": "flux: 1\nsteps:\n  c:\n    flow: c.yaml\n"
                      "  d:\n    module: echo@1\n    needs: [c]\n"
                      "    inputs: {message: \"${{ steps.c.outputs.nope }}\"}\n",
            "c.yaml": "flux: 1\nsteps:\n  x: {module: echo@1, inputs: {mesage: 1}}\n"
                      "outputs:\n  m: \"${{ steps.x.outputs.message }}\"\n",
        }
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        p = rhizos("flow", "validate", os.path.join(d, "a.yaml"))
        self.assertEqual(p.returncode, 1)
        got = [DIAG.match(l).groups() for l in p.stderr.splitlines() if DIAG.match(l)]
        self.assertIn((os.path.join(d, "b.json"), "1", "35",
                       "sub-flows form a cycle: %s -> %s -> %s" % (
                           os.path.join(d, "a.yaml"), os.path.join(d, "b.json"),
                           os.path.join(d, "a.yaml"))), got)
        self.assertIn((os.path.join(d, "a.yaml"), "5", "11",
                       "sub-flow b.json of step 'b' is not valid (its problems are above)"),
                      got)
        p = rhizos("flow", "run", os.path.join(d, "p.yaml"), data=self.data)
        self.assertEqual(p.returncode, 1)
        got = [DIAG.match(l).groups() for l in p.stderr.splitlines() if DIAG.match(l)]
        self.assertEqual(got[0][:3], (os.path.join(d, "c.yaml"), "3", "40"), got)
        self.assertIn("has no input 'mesage'", got[0][3])
        p = rhizos("flow", "runs", data=self.data)
        self.assertIn("no runs recorded", p.stdout)
        with open(os.path.join(d, "c.yaml"), "w") as f:
            f.write(files["c.yaml"].replace("mesage", "message"))
        p = rhizos("flow", "validate", os.path.join(d, "p.yaml"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("%s:8:23: error: sub-flow step 'c' (c.yaml) has no output 'nope' "
                      "(its outputs: m)" % os.path.join(d, "p.yaml"), p.stderr)

    def test_for_each_over_subflow(self):
        # A sub-flow run once per element, in YAML and in the builder format:
        # the elements end out of order (element 1 before element 0), the outputs
        # come back in list order, element i of the second child step reading
        # element i of the first.
        d = self.tmp.name
        with open(os.path.join(d, "nap.yaml"), "w") as f:
            f.write("flux: 1\ninputs:\n  s: {type: number}\n  tag: {type: string}\n"
                    "steps:\n  nap:\n    module: sleep@1\n"
                    "    config: {seconds: \"${{ inputs.s }}\"}\n"
                    "  say:\n    module: echo@1\n    needs: [nap]\n"
                    "    inputs: {message: \"${{ inputs.tag }} ${{ steps.nap.outputs.started }}\"}\n"
                    "outputs:\n  said: \"${{ steps.say.outputs.message }}\"\n"
                    "  finished: \"${{ steps.nap.outputs.finished }}\"\n")
        naps = [0.8, 0, 0.4, 0.2]
        yaml_flow = ("flux: 1\nsteps:\n  m:\n    flow: nap.yaml\n"
                     "    for_each: %s\n    inputs: {s: \"${{ item }}\", tag: \"#${{ index }}\"}\n"
                     "  after:\n    module: echo@1\n    needs: [m]\n"
                     "    inputs: {message: \"${{ length(steps.m.outputs.said) }}\"}\n"
                     "outputs:\n  said: \"${{ steps.m.outputs.said }}\"\n"
                     "  finished: \"${{ steps.m.outputs.finished }}\"\n" % json.dumps(naps))
        builder = {"nodes": [
            {"id": "m", "flow": "nap.yaml", "for_each": naps,
             "inputs": {"s": "${{ item }}", "tag": "#${{ index }}"}},
            {"id": "after", "moduleId": "echo", "moduleVersion": "1", "needs": ["m"],
             "inputs": {"message": "${{ length(steps.m.outputs.said) }}"}}],
            "outputs": {"said": "${{ steps.m.outputs.said }}",
                        "finished": "${{ steps.m.outputs.finished }}"}}
        for name, text in (("map.yaml", yaml_flow), ("map.json", json.dumps(builder))):
            with self.subTest(format=name):
                path = os.path.join(d, name)
                with open(path, "w") as f:
                    f.write(text)
                p = rhizos("flow", "run", path, "--json", "--jobs", "4", data=self.data)
                self.assertEqual(p.returncode, 0, p.stderr)
                doc = json.loads(p.stdout)
                self.assertEqual(list(doc["steps"]), ["m-nap", "m-say", "after"])
                said = doc["outputs"]["said"]
                self.assertEqual([x.split(" ")[0] for x in said], ["#0", "#1", "#2", "#3"])
                fin = doc["outputs"]["finished"]
                self.assertLess(fin[1], fin[0])   # ended out of order
                self.assertEqual(doc["steps"]["after"]["outputs"]["message"], "4")
                self.assertEqual(len(doc["steps"]["m-say"]["elements"]), 4)
        # Mistakes are located at the step, exit 1, in both formats.
        with open(os.path.join(d, "bad.yaml"), "w") as f:
            f.write(yaml_flow.replace('"${{ steps.m.outputs.finished }}"',
                                      '"${{ steps.m.outputs.nope }}"'))
        with open(os.path.join(d, "kid.yaml"), "w") as f:
            f.write("flux: 1\nsteps:\n  a: {module: echo@1, for_each: [1]}\n"
                    "outputs:\n  o: \"${{ steps.a.outputs.message }}\"\n")
        with open(os.path.join(d, "bad.json"), "w") as f:
            f.write('{"nodes": [{"id": "m", "flow": "kid.yaml", "for_each": [1, 2]}]}')
        p = rhizos("flow", "validate", os.path.join(d, "bad.yaml"), os.path.join(d, "bad.json"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("%s:13:13: error: sub-flow step 'm' (nap.yaml) has no output 'nope'"
                      % os.path.join(d, "bad.yaml"), p.stderr)
        self.assertIn("%s:1:56: error: 'm' maps a list over sub-flow kid.yaml, whose steps run "
                      "once per element, but its step 'a' maps a list of its own"
                      % os.path.join(d, "bad.json"), p.stderr)

    def test_named_subflow_here(self):
        # flow://NAME@N here: without RHIZOS_FLOWS a located error (exit 1,
        # both formats, text and --json), never a pass; with it, read from
        # that folder and run.
        d = self.tmp.name
        files = {"top.yaml": "flux: 1\nname: top\nsteps:\n  a:\n    flow: flow://shout@1\n"
                             "    inputs: {text: hey}\noutputs:\n"
                             "  o: \"${{ steps.a.outputs.loud }}\"\n",
                 "top.json": '{"nodes": [{"id": "a", "flow": "flow://shout@1",'
                             ' "inputs": {"text": "hey"}}]}',
                 "named/shout@1.yaml": "flux: 1\ninputs:\n  text: {type: string}\n"
                                       "steps:\n  say:\n    module: echo@1\n"
                                       "    inputs: {message: \"${{ inputs.text }}!\"}\n"
                                       "outputs:\n  loud: \"${{ steps.say.outputs.message }}\"\n"}
        os.makedirs(os.path.join(d, "named"))
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        env = {k: v for k, v in os.environ.items() if k != "RHIZOS_FLOWS"}
        top = [os.path.join(d, "top.yaml"), os.path.join(d, "top.json")]
        for verb in ("validate", "plan", "run"):
            p = run([RHIZOS, "flow", verb, top[0]] + (["--data", self.data] if verb == "run"
                                                      else []), cwd=ROOT, env=env)
            self.assertEqual(p.returncode, 1, (verb, p.stdout, p.stderr))
            self.assertIn("%s:5:11: error: sub-flow flow://shout@1 of step 'a' is a named "
                          "flow" % top[0], p.stderr)
        p = run([RHIZOS, "flow", "validate", *top], cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("%s:1:32: error: sub-flow flow://shout@1 of step 'a' is a named flow"
                      % top[1], p.stderr)
        p = run([RHIZOS, "flow", "validate", "--json", *top], cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 1)
        got = [(x["file"], x["line"], x["column"], x["pointer"]) for x in json.loads(p.stdout)]
        self.assertEqual(got, [(top[1], 1, 32, "/nodes/0/flow"),
                               (top[0], 5, 11, "/steps/a/flow")])
        env["RHIZOS_FLOWS"] = os.path.join(d, "named")
        p = run([RHIZOS, "flow", "run", top[0], "--json", "--data", self.data], cwd=ROOT,
                env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["outputs"], {"o": "hey!"})

    def test_for_each_max_parallel(self):
        # Four naps, two at a time: the third and fourth start only after
        # one of the first two ended, and the runner runs two at once even
        # though the flow has a single step.
        flow = os.path.join(self.tmp.name, "naps.yaml")
        with open(flow, "w") as f:
            f.write("flux: 1\nname: naps\nsteps:\n  nap:\n    module: sleep@1\n"
                    "    for_each: [1, 2, 3, 4]\n    max_parallel: 2\n"
                    "    config: {seconds: 0.3}\n")
        p = rhizos("flow", "run", flow, "--json", "--jobs", "4", data=self.data)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)["steps"]["nap"]["outputs"]
        started, finished = out["started"], out["finished"]
        first_end = min(finished[0], finished[1])
        self.assertGreaterEqual(min(started[2], started[3]), first_end)
        self.assertLess(max(started[0], started[1]), first_end)   # together

    def test_fallback_runs_when_primary_fails(self):
        # primary fails both attempts: the fallback reads its status, error
        # and attempts; the failure is handled, so the run succeeds.
        p, doc = self.run_json("fallback.yaml")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(doc["status"], "succeeded")
        st = doc["steps"]
        self.assertEqual(st["primary"]["status"], "failed")
        self.assertEqual(st["primary"]["attempts"], 2)
        self.assertEqual(st["fallback"]["status"], "succeeded")
        msg = st["fallback"]["outputs"]["message"]
        self.assertTrue(msg.startswith("primary failed after 2 attempts: "), msg)
        self.assertIn("fails on purpose", msg)
        self.assertEqual(st["report"]["outputs"]["message"], "handled: failed")
        # primary recovers on its second attempt: the fallback is skipped.
        p, doc = self.run_json("fallback.yaml", "--input", "failures=1")
        self.assertEqual(p.returncode, 0, p.stderr)
        st = doc["steps"]
        self.assertEqual(st["fallback"]["status"], "skipped")
        self.assertEqual(st["report"]["outputs"]["message"],
                         "primary succeeded on attempt 2")

    def test_inputs_flow_takes_input(self):
        p, doc = self.run_json("inputs.yaml", "--input", "who=Ada")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Hello, Ada!", json.dumps(doc["outputs"]))
        p, doc = self.run_json("inputs.yaml")
        self.assertIn("Hello, world!", json.dumps(doc["outputs"]))

    def test_one_run_in_detail(self):
        _, doc = self.run_json("on_exit.yaml")
        p = rhizos("flow", "runs", doc["id"], "--json", data=self.data)
        self.assertEqual(p.returncode, 0, p.stderr)
        rec = json.loads(p.stdout)
        self.assertEqual(rec["id"], doc["id"])
        self.assertEqual(rec["outputs"], doc["outputs"])
        self.assertEqual(rec["failed_steps"], ["primary"])
        report = rec["steps"]["report"]
        self.assertEqual(report["inputs"], {"message": "primary: failed"})
        self.assertLessEqual(rec["started_ms"], report["started_ms"])
        self.assertLessEqual(report["started_ms"], report["finished_ms"])
        self.assertLessEqual(report["finished_ms"], rec["finished_ms"])
        self.assertIn("fails on purpose", rec["steps"]["primary"]["error"])
        p = rhizos("flow", "runs", doc["id"], data=self.data)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("step primary: failed, 2 attempts", p.stdout)
        self.assertIn('inputs   {"message":"primary: failed"}', p.stdout)
        self.assertIn("| flaky: attempt 2 fails on purpose", p.stdout)
        p = rhizos("flow", "runs", "run-nosuch", data=self.data)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no run 'run-nosuch' recorded", p.stderr)

    def test_runs_are_recorded(self):
        self.run_json("wordcount.yaml")
        self.run_json("branch.yaml")
        p = rhizos("flow", "runs", "--json", data=self.data)
        self.assertEqual(p.returncode, 0, p.stderr)
        runs = json.loads(p.stdout)
        self.assertEqual(len(runs), 2)
        self.assertEqual({r["status"] for r in runs}, {"succeeded"})
        table = rhizos("flow", "runs", data=self.data)
        self.assertIn("succeeded", table.stdout)

    def test_runs_limit(self):
        # 22 quick runs: the list stops at the newest 20 unless told.
        for _ in range(22):
            p = rhizos("flow", "run", os.path.join(FLOWS, "inputs.yaml"), "-q",
                       data=self.data)
            self.assertEqual(p.returncode, 0, p.stderr)
        every = json.loads(rhizos("flow", "runs", "--json", "--limit", "0",
                                  data=self.data).stdout)
        self.assertEqual(len(every), 22)
        starts = [r["started_ms"] for r in every]
        self.assertEqual(starts, sorted(starts, reverse=True))   # newest first
        self.assertEqual(json.loads(rhizos("flow", "runs", "--json",
                                           data=self.data).stdout), every[:20])
        self.assertEqual(json.loads(rhizos("flow", "runs", "--json", "--limit", "3",
                                           data=self.data).stdout), every[:3])
        table = rhizos("flow", "runs", data=self.data).stdout.splitlines()
        self.assertEqual(len(table), 1 + 20 + 1, table)
        self.assertEqual(table[-1], "(2 more; --limit 0 for all)")
        self.assertIn(every[0]["id"], table[1])
        table = rhizos("flow", "runs", "--limit", "0", data=self.data).stdout
        self.assertEqual(len(table.splitlines()), 1 + 22)
        self.assertNotIn("more;", table)
        self.assertNotIn("more;", rhizos("flow", "runs", "--limit", "22",
                                         data=self.data).stdout)
        for bad in ("x", "-1", "", "2x"):
            p = rhizos("flow", "runs", "--limit", bad, data=self.data)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("--limit", p.stderr)
        self.assertIn("--limit N", rhizos("flow", "--help").stdout)

    def test_killed_runner_leaves_no_cgroup(self):
        # kill -9 of `rhizos` mid-step leaves the step's cgroup behind; the
        # next run sweeps it (it once collided with a later process that got
        # the same PID: "cgroup for the step: File exists").
        flow = os.path.join(self.data, "nap.yaml")
        with open(flow, "w") as f:
            f.write("flux: 1\nname: nap\nsteps:\n  nap:\n    module: sleep@1\n"
                    "    config: {seconds: 30}\n")
        p = subprocess.Popen([RHIZOS, "flow", "run", flow, "-q", "--data",
                              self.data], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        mine = lambda: [d for d in glob.glob("/sys/fs/cgroup/*/rz-%d-*" % p.pid)]
        deadline = time.time() + 20
        while not mine() and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
        left = mine()
        p.kill()
        p.wait()
        if not left:
            self.skipTest("steps get no cgroup here (rhizos sandbox status)")
        # The orphaned step dies with bwrap's parent: its cgroups empty
        # (another rhizos starting meanwhile may have swept them already).
        def procs(d):
            try:
                return any(open(os.path.join(top, "cgroup.procs")).read().strip()
                           for top, _, _ in os.walk(d))
            except OSError:
                return False   # removed meanwhile
        deadline = time.time() + 20
        while any(procs(d) for d in left) and time.time() < deadline:
            time.sleep(0.05)
        q = rhizos("flow", "run", os.path.join(FLOWS, "inputs.yaml"), "-q",
                   data=self.data)
        self.assertEqual(q.returncode, 0, q.stderr)
        self.assertEqual([d for d in left if os.path.isdir(d)], [])

    def test_run_id_told_once_its_record_is_there(self):
        # `flow run` tells the run's id only once the runner has written its
        # first record: a reader that freezes the run the moment the line
        # comes (SIGSTOP) finds the run, and so does a follower started
        # then. Before, the line came before the record, and `flow logs
        # --follow` polled up to 5 s for it.
        flow = os.path.join(self.data, "nap.yaml")
        with open(flow, "w") as f:
            f.write("flux: 1\nname: nap\nsteps:\n  first:\n    module: sleep@1\n"
                    "    config: {seconds: 0}\n  nap:\n    module: sleep@1\n"
                    "    needs: [first]\n    config: {seconds: 2}\n")
        p = subprocess.Popen([RHIZOS, "flow", "run", flow, "--no-sandbox", "--data",
                              self.data], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        try:
            first = p.stderr.readline()
            os.kill(p.pid, signal.SIGSTOP)
            m = re.match(r"rhizos: running .*nap\.yaml \(2 steps\) as (run-[0-9a-f-]+)$",
                         first.rstrip("\n"))
            self.assertTrue(m, first)
            got = rhizos("flow", "runs", m.group(1), "--json", data=self.data)
            self.assertEqual(got.returncode, 0, got.stderr)
            self.assertEqual(json.loads(got.stdout)["status"], "running")
            follow = subprocess.Popen([RHIZOS, "flow", "logs", m.group(1), "--follow",
                                       "--data", self.data], cwd=ROOT, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.3)
            self.assertIsNone(follow.poll(), "the follower found no run")
        finally:
            os.kill(p.pid, signal.SIGCONT)
        _, err = follow.communicate(timeout=60)
        self.assertEqual(follow.returncode, 0, err)
        rest = p.stderr.read()
        self.assertEqual(p.wait(timeout=60), 0, rest)
        # The steps' lines come after it, in order, though they may have
        # started before the record was written.
        self.assertLess(rest.index("first                started"),
                        rest.index("nap                  started"), rest)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare")
                         and os.path.exists("/etc/subuid"),
                         "needs root, unshare and /etc/subuid (a private mount namespace)")
    def test_step_uids_that_are_someones_subordinate_ids_are_not_used(self):
        # A user whose /etc/subuid range covers the step uids could map one
        # in a user namespace and read a step's /proc: the sandbox helper
        # refuses that range and says whose it is (here in a private mount
        # namespace, so the host's /etc/subuid is untouched).
        fake = os.path.join(self.data, "subuid")
        with open(fake, "w") as f:
            f.write("# test\nmallory:1900000100:65536\n")
        script = ('mount --bind "$1" /etc/subuid && exec "$2" flow run "$3" -q --data "$4"')
        p = run(["unshare", "-m", "sh", "-c", script, "sh", fake, RHIZOS,
                 os.path.join(FLOWS, "wordcount.yaml"), self.data], cwd=ROOT, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("subordinate ids of mallory (1900000100-1900065635) in /etc/subuid",
                      p.stderr)
        self.assertIn("merge.", p.stdout)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare")
                         and os.path.exists("/lib/x86_64-linux-gnu/libnss_systemd.so.2")
                         and "systemd" in open("/etc/nsswitch.conf").read(),
                         "needs root, unshare and nss-systemd (a user only NSS knows)")
    def test_step_uid_that_nss_knows_is_not_used(self):
        # A user from NSS that /etc/passwd does not list (LDAP, sssd; here
        # a systemd userdb record in a private mount namespace) holds the
        # range's first uid: the step runs as the next one.
        mods = os.path.join(self.data, "mods", "uid")
        os.makedirs(mods)
        with open(os.path.join(mods, "module.json"), "w") as f:
            json.dump({"id": "uid", "version": "1.0.0", "name": "uid", "inputs": [],
                       "outputs": [{"name": "uid", "type": "any"}],
                       "config": {"type": "object"}, "credentials": [],
                       "requirements": {"adapter": "process", "cpu_cores": 1,
                                        "memory_mb": 64},
                       "estimate": {"seconds": 0.1},
                       "exec": {"adapter": "process", "timeout_s": 10, "command":
                                ["sh", "-c", "printf '{\"uid\": %d}' $(id -u)"]}}, f)
        flow = os.path.join(self.data, "uid.yaml")
        with open(flow, "w") as f:
            f.write("flux: 1\nname: uid\nsteps:\n  who:\n    module: uid@1\n")
        first = 1999999000   # a range of this test's own: no other runner's locks
        rec = os.path.join(self.data, "ldap.user")
        with open(rec, "w") as f:
            json.dump({"userName": "rz-ldap-user", "uid": first, "gid": first,
                       "disposition": "regular", "homeDirectory": "/nonexistent",
                       "shell": "/usr/sbin/nologin"}, f)
        made = not os.path.exists("/run/userdb")
        script = ('mkdir -p /run/userdb && mount -t tmpfs rz /run/userdb && '
                  'cp "$1" /run/userdb/rz-ldap-user.user && '
                  'ln -s rz-ldap-user.user /run/userdb/%d.user && '
                  'getent passwd %d >&2 && exec "$2" flow run "$3" --json --modules "$4" '
                  '--data "$5"' % (first, first))
        env = dict(os.environ, RHIZOS_SANDBOX_UIDS="%d:4" % first)
        p = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", rec, RHIZOS, flow,
                            os.path.dirname(mods), self.data], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        if made:
            os.rmdir("/run/userdb")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("rz-ldap-user", p.stderr)   # NSS sees it; /etc/passwd does not
        self.assertEqual(json.loads(p.stdout)["outputs"]["who"]["uid"], first + 1)

    def test_interrupt_exits_like_a_shell_expects(self):
        # Ctrl-C cancels the running step, writes the record and exits 130
        # (SIGTERM: 143), as a shell reports a process stopped by it.
        flow = os.path.join(self.data, "nap.yaml")
        with open(flow, "w") as f:
            f.write("flux: 1\nname: nap\nsteps:\n  nap:\n    module: sleep@1\n"
                    "    config: {seconds: 30}\n")
        for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            p = subprocess.Popen([RHIZOS, "flow", "run", flow, "--json", "--data",
                                  self.data], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            # Once the step runs (its progress line), not after a guess at
            # how long the start takes.
            first = p.stderr.readline()
            self.assertRegex(first, r"\bnap\s+started$")
            p.send_signal(sig)
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, code, first + err)
            self.assertEqual(json.loads(out)["steps"]["nap"]["status"], "cancelled", out)

    def test_human_output_and_progress(self):
        p = rhizos("flow", "run", os.path.join(FLOWS, "wordcount.yaml"),
                   data=self.data)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("succeeded", p.stderr)   # one line per state change
        self.assertRegex(p.stdout, r"run run-\S+ succeeded")


class FlowCredentials(unittest.TestCase):
    """A planted secret reaches the module and nothing else."""
    SECRET = "sk-planted-7f3a9c1e5b"

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.env = dict(os.environ,
                        RHIZOS_VAULT=os.path.join(self.tmp.name, "vault"),
                        RHIZOS_VAULT_PASSWORD="correct horse",
                        RHIZOS_VAULT_KDF="interactive",
                        XDG_DATA_HOME=os.path.join(self.tmp.name, "data"))
        self.modules = os.path.join(ROOT, "tests", "e2e", "modules")
        self.flow = os.path.join(ROOT, "tests", "e2e", "secret_flow.yaml")
        self.cli("vault", "init")
        p = self.cli("vault", "add", "openai", "--type", "llm_api",
                     stdin=self.SECRET + "\n")
        self.assertEqual(p.returncode, 0, p.stderr)

    def tearDown(self):
        self.tmp.cleanup()

    def cli(self, *args, stdin=None, env=None):
        return run([RHIZOS, *args], cwd=ROOT, stdin=stdin, timeout=120,
                   env=env or self.env)

    def assert_nowhere(self, *texts):
        for t in texts:
            self.assertNotIn(self.SECRET, t)
        for dirpath, _, files in os.walk(self.tmp.name):
            for f in files:
                if f == "vault":
                    continue
                with open(os.path.join(dirpath, f), "rb") as fh:
                    self.assertNotIn(self.SECRET.encode(), fh.read(),
                                     os.path.join(dirpath, f))

    def test_secret_reaches_module_only(self):
        p = self.cli("flow", "run", self.flow, "--modules", self.modules, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        outs = doc["steps"]["call"]["outputs"]
        self.assertEqual(outs["length"], len(self.SECRET))  # it got the value
        self.assertEqual(outs["seen"], "key=[redacted]")
        human = self.cli("flow", "run", self.flow, "--modules", self.modules)
        runs = self.cli("flow", "runs", "--json")
        export = self.cli("flow", "export", self.flow)
        self.assert_nowhere(p.stdout, p.stderr, human.stdout, human.stderr,
                            runs.stdout, export.stdout)

    def test_secret_not_in_failure_reason(self):
        failing = os.path.join(self.tmp.name, "fail.yaml")
        with open(self.flow) as src, open(failing, "w") as dst:
            dst.write(src.read() + "    config: { fail: true }\n")
        p = self.cli("flow", "run", failing, "--modules", self.modules)
        self.assertEqual(p.returncode, 1)
        self.assertIn("[redacted]", p.stdout + p.stderr)
        self.assert_nowhere(p.stdout, p.stderr)

    def test_parallel_vault_adds_lose_nothing(self):
        # 20 writers at once (issue 14 lost 14 of 20): each waits its turn.
        procs = [subprocess.Popen([RHIZOS, "vault", "add", "k%02d" % i, "--type", "llm_api"],
                                  cwd=ROOT, env=self.env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for i in range(20)]
        for i, p in enumerate(procs):
            out, err = p.communicate("value-%d\n" % i, timeout=120)
            self.assertEqual(p.returncode, 0, err)
        names = {e["name"] for e in json.loads(self.cli("vault", "list", "--json").stdout)}
        self.assertEqual(names, {"openai"} | {"k%02d" % i for i in range(20)})

    def test_wrong_password_runs_nothing(self):
        env = dict(self.env, RHIZOS_VAULT_PASSWORD="wrong")
        p = self.cli("flow", "run", self.flow, "--modules", self.modules, env=env)
        self.assertEqual(p.returncode, 1)
        self.assertNotIn("succeeded", p.stderr)
        self.assert_nowhere(p.stdout, p.stderr)

    def test_missing_credential_names_step_and_field(self):
        bad = os.path.join(self.tmp.name, "missing.yaml")
        with open(self.flow) as src, open(bad, "w") as dst:
            dst.write(src.read().replace("credentialId: openai",
                                         "credentialId: nope"))
        p = self.cli("flow", "run", bad, "--modules", self.modules)
        self.assertEqual(p.returncode, 1)
        self.assertIn("call", p.stdout + p.stderr)
        self.assertIn("api", p.stdout + p.stderr)


class FlowCommands(unittest.TestCase):
    def test_plan_json_stages(self):
        p = rhizos("flow", "plan", os.path.join(FLOWS, "wordcount.yaml"), "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        plan = json.loads(p.stdout)
        stages = plan["stages"]
        self.assertGreaterEqual(len(stages), 3)
        self.assertTrue(any(len(s) >= 3 for s in stages), "fan-out stage")
        for s in stages:
            self.assertEqual(s, sorted(s))

    def test_json_is_one_line_piped_and_indented_on_a_terminal(self):
        path = os.path.join(FLOWS, "wordcount.yaml")
        for args in (["flow", "plan", path, "--json"], ["flow", "validate", path, "--json"],
                     ["module", "show", "echo", "--json"], ["module", "list", "--json"],
                     ["flow", "estimate", path, "--json"]):
            with self.subTest(cmd=" ".join(args[:2])):
                p = rhizos(*args)
                self.assertEqual(len(p.stdout.splitlines()), 1, p.stdout[:300])
                json.loads(p.stdout)
        import pty
        master, slave = pty.openpty()
        p = subprocess.run([RHIZOS, "flow", "plan", path, "--json"], cwd=ROOT,
                           stdout=slave, stderr=subprocess.PIPE, timeout=60)
        os.close(slave)
        raw = b""
        while True:   # a pty hands its buffer over in pieces: read to the end
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            raw += chunk
        os.close(master)
        out = raw.decode()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(out.startswith("{\r\n  \"stages\": ["), out[:80])
        self.assertEqual(json.loads(out)["steps"], 6)

    def test_plan_as_a_graph(self):
        path = os.path.join(FLOWS, "wordcount.yaml")
        want = {("source", "split"), ("split", "count1"), ("split", "count2"),
                ("split", "count3"), ("count1", "merge"), ("count2", "merge"),
                ("count3", "merge")}
        crit = json.loads(rhizos("flow", "plan", path, "--json").stdout)["critical_path"]
        crit = set(zip(crit, crit[1:]))
        dot = rhizos("flow", "plan", path, "--format", "dot")
        self.assertEqual(dot.returncode, 0, dot.stderr)
        names = dict(re.findall(r'^  (s\d+) \[label="([^\\"]+)', dot.stdout, re.M))
        edges = re.findall(r"^  (s\d+) -> (s\d+)( \[penwidth)?", dot.stdout, re.M)
        self.assertEqual({(names[a], names[b]) for a, b, _ in edges}, want)
        self.assertEqual({(names[a], names[b]) for a, b, c in edges if c}, crit)
        mer = rhizos("flow", "plan", path, "--format", "mermaid")
        self.assertTrue(mer.stdout.startswith("flowchart LR\n"), mer.stdout)
        names = dict(re.findall(r'^  (s\d+)\["([^<"]+)', mer.stdout, re.M))
        edges = re.findall(r"^  (s\d+) (-->|==>) (s\d+)$", mer.stdout, re.M)
        self.assertEqual({(names[a], names[b]) for a, _, b in edges}, want)
        self.assertEqual({(names[a], names[b]) for a, k, b in edges if k == "==>"}, crit)
        p = rhizos("flow", "plan", path, "--format", "svg")
        self.assertEqual(p.returncode, 2)
        self.assertIn("dot or mermaid", p.stderr)
        if shutil.which("dot"):   # Graphviz reads it
            g = run(["dot", "-Tsvg"], stdin=dot.stdout)
            self.assertEqual(g.returncode, 0, g.stderr)
            self.assertIn("<svg", g.stdout)

    def test_export_strips_credential_values(self):
        doc = {
            "id": "f1", "name": "creds", "version": "1",
            "nodes": [{"id": "a", "moduleId": "text-source",
                       "config": {"text": "hi"},
                       "credentials": {"api": {"credentialId": "c1",
                                               "type": "llm_api",
                                               "value": "sk-SECRET"}}}],
            "connections": []}
        p = rhizos("flow", "export", "-", stdin=json.dumps(doc))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("SECRET", p.stdout)
        out = json.loads(p.stdout)
        self.assertEqual(out["nodes"][0]["credentials"]["api"],
                         {"credentialId": "c1", "type": "llm_api"})

    def test_invalid_flow_reports_all_problems(self):
        bad = ("flux: 1\nname: bad\nsteps:\n"
               "  a:\n    module: no-such-module\n"
               "  b:\n    module: no-such-module\n    needs: [ghost]\n"
               "  c:\n    module: no-such-module\n    needs: [d]\n"
               "  d:\n    module: no-such-module\n    needs: [c]\n")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(bad)
        try:
            p = rhizos("flow", "validate", f.name)
            self.assertEqual(p.returncode, 1)
            lines = [l for l in p.stderr.splitlines() if DIAG.match(l)]
            self.assertGreaterEqual(len(lines), 6, p.stderr)
            self.assertTrue(any("ghost" in l for l in lines))
            self.assertTrue(any(re.search(r"c -> d -> c|d -> c -> d", l)
                                for l in lines), p.stderr)
            js = rhizos("flow", "validate", "--json", f.name)
            self.assertEqual(js.returncode, 1)
            items = json.loads(js.stdout)
            self.assertEqual(len(items), len(lines))
            for it in items:
                self.assertEqual(set(it) >= {"file", "line", "column", "code",
                                              "message"}, True)
                self.assertTrue(it["code"].startswith("RZ_E"))
        finally:
            os.unlink(f.name)

    def test_bad_expression_is_located_inside_it(self):
        bad = ("flux: 1\nname: bad\nsteps:\n"
               "  a:\n    module: echo@1\n"
               "  b:\n    module: echo@1\n    needs: [a]\n"
               "    when: \"${{ steps.a.status == 'failed' && lenght(steps.a.error) }}\"\n")
        p = rhizos("flow", "validate", "-", stdin=bad)
        self.assertEqual(p.returncode, 1)
        m = DIAG.match(p.stderr.splitlines()[0])
        self.assertIsNotNone(m, p.stderr)
        line = bad.splitlines()[int(m.group(2)) - 1]
        self.assertEqual(line[int(m.group(3)) - 1:].split("(")[0], "lenght", p.stderr)
        self.assertIn("unknown function 'lenght'", m.group(4))

    def validate_text(self, suffix, text):
        with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as f:
            f.write(text)
        try:
            return rhizos("flow", "validate", f.name), f.name
        finally:
            os.unlink(f.name)

    def test_strict_contracts_are_located(self):
        # Each a flow that passed without a word before: exit 1 and a
        # FILE:LINE:COLUMN diagnostic, in both formats.
        conn = ('{"id": "%s", "source": {"nodeId": "%s", "port": "message"}, '
                '"target": {"nodeId": "c", "port": "message"}}')
        nodes = ('"nodes": [{"id": "a", "moduleId": "echo"}, {"id": "b", "moduleId": '
                 '"echo"}, {"id": "c", "moduleId": "echo"}]')
        cases = [
            (".json", '{%s,\n"connections": [\n%s,\n%s]}\n'
             % (nodes, conn % ("c1", "a"), conn % ("c2", "b")), 4,
             "input 'message' of step 'c' gets two values: connection 'c1' (from "
             "a.message) and connection 'c2' (from b.message)"),
            (".json", '{%s,\n"connections": [\n%s,\n%s]}\n'
             % (nodes, conn % ("c1", "a"), conn.replace('"c", "port"', '"b", "port"')
                % ("c1", "a")), 4, "duplicate connection id 'c1'"),
            (".yaml", "flux: 1\nsteps:\n  a: {module: echo}\n  c:\n    module: echo\n"
             "    needs: [a]\n    inputs: {message: hi}\nconnections:\n"
             "  - {source: {nodeId: a, port: message}, target: {nodeId: c, port: message}}\n",
             7, "input 'message' of step 'c' gets two values: its 'inputs' value"),
            (".yaml", "flux: 1\nsteps:\n  a: {module: echo}\n---\nflux: 1\n", 4,
             "a second YAML document"),
            (".yaml", 'flux: 1\nsteps:\n  a:\n    module: echo\n    inputs: {message: "x\\0y"}\n',
             5, "a NUL character"),
            (".yaml", "flux: 1\nx-e: &e {module: echo}\nsteps:\n  a:\n    <<: *e\n", 5,
             "merge keys ('<<') are not supported"),
            (".yaml", "flux: 1\nsteps:\n  a.b: {module: echo}\n", 3,
             "step id 'a.b' is not valid"),
            (".json", '{"nodes": [\n{"id": "a b", "moduleId": "echo"}]}\n', 2,
             "step id 'a b' is not valid"),
            (".yaml", "flux: 1\nsteps:\n  a:\n    module: echo\n    timeout_s: 5000000000\n",
             5, "'timeout_s' is out of range"),
            (".json", '{"nodes": [\n{"id": "a", "moduleId": "echo", "timeout_s": -3}]}\n',
             2, "'timeout_s' is out of range"),
            (".yaml", "flux: 1\ntriggers:\n  - webhook: {}\nsteps:\n  a: {module: echo}\n",
             3, "a webhook trigger needs a 'name'"),
            (".yaml", "flux: 1\ntriggers:\n  - {type: cron, schedule: \"0 25 * * *\"}\n"
             "steps:\n  a: {module: echo}\n", 3, "the hour field: 25 is out of range 0-23"),
            (".json", '{"triggers": [\n{"cron": "* *"}],\n"nodes": [{"id": "a", '
             '"moduleId": "echo"}]}\n', 2, "cron '* *': 2 fields, cron wants 5"),
            # Numbers of the wrong type, unknown trigger types, maps, in both.
            (".yaml", "flux: 1\nsteps:\n  a:\n    module: echo\n    max_cost_cents: '5'\n",
             5, "'max_cost_cents' must be a whole number of cents"),
            (".json", '{"nodes": [\n{"id": "a", "moduleId": "echo", "max_cost_cents": 1e30}]}\n',
             2, "'max_cost_cents' must be a whole number of cents"),
            (".yaml", "flux: 1\ntriggers:\n  - {type: pigeon}\nsteps:\n  a: {module: echo}\n",
             3, "unknown trigger type 'pigeon'"),
            (".json", '{"triggers": [\n{"type": "pigeon"}],\n"nodes": [{"id": "a", '
             '"moduleId": "echo"}]}\n', 2, "unknown trigger type 'pigeon'"),
            (".yaml", "flux: 1\nsteps:\n  a:\n    module: echo\n    for_each: 5\n", 5,
             "'for_each' must be a list or"),
            (".json", '{"nodes": [\n{"id": "a", "moduleId": "echo", "for_each": {}}]}\n', 2,
             "'for_each' must be a list or"),
            (".yaml", "flux: 1\nsteps:\n  a:\n    module: echo\n    max_parallel: 2\n", 5,
             "this step has no 'for_each'"),
            (".json", '{"nodes": [\n{"id": "a", "moduleId": "echo", "for_each": [1], '
             '"for_each_depth": 9}]}\n', 2, "'for_each_depth' is out of range"),
            # Joins, on_exit and flow outputs, in both formats.
            (".yaml", "flux: 1\nsteps:\n  a: {module: echo}\n  b:\n    module: echo\n"
             "    needs: [a]\n    join: some\n", 7, "'join' must be all_succeeded"),
            (".json", '{"nodes": [{"id": "a", "moduleId": "echo"},\n{"id": "b", '
             '"moduleId": "echo", "needs": ["a"], "join": "any"}]}\n', 2,
             "'join' must be all_succeeded"),
            (".yaml", "flux: 1\nsteps:\n  a:\n    module: echo\n"
             "    inputs: {message: \"${{ flow.status }}\"}\n", 5,
             "flow.status is known only in the on_exit step"),
            (".json", '{"nodes": [{"id": "a", "moduleId": "echo"}],\n"on_exit": '
             '{"moduleId": "echo", "needs": ["a"]}}\n', 2,
             "the on_exit step runs after every other step: it takes no 'needs'"),
            (".yaml", "flux: 1\nsteps:\n  a: {module: echo}\n"
             "outputs:\n  m: \"${{ steps.a.outputs.mesage }}\"\n", 5,
             "step 'a' (module echo@1.0.0) has no output 'mesage'"),
            (".json", '{"nodes": [{"id": "a", "moduleId": "echo"}],\n"outputs": '
             '{"m": "${{ steps.ghost.outputs.x }}"}}\n', 2,
             "reference to unknown step 'ghost'"),
        ]
        for suffix, text, line, want in cases:
            with self.subTest(want=want, suffix=suffix):
                p, name = self.validate_text(suffix, text)
                self.assertEqual(p.returncode, 1, p.stderr)
                hits = [m for m in map(DIAG.match, p.stderr.splitlines())
                        if m and want in m.group(4)]
                self.assertEqual(len(hits), 1, p.stderr)
                self.assertEqual(hits[0].group(1), name)
                self.assertEqual(int(hits[0].group(2)), line, p.stderr)

    def test_input_with_nul_is_refused(self):
        p = rhizos("flow", "run", os.path.join(FLOWS, "wordcount.yaml"), "--input",
                   'text="to be\\u0000 or not"')
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("a NUL character", p.stderr)

    def test_syntax_error_has_location(self):
        p = rhizos("flow", "validate", "-", stdin='{"nodes": [1, 2,, 3]}')
        self.assertEqual(p.returncode, 1)
        m = DIAG.match(p.stderr.splitlines()[0])
        self.assertIsNotNone(m, p.stderr)
        self.assertEqual(m.group(2), "1")

    def test_usage_errors_exit_2(self):
        self.assertEqual(rhizos("flow", "frobnicate").returncode, 2)
        self.assertEqual(rhizos("flow", "run").returncode, 2)
        self.assertEqual(rhizos("--no-such-option").returncode, 2)
        self.assertEqual(rhizos("flow", "run", "x.yaml", "--jobs", "0").returncode, 2)
        h = rhizos("--help")
        self.assertEqual(h.returncode, 0)
        self.assertIn("flow run", h.stdout)
        v = rhizos("--version")
        self.assertEqual(v.returncode, 0)
        self.assertRegex(v.stdout, r"rhizos \d+\.\d+\.\d+")
        # A long option without its value is named in the error.
        p = rhizos("flow", "run", "x.yaml", "--input")
        self.assertEqual(p.returncode, 2)
        self.assertIn("option '--input' needs a value", p.stderr)

    def test_module_show_lists_config(self):
        p = rhizos("module", "show", "rhizos-hummingbot")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"\n  exchange +string +\(required\)")
        self.assertRegex(p.stdout, r"\n  dryRun +boolean += true")
        self.assertIn("\nkind: service (runs until stopped", p.stdout)

    def test_missing_file_is_a_clear_error(self):
        p = rhizos("flow", "validate", "/nonexistent/flow.yaml")
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent/flow.yaml", p.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v", *sys.argv[3:]])
