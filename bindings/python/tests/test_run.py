"""Embedded runs (rz_runner_run) and the run store."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import rhizos
from helpers import MODULES, ROOT, flow_path

SECRET = "sk-test-8f3a9c1d7e"


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


class TestRun(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rz-py-run-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_wordcount_records_run(self):
        data = os.path.join(self.tmp, "data")
        events = []
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            self.assertEqual(f.validate([MODULES]), [])
            r = rhizos.run(f, {"text": "to be or not to be"}, data_dir=data,
                           run_id="py-run-1", on_event=events.append)
        self.assertTrue(r.ok)
        self.assertEqual((r.id, r.flow, r.status), ("py-run-1", "wordcount", "succeeded"))
        self.assertEqual(set(r.steps), {"source", "split", "count1", "count2",
                                        "count3", "merge"})
        self.assertTrue(all(s.status == "succeeded" and s.attempts == 1
                            for s in r.steps.values()))
        merge = r.outputs["merge"]
        self.assertEqual(merge["total"], 6)
        self.assertEqual(merge["counts"], {"to": 2, "be": 2, "or": 1, "not": 1})
        kinds = [e.kind for e in events]
        self.assertEqual(kinds.count("step_started"), 6)
        self.assertEqual(kinds[-1], "run_finished")
        self.assertIn("merge", [e.step for e in events])
        listed = rhizos.runs(data)
        self.assertEqual([x["id"] for x in listed], ["py-run-1"])
        self.assertEqual(listed[0]["status"], "succeeded")
        self.assertEqual(rhizos.runs(data, limit=1), listed)
        with self.assertRaises(ValueError):
            rhizos.runs(data, limit=-1)
        self.assertEqual(rhizos.get_run(data, "py-run-1")["status"], "succeeded")
        with self.assertRaises(rhizos.NotFound):
            rhizos.get_run(data, "no-such-run")

    def test_killed_run_told_by_get_run_and_runs(self):
        # A run killed with SIGKILL keeps "status":"running" in its record;
        # get_run() and runs() tell it as the CLI does, "process_gone".
        data = os.path.join(self.tmp, "data")
        flow = os.path.join(self.tmp, "slow.yaml")
        _write(flow, "flux: 1\nname: slow\nsteps:\n"
                     "  nap: {module: sleep@1.0.0, config: {seconds: 30}}\n")
        code = ("import rhizos, sys\n"
                "with rhizos.load_flow(sys.argv[1]) as f:\n"
                "    f.validate([sys.argv[2]])\n"
                "    rhizos.run(f, data_dir=sys.argv[3], run_id='py-killed', sandbox=False)\n")
        child = subprocess.Popen([sys.executable, "-c", code, flow, MODULES, data])
        try:
            rec = None
            for _ in range(400):
                try:
                    rec = rhizos.get_run(data, "py-killed")
                    break
                except (rhizos.NotFound, rhizos.Error):
                    time.sleep(0.025)
            self.assertIsNotNone(rec, "the run never recorded")
            self.assertEqual(rec["status"], "running")
            self.assertNotIn("process_gone", rec)   # going: its lock is held
            self.assertNotIn("process_gone", rhizos.runs(data)[0])
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        # The lock goes with the last process that shares its file: a step
        # being started when the kill came (cloned, not yet exec'd) lets go
        # of it a moment later, longer on a loaded machine.
        end = time.monotonic() + 10
        while (rec := rhizos.get_run(data, "py-killed")).get("process_gone") is None:
            if time.monotonic() > end:
                break
            time.sleep(0.01)
        self.assertEqual((rec["status"], rec.get("process_gone")), ("running", True))
        self.assertIs(rhizos.runs(data)[0].get("process_gone"), True)

    def test_join_on_exit_and_flow_outputs(self):
        data = os.path.join(self.tmp, "data")
        with rhizos.load_flow(flow_path("join.yaml")) as f:
            self.assertEqual(f.validate([MODULES]), [])
            r = rhizos.run(f, rhizos.inputs_from_pairs(["value=3"]))
        self.assertTrue(r.ok)
        self.assertEqual(r.steps["high"].status, "skipped")
        self.assertEqual(r.outputs, {"message": "3 is at or below the threshold",
                                     "branch": "low"})
        with rhizos.load_flow(flow_path("on_exit.yaml")) as f:
            f.validate([MODULES])
            r = rhizos.run(f, data_dir=data, run_id="py-exit")
        self.assertTrue(r.ok)
        self.assertEqual(r.raw["failed_steps"], ["primary"])
        self.assertEqual(r.outputs["alert"], "run succeeded; failed steps: [primary]")
        rec = rhizos.get_run(data, "py-exit")
        self.assertEqual(rec["steps"]["report"]["inputs"], {"message": "primary: failed"})

    def test_inputs_from_pairs(self):
        self.assertEqual(rhizos.inputs_from_pairs(["n=3", "t=hi", "n=4"]),
                         {"t": "hi", "n": 4})
        self.assertEqual(rhizos.inputs_from_pairs([]), {})
        with self.assertRaises(rhizos.Error) as cm:
            rhizos.inputs_from_pairs(['t="a\\u0000b"'])
        self.assertIn("NUL", cm.exception.message)
        with self.assertRaises(rhizos.Error):
            rhizos.inputs_from_pairs(["novalue"])

    def test_llm_step(self):
        # tests/e2e/fake_llm.py stands in for a model server (docs/llm.md).
        import sys
        sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
        import fake_llm
        srv, url = fake_llm.start(["llama3:8b"])
        try:
            with rhizos.load_flow(os.path.join(ROOT, "examples", "llm",
                                               "summary.yaml")) as f:
                r = rhizos.run(f, llm_servers="ollama=" + url, sandbox=False)
                bad = rhizos.run(f, llm_servers="ollama", sandbox=False)
        finally:
            srv.shutdown()
            srv.server_close()
        self.assertEqual(r.status, "succeeded")
        out = r.steps["summarise"].outputs
        self.assertEqual(out["model"], "llama3:8b")
        self.assertTrue(out["text"].startswith("Hello from llama3:8b."))
        self.assertEqual(bad.status, "failed")
        self.assertIn("is not KIND=URL", bad.steps["summarise"].error or "")

    def test_retries_counted(self):
        with rhizos.load_flow(flow_path("flaky.yaml")) as f:
            r = rhizos.run(f)            # validated against the default registry
        self.assertEqual(r.status, "succeeded")
        self.assertEqual(r.steps["unreliable"].attempts, 3)
        self.assertEqual(r.steps["report"].outputs["message"],
                         "succeeded on attempt 3")

    def test_failed_step_is_a_result_not_an_exception(self):
        with rhizos.load_flow(flow_path("flaky.yaml")) as f:
            doc = f.to_dict()
        doc["steps"]["unreliable"]["config"]["fail_times"] = 5
        doc["steps"]["unreliable"]["retry"]["initial_ms"] = 1
        with rhizos.load_flow(json.dumps(doc), format="json") as f:
            f.validate([MODULES])
            r = rhizos.run(f)
        self.assertEqual(r.status, "failed")
        self.assertFalse(r.ok)
        self.assertEqual(r.steps["unreliable"].status, "failed")
        self.assertEqual(r.steps["unreliable"].attempts, 3)
        self.assertTrue(r.steps["unreliable"].error)
        self.assertEqual(r.steps["report"].status, "skipped")

    def test_undeclared_input_refused(self):
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            f.validate([MODULES])
            with self.assertRaises(rhizos.Error) as cm:
                rhizos.run(f, {"nope": 1})
        self.assertIn("nope", cm.exception.message)

    def test_unvalidated_flow_refused(self):
        with rhizos.load_flow("flux: 1\nname: u\nsteps:\n  a:\n    module: nope@1\n") as f:
            with self.assertRaises(rhizos.ValidationError) as cm:
                rhizos.run(f)
        self.assertTrue(cm.exception.diagnostics)

    def test_callback_exception_cancels_and_propagates(self):
        def boom(ev):
            raise RuntimeError("stop here")
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            f.validate([MODULES])
            with self.assertRaises(RuntimeError):
                rhizos.run(f, on_event=boom)

    def test_vault_credentials_reach_the_step_and_are_scrubbed(self):
        mods = os.path.join(self.tmp, "mods")
        _write(os.path.join(mods, "cred-probe", "module.json"), json.dumps({
            "id": "cred-probe", "version": "1.0.0", "name": "probe",
            "description": "reports the credential's length and echoes it",
            "inputs": [], "outputs": [{"name": "len", "type": "number"},
                                      {"name": "echo", "type": "string"}],
            "config": {"type": "object"},
            "credentials": [{"name": "token", "type": "llm_api", "required": True}],
            "requirements": {"adapter": "process"},
            "exec": {"adapter": "process", "command": ["sh", "-c",
                     'printf \'{"len": %d, "echo": "%s"}\' ${#RZ_CRED_TOKEN} "$RZ_CRED_TOKEN"'],
                     "timeout_s": 10}}))
        flow = ("flux: 1\nname: creds\nsteps:\n  probe:\n    module: cred-probe@1\n"
                "    credentials:\n      token: {credentialId: my-llm, type: llm_api}\n")
        vpath = os.path.join(self.tmp, "v.vault")
        with rhizos.Vault(vpath, "pw", kdf=(1, 8192)) as v, \
                rhizos.load_flow(flow) as f:
            v.add("my-llm", "llm_api", SECRET)
            self.assertEqual(f.validate([mods]), [])
            r = rhizos.run(f, vault=v, sandbox=False)
            self.assertEqual(r.status, "succeeded", r.raw)
            out = r.steps["probe"].outputs
            self.assertEqual(out["len"], len(SECRET))
            self.assertNotIn(SECRET, json.dumps(r.raw))
            # without the vault the step cannot get its credential
            r2 = rhizos.run(f, sandbox=False)
            self.assertEqual(r2.steps["probe"].outputs.get("len", 0), 0)


if __name__ == "__main__":
    unittest.main()
