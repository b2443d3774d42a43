#!/usr/bin/env python3
"""End-to-end: llm steps in flows (module llm@1, exec.adapter "llm"),
embedded and on the network, against fake_llm.py (docs/llm.md).

Embedded: `rhizos flow run --llm KIND=URL` (or $RHIZOS_LLM_SERVERS) runs
examples/llm/summary.yaml: the prompt is built from the step before with
${{ }}, the text and token counts are the step's outputs and feed the step
after, the streamed text is the step's log; with two servers the one that
lists the model serves it; a server's failure, no server, a malformed
server list and a prompt over max_prompt_tokens fail the step with the
reason; a config without a model or with max_tokens 0 is refused before
anything runs.

Network: the same flow deployed to an orchestrator with one llm node: the
llm step goes to the node serving its model, is held at (max_tokens +
max_prompt_tokens) x --llm-price and charged the tokens the server counted
at the node's price per 1,000; the money is exact and the ledger verifies.
A step whose model is a ${{ }} is refused at deploy; a model no node serves
fails the step with that reason once its queue timeout passes.

The desk with rhizos-eliza on llm.provider: local (examples/llm/
desk-local-llm.yaml): each trade one generation on the served model,
embedded and deployed (each run a job on the node serving the model,
charged its tokens), with the refusals at validation.

And `rhizos flow logs` of an embedded run, followed while a slow model
answers, then from the run's record.

Usage: llm_flow.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT"""
import json
import os
import re
import signal
import sys
import tempfile
import time
import unittest

import llm  # noqa: E402  (reads the same argv, through network)
import network  # noqa: E402
import fake_llm  # noqa: E402
from harness import Proc, cli_env, run  # noqa: E402

ROOT, RHIZOS = network.ROOT, network.RHIZOS
EXAMPLE = os.path.join(ROOT, "examples", "llm", "summary.yaml")
DESK = os.path.join(ROOT, "examples", "llm", "desk-local-llm.yaml")
TRADES = [{"n": 1, "side": "buy", "symbol": "BTC-USDT", "qty": 0.01, "price": 42000},
          {"n": 2, "side": "sell", "symbol": "BTC-USDT", "qty": 0.02, "price": 42001},
          {"n": 3, "side": "buy", "symbol": "BTC-USDT", "qty": 0.03, "price": 42002}]


def desk_post(model, trade):
    """What the fake server answers an Eliza announcer on `model` for one
    trade: the instructions, the personality, the trade (the messages
    joined by a space)."""
    with open(os.path.join(ROOT, "examples", "modules", "rhizos-eliza",
                           "module.json")) as f:
        ins = json.load(f)["local_llm"]["instructions"]
    persona = {"name": "Mira", "bio": "Reports the desk's trades, dryly.",
               "traits": ["concise", "numerate"]}
    system = ins + "\n\n" + json.dumps(persona, separators=(",", ":"))
    user = json.dumps(trade, separators=(",", ":"))
    return "".join(answer_pieces(model, system + " " + user))


def answer_pieces(model, prompt):
    return fake_llm.answer(model, prompt)
SOURCE_TEXT = "RhizOS runs flows on a network of nodes"
PROMPT = "Summarise in one line: " + SOURCE_TEXT

FLOW = """flux: 1
name: llm-net
steps:
  source:
    module: text-source@1
    inputs:
      text: "%s"
  summarise:
    module: llm@1
    needs: [source]
    config:
      model: %s
      max_tokens: 40
      max_prompt_tokens: 200
    inputs:
      prompt: "Summarise in one line: ${{ steps.source.outputs.text }}"
"""


def embedded(*args, env=None, code=None):
    with tempfile.TemporaryDirectory(prefix="rz-llm-flow-") as data:
        e = cli_env()
        e.pop("RHIZOS_LLM_SERVERS", None)
        e.update(env or {})
        p = run([RHIZOS, "flow", "run", *args, "--data", data, "--json",
                 "--no-sandbox"], cwd=ROOT, env=e, timeout=60)
    if code is not None:
        assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


class LlmFlowEmbedded(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ollama, cls.ollama_url = fake_llm.start(["llama3:8b", "boom:1b"])
        cls.openai, cls.openai_url = fake_llm.start(["gpt-fake"])

    @classmethod
    def tearDownClass(cls):
        for f in (cls.ollama, cls.openai):
            f.shutdown()
            f.server_close()

    def flow(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_example_flow_runs_embedded(self):
        p, rec = embedded(EXAMPLE, "--llm", "ollama=" + self.ollama_url, code=0)
        self.assertEqual(rec["status"], "succeeded", rec)
        s = rec["steps"]["summarise"]
        pieces = fake_llm.answer("llama3:8b", PROMPT)
        self.assertEqual(s["outputs"], {"text": "".join(pieces), "model": "llama3:8b",
                                        "tokens_in": len(PROMPT.split(" ")),
                                        "tokens_out": len(pieces)})
        # The streamed text is the step's log, with the call's summary.
        self.assertIn("You said: " + PROMPT, s["log"])
        self.assertIn("llm: llama3:8b on its ollama server", s["log"])
        self.assertEqual(rec["steps"]["report"]["outputs"]["message"],
                         "%s (%d tokens)" % ("".join(pieces), len(pieces)))
        req = [r["body"] for r in self.ollama.requests if r["path"] == "/api/generate"][-1]
        self.assertEqual((req["model"], req["prompt"], req["options"]["num_predict"]),
                         ("llama3:8b", PROMPT, 64))

    def test_servers_from_the_environment_first_that_lists_the_model(self):
        flow = self.flow(FLOW % (SOURCE_TEXT, "gpt-fake"))
        before = len(self.openai.requests)
        servers = "ollama=%s openai=%s/" % (self.ollama_url, self.openai_url)
        p, rec = embedded(flow, env={"RHIZOS_LLM_SERVERS": servers}, code=0)
        out = rec["steps"]["summarise"]["outputs"]
        self.assertEqual(out["text"], "".join(fake_llm.answer("gpt-fake", PROMPT)))
        chat = [r for r in self.openai.requests[before:]
                if r["path"] == "/v1/chat/completions"]
        self.assertEqual(len(chat), 1)
        self.assertEqual(chat[0]["body"]["max_tokens"], 40)

    def test_failures_fail_the_step_with_the_reason(self):
        boom = self.flow(FLOW % (SOURCE_TEXT, "boom:1b"))
        cases = [
            ((boom, "--llm", "ollama=" + self.ollama_url),
             "boom: the model crashed (HTTP 500 from the model server)"),
            ((boom,), "no model server is configured here"),
            ((boom, "--llm", "vllm=http://127.0.0.1:1"), "is not KIND=URL"),
            ((boom, "--llm", "ollama=ftp://127.0.0.1:1"), "is not http(s)://"),
            ((boom, "--llm", "ollama=http://127.0.0.1:1"), "did not answer"),
            ((self.flow(FLOW % ("x" * 300, "llama3:8b")), "--llm",
              "ollama=" + self.ollama_url), "over max_prompt_tokens 200"),
        ]
        for args, why in cases:
            p, rec = embedded(*args, code=1)
            s = rec["steps"]["summarise"]
            self.assertEqual(s["status"], "failed", (args, s))
            self.assertIn(why, s["error"], (args, s))

    def test_malformed_steps_refused_before_running(self):
        for config, why in (("max_tokens: 40", "model"),
                            ("model: llama3:8b\n      max_tokens: 0", "max_tokens"),
                            ("model: llama3:8b\n      top_k: 3", "top_k")):
            text = (FLOW % (SOURCE_TEXT, "m")).replace(
                "model: m\n      max_tokens: 40\n      max_prompt_tokens: 200", config)
            p = run([RHIZOS, "flow", "validate", self.flow(text)], cwd=ROOT)
            self.assertEqual(p.returncode, 1, (config, p.stdout, p.stderr))
            self.assertIn(why, p.stdout + p.stderr, config)


class ElizaLocalEmbedded(unittest.TestCase):
    """The desk with rhizos-eliza on llm.provider: local (docs/modules.md,
    "A node-served model"): each trade is one generation on the model
    server, no container, no credential; the refusals at validation."""

    @classmethod
    def setUpClass(cls):
        cls.ollama, cls.url = fake_llm.start(["llama3:8b"])

    @classmethod
    def tearDownClass(cls):
        cls.ollama.shutdown()
        cls.ollama.server_close()

    def test_desk_announces_each_trade_on_the_served_model(self):
        before = len(self.ollama.requests)
        p, rec = embedded(DESK, "--llm", "ollama=" + self.url, code=0)
        ann = rec["steps"]["announce"]
        self.assertEqual([r["event_id"] for r in ann["runs"]], ["hb:1", "hb:2", "hb:3"])
        for run_, trade in zip(ann["runs"], TRADES):
            post = desk_post("llama3:8b", trade)
            self.assertEqual(run_["outputs"]["posts"], [post])
            self.assertEqual(run_["outputs"]["model"], "llama3:8b")
            self.assertIn("llm: llama3:8b on its ollama server", run_["log"])
        self.assertEqual(rec["outputs"]["posts"],
                         [[desk_post("llama3:8b", t)] for t in TRADES])
        chats = [r["body"] for r in self.ollama.requests[before:] if r["path"] == "/api/chat"]
        self.assertEqual(len(chats), 3)
        self.assertEqual([m["role"] for m in chats[0]["messages"]], ["system", "user"])
        self.assertEqual(chats[0]["options"]["num_predict"], 256)

    def test_no_server_fails_each_run_with_the_reason(self):
        p, rec = embedded(DESK, code=1)
        self.assertIn("no model server is configured here",
                      rec["steps"]["announce"]["error"])

    def test_refusals(self):
        with open(DESK) as f:
            desk = f.read()
        cred = desk.replace("    inputs:\n      events:", "    credentials:\n"
                            "      llm: {credentialId: openai-key, type: llm_api}\n"
                            "    inputs:\n      events:")
        cases = [
            (cred, "llm provider 'local' runs on a model its node serves and takes "
                   "no credential: remove 'llm'"),
            (desk.replace("model: llama3:8b}", "model: \"${{ event.data.side }}\"}"),
             "config /llm/model must be a model's name written out"),
            (desk.replace("provider: local,", "provider: \"${{ event.data.side }}\","),
             "config /llm/provider (the llm provider) must be written out"),
            (desk.replace("    on: {event: steps.hb.events.trade}\n", "    kind: service\n")
                 .replace("    max_parallel: 2\n", "").replace("${{ event.data }}", "x"),
             "the step is one generation per run, not a service"),
        ]
        for text, why in cases:
            f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            f.write(text)
            f.close()
            self.addCleanup(os.unlink, f.name)
            p = run([RHIZOS, "flow", "validate", f.name], cwd=ROOT)
            self.assertEqual(p.returncode, 1, (why, p.stdout, p.stderr))
            self.assertIn(why, p.stdout + p.stderr)
        p = run([RHIZOS, "flow", "validate", DESK], cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # Priced as an llm step: the manifest's 256 + 4096 tokens per run.
        p = run([RHIZOS, "flow", "estimate", DESK, "--json"], cwd=ROOT)
        ann = [s for s in json.loads(p.stdout)["steps"] if s["step"] == "announce"][0]
        self.assertEqual(ann["rent"]["node_class"], "llm-8b", ann)
        self.assertEqual(ann["rent"]["cost_micros"], llm.ceil_div((256 + 4096) * 1000, 1000))


class FlowLogsEmbedded(unittest.TestCase):
    """rhizos flow logs RUN: an embedded run's step logs from its record;
    --follow reads DATA/live/RUN.log while the run goes (a slow model's
    first line is printed well before the run ends)."""

    def test_follow_then_record(self):
        ollama, url = fake_llm.start(["slow:1b"])
        self.addCleanup(lambda: (ollama.shutdown(), ollama.server_close()))
        tmp = tempfile.TemporaryDirectory(prefix="rz-flow-logs-")
        self.addCleanup(tmp.cleanup)
        flow = os.path.join(tmp.name, "slow.yaml")
        with open(EXAMPLE) as f:
            text = f.read().replace("model: llama3:8b", "model: slow:1b")
        with open(flow, "w") as f:
            f.write(text)
        env = cli_env()
        runner = Proc([RHIZOS, "flow", "run", flow, "--llm", "ollama=" + url,
                       "--data", tmp.name, "--no-sandbox"], cwd=ROOT, env=env)
        try:
            line = runner.wait_for(lambda: [m for l in runner.err
                                            for m in re.findall(r"as (run-[0-9a-f-]+)", l)],
                                   20, "the run's id")
            rid = line[0]
            follow = Proc([RHIZOS, "flow", "logs", rid, "--follow", "--data", tmp.name],
                          cwd=ROOT, env=env)
            follow.wait_for(lambda: "summarise | Hello from slow:1b." in follow.out,
                            20, "the first line")
            self.assertIsNone(runner.p.poll(), "the run still goes")
            self.assertEqual(follow.p.wait(timeout=30), 0, follow.output())
            self.assertEqual(runner.p.wait(timeout=30), 0, runner.output())
        finally:
            runner.stop()
        said = "You said: " + PROMPT
        self.assertEqual(follow.out.count("summarise | " + said), 1, follow.out)
        self.assertFalse(os.path.exists(os.path.join(tmp.name, "live", rid + ".log")))
        p = run([RHIZOS, "flow", "logs", rid, "summarise", "--data", tmp.name],
                cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "summarise | Hello from slow:1b.", "summarise | " + said,
            "summarise | llm: slow:1b on its ollama server: %d tokens in, %d out"
            % (len(PROMPT.split(" ")), len(fake_llm.answer("slow:1b", PROMPT)))])
        p = run([RHIZOS, "flow", "logs", rid, "--json", "--data", tmp.name],
                cwd=ROOT, env=env)
        self.assertIn(said, json.loads(p.stdout)["summarise"]["log"])
        # --since: an embedded run knows each step's end only; the steps
        # that ended before the time are left out, the others shown whole.
        ends = {k: v["finished_ms"] for k, v in json.loads(p.stdout).items()}
        first = min(ends, key=ends.get)
        t = ends[first] + 1
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)) + \
            ".%03dZ" % (t % 1000)
        p = run([RHIZOS, "flow", "logs", rid, "--since", stamp, "--data", tmp.name],
                cwd=ROOT, env=env)
        shown = {l.split(" | ")[0] for l in p.stdout.splitlines()}
        self.assertNotIn(first, shown, p.stdout)
        self.assertIn("summarise", shown, p.stdout)
        every = run([RHIZOS, "flow", "logs", rid, "--data", tmp.name], cwd=ROOT, env=env)
        for since, want in (("1h", every.stdout), ("2099-01-01T00:00:00Z", "")):
            p = run([RHIZOS, "flow", "logs", rid, "--since", since, "--data", tmp.name],
                    cwd=ROOT, env=env)
            self.assertEqual((p.returncode, p.stdout), (0, want), p.stderr)
        p = run([RHIZOS, "flow", "logs", rid, "--since", "10", "--data", tmp.name],
                cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 2, p.stderr)
        for args, code, why in (((rid, "nope"), 1, "has no step 'nope'"),
                                (("run-nope",), 1, "no run 'run-nope'"),
                                ((), 2, "wrong number of arguments"),
                                ((rid, "a", "b"), 2, "wrong number of arguments")):
            p = run([RHIZOS, "flow", "logs", *args, "--data", tmp.name], cwd=ROOT, env=env)
            self.assertEqual(p.returncode, code, (args, p.stderr))
            self.assertIn(why, p.stderr, args)


    def test_follow_ends_when_the_run_is_killed(self):
        """A kill -9 leaves the record saying "running": the follower sees
        the writer's lock go and ends, saying so, instead of waiting."""
        ollama, url = fake_llm.start(["slow:1b"])
        self.addCleanup(lambda: (ollama.shutdown(), ollama.server_close()))
        tmp = tempfile.TemporaryDirectory(prefix="rz-flow-logs-")
        self.addCleanup(tmp.cleanup)
        flow = os.path.join(tmp.name, "slow.yaml")
        with open(EXAMPLE) as f:
            text = f.read().replace("model: llama3:8b", "model: slow:1b")
        with open(flow, "w") as f:
            f.write(text)
        env = cli_env()
        runner = Proc([RHIZOS, "flow", "run", flow, "--llm", "ollama=" + url,
                       "--data", tmp.name, "--no-sandbox"], cwd=ROOT, env=env)
        try:
            rid = runner.wait_for(lambda: [m for l in runner.err
                                           for m in re.findall(r"as (run-[0-9a-f-]+)", l)],
                                  20, "the run's id")[0]
            follow = Proc([RHIZOS, "flow", "logs", rid, "--follow", "--data", tmp.name],
                          cwd=ROOT, env=env)
            follow.wait_for(lambda: "summarise | Hello from slow:1b." in follow.out,
                            20, "the first line")
            runner.p.send_signal(signal.SIGKILL)
            runner.p.wait(timeout=10)
            self.assertEqual(follow.p.wait(timeout=15), 1, follow.output())
        finally:
            runner.stop()
        self.assertIn("is no longer running", follow.stderr_text())


class LlmFlowNetwork(llm.LlmBase):
    def test_llm_step_on_the_network_charged_per_token(self):
        node = self.start_llm_node()
        flow = self.flow_file("llm.yaml", FLOW % (SOURCE_TEXT, "tiny:1b"))
        dep = self.deploy_and_watch(flow)
        st = self.status(dep)
        out = st["steps"]["summarise"]["outputs"]
        pieces = fake_llm.answer("tiny:1b", PROMPT)
        self.assertEqual(out["text"], "".join(pieces))
        tokens = out["tokens_in"] + out["tokens_out"]
        self.assertEqual(tokens, len(PROMPT.split(" ")) + len(pieces))
        jobs = {j["step"]: j for j in self.client_jobs() if j.get("step")}
        j = jobs["summarise"]
        self.assertEqual(j["node"], node.id)
        self.assertEqual(j["cost_micros"], llm.ceil_div(tokens * llm.PRICE, 1000), j)
        self.assertEqual(j["max_cost_micros"],
                         llm.ceil_div((40 + 200) * llm.REF_PRICE, 1000), j)
        self.check_money(self.client_jobs())
        self.verify_ledger()

        # A model that is not written out cannot be matched: refused.
        bad = self.flow_file("bad.yaml", (FLOW % (SOURCE_TEXT, '"${{ inputs.m }}"'))
                             .replace("steps:", "inputs:\n  m:\n    type: string\n"
                                      "    default: tiny:1b\nsteps:", 1))
        p = self.cli("flow", "deploy", bad, key=self.key, code=1)
        self.assertIn("config.model must be a model's name written out", p.stderr)

        # A model nobody serves: the step fails with that reason.
        none = self.flow_file("none.yaml", (FLOW % (SOURCE_TEXT, "nope:1b")).replace(
            "    needs: [source]\n", "    needs: [source]\n    queue_timeout_s: 1\n"))
        dep = self.cli_json("flow", "deploy", none, key=self.key)["id"]
        self.cli("flow", "watch", str(dep), key=self.key, code=1, timeout=60)
        st = self.cli_json("flow", "status", str(dep), key=self.key)
        self.assertEqual(st["steps"]["summarise"]["status"], "failed", st)
        self.assertIn("no node serves model 'nope:1b'", json.dumps(st), st)
        self.verify_ledger()
        self.assertEqual(node.stop(), 0, node.output())
        self.stop_orchestrator()

    def test_eliza_local_desk_on_the_network(self):
        """The desk deployed: the trader service and an Eliza announcer per
        trade on llm.provider: local, each run a job matched to the node
        serving the model, charged its tokens at the node's price; a model
        no node serves gives that reason."""
        node = self.start_llm_node()
        with open(DESK) as f:
            desk = f.read().replace("llama3:8b", "tiny:1b")
        flow = self.flow_file("desk.yaml", desk)
        dep = self.deploy_and_watch(flow)
        st = self.status(dep)
        ann = st["steps"]["announce"]
        self.assertEqual(ann["status"], "succeeded", ann)
        self.assertEqual([r["event_id"] for r in ann["runs"]], ["hb:1", "hb:2", "hb:3"])
        posts = [r["outputs"]["posts"] for r in ann["runs"]]
        self.assertEqual(posts, [[desk_post("tiny:1b", t)] for t in TRADES])
        # One job per trade (the listener's own record has no node).
        jobs = [j for j in self.client_jobs() if j.get("step") == "announce" and j["node"]]
        self.assertEqual(len(jobs), 3, jobs)
        for j, r in zip(sorted(jobs, key=lambda j: j["id"]), ann["runs"]):
            tokens = r["outputs"]["tokens_in"] + r["outputs"]["tokens_out"]
            self.assertEqual(j["node"], node.id)
            self.assertEqual(j["cost_micros"], llm.ceil_div(tokens * llm.PRICE, 1000), j)
            self.assertEqual(j["max_cost_micros"],
                             llm.ceil_div((256 + 4096) * llm.REF_PRICE, 1000), j)
        self.check_money(self.client_jobs())
        self.verify_ledger()
        # As a module job it would be priced by time: refused, as is llm@1's.
        config = {"personality": {"name": "M", "bio": "", "traits": []}, "platforms": [],
                  "llm": {"provider": "local", "model": "tiny:1b"}}
        for body in ({"module": "rhizos-eliza@1", "config": config},
                     {"module": "llm@1", "config": {"model": "tiny:1b"},
                      "inputs": {"prompt": "hi"}}):
            err = self.submit(body, code=422)
            self.assertIn("runs on a model a node serves", json.dumps(err), err)

        none = self.flow_file("none.yaml", desk.replace("model: tiny:1b}", "model: nope:1b}")
                              .replace("    max_parallel: 2\n",
                                       "    max_parallel: 2\n    queue_timeout_s: 1\n"))
        dep = self.cli_json("flow", "deploy", none, key=self.key)["id"]
        self.cli("flow", "watch", str(dep), key=self.key, code=1, timeout=90)
        st = self.cli_json("flow", "status", str(dep), key=self.key)
        self.assertEqual(st["steps"]["announce"]["status"], "failed", st)
        self.assertIn("no node serves model 'nope:1b'", json.dumps(st), st)
        self.verify_ledger()
        self.assertEqual(node.stop(), 0, node.output())
        self.stop_orchestrator()


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
