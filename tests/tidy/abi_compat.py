#!/usr/bin/env python3
"""The library's ABI is compatible with the last release's, kept in
abi/librhizos-VERSION.abi.gz (scripts/abi-baseline): Debian's abidiff
compares them, and a removed function or an incompatible change of a
public type fails (docs/abi.md). Compatible changes (added functions,
fields appended to a versioned options struct) are printed, not failed.

First it checks that the check can fail: the baseline with one function
taken out must be reported as incompatible.

Usage: abi_compat.py LIBRHIZOS.so SOURCE_ROOT
Exit 77 (skipped) without abidiff or without debug information."""
import glob
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile

INCOMPATIBLE = 8   # abidiff's exit bits: 1 error, 2 usage, 4 change, 8 incompatible


def skip(why):
    print("skipped:", why)
    sys.exit(77)


def abidiff(root, old, new):
    headers = os.path.join(root, "include", "rhizos")
    r = subprocess.run(["abidiff", "--headers-dir1", headers, "--headers-dir2",
                        headers, old, new], capture_output=True, text=True)
    if r.returncode & 3:
        sys.exit("abidiff failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))
    return r.returncode, r.stdout


def without_a_function(text):
    """The dump as if rz_flow_free had been removed."""
    out = re.sub(r"\s*<elf-symbol name='rz_flow_free'[^>]*/>", "", text, count=1)
    return re.sub(r"\s*<function-decl name='rz_flow_free'.*?</function-decl>", "",
                  out, count=1, flags=re.S)


def main():
    lib, root = sys.argv[1], sys.argv[2]
    if not shutil.which("abidiff"):
        skip("abidiff not installed (Debian's abigail-tools)")
    sections = subprocess.run(["readelf", "-S", "-W", lib], capture_output=True,
                              text=True).stdout
    if ".debug_info" not in sections:
        skip("%s has no debug information (build with -g)" % lib)
    dumps = sorted(glob.glob(os.path.join(root, "abi", "librhizos-*.abi.gz")),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", os.path.basename(p))])
    if not dumps:
        sys.exit("no ABI baseline in abi/ (scripts/abi-baseline)")
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base.abi")
        with gzip.open(dumps[-1], "rt") as f:
            text = f.read()
        with open(base, "w") as f:
            f.write(text)
        broken = os.path.join(tmp, "broken.abi")
        with open(broken, "w") as f:
            f.write(without_a_function(text))
        rc, _ = abidiff(root, base, broken)
        if not rc & INCOMPATIBLE:
            sys.exit("abidiff did not report a removed function (exit %d)" % rc)
        rc, report = abidiff(root, base, lib)
    print("against %s:" % os.path.basename(dumps[-1]))
    print(report)
    if rc & INCOMPATIBLE:
        sys.exit("incompatible with the last release's ABI (docs/abi.md): a "
                 "breaking change needs a new soname")


if __name__ == "__main__":
    main()
