#!/usr/bin/env python3
"""The library's exported symbols are exactly the functions its public
headers declare (RZ_EXTERN), each under the RHIZOS_0 version node: no
internal rz__ helper, no stray symbol of a dependency, and no declared
function missing from the shared object (docs/abi.md).

Usage: abi_symbols.py LIBRHIZOS.so SOURCE_ROOT"""
import glob
import os
import re
import subprocess
import sys


def exported(lib):
    out = subprocess.run(["objdump", "-T", lib], capture_output=True, text=True,
                         check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        # address flags... section size version name
        if len(parts) >= 6 and "*UND*" not in line and parts[-1] != parts[-2]:
            syms[parts[-1]] = parts[-2]   # (the version node itself is one)
    return syms


def declared(root):
    names = set()
    for h in glob.glob(os.path.join(root, "include", "rhizos", "*.h")):
        text = open(h).read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        for m in re.finditer(r"RZ_EXTERN\b[^;{]*?\b(rz_[a-z0-9_]+)\s*\(", text):
            names.add(m.group(1))
    return names


def main():
    lib, root = sys.argv[1], sys.argv[2]
    syms = exported(lib)
    ours = {n: v for n, v in syms.items() if n.startswith("rz")}
    problems = []
    for n, v in sorted(syms.items()):
        if not n.startswith("rz_"):
            problems.append("exported but not rz_*: %s (%s)" % (n, v))
        elif n.startswith("rz__"):
            problems.append("an internal helper is exported: %s" % n)
        elif v != "RHIZOS_0":
            problems.append("%s is under version %s, not RHIZOS_0" % (n, v))
    decl = declared(root)
    for n in sorted(decl - set(ours)):
        problems.append("declared RZ_EXTERN but not exported: %s" % n)
    for n in sorted(set(ours) - decl):
        if not n.startswith("rz__"):
            problems.append("exported but declared in no public header: %s" % n)
    for p in problems:
        print(p)
    print("abi-symbols: %d exported, %d declared, %d problems"
          % (len(ours), len(decl), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
