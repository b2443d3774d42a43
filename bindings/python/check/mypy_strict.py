#!/usr/bin/env python3
"""py.typed promises types: `mypy --strict` over the rhizos package must
find nothing. Usage: mypy_strict.py PACKAGE_DIR. Exit 77 (meson: skipped)
when mypy is not installed (Debian: mypy)."""
import shutil
import subprocess
import sys
import tempfile

PKG = sys.argv[1]
mypy = [sys.executable, "-m", "mypy"]
if subprocess.run(mypy + ["--version"], capture_output=True).returncode != 0:
    if not shutil.which("mypy"):
        print("SKIP: mypy is not installed (Debian: mypy)")
        sys.exit(77)
    mypy = ["mypy"]
with tempfile.TemporaryDirectory() as cache:
    p = subprocess.run(mypy + ["--strict", "--cache-dir", cache, "rhizos"], cwd=PKG,
                       capture_output=True, text=True, timeout=170)
print(p.stdout + p.stderr, end="")
sys.exit(0 if p.returncode == 0 and "Success" in p.stdout else 1)
