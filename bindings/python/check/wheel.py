#!/usr/bin/env python3
"""The Python package installed the two ways it ships:

1. pip: `pip wheel --no-deps --no-build-isolation --no-index` builds it
   offline from a copy of bindings/python; the wheel goes into a fresh venv
   with `pip install --no-index`, and that venv's python, run outside the
   checkout, imports it against this build's librhizos (RHIZOS_LIBRARY,
   RHIZOS_LIB, the system loader) and uses it.
2. meson: `meson install --destdir` puts the package in the Python path
   with _install.py naming the libdir, where the installed package finds
   the installed librhizos by itself.

Usage: wheel.py PACKAGE_DIR LIBRHIZOS PROJECT_VERSION BUILD_DIR
Exit 77 (meson: skipped) with the reason when pip, setuptools' wheel
support or venv is missing.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

SKIP = 77
PKG, LIB, VERSION, BUILD = sys.argv[1:5]
ROOT = os.environ.get("RZ_SOURCE_ROOT") or os.path.normpath(os.path.join(PKG, "..", ".."))
FLOW = os.path.join(ROOT, "examples", "flows", "wordcount.yaml")


def missing(module):
    return subprocess.run([sys.executable, "-c", "import " + module],
                          capture_output=True).returncode != 0


for module, package in (("pip", "python3-pip"), ("setuptools", "python3-setuptools"),
                        ("wheel", "python3-wheel"), ("ensurepip", "python3-venv")):
    if missing(module):
        print("SKIP: %s has no %s module (Debian: %s)" % (sys.executable, module, package))
        sys.exit(SKIP)


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=150, **kw)
    if p.returncode != 0:
        raise AssertionError("%s -> %d\n%s%s" % (" ".join(cmd), p.returncode,
                                                p.stdout, p.stderr))
    return p


def clean_env(**extra):
    """The environment without anything that points Python at the checkout
    or at a library: each case names what it gives."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "RHIZOS_LIB", "RHIZOS_LIBRARY", "LD_LIBRARY_PATH",
                        "PYTHONHOME")}
    env.update(extra)
    return env


PROBE = """
import os, sys, rhizos
assert os.path.realpath(rhizos.__file__).startswith(os.path.realpath(sys.argv[1])), rhizos.__file__
flow = rhizos.load_flow(sys.argv[2])
print(rhizos.__version__, rhizos.library_version(), flow.name, len(flow), rhizos.library_path)
"""


class Wheel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rz-wheel-")
        src = os.path.join(cls.tmp, "src")
        # a copy: setuptools writes build/ and *.egg-info beside the sources
        shutil.copytree(PKG, src, ignore=shutil.ignore_patterns(
            "__pycache__", "build", "*.egg-info", "tests", "check", "layout_probe.py"))
        cls.dist = os.path.join(cls.tmp, "dist")
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-w", cls.dist, src], env=clean_env(PIP_NO_CACHE_DIR="1"))
        wheels = glob.glob(os.path.join(cls.dist, "*.whl"))
        assert len(wheels) == 1, wheels
        cls.wheel = wheels[0]
        cls.venv = os.path.join(cls.tmp, "venv")
        run([sys.executable, "-m", "venv", cls.venv])
        cls.py = os.path.join(cls.venv, "bin", "python")
        run([cls.py, "-m", "pip", "install", "--no-index", "--no-deps", cls.wheel],
            env=clean_env(PIP_NO_CACHE_DIR="1"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def probe(self, env):
        return subprocess.run([self.py, "-c", PROBE, self.venv, FLOW], cwd=self.tmp,
                              env=env, capture_output=True, text=True, timeout=60)

    def test_wheel_is_named_with_the_project_version_and_holds_the_package(self):
        self.assertEqual(os.path.basename(self.wheel),
                         "rhizos-%s-py3-none-any.whl" % VERSION)
        names = set(zipfile.ZipFile(self.wheel).namelist())
        sources = {"rhizos/" + os.path.basename(p)
                   for p in glob.glob(os.path.join(PKG, "rhizos", "*.py"))}
        self.assertLessEqual(sources | {"rhizos/py.typed"}, names)
        self.assertFalse([n for n in names if n.startswith("tests/")
                          or n.endswith((".so", ".in"))], names)

    def test_installed_wheel_loads_the_library_named_by_RHIZOS_LIBRARY(self):
        p = self.probe(clean_env(RHIZOS_LIBRARY=LIB))
        self.assertEqual(p.returncode, 0, p.stderr)
        version, libversion, name, steps, path = p.stdout.split()
        self.assertEqual((version, libversion, name, path), (VERSION, VERSION, "wordcount", LIB))
        self.assertGreater(int(steps), 1)

    def test_the_older_name_RHIZOS_LIB_still_works(self):
        p = self.probe(clean_env(RHIZOS_LIB=LIB))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split()[-1], LIB)

    def test_RHIZOS_LIBRARY_wins_and_a_wrong_one_is_an_error_not_a_fallback(self):
        p = self.probe(clean_env(RHIZOS_LIBRARY=os.path.join(self.tmp, "nope.so"),
                                 RHIZOS_LIB=LIB))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("RHIZOS_LIBRARY=%s: no such file" % os.path.join(self.tmp, "nope.so"),
                      p.stderr)

    def test_the_system_loader_finds_it_without_a_variable(self):
        p = self.probe(clean_env(LD_LIBRARY_PATH=os.path.dirname(LIB)))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split()[0], VERSION)

    def test_without_any_library_the_import_says_what_to_set(self):
        p = self.probe(clean_env())
        if p.returncode == 0:
            self.skipTest("a librhizos is installed on this machine: the loader found it")
        self.assertIn("LibraryNotFound", p.stderr)
        self.assertIn("set RHIZOS_LIBRARY", p.stderr)

    def test_version_command(self):
        p = run([self.py, "-m", "rhizos", "--version"], cwd=self.tmp,
                env=clean_env(RHIZOS_LIBRARY=LIB))
        self.assertTrue(p.stdout.startswith("rhizos %s (librhizos %s" % (VERSION, VERSION)),
                        p.stdout)


class MesonInstall(unittest.TestCase):
    def test_meson_install_gives_an_importable_package_that_finds_its_library(self):
        meson = shutil.which("meson")
        if not meson:
            self.skipTest("meson is not on PATH")
        with tempfile.TemporaryDirectory(prefix="rz-destdir-") as dest:
            run([meson, "install", "-C", BUILD, "--no-rebuild", "--quiet",
                 "--destdir", dest])
            inits = glob.glob(os.path.join(dest, "**", "rhizos", "__init__.py"),
                              recursive=True)
            self.assertEqual(len(inits), 1, inits)
            pkg = os.path.dirname(inits[0])
            self.assertTrue(os.path.exists(os.path.join(pkg, "py.typed")))
            ns = {}
            with open(os.path.join(pkg, "_install.py")) as f:
                exec(f.read(), ns)
            libdir = ns["LIBDIR"]
            self.assertTrue(os.path.isabs(libdir), libdir)
            staged = dest + libdir
            self.assertTrue(os.path.exists(os.path.join(staged, "librhizos.so.0")), staged)
            # Where the installed package would look, rewritten into DESTDIR:
            # a copy of the package whose _install.py names the staged libdir.
            probe_pkg = os.path.join(dest, "probe", "rhizos")
            shutil.copytree(pkg, probe_pkg)
            with open(os.path.join(probe_pkg, "_install.py"), "w") as f:
                f.write("LIBDIR = %r\n" % staged)
            p = subprocess.run([sys.executable, "-c", PROBE, os.path.dirname(probe_pkg), FLOW],
                               cwd=dest, env=clean_env(PYTHONPATH=os.path.dirname(probe_pkg)),
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(os.path.dirname(p.stdout.split()[-1]), staged)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
