"""Sub-flows (`flow: FILE`) through the Python bindings: validate, plan,
run and deploy expand them as `rhizos flow` does."""
import os
import shutil
import tempfile
import unittest

import rhizos
from helpers import MODULES

LEAF = ("flux: 1\nname: leaf\ninputs:\n  text: {type: string}\n"
        "steps:\n  say:\n    module: echo@1\n"
        "    inputs: {message: \"${{ inputs.text }}!\"}\n"
        "outputs:\n  loud: \"${{ steps.say.outputs.message }}\"\n")

TOP = ("flux: 1\nname: top\ninputs:\n  who: {type: string, default: bob}\n"
       "steps:\n  first:\n    module: echo@1\n    inputs: {message: hi}\n"
       "  mid:\n    flow: sub/leaf.yaml\n    needs: [first]\n"
       "    inputs: {text: \"${{ inputs.who }}\"}\n"
       "  last:\n    module: echo@1\n    needs: [mid]\n"
       "    inputs: {message: \"${{ steps.mid.outputs.loud }}\"}\n"
       "outputs:\n  said: \"${{ steps.last.outputs.message }}\"\n")


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


class TestSubflow(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rz-py-sub-")
        _write(os.path.join(self.tmp, "sub", "leaf.yaml"), LEAF)
        self.top = os.path.join(self.tmp, "top.yaml")
        _write(self.top, TOP)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_validate_expands(self):
        with rhizos.load_flow(self.top) as f:
            self.assertTrue(f.has_subflows)
            self.assertEqual(f.steps[1].flow, "sub/leaf.yaml")
            self.assertEqual(f.validate([MODULES]), [])
            self.assertTrue(f.validated)
            self.assertFalse(f.has_subflows)
            self.assertEqual([s.id for s in f.steps], ["first", "mid-say", "last"])
            self.assertEqual({s.flow for s in f.steps}, {None})
            self.assertTrue(f.file.endswith("top.yaml"))

    def test_plan_expands_without_validate(self):
        with rhizos.load_flow(self.top) as f:
            self.assertEqual(f.plan(), [["first"], ["mid-say"], ["last"]])
            self.assertEqual(f.expand(), [])     # nothing left to expand

    def test_run_returns_the_childs_output(self):
        with rhizos.load_flow(self.top) as f:
            r = rhizos.run(f, {"who": "ann"}, sandbox=False)
        self.assertTrue(r.ok, r.raw)
        self.assertEqual(set(r.steps), {"first", "mid-say", "last"})
        self.assertEqual(r.outputs["said"], "ann!")

    def test_run_maps_a_subflow(self):
        # for_each over a sub-flow: the child once per element, its output
        # a list in element order.
        mapped = os.path.join(self.tmp, "map.yaml")
        _write(mapped, "flux: 1\nsteps:\n  m:\n    flow: sub/leaf.yaml\n"
                       "    for_each: [a, b, c]\n    inputs: {text: \"${{ index }}${{ item }}\"}\n"
                       "outputs:\n  said: \"${{ steps.m.outputs.loud }}\"\n")
        with rhizos.load_flow(mapped) as f:
            r = rhizos.run(f, sandbox=False)
        self.assertTrue(r.ok, r.raw)
        self.assertEqual(r.outputs["said"], ["0a!", "1b!", "2c!"])

    def test_text_is_read_relative_to_its_filename(self):
        with open(self.top) as fh:
            text = fh.read()
        with rhizos.load_flow(text, filename=self.top) as f:
            self.assertEqual(f.validate([MODULES]), [])
            self.assertEqual(len(f), 3)
        # without a filename the current folder is the base: no sub/leaf.yaml there
        old = os.getcwd()
        os.chdir(tempfile.gettempdir())
        try:
            with rhizos.load_flow(text, format="yaml") as f:
                diags = f.validate([MODULES])
                self.assertTrue(any("sub/leaf.yaml" in d.message for d in diags))
                self.assertFalse(f.validated)
                self.assertTrue(f.has_subflows)      # unchanged on failure
        finally:
            os.chdir(old)

    def test_hostile_and_broken_children_refused(self):
        cases = {
            "abs.yaml": ("flux: 1\nsteps:\n  s: {flow: /etc/passwd}\n", "absolute path"),
            "named.yaml": ("flux: 1\nsteps:\n  s: {flow: 'flow://lib@1.2'}\n", "flow://lib@1.2"),
            "dev.yaml": ("flux: 1\nsteps:\n  s: {flow: ../../../../../../dev/zero}\n",
                         "not a regular file"),
            "self.yaml": ("flux: 1\nsteps:\n  s: {flow: self.yaml}\n", "cycle"),
            "missing.yaml": ("flux: 1\nsteps:\n  s: {flow: nope.yaml}\n", "nope.yaml"),
        }
        for name, (text, want) in cases.items():
            path = os.path.join(self.tmp, name)
            _write(path, text)
            with self.subTest(name):
                try:
                    f = rhizos.load_flow(path)
                except rhizos.ValidationError as e:   # refused at load
                    self.assertTrue(any(want in d.message for d in e.diagnostics), e.diagnostics)
                    continue
                with f:
                    diags = f.validate([MODULES])
                    self.assertTrue(any(want in d.message for d in diags),
                                    [str(d) for d in diags])
                    self.assertFalse(f.validated)
                    with self.assertRaises(rhizos.ValidationError):
                        f.plan()

    def test_named_subflow_from_rhizos_flows(self):
        # flow://NAME@N as the CLI reads it here: from $RHIZOS_FLOWS
        _write(os.path.join(self.tmp, "lib", "leaf@2.yaml"), LEAF)
        named = os.path.join(self.tmp, "named.yaml")
        _write(named, TOP.replace("sub/leaf.yaml", "flow://leaf@2"))
        old = os.environ.pop("RHIZOS_FLOWS", None)
        try:
            with rhizos.load_flow(named) as f:
                self.assertEqual(f.steps[1].flow, "flow://leaf@2")
                diags = f.validate([MODULES])
                self.assertTrue(any("set RHIZOS_FLOWS" in d.message for d in diags), diags)
            os.environ["RHIZOS_FLOWS"] = os.path.join(self.tmp, "lib")
            with rhizos.load_flow(named) as f:
                self.assertEqual(f.plan(), [["first"], ["mid-say"], ["last"]])
                r = rhizos.run(f, {"who": "cy"}, sandbox=False)
            self.assertEqual(r.outputs["said"], "cy!")
        finally:
            os.environ.pop("RHIZOS_FLOWS", None)
            if old is not None:
                os.environ["RHIZOS_FLOWS"] = old

    def test_deploy_body_is_expanded(self):
        from rhizos.client import _flow_text
        body = _flow_text(self.top)
        self.assertIn("mid-say", body)
        self.assertNotIn("sub/leaf.yaml", body)
        with rhizos.load_flow(self.top) as f:
            self.assertIn("mid-say", _flow_text(f))
        # a flow without sub-flows goes as written
        plain = os.path.join(self.tmp, "plain.yaml")
        _write(plain, "flux: 1\nsteps:\n  a: {module: echo@1}  # flow: none\n")
        with open(plain) as fh:
            self.assertEqual(_flow_text(plain), fh.read())


if __name__ == "__main__":
    unittest.main()
