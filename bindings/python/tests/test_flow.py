"""Parse, diagnostics, plan and export through the Python bindings."""
import json
import os
import tempfile
import unittest

import rhizos
from helpers import DATA, MODULES, flow_path

CYCLE = """flux: 1
name: loop
steps:
  a:
    module: echo@1
    needs: [c]
  b:
    module: echo@1
    needs: [a]
  c:
    module: echo@1
    needs: [b]
"""


class TestParse(unittest.TestCase):
    def test_yaml_file(self):
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            self.assertEqual(f.name, "wordcount")
            self.assertEqual(f.format, "yaml")
            self.assertEqual(len(f), 6)
            self.assertEqual([s.id for s in f.steps],
                             ["source", "split", "count1", "count2", "count3", "merge"])
            self.assertEqual(f.steps[1].module, "wordcount-split")
            self.assertTrue(f.file.endswith("wordcount.yaml"))
            self.assertEqual([n["id"] for n in f.nodes][:2], ["source", "split"])

    def test_json_text_and_connections(self):
        with open(os.path.join(DATA, "flows", "builder.json")) as fh:
            text = fh.read()
        with rhizos.load_flow(text, filename="b.json") as f:
            self.assertEqual(f.format, "json")
            self.assertEqual(f.file, "b.json")
            conns = f.connections
            self.assertEqual([(c["source"]["nodeId"], c["target"]["nodeId"]) for c in conns],
                             [("fetch", "analyze"), ("analyze", "trade")])
            self.assertEqual(f.nodes[0]["moduleId"], "http-fetch")

    def test_pathlike_and_bytes(self):
        import pathlib
        with rhizos.load_flow(pathlib.Path(flow_path("wordcount.json"))) as f:
            self.assertGreater(len(f), 0)
        with open(flow_path("wordcount.yaml"), "rb") as fh:
            with rhizos.load_flow(fh.read(), format="yaml") as f:
                self.assertEqual(f.name, "wordcount")

    def test_syntax_error_located(self):
        with self.assertRaises(rhizos.ParseError) as cm:
            rhizos.load_flow('{"nodes": [ }', format="json", filename="x.json")
        e = cm.exception
        self.assertEqual(e.code, "RZ_ESYNTAX")
        self.assertEqual(e.file, "x.json")
        self.assertEqual((e.line, e.column), (1, 13))
        self.assertTrue(e.diagnostics)
        self.assertEqual(e.diagnostics[0].code, "RZ_ESYNTAX")

    def test_missing_file(self):
        with self.assertRaises(rhizos.NotFound) as cm:
            rhizos.load_flow("/nonexistent/flow.yaml")
        self.assertEqual(cm.exception.code, "RZ_ENOENT")

    def test_bad_format_name(self):
        with self.assertRaises(rhizos.InvalidArgument):
            rhizos.load_flow("flux: 1", format="toml")

    def test_hostile_nesting_refused(self):
        deep = "[" * 100000 + "]" * 100000
        with self.assertRaises(rhizos.Error) as cm:
            rhizos.load_flow(deep, format="json")
        self.assertTrue(cm.exception.code.startswith("RZ_E"))

    def test_nul_in_path_refused(self):
        with self.assertRaises(ValueError):
            rhizos.load_flow(__import__("pathlib").Path("a\0b"))


class TestValidate(unittest.TestCase):
    def test_valid_against_examples(self):
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            self.assertEqual(f.validate([MODULES]), [])
            self.assertTrue(f.validated)

    def test_every_problem_in_one_pass(self):
        src = os.path.join(DATA, "diag", "problems.yaml")
        with open(os.path.join(DATA, "diag", "problems.expected")) as fh:
            expected = [l for l in fh.read().splitlines() if l]
        with rhizos.load_flow(src) as f:
            diags = f.validate([os.path.join(DATA, "modules", "good")])
        self.assertFalse(f.validated)
        got = ["%s:%d:%d: %s: %s" % (os.path.basename(d.file), d.line, d.column,
                                     d.severity, d.message) for d in diags]
        self.assertEqual(got, expected)
        codes = {d.code for d in diags}
        self.assertIn("RZ_EMODULE", codes)
        self.assertIn("RZ_EEXPR", codes)
        self.assertTrue(all(str(d).startswith(d.file) for d in diags))

    def test_structure_only(self):
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            self.assertEqual(f.validate([]), [])
            self.assertFalse(f.validated)     # modules were not resolved

    def test_unknown_module(self):
        with rhizos.load_flow("flux: 1\nname: u\nsteps:\n  a:\n    module: nope@1\n") as f:
            diags = f.validate([MODULES])
        self.assertEqual(len(diags), 1)
        self.assertEqual(diags[0].line, 5)
        self.assertIn(diags[0].code, ("RZ_ENOENT", "RZ_EMODULE"))
        self.assertIn("nope", diags[0].message)

    def test_missing_registry_folder_raises(self):
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            with self.assertRaises(rhizos.NotFound):
                f.validate(["/nonexistent/registry"])

    def test_registry_object_outlives_close(self):
        reg = rhizos.Registry([MODULES])
        self.assertIn("echo@1.0.0", reg.modules())
        f = rhizos.load_flow(flow_path("wordcount.yaml"))
        self.assertEqual(f.validate(reg), [])
        reg.close()                      # deferred: the flow still uses it
        self.assertTrue(reg.closed)
        with self.assertRaises(rhizos.ClosedError):
            reg.modules()
        self.assertEqual(f.plan()[0], ["source"])   # no dangling module data
        f.close()


class TestPlan(unittest.TestCase):
    def test_stages(self):
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            self.assertEqual(f.plan(), [["source"], ["split"],
                                        ["count1", "count2", "count3"], ["merge"]])
            info = f.plan_info()
            self.assertEqual(info["critical_path"], ["source", "split", "count1", "merge"])
            self.assertEqual(info["steps"], 6)

    def test_cycle_named_whole(self):
        with rhizos.load_flow(CYCLE, filename="loop.yaml") as f:
            with self.assertRaises(rhizos.CycleError) as cm:
                f.plan()
        e = cm.exception
        self.assertEqual(e.code, "RZ_ECYCLE")
        self.assertIsInstance(e, rhizos.ValidationError)
        self.assertEqual([d.message for d in e.diagnostics], ["cycle: a -> b -> c -> a"])
        self.assertEqual((e.diagnostics[0].file, e.diagnostics[0].line), ("loop.yaml", 4))


class TestExport(unittest.TestCase):
    def test_credentials_stripped(self):
        with open(os.path.join(DATA, "flows", "builder.json")) as fh:
            text = fh.read()
        with rhizos.load_flow(text, format="json") as f:
            out = f.export()
            self.assertNotIn("sk-SECRET", out)
            doc = json.loads(out)
            self.assertEqual(doc["nodes"][0]["credentials"]["api"],
                             {"credentialId": "cred-123", "type": "api_key"})
            self.assertEqual(json.loads(f.to_json()), doc)

    def test_round_trips(self):
        with rhizos.load_flow(flow_path("wordcount.yaml")) as f:
            canon = f.to_json()
            with rhizos.load_flow(f.to_cbor(), format="cbor") as g:
                self.assertEqual(g.to_json(), canon)
            with rhizos.load_flow(f.to_yaml(), format="yaml") as g:
                self.assertEqual(g.plan(), f.plan())
            self.assertIn("nodes", json.loads(f.to_json(builder=True)))


class TestClose(unittest.TestCase):
    def test_use_after_close_raises(self):
        f = rhizos.load_flow(flow_path("wordcount.yaml"))
        f.validate([MODULES])
        f.close()
        f.close()                                   # twice is fine
        self.assertTrue(f.closed)
        self.assertFalse(f.validated)
        self.assertIn("closed", repr(f))
        for call in (lambda: f.plan(), lambda: f.to_json(), lambda: f.steps,
                     lambda: f.validate([MODULES]), lambda: f.name, lambda: len(f),
                     lambda: rhizos.run(f)):
            with self.assertRaises(rhizos.ClosedError) as cm:
                call()
            self.assertEqual(cm.exception.code, "RZ_ESTATE")
        with self.assertRaises(rhizos.ClosedError):
            with f:
                pass

    def test_gc_frees(self):
        import gc
        import weakref
        f = rhizos.load_flow(flow_path("wordcount.yaml"))
        f.validate([MODULES])
        ref = weakref.ref(f)
        del f
        gc.collect()
        self.assertIsNone(ref())


if __name__ == "__main__":
    unittest.main()
