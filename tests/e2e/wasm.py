#!/usr/bin/env python3
"""End-to-end: the wasm adapter (issue 23), embedded (`rhizos flow run`)
and through a node (`rhizos-node start` with an orchestrator).

The module is examples/wasm/wasm-hash, built by meson for wasm32-wasi:
its config.mode makes it misbehave (open a path outside its preopens, try
a socket, allocate until it fails, loop forever, read a secret). Each test
writes its own module folder (the built step.wasm and a manifest with the
digest it wants) into a temporary registry.

usage: wasm.py RHIZOS WASM_DIR SOURCE_ROOT [RHIZOS_NODE RHIZOS_ORCHESTRATOR]
Exits 77 (skipped) when the module was not built (no wasm32-wasi clang) or
no WebAssembly runtime answers here (rhizos-node info says which)."""
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

from harness import (Proc, cli_env, http, run, sandbox_flags,
                     start_orchestrator)

RHIZOS, WASM_DIR, ROOT = sys.argv[1:4]
NODE = sys.argv[4] if len(sys.argv) > 4 else None
ORCH = sys.argv[5] if len(sys.argv) > 5 else None
del sys.argv[1:]
STEP = os.path.join(WASM_DIR, "wasm-hash", "step.wasm")
MIX = os.path.join(ROOT, "examples", "wasm", "wasm-mix.yaml")
MIX_TEXT = "RhizOS runs WebAssembly"   # the flow's default input
SECRET = "wasm-secret-7f3a9c2e51d8"


def fnv_chain(text, rounds):
    """The demo's hash: FNV-1a 64 of text, then of the previous digest's 8
    little-endian bytes, rounds - 1 times."""
    def fnv(data):
        h = 0xcbf29ce484222325
        for b in data:
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h
    h = fnv(text.encode())
    for _ in range(rounds - 1):
        h = fnv(h.to_bytes(8, "little"))
    return "%016x" % h


def write_module(mods, sha=None, memory_mb=64, timeout_s=10, creds=False):
    """A wasm-hash module folder under `mods` with the given limits; `sha`
    replaces the file's digest in the manifest."""
    os.makedirs(os.path.join(mods, "wasm-hash"), exist_ok=True)
    dst = os.path.join(mods, "wasm-hash", "step.wasm")
    shutil.copyfile(STEP, dst)
    with open(dst, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(WASM_DIR, "wasm-hash", "module.json")) as f:
        man = json.load(f)
    man["exec"]["sha256"] = sha or digest
    man["exec"]["timeout_s"] = timeout_s
    man["requirements"]["memory_mb"] = memory_mb
    if creds:
        man["credentials"] = [{"name": "api", "type": "llm_api", "required": True}]
    with open(os.path.join(mods, "wasm-hash", "module.json"), "w") as f:
        json.dump(man, f)
    return digest


class Embedded(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.mods = os.path.join(self.tmp.name, "mods")
        self.env = cli_env(XDG_DATA_HOME=os.path.join(self.tmp.name, "data"),
                           RHIZOS_VAULT=os.path.join(self.tmp.name, "vault"),
                           RHIZOS_VAULT_PASSWORD="correct horse",
                           RHIZOS_VAULT_KDF="interactive")

    def tearDown(self):
        self.tmp.cleanup()

    def flow(self, config, creds=False):
        path = os.path.join(self.tmp.name, "flow.yaml")
        with open(path, "w") as f:
            f.write("flux: 1\nname: wasm-test\nsteps:\n  s:\n"
                    "    module: wasm-hash@1\n    config: %s\n"
                    "    inputs: {text: \"hello wasm\"}\n" % json.dumps(config))
            if creds:
                f.write("    credentials:\n"
                        "      api: { credentialId: openai, type: llm_api }\n")
        return path

    def run_flow(self, config, creds=False, timeout=60):
        p = run([RHIZOS, "flow", "run", self.flow(config, creds), "--modules",
                 self.mods, "--json"], cwd=ROOT, env=self.env, timeout=timeout)
        self.assertNotIn("ExperimentalWarning", p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        return p, doc["steps"]["s"]

    def test_the_demo_flow_mixes_wasm_and_process_steps(self):
        p = run([RHIZOS, "flow", "run", MIX, "--modules", WASM_DIR, "--json"],
                cwd=ROOT, env=self.env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("ExperimentalWarning", p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["steps"]["report"]["outputs"]["message"],
                         "hash %s after 1000 rounds" % fnv_chain(MIX_TEXT, 1000))

    def test_a_wasm_service_emits_events(self):
        """kind: service in a wasm step: its stdout read line by line (ready,
        then an event per line), a listener run per event."""
        write_module(self.mods)
        path = os.path.join(self.tmp.name, "svc.yaml")
        with open(path, "w") as f:
            f.write("flux: 1\nname: wasm-svc\nsteps:\n  svc:\n"
                    "    module: wasm-hash@1\n    kind: service\n    ready: line\n"
                    "    restart: {policy: never}\n"
                    "    config: {mode: events, rounds: 4}\n"
                    "  ann:\n    module: echo@1\n    on: {event: steps.svc.events.tick}\n"
                    "    max_parallel: 1\n"
                    "    inputs: {message: \"tick ${{ event.data.n }}\"}\n")
        p = run([RHIZOS, "flow", "run", path, "--modules", self.mods, "--modules",
                 os.path.join(ROOT, "examples", "modules"), "--json"], cwd=ROOT,
                env=self.env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["steps"]["svc"]["events"], 4, doc["steps"]["svc"])
        self.assertIn("ticked 4 times", doc["steps"]["svc"]["log"])
        runs = doc["steps"]["ann"]["runs"]
        self.assertEqual([r["outputs"]["message"] for r in runs],
                         ["tick %d" % i for i in range(1, 5)])
        self.assertEqual([r["event_key"] for r in runs], ["t%d" % i for i in range(1, 5)])

    def test_outputs_on_stdout_and_in_the_outputs_file(self):
        write_module(self.mods)
        for mode in ("", "file"):
            p, s = self.run_flow({"rounds": 1000, "mode": mode})
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(s["outputs"], {"hash": fnv_chain("hello wasm", 1000),
                                            "rounds": 1000, "bytes": 10}, mode)
            self.assertIn("hashed 10 bytes, 1000 rounds", p.stderr)

    def test_file_outputs_and_inputs(self):
        # A file written under RZ_OUTPUT_DIR (/rz/out/files), taken into the
        # blob store, handed to the next wasm step as a path it sees.
        if not os.path.exists(os.path.join(WASM_DIR, "wasm-file", "module.json")):
            self.skipTest("examples/wasm/wasm-file was not built")
        path = os.path.join(self.tmp.name, "files.yaml")
        with open(path, "w") as f:
            f.write("flux: 1\nname: wasm-files\nsteps:\n"
                    "  a:\n    module: wasm-file@1\n    config: {bytes: 100000}\n"
                    "  b:\n    module: wasm-file@1\n    needs: [a]\n"
                    "    inputs: {data: \"${{ steps.a.outputs.data }}\"}\n")
        for mode, flags, env in (("sandbox", [], {}),
                                 ("bwrap", [], {"RHIZOS_SANDBOX": "bwrap"}),
                                 ("none", ["--no-sandbox"], {})):
            p = run([RHIZOS, "flow", "run", path, "--modules", WASM_DIR, "--json"] + flags,
                    cwd=ROOT, env=dict(self.env, **env), timeout=60)
            self.assertEqual(p.returncode, 0, mode + ": " + p.stderr)
            steps = json.loads(p.stdout)["steps"]
            ref = steps["a"]["outputs"]["data"]["$file"]
            self.assertEqual((ref["size"], ref["name"]), (100000, "copy/out.bin"), mode)
            with open(ref["path"], "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), ref["sha256"])
            b = steps["b"]["outputs"]
            self.assertEqual((b["size"], b["fnv"]), (100000, steps["a"]["outputs"]["fnv"]),
                             mode)
            self.assertTrue(b["input"].startswith("/rz/in/files/%s/" % ref["sha256"]),
                            b["input"])
            self.assertEqual(b["data"]["$file"]["sha256"], ref["sha256"], mode)

    def test_outside_its_preopens_and_sockets_fail_cleanly(self):
        write_module(self.mods)
        p, s = self.run_flow({"mode": "escape"})
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(s["status"], "failed")
        self.assertRegex(s["error"], r"^exit status 3: open /etc/passwd: ")
        p, s = self.run_flow({"mode": "socket"})
        self.assertEqual(s["status"], "failed")
        self.assertRegex(s["error"], r"^exit status 3: accept: ")

    def test_allocating_past_the_cap_fails_for_memory(self):
        write_module(self.mods, memory_mb=32)
        p, s = self.run_flow({"mode": "grow"})
        self.assertEqual(s["status"], "failed")
        self.assertIn("out of memory: the module's linear memory reached its "
                      "cap (32 MiB, from memory_mb)", s["error"])
        # The module saw its allocations fail near the cap, not the host's.
        self.assertRegex(p.stderr, r"malloc failed after (2[89]|3[01]) MiB")

    def test_an_infinite_loop_is_stopped_by_the_timeout(self):
        write_module(self.mods, timeout_s=2)
        t = time.monotonic()
        p, s = self.run_flow({"mode": "spin"})
        self.assertEqual((s["status"], s["error"]), ("failed", "timed out after 2 s"))
        self.assertLess(time.monotonic() - t, 30)

    def test_a_digest_mismatch_is_refused(self):
        write_module(self.mods, sha="0" * 64)
        p, s = self.run_flow({"rounds": 1})
        self.assertEqual(s["status"], "failed")
        self.assertIn("its sha256 is", s["error"])
        self.assertIn("not the manifest's " + "0" * 64 + ": refused", s["error"])
        self.assertNotIn("hashed", p.stderr)   # it never ran
        # A file changed after its manifest was written: the same refusal.
        write_module(self.mods)
        with open(os.path.join(self.mods, "wasm-hash", "step.wasm"), "ab") as f:
            f.write(b"\0")
        p, s = self.run_flow({"rounds": 1})
        self.assertIn(": refused", s["error"])

    def test_secrets_are_files_and_scrubbed(self):
        write_module(self.mods, creds=True)
        run([RHIZOS, "vault", "init"], env=self.env, cwd=ROOT)
        p = run([RHIZOS, "vault", "add", "openai", "--type", "llm_api"],
                env=self.env, stdin=SECRET + "\n", cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stderr)
        p, s = self.run_flow({"mode": "secret", "secret_name": "api"}, creds=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(s["outputs"], {"secret_len": len(SECRET)})
        self.assertIn("the secret is [redacted]", p.stderr)
        self.assertNotIn(SECRET, p.stdout + p.stderr)
        for dirpath, _, files in os.walk(self.tmp.name):
            for name in files:
                if name == "vault":
                    continue
                with open(os.path.join(dirpath, name), "rb") as f:
                    self.assertNotIn(SECRET.encode(), f.read(), name)


@unittest.skipUnless(NODE and ORCH, "no node agent or orchestrator binary")
class ThroughANode(unittest.TestCase):
    ADMIN = "test-admin-key-0123456789abcdef-wasm"

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.mods = os.path.join(self.tmp.name, "mods")
        write_module(self.mods, memory_mb=32, timeout_s=3)
        self.orch = start_orchestrator(
            ORCH, os.path.join(self.tmp.name, "orch"),
            ["--node-timeout-ms", "3000", "--modules", self.mods],
            admin_key=self.ADMIN, cwd=ROOT, timeout=20)
        self.base = self.orch.base
        st, acct = http(self.base, "POST", "/api/v1/accounts", self.ADMIN, {})
        self.assertEqual(st, 201, acct)
        self.key = acct["api_key"]
        st, body = http(self.base, "POST", "/api/v1/accounts/%s/test-credits"
                        % acct["id"], self.ADMIN, {"amount_micros": 100000})
        self.assertEqual(st, 200, body)
        data = os.path.join(self.tmp.name, "node")
        self.assertEqual(run([NODE, "init", "--data", data]).returncode, 0)
        self.node = Proc([NODE, "start", "--data", data, "--orchestrator",
                          self.base, "--json", "--modules", self.mods,
                          *sandbox_flags()], cwd=ROOT)
        self.node.wait_for(lambda: any(e.get("event") == "registered"
                                       for e in self.node.events()),
                           15, "the node did not register")

    def tearDown(self):
        self.node.stop(signal.SIGKILL)
        self.orch.stop()
        self.tmp.cleanup()

    def job(self, config):
        st, job = http(self.base, "POST", "/api/v1/jobs", self.key,
                       {"module": "wasm-hash", "max_cost_micros": 100,
                        "inputs": {"text": "hello wasm"}, "config": config})
        self.assertEqual(st, 201, job)
        end = time.time() + 40
        while time.time() < end:
            st, j = http(self.base, "GET", "/api/v1/jobs/%d" % job["id"], self.key)
            if j["status"] in ("succeeded", "failed", "cancelled"):
                return j
            time.sleep(0.1)
        raise AssertionError("job %s still %s" % (job["id"], j))

    def test_the_node_advertises_wasm_only_with_a_runtime(self):
        data = os.path.join(self.tmp.name, "node")
        p = run([NODE, "info", "--data", data])
        self.assertRegex(p.stdout, r"(?m)^adapters .*\bwasm\b")
        self.assertRegex(p.stdout, r"(?m)^wasm +node:wasi \(Node\.js v\d+")
        p = run([NODE, "info", "--data", data],
                env=dict(os.environ, RHIZOS_WASM_NODE=""))
        self.assertNotRegex(p.stdout, r"(?m)^adapters .*\bwasm\b")
        self.assertRegex(p.stdout, r"(?m)^wasm +no runtime answers")

    def test_wasm_jobs_on_a_node(self):
        st, nodes = http(self.base, "GET", "/api/v1/nodes", self.ADMIN)
        self.assertEqual(st, 200, nodes)
        j = self.job({"rounds": 7})
        self.assertEqual(j["status"], "succeeded", j)
        self.assertEqual(j["outputs"]["hash"], fnv_chain("hello wasm", 7))
        j = self.job({"mode": "escape"})
        self.assertEqual(j["status"], "failed", j)
        self.assertIn("open /etc/passwd: ", j["error"])
        j = self.job({"mode": "grow"})
        self.assertEqual(j["status"], "failed", j)
        self.assertIn("out of memory: the module's linear memory reached its "
                      "cap (32 MiB", j["error"])
        j = self.job({"mode": "spin"})
        self.assertEqual(j["status"], "failed", j)
        self.assertIn("timed out after 3 s", j["error"])
        j = self.job({"mode": "socket"})
        self.assertEqual(j["status"], "failed", j)
        self.assertIn("accept: ", j["error"])
        self.assertNotIn("ExperimentalWarning", self.node.output(20000))
        # The node's copy of the file changed under the same manifest: the
        # node refuses to run it (the manifest's digest still agrees).
        with open(os.path.join(self.mods, "wasm-hash", "step.wasm"), "ab") as f:
            f.write(b"\0")
        j = self.job({"rounds": 1})
        self.assertEqual(j["status"], "failed", j)
        self.assertIn("not the manifest's", j["error"])
        self.assertIn(": refused", j["error"])

    def test_the_demo_flow_on_the_network(self):
        env = cli_env()
        p = run([RHIZOS, "--orchestrator", self.base, "--api-key", self.key,
                 "flow", "deploy", MIX, "--json"], cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        fid = json.loads(p.stdout)["id"]
        p = run([RHIZOS, "--orchestrator", self.base, "--api-key", self.key,
                 "flow", "watch", str(fid), "--json"], cwd=ROOT, env=env,
                timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = run([RHIZOS, "--orchestrator", self.base, "--api-key", self.key,
                 "flow", "status", str(fid), "--json"], cwd=ROOT, env=env)
        st = json.loads(p.stdout)
        self.assertEqual(st["status"], "succeeded", st)
        self.assertEqual(st["steps"]["hash"]["outputs"]["hash"],
                         fnv_chain(MIX_TEXT, 1000))


if __name__ == "__main__":
    if not os.path.exists(STEP):
        print("skipped: %s was not built (no clang for wasm32-wasi)" % STEP)
        sys.exit(77)
    info = run([NODE, "info"]) if NODE else None
    if info and "wasm      node:wasi" not in info.stdout:
        print("skipped: no WebAssembly runtime here (%s)"
              % info.stdout.strip().splitlines()[-1])
        sys.exit(77)
    unittest.main()
