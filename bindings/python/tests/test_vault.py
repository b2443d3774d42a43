"""Credential vault through the Python bindings."""
import os
import shutil
import tempfile
import unittest

import base64

import rhizos

from helpers import node_keypair, unseal

FAST = (1, 8192)        # the cheapest KDF the library accepts: tests only


SECRET_FLOW = """flux: 1
name: secret-use
steps:
  call:
    module: secret-user@1
    credentials:
      api: { credentialId: openai, type: llm_api }
      again: { credentialId: openai, type: llm_api }
"""


class TestVault(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rz-py-vault-")
        self.path = os.path.join(self.dir, "creds.vault")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_add_list_reveal_remove_persist(self):
        with rhizos.Vault(self.path, "correct horse", kdf=FAST) as v:
            eid = v.add("openai", "llm_api", "sk-abc", metadata={"note": "dev"})
            v.add("wallet", "wallet_private_key", b"\x00\x01\xfe\xff")
            self.assertEqual(len(eid), 32)
            self.assertEqual(len(v), 2)
            self.assertNotIn("sk-abc", repr(v))
            entries = v.list()
            self.assertEqual([(e.name, e.type) for e in entries],
                             [("openai", "llm_api"), ("wallet", "wallet_private_key")])
            self.assertEqual(entries[0].metadata, {"note": "dev"})
            self.assertNotIn("sk-abc", repr(entries))
            self.assertEqual(v.get("openai"), "sk-abc")
            self.assertEqual(v.reveal(eid), b"sk-abc")
            self.assertEqual(v.reveal("wallet"), b"\x00\x01\xfe\xff")
            v.update("openai", "sk-new")
            self.assertIn("openai", v)
        with rhizos.Vault(self.path, "correct horse") as v:
            self.assertEqual(v.get("openai"), "sk-new")
            v.remove("wallet")
            self.assertNotIn("wallet", v)
            with self.assertRaises(rhizos.NotFound):
                v.reveal("wallet")
        with rhizos.Vault(self.path, b"correct horse", create=False) as v:
            self.assertEqual([e.name for e in v.list()], ["openai"])

    def test_wrong_password_and_errors(self):
        rhizos.Vault(self.path, "pw", kdf=FAST).close()
        with self.assertRaises(rhizos.AuthError) as cm:
            rhizos.Vault(self.path, "Tr0ub4dor&3")
        self.assertEqual(cm.exception.code, "RZ_EAUTH")
        self.assertNotIn("Tr0ub4dor", str(cm.exception))
        with self.assertRaises(rhizos.AlreadyExists):
            rhizos.Vault(self.path, "pw", create=True, kdf=FAST)
        with self.assertRaises(rhizos.NotFound):
            rhizos.Vault(os.path.join(self.dir, "missing"), "pw", create=False)
        with rhizos.Vault(self.path, "pw") as v:
            v.add("a", "llm_api", "x")
            with self.assertRaises(rhizos.AlreadyExists):
                v.add("a", "llm_api", "y")
            with self.assertRaises(rhizos.Error):
                v.add("bad name!", "llm_api", "y")
            with self.assertRaises(rhizos.Error):
                v.add("empty", "llm_api", b"")
            with self.assertRaises(TypeError):
                v.add("n", "llm_api", 42)
        with self.assertRaises(rhizos.InvalidArgument):
            rhizos.Vault(os.path.join(self.dir, "other"), "pw", kdf="weak")
        junk = os.path.join(self.dir, "junk")
        with open(junk, "wb") as fh:
            fh.write(b"not a vault" * 10)
        with self.assertRaises(rhizos.ParseError):
            rhizos.Vault(junk, "pw")

    def test_passwd(self):
        with rhizos.Vault(self.path, "old", kdf=FAST) as v:
            v.add("k", "database_url", "postgres://u:p@h/db")
            v.passwd("new", kdf=FAST)
        with self.assertRaises(rhizos.AuthError):
            rhizos.Vault(self.path, "old")
        with rhizos.Vault(self.path, "new") as v:
            self.assertEqual(v.get("k"), "postgres://u:p@h/db")

    def test_no_autosave(self):
        with rhizos.Vault(self.path, "pw", kdf=FAST, autosave=False) as v:
            v.add("k", "llm_api", "v")
        with rhizos.Vault(self.path, "pw") as v:
            self.assertEqual(len(v), 0)

    def test_use_after_close(self):
        v = rhizos.Vault(self.path, "pw", kdf=FAST)
        v.add("k", "llm_api", "v")
        v.close()
        self.assertIn("closed", repr(v))
        for call in (lambda: v.get("k"), lambda: v.list(), lambda: v.add("x", "llm_api", "y"),
                     lambda: v.remove("k"), lambda: v.save(), lambda: len(v)):
            with self.assertRaises(rhizos.ClosedError):
                call()

    def test_seal_flow_for_an_orchestrator(self):
        pk, sk = node_keypair()
        with rhizos.Vault(self.path, "pw", kdf=FAST) as v, \
                rhizos.load_flow(SECRET_FLOW) as flow:
            eid = v.add("openai", "llm_api", "sk-live-xyz")
            sealed = v.seal_flow(flow, pk.hex())
            self.assertEqual(list(sealed), ["openai"])       # once per id
            self.assertNotIn("sk-live", repr(sealed))
            value, cid = unseal(base64.b64decode(sealed["openai"]), pk, sk)
            self.assertEqual((value, cid), (b"sk-live-xyz", eid))
            with self.assertRaises(rhizos.InvalidArgument):
                v.seal_flow(flow, b"short")
            v.remove("openai")
            with self.assertRaises(rhizos.NotFound) as cm:
                v.seal_flow(flow, pk)
            self.assertIn("'openai'", str(cm.exception))



if __name__ == "__main__":
    unittest.main()