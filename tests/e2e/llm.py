#!/usr/bin/env python3
"""End-to-end: llm jobs through a real orchestrator and `rhizos-node`,
against fake_llm.py (no real model server can run here; docs/llm.md).

One node fronts two model servers ([[llm]] kind "ollama" and kind
"openai", each a fake_llm.py on its own port) and prices tokens at 5000
micros per 1,000. GET /api/v1/models and `rhizos models` show what it
serves; `rhizos run -t llm` gets the answer the fake makes, with its token
counts, and the ledger charges exactly those tokens at the node's price
(the hold was max_tokens plus the prompt at --llm-price); chat messages go
to /api/chat and /v1/chat/completions; the text reaches the job's live log
while a slow model is still answering; a 500, a stream cut mid-way, a line
that is not JSON fail the job (refunded); a model nobody serves waits and
times out with the reason; a model added or removed on a server, and a
server that goes down, change what the node advertises without stopping
it. Bad llm job bodies are refused with 400.

Usage: llm.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT"""
import json
import os
import sys
import unittest

import network  # noqa: E402  (reads the same argv)
import fake_llm  # noqa: E402
from harness import sanitizer_report, wait_until  # noqa: E402

ROOT, RHIZOS = network.ROOT, network.RHIZOS
PRICE = 5000          # the node's micros per 1,000 tokens
REF_PRICE = 10000     # the orchestrator's --llm-price default
GPT_PRICE = 7000      # gpt-fake's own price (llm_model_prices)
OLLAMA_MODELS = ["tiny:1b", "slow:1b", "cut:1b", "boom:1b", "junk:1b"]
OPENAI_MODELS = ["gpt-fake"]


def ceil_div(a, b):
    return -(-a // b)


class LlmBase(network.Base):
    """An orchestrator and the two fake model servers; start_llm_node()
    adds a node in front of them (llm_flow.py builds on it too)."""

    def setUp(self):
        super().setUp()
        self.ollama, self.ollama_url = fake_llm.start(OLLAMA_MODELS)
        self.openai, self.openai_url = fake_llm.start(OPENAI_MODELS)
        self.fakes = [self.ollama, self.openai]

    def tearDown(self):
        super().tearDown()
        for f in self.fakes:
            f.shutdown()
            f.server_close()

    def start_llm_node(self):
        data = self.init_node("llm", 0)
        network.set_config(data, "pricing", "llm_1k_tokens_micros", PRICE)
        network.set_config(data, "pricing", "llm_model_prices",
                           '["gpt-fake=%d"]' % GPT_PRICE)
        network.set_config(data, "node", "llm_refresh_s", 1)
        network.set_config(data, "limits", "max_concurrent_jobs", 2)
        with open(os.path.join(data, "config.toml"), "a") as f:
            f.write('\n[[llm]]\nkind = "ollama"\nurl = "%s"\n'
                    '\n[[llm]]\nkind = "openai"\nurl = "%s/"\ntimeout_s = 30\n'
                    % (self.ollama_url, self.openai_url))
        return self.registered(self.run_node(data), "llm")

    def models(self):
        return {m["name"]: m["nodes"] for m in
                self.api("GET", "/api/v1/models", key=self.key)["models"]}

    def submit(self, body, code=201):
        return self.api("POST", "/api/v1/jobs", key=self.key, body=body, code=code)

    def finished(self, job, timeout=30):
        return wait_until(lambda: (lambda j: j if j["status"] in
                                   ("succeeded", "failed", "cancelled") else None)(
                                       self.job(job)), timeout, "job %d to end" % job)

    def requests_to(self, fake, path):
        return [r["body"] for r in fake.requests if r["path"] == path]


class Llm(LlmBase):
    def test_llm_jobs_end_to_end(self):
        node = self.start_llm_node()
        # ---- what the network serves ----
        models = self.models()
        self.assertEqual(set(models), set(OLLAMA_MODELS + OPENAI_MODELS))
        tiny = models["tiny:1b"][0]
        self.assertEqual(tiny["node"], node.id)
        self.assertEqual(tiny["price_1k_tokens_micros"], PRICE)
        self.assertEqual(tiny["quantization"], "Q4_0")
        self.assertEqual(tiny["size_bytes"], 1100000000)
        self.assertEqual(tiny["kind"], "ollama")
        self.assertEqual(tiny["context_length"], 131072)   # from /api/show
        self.assertEqual(models["gpt-fake"][0]["context_length"], 8192)
        self.assertEqual(models["gpt-fake"][0]["kind"], "openai")
        self.assertEqual(models["gpt-fake"][0]["price_1k_tokens_micros"], GPT_PRICE)
        p = self.cli("models", key=self.key)
        self.assertIn("tiny:1b", p.stdout)
        self.assertIn("$5", p.stdout)          # per million tokens
        self.assertEqual(self.cli_json("models", key=self.key)["models"],
                         self.api("GET", "/api/v1/models", key=self.key)["models"])

        # ---- one completion through the CLI ----
        prompt = "tell me a story"
        j = self.cli_json("run", "-t", "llm", "-p", prompt, "--model", "tiny:1b",
                          "--max-tokens", "40", key=self.key)
        pieces = fake_llm.answer("tiny:1b", prompt)
        self.assertEqual(j["status"], "succeeded", j)
        self.assertEqual(j["model"], "tiny:1b")
        out = j["outputs"]
        self.assertEqual(out["text"], "".join(pieces))
        self.assertEqual((out["tokens_in"], out["tokens_out"]), (4, len(pieces)))
        self.assertEqual(out["model"], "tiny:1b")
        self.assertEqual(j["cost_micros"], ceil_div((4 + len(pieces)) * PRICE, 1000))
        hold_tokens = len(prompt) + 16 + 64 + 40
        self.assertEqual(j["max_cost_micros"], ceil_div(hold_tokens * REF_PRICE, 1000))
        req = self.requests_to(self.ollama, "/api/generate")[-1]
        self.assertEqual((req["model"], req["prompt"], req["stream"],
                          req["options"]["num_predict"]), ("tiny:1b", prompt, True, 40))
        # Plain output: the text on stdout.
        p = self.cli("run", "-t", "llm", "-p", "hi", "--model", "tiny:1b",
                     "--max-tokens", "3", key=self.key)
        self.assertEqual(p.stdout, "".join(fake_llm.answer("tiny:1b", "hi")[:3]) + "\n")
        self.assertIn("3 out", p.stderr)

        # ---- chat messages, both APIs ----
        msgs = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi there"}]
        g = self.finished(self.submit({"type": "llm", "model": "gpt-fake", "messages": msgs,
                                       "max_tokens": 20, "temperature": 0.5})["id"])
        self.assertEqual(g["status"], "succeeded", g)
        self.assertEqual(g["outputs"]["text"],
                         "".join(fake_llm.answer("gpt-fake", "be brief hi there")[:20]))
        self.assertEqual(g["outputs"]["tokens_in"], 4)
        # Charged at gpt-fake's own price, not the node's default.
        self.assertEqual(g["cost_micros"], ceil_div(
            (4 + g["outputs"]["tokens_out"]) * GPT_PRICE, 1000), g)
        req = self.requests_to(self.openai, "/v1/chat/completions")[-1]
        self.assertEqual(req["messages"], msgs)
        self.assertEqual((req["max_tokens"], req["temperature"], req["stream"],
                          req["stream_options"]), (20, 0.5, True, {"include_usage": True}))
        c = self.finished(self.submit({"type": "llm", "model": "tiny:1b",
                                       "messages": msgs, "max_tokens": 5})["id"])
        self.assertEqual(c["outputs"]["tokens_out"], 5, c)
        self.assertEqual(self.requests_to(self.ollama, "/api/chat")[-1]["messages"], msgs)

        # ---- tokens reach the live log while a slow model answers ----
        s = self.submit({"type": "llm", "model": "slow:1b", "prompt": "go slowly",
                         "max_tokens": 12})["id"]
        live = wait_until(lambda: (lambda j: j if j["status"] == "running" and
                                   "Hello" in (j.get("log") or "") else None)(self.job(s)),
                          20, "the slow job's first words in its live log")
        self.assertNotIn("You said", live["log"])   # still coming
        s = self.finished(s)
        self.assertEqual(s["status"], "succeeded", s)

        # ---- failures: failed and refunded, with the reason ----
        for model, why in (("boom:1b", "boom: the model crashed (HTTP 500"),
                           ("cut:1b", "cut before its end"),
                           ("junk:1b", "not a JSON object")):
            f = self.finished(self.submit({"type": "llm", "model": model,
                                           "prompt": "x", "max_tokens": 10})["id"])
            self.assertEqual(f["status"], "failed", f)
            self.assertIn(why, f["error"], f)
            self.assertEqual(f["cost_micros"], 0, f)
        p = self.cli("run", "-t", "llm", "-p", "x", "--model", "boom:1b", key=self.key,
                     code=1)
        self.assertIn("failed: boom: the model crashed", p.stderr)
        self.assertEqual(p.stdout, "")
        w = self.submit({"type": "llm", "model": "nope:1b", "prompt": "x",
                         "queue_timeout_s": 1})["id"]
        w = self.finished(w, timeout=20)
        self.assertEqual(w["status"], "failed", w)
        self.assertIn("no node serves model 'nope:1b'", json.dumps(w), w)

        # ---- bad bodies ----
        for body in ({"type": "llm", "prompt": "x"},
                     {"type": "llm", "model": "tiny:1b"},
                     {"type": "llm", "model": "tiny:1b", "prompt": "x",
                      "messages": [{"role": "user", "content": "x"}]},
                     {"type": "llm", "model": "tiny:1b", "prompt": "x", "max_tokens": 0},
                     {"type": "llm", "model": "tiny:1b", "prompt": "x", "temperature": 3},
                     {"type": "llm", "model": "tiny:1b", "messages": [{"role": "user"}]},
                     {"type": "llm", "model": "tiny:1b",
                      "messages": [{"role": "us\ter", "content": "x"}]},
                     {"type": "llm", "model": "tiny\n1b", "prompt": "x"},
                     {"type": "llm", "model": "m" * 201, "prompt": "x"},
                     {"type": "llm", "model": "tiny:1b", "prompt": "x", "inputs": {}},
                     {"module": "echo", "prompt": "x"}):
            st, doc = network.http(self.base, "POST", "/api/v1/jobs", self.key, body)
            self.assertEqual(st, 400, (body, doc))
        self.cli("run", "-t", "echo", "-p", "x", key=self.key, code=2)
        self.cli("run", "-t", "llm", key=self.key, code=2)

        # ---- the money: every job at the node's price, exactly ----
        self.check_money(self.client_jobs())

        # ---- the model list follows the servers (one server changes its
        # list, the other goes down) ----
        self.ollama.models = ["tiny:1b", "new:7b"]
        self.openai.shutdown()
        self.openai.server_close()
        self.fakes.remove(self.openai)
        wait_until(lambda: set(self.models()) == {"tiny:1b", "new:7b"},
                   40, "the node to advertise the new model list")
        node.wait_for(lambda: [e for e in node.events()
                               if e.get("event") == "llm-server-down"],
                      10, "the node to say its openai server is down")
        self.assertTrue(node.alive())
        j = self.cli_json("run", "-t", "llm", "-p", "still here", "--model", "new:7b",
                          key=self.key)
        self.assertEqual(j["status"], "succeeded", j)
        self.verify_ledger()
        # clean exits (under sanitizers: no report)
        self.assertEqual(node.stop(), 0, node.output())
        self.assertFalse(sanitizer_report(node.stderr_text()), node.stderr_text())
        self.stop_orchestrator()


SEC_PRICE = 50        # the per-second node's micros per second of run


class LlmPrices(LlmBase):
    """A node priced per 1,000 tokens (start_llm_node) and one priced per
    second, both in front of the same model servers: each job goes to the
    node where its most (tokens at the one's price, timeout_s at the
    other's) is least, is charged per token or per run second as that node
    prices it, and the ledger's balances are exact."""

    def start_second_node(self):
        data = self.init_node("llm-s", 0)
        path = os.path.join(data, "config.toml")
        with open(path) as f:
            text = f.read()
        self.assertIn("\nllm_1k_tokens_micros = ", text)
        with open(path, "w") as f:   # one unit only: both are refused
            f.write(text.replace("\nllm_1k_tokens_micros = ",
                                 "\nllm_second_micros = %d\n# was " % SEC_PRICE))
        network.set_config(data, "node", "llm_refresh_s", 1)
        with open(path, "a") as f:
            f.write('\n[[llm]]\nkind = "ollama"\nurl = "%s"\n' % self.ollama_url)
        return self.registered(self.run_node(data), "llm-s")

    def test_per_second_and_per_token_nodes(self):
        tok = self.start_llm_node()
        sec = self.start_second_node()
        wait_until(lambda: len(self.models().get("slow:1b", [])) == 2, 20,
                   "both nodes to serve slow:1b")
        by_node = {n["node"]: n for n in self.models()["tiny:1b"]}
        self.assertEqual(by_node[sec.id]["price_second_micros"], SEC_PRICE)
        self.assertNotIn("price_1k_tokens_micros", by_node[sec.id])
        self.assertEqual(by_node[tok.id]["price_1k_tokens_micros"], PRICE)
        self.assertNotIn("price_second_micros", by_node[tok.id])
        p = self.cli("models", key=self.key)
        self.assertIn("$0.00005/s", p.stdout)
        self.assertIn("$5.00/1M tok", p.stdout)

        # Most per second: 5 s x 50 = 250; per token: (9 + 16 + 64 + 3)
        # tokens x 5000 / 1000 = 460. The per-second node runs it and is
        # paid its run time, whatever the tokens.
        j = self.cli_json("run", "-t", "llm", "-p", "go slowly", "--model", "slow:1b",
                          "--max-tokens", "3", "--timeout", "5", key=self.key)
        self.assertEqual(j["status"], "succeeded", j)
        self.assertEqual(j["node"], sec.id, j)
        self.assertGreaterEqual(j["run_ms"], 1500, j)   # the slow first token
        self.assertLessEqual(j["run_ms"], 5000 + 2000, j)
        self.assertEqual(j["cost_micros"], ceil_div(j["run_ms"] * SEC_PRICE, 1000), j)
        self.assertEqual(j["max_cost_micros"], ceil_div(92 * REF_PRICE, 1000), j)

        # Most per second: 20 s x 50 = 1000; per token: (15 + 16 + 64 +
        # 40) x 5 = 675: the per-token node, paid its tokens.
        prompt = "tell me a story"
        t = self.finished(self.submit({"type": "llm", "model": "tiny:1b", "prompt": prompt,
                                       "max_tokens": 40, "timeout_s": 20})["id"])
        self.assertEqual(t["status"], "succeeded", t)
        self.assertEqual(t["node"], tok.id, t)
        self.assertEqual(t["cost_micros"], ceil_div(
            (t["outputs"]["tokens_in"] + t["outputs"]["tokens_out"]) * PRICE, 1000), t)

        # The node stops the generation at the job's timeout_s (1 s, before
        # the slow model's first token): failed, refunded.
        f = self.finished(self.submit({"type": "llm", "model": "slow:1b", "prompt": "x",
                                       "max_tokens": 10, "timeout_s": 1})["id"])
        self.assertEqual((f["status"], f["node"], f["cost_micros"]),
                         ("failed", sec.id, 0), f)

        # A limit under every node's most: no node, said so.
        w = self.finished(self.submit({"type": "llm", "model": "tiny:1b", "prompt": "x",
                                       "timeout_s": 20, "max_cost_micros": 400,
                                       "queue_timeout_s": 1})["id"], timeout=20)
        self.assertEqual((w["status"], w["cost_micros"]), ("failed", 0), w)

        for body in ({"type": "llm", "model": "tiny:1b", "prompt": "x", "timeout_s": 0},
                     {"type": "llm", "model": "tiny:1b", "prompt": "x", "timeout_s": 86401},
                     {"type": "llm", "model": "tiny:1b", "prompt": "x", "timeout_s": "5"},
                     {"type": "llm", "model": "tiny:1b", "prompt": "x", "timeout_s": 1.5},
                     {"module": "echo", "timeout_s": 5}):
            st, doc = network.http(self.base, "POST", "/api/v1/jobs", self.key, body)
            self.assertEqual(st, 400, (body, doc))
        for bad in ("0", "86401", "x"):
            p = self.cli("run", "-t", "llm", "-p", "x", "--model", "m", "--timeout", bad,
                         key=self.key, code=2)
            self.assertIn("--timeout wants", p.stderr)

        # The money: each job at its node's price and unit, exactly.
        self.check_money(self.client_jobs())
        self.verify_ledger()
        for n in (tok, sec):
            self.assertEqual(n.stop(), 0, n.output())
            self.assertFalse(sanitizer_report(n.stderr_text()), n.stderr_text())
        self.stop_orchestrator()


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
