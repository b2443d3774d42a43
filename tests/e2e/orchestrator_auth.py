#!/usr/bin/env python3
"""End-to-end: the orchestrator's admin key strength and its brake on
guessed keys.

A one-character (or patterned) admin key, from a file or the environment,
is refused at start with a message that states the rule and not the key,
before any store is opened: a refused start changes nothing on disk.
A burst of wrong keys from one address is answered 401 ten times, then 429
with Retry-After (without checking the key, so even the right one waits on
that address); the same wrong key from another address is refused 429
too; a client with the right key on another address is served; after the
lock has passed, one more wrong key locks the address for twice as long.

Usage: orchestrator_auth.py ORCHESTRATOR SOURCE_ROOT"""
import json
import os
import sys
import tempfile
import time
import unittest
from http.client import HTTPConnection

from harness import free_port, run, start_orchestrator

EXE, ROOT = sys.argv[1], sys.argv[2]
LIMIT = 10   # --auth-failures' default


def call(base, key, source="127.0.0.1", path="/api/v1/accounts/me"):
    """GET `path` from the loopback address `source`: (status, headers, doc)."""
    host, _, port = base.split("://", 1)[-1].partition(":")
    c = HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    try:
        c.request("GET", path, headers={"Authorization": "Bearer " + key})
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), json.loads(data) if data else None
    finally:
        c.close()


class AdminKeyStrength(unittest.TestCase):
    def start(self, tmp, key, via_file):
        env = dict(os.environ)
        env.pop("RHIZOS_ADMIN_KEY", None)
        args = [EXE, "--listen", "127.0.0.1:%d" % free_port(),
                "--data", os.path.join(tmp, "data"), "--quiet"]
        if via_file:
            path = os.path.join(tmp, "admin.key")
            with open(path, "w") as f:
                f.write(key + "\n")
            args += ["--admin-key-file", path]
        else:
            env["RHIZOS_ADMIN_KEY"] = key
        return run(args, env=env, timeout=30)

    def test_one_character_key_from_a_file_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            p = self.start(tmp, "Q", via_file=True)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("admin key", p.stderr)
            self.assertIn("at least 32", p.stderr)
            self.assertNotIn("Q\n", p.stderr.replace("\n\n", "\n"))

    def test_one_character_key_from_the_environment_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            p = self.start(tmp, "Q", via_file=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("$RHIZOS_ADMIN_KEY", p.stderr)

    def test_long_patterned_key_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            p = self.start(tmp, "ab" * 20, via_file=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("different characters", p.stderr)
            self.assertNotIn("ab" * 20, p.stderr)

    def test_failed_listen_leaves_no_folder(self):
        # A port in use, or an address this machine lacks: refused with the
        # reason, and no data directory made.
        import socket
        with socket.socket() as busy, tempfile.TemporaryDirectory() as tmp:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            env = dict(os.environ, RHIZOS_ADMIN_KEY=os.urandom(24).hex())
            for listen, why in (("127.0.0.1:%d" % busy.getsockname()[1], "in use"),
                                ("192.0.2.1:80", "")):
                with self.subTest(listen=listen):
                    data = os.path.join(tmp, "data")
                    p = run([EXE, "--listen", listen, "--data", data, "--quiet"],
                            env=env, timeout=30)
                    self.assertEqual(p.returncode, 1, p.stderr)
                    self.assertIn("cannot listen on " + listen, p.stderr)
                    self.assertIn(why, p.stderr)
                    self.assertNotIn(": Success", p.stderr)
                    self.assertFalse(os.path.exists(data))

    def test_metrics_key_rules(self):
        # Weak, the admin key itself, or an unreadable file: refused at
        # start, before the data directory is made, and never printed.
        good = os.urandom(24).hex()
        with tempfile.TemporaryDirectory() as tmp:
            for mkey, why in (("Q", "metrics key"), (good, "must differ"),
                              (None, "cannot read the metrics key")):
                with self.subTest(why=why):
                    path = os.path.join(tmp, "metrics.key")
                    if mkey is None:
                        path = os.path.join(tmp, "absent")
                    else:
                        with open(path, "w") as f:
                            f.write(mkey + "\n")
                    env = dict(os.environ, RHIZOS_ADMIN_KEY=good)
                    p = run([EXE, "--listen", "127.0.0.1:%d" % free_port(),
                             "--data", os.path.join(tmp, "data"), "--quiet",
                             "--metrics-key-file", path], env=env, timeout=30)
                    self.assertEqual(p.returncode, 1, p.stderr)
                    self.assertIn(why, p.stderr)
                    self.assertNotIn(good, p.stderr)
                    self.assertFalse(os.path.exists(os.path.join(tmp, "data")))

    def snapshot(self, root):
        """Every file under root: (path, size, mtime_ns, bytes)."""
        out = []
        for d, _, files in os.walk(root):
            for name in sorted(files):
                p = os.path.join(d, name)
                st = os.stat(p)
                with open(p, "rb") as f:
                    out.append((p, st.st_size, st.st_mtime_ns, f.read()))
        return sorted(out)

    def test_refused_start_changes_nothing_on_disk(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data")
            # A new directory is not even made.
            p = self.start(tmp, "Q", via_file=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertFalse(os.path.exists(data))
            # One with state: not a byte or a time changes, whether the weak
            # key comes from the environment or from DATA/admin.key.
            good = os.urandom(24).hex()
            srv = start_orchestrator(EXE, data, ["--quiet"], admin_key=good, cwd=ROOT)
            srv.stop_clean()
            before = self.snapshot(data)
            self.assertTrue(any(p.endswith("ledger/data.mdb") for p, *_ in before))
            time.sleep(0.05)
            p = self.start(tmp, "Q", via_file=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertEqual(self.snapshot(data), before)
            with open(os.path.join(data, "admin.key"), "w") as f:
                f.write("ab" * 20 + "\n")
            before = self.snapshot(data)
            env = dict(os.environ)
            env.pop("RHIZOS_ADMIN_KEY", None)
            p = run([EXE, "--listen", "127.0.0.1:%d" % free_port(), "--data", data,
                     "--quiet"], env=env, timeout=30)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(os.path.join(data, "admin.key"), p.stderr)
            self.assertEqual(self.snapshot(data), before)


class WrongKeyThrottle(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.admin = "rza_auth_e2e_" + os.urandom(16).hex()
        self.proc = start_orchestrator(EXE, os.path.join(self.tmp.name, "data"),
                                       ["--quiet"], admin_key=self.admin, cwd=ROOT)

    def tearDown(self):
        try:
            self.proc.stop_clean()
        finally:
            self.tmp.cleanup()

    def burst(self, source, n):
        return [call(self.proc.base, "rzk_guess_%d" % i, source) for i in range(n)]

    def test_burst_is_throttled_after_the_limit(self):
        got = self.burst("127.0.0.1", 3 * LIMIT)
        codes = [st for st, _, _ in got]
        self.assertEqual(codes[:LIMIT], [401] * LIMIT)
        self.assertEqual(codes[LIMIT:], [429] * (2 * LIMIT))
        st, headers, doc = got[-1]
        self.assertGreaterEqual(int(headers["Retry-After"]), 1)
        self.assertEqual(doc["error"]["code"], "RZ_EDENIED")
        self.assertNotIn("rzk_guess", json.dumps(doc))

    def test_right_key_on_another_address_is_served(self):
        self.burst("127.0.0.1", 3 * LIMIT)
        st, _, _ = call(self.proc.base, self.admin, "127.0.0.2", "/api/v1/stats")
        self.assertEqual(st, 200)

    def test_right_key_on_the_locked_address_waits(self):
        self.burst("127.0.0.1", LIMIT)
        st, headers, _ = call(self.proc.base, self.admin, "127.0.0.1", "/api/v1/stats")
        self.assertEqual(st, 429)
        self.assertIn("Retry-After", headers)

    def test_one_wrong_key_from_many_addresses_is_throttled(self):
        codes = [call(self.proc.base, "rzk_same_guess", "127.0.0.%d" % (10 + i))[0]
                 for i in range(LIMIT + 2)]
        self.assertEqual(codes, [401] * LIMIT + [429, 429])

    def test_lock_doubles_after_it_passes(self):
        self.burst("127.0.0.1", LIMIT)
        first = int(call(self.proc.base, "x" * 40, "127.0.0.1")[1]["Retry-After"])
        time.sleep(first + 0.2)
        self.assertEqual(call(self.proc.base, "rzk_again", "127.0.0.1")[0], 401)
        second = int(call(self.proc.base, "y" * 40, "127.0.0.1")[1]["Retry-After"])
        self.assertEqual((first, second), (1, 2))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
