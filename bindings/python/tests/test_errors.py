"""Error mapping, library loading and the package entry point."""
import os
import subprocess
import sys
import unittest

import rhizos
from rhizos import errors


class TestErrors(unittest.TestCase):
    def test_status_names_and_classes(self):
        self.assertEqual(errors.status_name(-7), "RZ_ECYCLE")
        self.assertEqual(errors.status_name(-999), "RZ_EUNKNOWN_STATUS")
        cases = {-2: rhizos.InvalidArgument, -4: rhizos.NotFound, -5: rhizos.ParseError,
                 -6: rhizos.ValidationError, -7: rhizos.CycleError, -17: rhizos.StateError,
                 -21: rhizos.AlreadyExists, -27: rhizos.AuthError,
                 -30: rhizos.InsufficientFunds, -22: rhizos.Error}
        for status, cls in cases.items():
            e = errors.from_status(status)
            self.assertIs(type(e), cls)
            self.assertIsInstance(e, rhizos.Error)
            self.assertEqual(e.status, status)
            self.assertEqual(e.code, errors.status_name(status))
            self.assertTrue(e.message)
        self.assertIsInstance(errors.from_status(-4), LookupError)
        self.assertIsInstance(errors.from_status(-2), ValueError)

    def test_message_from_error_last(self):
        with self.assertRaises(rhizos.Error) as cm:
            rhizos.load_flow("flux: 1\nname: x\nsteps: [1, 2]\n", filename="f.yaml")
        e = cm.exception
        self.assertEqual(e.file, "f.yaml")
        self.assertGreater(e.line, 0)
        self.assertIn(e.code, str(e))
        self.assertNotEqual(e.message, "validation failed")   # the detail, not the generic text

    def test_closed_error_is_state_error(self):
        self.assertTrue(issubclass(rhizos.ClosedError, rhizos.StateError))
        self.assertEqual(rhizos.ClosedError("x").code, "RZ_ESTATE")

    def test_version(self):
        self.assertEqual(rhizos.library_version(), rhizos.__version__)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(rhizos.__file__))
        out = subprocess.run([sys.executable, "-m", "rhizos", "--version"], env=env,
                             capture_output=True, text=True, check=True).stdout
        self.assertTrue(out.startswith("rhizos %s (librhizos %s" % (
            rhizos.__version__, rhizos.library_version())))

    def test_bad_rhizos_lib_is_reported(self):
        env = dict(os.environ, RHIZOS_LIB="/nonexistent/librhizos.so")
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(rhizos.__file__))
        p = subprocess.run([sys.executable, "-c", "import rhizos"], env=env,
                           capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("RHIZOS_LIB=/nonexistent/librhizos.so", p.stderr)


if __name__ == "__main__":
    unittest.main()
