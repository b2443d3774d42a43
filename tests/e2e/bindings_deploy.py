#!/usr/bin/env python3
"""End-to-end: examples/python/deploy.py and examples/node/deploy.mjs deploy
the word count to a real orchestrator on loopback with one real node, and
each must print the outputs the embedded runner computes for that flow.

Usage: bindings_deploy.py ORCHESTRATOR NODE_AGENT SOURCE_ROOT LIBRHIZOS NODE_ADDON
Exit 77 (meson: skipped) when the orchestrator or the node agent is not built.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

SKIP = 77
ARGS = sys.argv[1:]


def skip(why):
    print("SKIP: %s" % why)
    sys.exit(SKIP)


if ARGS == ["--sanitized"]:
    skip("a sanitizer build: python3 and node cannot load an ASan librhizos; "
         "this test runs in the plain build")
if len(ARGS) != 5:
    skip("the orchestrator (server/orchestrator) or the node agent is not part of "
         "this build, so there is nothing to deploy to")
ORCH, NODE, ROOT, LIB, ADDON = ARGS
for exe in (ORCH, NODE):
    if not os.access(exe, os.X_OK):
        skip("%s is not built" % exe)

MODULES = os.path.join(ROOT, "examples", "modules")
WORDCOUNT = os.path.join(ROOT, "examples", "flows", "wordcount.yaml")
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
os.environ["RHIZOS_LIB"] = LIB
import rhizos  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bwrap_works():
    """The node sandboxes jobs with bubblewrap; without user namespaces
    (some containers) it cannot, and the node runs them unsandboxed."""
    if not shutil.which("bwrap"):
        return False
    p = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                        "--unshare-all", "true"], capture_output=True)
    return p.returncode == 0


def http(method, url, key, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return json.loads(text) if text else None


def wait_for(what, check, limit=30.0):
    """Readiness, not speed: poll until check() is true (fail after limit s)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("%s did not happen within %.0f s" % (what, limit))


def expected_outputs():
    """What the flow computes, from the embedded runner."""
    with rhizos.load_flow(WORDCOUNT) as flow:
        assert flow.validate([MODULES]) == []
        with tempfile.TemporaryDirectory() as d:
            r = rhizos.run(flow, data_dir=d, sandbox=bwrap_works())
        assert r.ok, r
        return r.outputs


def printed_outputs(stdout):
    """The JSON the examples print after their `status:` line."""
    lines = stdout.splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith("status: "))
    return lines[at].split()[1], json.loads("\n".join(lines[at + 1:]))


class BindingsDeploy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.procs = []
        port = free_port()
        cls.url = "http://127.0.0.1:%d" % port
        cls.admin = "rza_" + secrets.token_hex(16)
        env = dict(os.environ, RHIZOS_ADMIN_KEY=cls.admin, RHIZOS_MODULES=MODULES)
        cls.orch_log = open(os.path.join(cls.tmp.name, "orchestrator.log"), "w+")
        cls.procs.append(subprocess.Popen(
            [ORCH, "--listen", "127.0.0.1:%d" % port,
             "--data", os.path.join(cls.tmp.name, "orch")],
            cwd=ROOT, env=env, stdout=cls.orch_log, stderr=subprocess.STDOUT))
        wait_for("the orchestrator answering /health",
                 lambda: http("GET", cls.url + "/health", "")["status"] == "ok")

        acct = http("POST", cls.url + "/api/v1/accounts", cls.admin, {"name": "e2e"})
        cls.key = acct["api_key"]
        http("POST", cls.url + "/api/v1/accounts/%s/test-credits" % acct["id"], cls.admin,
             {"amount_cents": 100000})

        node_data = os.path.join(cls.tmp.name, "node")
        sandbox = [] if bwrap_works() else ["--no-sandbox"]
        subprocess.run([NODE, "init", "--data", node_data, "--orchestrator", cls.url],
                       cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
        cls.node_log = open(os.path.join(cls.tmp.name, "node.log"), "w+")
        cls.procs.append(subprocess.Popen(
            [NODE, "start", "--data", node_data, "--orchestrator", cls.url,
             "--modules", MODULES] + sandbox,
            cwd=ROOT, env=env, stdout=cls.node_log, stderr=subprocess.STDOUT))
        wait_for("the node registering", lambda: any(
            n["state"] == "active"
            for n in http("GET", cls.url + "/api/v1/nodes", cls.key)["nodes"]))
        cls.expected = expected_outputs()

    @classmethod
    def tearDownClass(cls):
        for p in reversed(cls.procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in (getattr(cls, "orch_log", None), getattr(cls, "node_log", None)):
            if log:
                log.close()
        cls.tmp.cleanup()

    def logs(self):
        out = []
        for log in (self.orch_log, self.node_log):
            log.flush()
            log.seek(0)
            out.append(log.read()[-4000:])
        return "\n--- orchestrator ---\n%s\n--- node ---\n%s" % tuple(out)

    def deploy_with(self, cmd):
        env = dict(os.environ, RHIZOS_URL=self.url, RHIZOS_API_KEY=self.key,
                   RHIZOS_LIB=LIB, RHIZOS_NODE_ADDON=ADDON, RHIZOS_MODULES=MODULES)
        p = subprocess.run(cmd + [WORDCOUNT], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + self.logs())
        self.assertIn("stage 3: count1 count2 count3", p.stdout)
        self.assertIn("estimate: $", p.stdout)
        status, outputs = printed_outputs(p.stdout)
        self.assertEqual(status, "succeeded")
        self.assertEqual(outputs, self.expected)
        self.assertNotIn(self.key, p.stdout + p.stderr)

    def test_python_example(self):
        self.deploy_with([sys.executable, os.path.join(ROOT, "examples", "python", "deploy.py")])

    def test_node_example(self):
        node = shutil.which("node")
        if not node or not os.path.exists(ADDON):
            self.skipTest("node or the rhizos.node addon is not built")
        self.deploy_with([node, os.path.join(ROOT, "examples", "node", "deploy.mjs")])


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]])
