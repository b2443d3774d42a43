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
import sys
import tempfile
import unittest

from harness import Proc, http, run, sandbox_flags, sandbox_works, start_orchestrator

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


def api(base, method, path, key, body=None):
    """A JSON request that must succeed: the parsed reply."""
    st, doc = http(base, method, path, key, body)
    if st >= 300:
        raise AssertionError("%s %s -> %d %r" % (method, path, st, doc))
    return doc


def expected_outputs():
    """What the flow computes, from the embedded runner."""
    with rhizos.load_flow(WORDCOUNT) as flow:
        assert flow.validate([MODULES]) == []
        with tempfile.TemporaryDirectory() as d:
            r = rhizos.run(flow, data_dir=d, sandbox=sandbox_works())
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
        cls.admin = "rza_" + secrets.token_hex(16)
        env = dict(os.environ, RHIZOS_MODULES=MODULES)
        cls.orch = start_orchestrator(ORCH, os.path.join(cls.tmp.name, "orch"),
                                      admin_key=cls.admin, cwd=ROOT, env=env)
        cls.procs.append(cls.orch)
        cls.url = cls.orch.base

        acct = api(cls.url, "POST", "/api/v1/accounts", cls.admin, {"name": "e2e"})
        cls.key = acct["api_key"]
        api(cls.url, "POST", "/api/v1/accounts/%s/test-credits" % acct["id"], cls.admin,
            {"amount_micros": 100000})

        node_data = os.path.join(cls.tmp.name, "node")
        p = run([NODE, "init", "--data", node_data, "--orchestrator", cls.url],
                cwd=ROOT, env=env)
        if p.returncode != 0:
            raise AssertionError("rhizos-node init: " + p.stderr)
        cls.node = Proc([NODE, "start", "--data", node_data, "--orchestrator", cls.url,
                         "--modules", MODULES] + sandbox_flags(), cwd=ROOT, env=env)
        cls.procs.append(cls.node)
        cls.node.wait_for(lambda: any(
            n["state"] == "active"
            for n in api(cls.url, "GET", "/api/v1/nodes", cls.key)["nodes"]),
            30, "the node registering")
        cls.expected = expected_outputs()

    @classmethod
    def tearDownClass(cls):
        for p in reversed(cls.procs):
            p.stop(timeout=10)
        cls.tmp.cleanup()

    def logs(self):
        return "\n--- orchestrator ---\n%s\n--- node ---\n%s" % (
            self.orch.output(), self.node.output())

    def deploy_with(self, cmd):
        env = dict(os.environ, RHIZOS_URL=self.url, RHIZOS_API_KEY=self.key,
                   RHIZOS_LIB=LIB, RHIZOS_NODE_ADDON=ADDON, RHIZOS_MODULES=MODULES)
        p = run(cmd + [WORDCOUNT], cwd=ROOT, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + self.logs())
        self.assertIn("stage 3: count1 count2 count3", p.stdout)
        self.assertIn("estimate: $", p.stdout)
        status, outputs = printed_outputs(p.stdout)
        self.assertEqual(status, "succeeded")
        self.assertEqual(outputs, self.expected)
        self.assertNotIn(self.key, p.stdout + p.stderr)

    def test_python_example(self):
        self.deploy_with([sys.executable, os.path.join(ROOT, "examples", "python", "deploy.py")])

    def test_python_typed_jobs(self):
        """Client.submit_job / get_job / list_jobs / cancel_job against the
        real orchestrator and node: typed Job objects, a job run to its
        outputs, one that no node can take cancelled, errors as classes."""
        with rhizos.Client(self.url, self.key) as c:
            job = c.submit_job("text-source@1", config={"text": "to be or not"})
            self.assertIsInstance(job, rhizos.Job)
            self.assertEqual((job.module, job.deployment, job.outputs), ("text-source", None, None))
            self.assertIn(job.status, ("pending", "queued", "assigned", "running", "succeeded"))
            done = self.node.wait_for(lambda: (lambda j: j if j.finished else None)(
                c.get_job(job.id)), 60, "the job finishing")
            self.assertEqual(done.status, "succeeded", done.raw)
            self.assertEqual(done.outputs, {"text": "to be or not", "length": 12})
            self.assertIsInstance(done.node, int)

            stuck = c.submit_job("text-source@1", requirements={"gpu": {"count": 1}})
            waiting = c.get_job(stuck.id)
            self.assertIn(waiting.status, ("pending", "queued"))
            ids = [j.id for j in c.list_jobs()]
            self.assertEqual(ids[:2], [stuck.id, job.id])          # newest first
            self.assertEqual([j.id for j in c.list_jobs(limit=1)], [stuck.id])
            cancelled = c.cancel_job(stuck.id)
            self.assertEqual((cancelled.id, cancelled.status), (stuck.id, "cancelled"))
            with self.assertRaises(rhizos.StateError):
                c.cancel_job(stuck.id)
            with self.assertRaises(rhizos.NotFound):
                c.get_job(10 ** 9)
            with self.assertRaises(rhizos.Error):
                c.submit_job("no-such-module@1")

    def test_node_example(self):
        node = shutil.which("node")
        if not node or not os.path.exists(ADDON):
            self.skipTest("node or the rhizos.node addon is not built")
        self.deploy_with([node, os.path.join(ROOT, "examples", "node", "deploy.mjs")])


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]])
