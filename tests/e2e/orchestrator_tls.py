#!/usr/bin/env python3
"""End-to-end: the orchestrator serving HTTPS itself (--tls-cert,
--tls-key) and the CLI verifying it (--ca-file, RHIZOS_CA_FILE).

A self-signed certificate for 127.0.0.1 is made with openssl. A key file
others can read, a certificate without its key, or a key of another
certificate refuse the start before the data directory is made. Served:
health over TLS, plain HTTP on the same port gets no answer, the CLI
trusts the certificate only when told to (--ca-file), and a certificate
for another name is refused.

Usage: orchestrator_tls.py ORCHESTRATOR RHIZOS SOURCE_ROOT"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
from http.client import HTTPSConnection

from harness import Proc, cli_env, free_port, run

EXE, RHIZOS, ROOT = sys.argv[1], sys.argv[2], sys.argv[3]


def make_cert(folder, name, cn="127.0.0.1", san="IP:127.0.0.1"):
    cert, key = os.path.join(folder, name + ".pem"), os.path.join(folder, name + ".key")
    p = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
             "-addext", "subjectAltName=" + san, "-keyout", key, "-out", cert])
    assert p.returncode == 0, p.stderr
    os.chmod(key, 0o600)
    return cert, key


@unittest.skipUnless(shutil.which("openssl"), "no openssl command")
class Tls(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.cert, self.key = make_cert(self.tmp.name, "server")
        self.admin = os.urandom(24).hex()
        self.env = dict(os.environ, RHIZOS_ADMIN_KEY=self.admin)

    def tearDown(self):
        self.tmp.cleanup()

    def refused(self, args, why):
        data = os.path.join(self.tmp.name, "refused")
        p = run([EXE, "--listen", "127.0.0.1:%d" % free_port(), "--data", data, *args],
                env=self.env, timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(why, p.stderr)
        self.assertFalse(os.path.exists(data))

    def test_bad_pairs_refuse_the_start(self):
        other_cert, other_key = make_cert(self.tmp.name, "other")
        self.refused(["--tls-cert", self.cert], "go together")
        self.refused(["--tls-cert", self.cert, "--tls-key", other_key], "--tls-key")
        self.refused(["--tls-cert", self.key, "--tls-key", self.key], "--tls-cert")
        os.chmod(self.key, 0o644)
        self.refused(["--tls-cert", self.cert, "--tls-key", self.key],
                     "can be read by others (mode 0644)")

    def start(self):
        port = free_port()
        proc = Proc([EXE, "--listen", "127.0.0.1:%d" % port, "--data",
                     os.path.join(self.tmp.name, "data"), "--tls-cert", self.cert,
                     "--tls-key", self.key, "--quiet"], env=self.env)
        ctx = ssl.create_default_context(cafile=self.cert)
        deadline = time.time() + 20
        while True:
            try:
                c = HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
                c.request("GET", "/health")
                r = c.getresponse()
                body = json.loads(r.read())
                c.close()
                break
            except OSError:
                if time.time() > deadline or proc.p.poll() is not None:
                    proc.stop()
                    self.fail("no HTTPS answer: " + proc.output())
                time.sleep(0.1)
        self.assertEqual(body["status"], "ok")
        return proc, port

    def cli(self, port, *args, env=None):
        return run([RHIZOS, "--orchestrator", "https://127.0.0.1:%d" % port,
                    "--api-key", self.admin, *args], env=cli_env(**(env or {})), timeout=30)

    def test_https_served_and_verified(self):
        proc, port = self.start()
        try:
            # Plain HTTP on the TLS port: no HTTP answer.
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                try:
                    got = s.recv(100)
                except OSError:
                    got = b""
            self.assertFalse(got.startswith(b"HTTP/"), got)
            # The CLI trusts it only when told to.
            p = self.cli(port, "status", "--json", "--ca-file", self.cert)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(json.loads(p.stdout)["health"]["status"], "ok")
            p = self.cli(port, "status", env={"RHIZOS_CA_FILE": self.cert})
            self.assertEqual(p.returncode, 0, p.stderr)
            p = self.cli(port, "status")
            self.assertEqual(p.returncode, 3, p.stderr)
            self.assertIn("certificate", p.stderr.lower())
            other, _ = make_cert(self.tmp.name, "stranger")
            p = self.cli(port, "status", "--ca-file", other)
            self.assertEqual(p.returncode, 3, p.stderr)
            # Money routes work over it: an account made, its key never printed.
            p = self.cli(port, "account", "create", "--name", "tls", "--json",
                         "--ca-file", self.cert)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertTrue(json.loads(p.stdout)["api_key"].startswith("rzk_"))
            p = self.cli(port, "status", "--ca-file", os.path.join(self.tmp.name, "none"))
            self.assertEqual(p.returncode, 2, p.stderr)
        finally:
            self.assertEqual(proc.stop(), 0, proc.output())
        self.assertNotIn(self.admin, proc.stderr_text())

    def test_certificate_for_another_name(self):
        self.cert, self.key = make_cert(self.tmp.name, "elsewhere", cn="orch.example",
                                        san="DNS:orch.example")
        # Served, but a client that checks names refuses it for 127.0.0.1.
        port = free_port()
        proc = Proc([EXE, "--listen", "127.0.0.1:%d" % port, "--data",
                     os.path.join(self.tmp.name, "data"), "--tls-cert", self.cert,
                     "--tls-key", self.key, "--quiet"], env=self.env)
        try:
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            p = self.cli(port, "status", "--ca-file", self.cert)
            self.assertEqual(p.returncode, 3, p.stderr)
            self.assertIn("127.0.0.1", p.stderr)
        finally:
            proc.stop()


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
