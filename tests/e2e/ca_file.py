#!/usr/bin/env python3
"""End-to-end: the node agent and both bindings trust a private CA when told
to, and only then (issue 20): an orchestrator serving HTTPS with a
self-signed certificate; `rhizos-node register` fails on it without a CA
and registers with --ca-file or [orchestrator] ca_file; a CA file that
cannot be read is refused, saying which; a certificate of another CA is
refused. Python's Client(ca_file=...) and Node's new Client(url, key,
{caFile}) the same, requests and event streams alike.

Usage: ca_file.py ORCHESTRATOR RHIZOS_NODE SOURCE_ROOT LIBRHIZOS ADDON
       ca_file.py --sanitized   (the bindings cannot load an ASan library;
                                 the node agent part still runs)"""
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

from harness import Proc, free_port, run, set_config

SANITIZED = "--sanitized" in sys.argv
ARGS = [a for a in sys.argv[1:] if a != "--sanitized"]
EXE, NODE, ROOT = ARGS[0], ARGS[1], ARGS[2]
LIB = ARGS[3] if len(ARGS) > 3 else None
ADDON = ARGS[4] if len(ARGS) > 4 else None


def make_cert(folder, name):
    cert, key = os.path.join(folder, name + ".pem"), os.path.join(folder, name + ".key")
    p = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert])
    assert p.returncode == 0, p.stderr
    os.chmod(key, 0o600)
    return cert, key


@unittest.skipUnless(shutil.which("openssl"), "no openssl command")
class CaFile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        t = cls.tmp.name
        cls.cert, key = make_cert(t, "server")
        cls.other, _ = make_cert(t, "stranger")
        cls.admin = os.urandom(24).hex()
        port = free_port()
        cls.url = "https://127.0.0.1:%d" % port
        cls.p = Proc([EXE, "--listen", "127.0.0.1:%d" % port, "--data", os.path.join(t, "data"),
                      "--tls-cert", cls.cert, "--tls-key", key, "--quiet",
                      "--modules", os.path.join(ROOT, "examples", "modules")],
                     env=dict(os.environ, RHIZOS_ADMIN_KEY=cls.admin))
        ctx = ssl.create_default_context(cafile=cls.cert)
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(cls.url + "/health", context=ctx, timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or not cls.p.alive():
                    cls.p.stop()
                    raise AssertionError("no HTTPS orchestrator:\n" + cls.p.output())
                time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        try:
            assert cls.p.stop() == 0, cls.p.output()
        finally:
            cls.tmp.cleanup()

    def node(self, name):
        data = os.path.join(self.tmp.name, name)
        p = run([NODE, "init", "--data", data, "--orchestrator", self.url])
        self.assertEqual(p.returncode, 0, p.stderr)
        return data

    def test_node_agent(self):
        data = self.node("n1")
        p = run([NODE, "register", "--data", data], timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("certificate", p.stderr.lower())
        self.assertFalse(os.path.exists(os.path.join(data, "token")))
        p = run([NODE, "register", "--data", data, "--ca-file", self.other], timeout=60)
        self.assertNotEqual(p.returncode, 0)
        p = run([NODE, "register", "--data", data, "--ca-file",
                 os.path.join(self.tmp.name, "none.pem")], timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("none.pem", p.stderr)
        p = run([NODE, "register", "--data", data, "--ca-file", self.cert, "--json"],
                timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        first = json.loads(p.stdout)["id"]
        # From the config file; `start` refuses an unreadable one at once.
        set_config(data, "orchestrator", "ca_file", json.dumps(self.cert))
        p = run([NODE, "register", "--data", data, "--json"], timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["id"], first)
        p = run([NODE, "start", "--data", data, "--no-sandbox", "--once", "--ca-file",
                 os.path.join(self.tmp.name, "gone.pem")], timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("gone.pem", p.stderr)
        set_config(data, "orchestrator", "ca_file", '""')
        p = run([NODE, "register", "--data", data], timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("ca_file", p.stderr)

    def bindings_env(self):
        return dict(os.environ, RHIZOS_LIBRARY=LIB, RHIZOS_NODE_ADDON=ADDON or "",
                    PYTHONPATH=os.path.join(ROOT, "bindings", "python"),
                    URL=self.url, CA=self.cert, OTHER=self.other, KEY=self.admin)

    @unittest.skipIf(SANITIZED or not LIB, "the bindings cannot load an ASan librhizos")
    def test_python_client(self):
        code = r"""
import os, rhizos
url, ca = os.environ["URL"], os.environ["CA"]
with rhizos.Client(url, os.environ["KEY"], ca_file=ca) as c:
    assert c.request("GET", "/health")["status"] == "ok"
    acct = c.request("POST", "/api/v1/accounts", {"name": "py"})
    assert acct["api_key"].startswith("rzk_")
for ca_file in (None, os.environ["OTHER"]):
    try:
        with rhizos.Client(url, os.environ["KEY"], ca_file=ca_file) as c:
            c.request("GET", "/health")
        raise SystemExit("trusted without its CA: %r" % ca_file)
    except rhizos.ConnectError as e:
        assert "certificate" in str(e).lower(), e
try:
    rhizos.Client(url, ca_file="/nonexistent/ca.pem")
    raise SystemExit("an unreadable CA file was taken")
except rhizos.Error as e:
    assert "ca.pem" in str(e), e
print("ok")
"""
        p = subprocess.run([sys.executable, "-c", code], env=self.bindings_env(),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "ok"), p.stderr)

    @unittest.skipIf(SANITIZED or not LIB, "the bindings cannot load an ASan librhizos")
    def test_node_client(self):
        node = shutil.which("node")
        if not node or not ADDON or not os.path.exists(ADDON):
            self.skipTest("node or the rhizos.node addon is not built")
        code = r"""
const { Client } = require(process.env.PKG);
(async () => {
  const { URL: url, CA: ca, OTHER: other, KEY: key } = process.env;
  const c = new Client(url, key, { caFile: ca });
  const h = await c.request('GET', '/health');
  if (h.status !== 'ok') throw new Error('health');
  c.close();
  for (const caFile of [undefined, other]) {
    const d = new Client(url, key, { caFile });
    let refused = false;
    try { await d.request('GET', '/health'); } catch (e) { refused = /certificate/i.test(e.message); }
    d.close();
    if (!refused) throw new Error('trusted without its CA: ' + caFile);
  }
  let threw = false;
  try { new Client(url, key, { caFile: '/nonexistent/ca.pem' }); } catch (e) { threw = /ca\.pem/.test(e.message); }
  if (!threw) throw new Error('an unreadable CA file was taken');
  try { new Client(url, key, { caFile: 5 }); throw new Error('a number was taken'); } catch (e) { if (e.code !== 'RZ_EINVAL') throw e; }
  console.log('ok');
})().catch((e) => { console.error(e); process.exit(1); });
"""
        env = self.bindings_env()
        env["PKG"] = os.path.join(ROOT, "bindings", "node", "index.js")
        p = subprocess.run([node, "-e", code], env=env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "ok"), p.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
