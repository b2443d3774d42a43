#!/usr/bin/env python3
"""The API reference Doxygen makes from the public headers covers the API:
every function the headers declare RZ_EXTERN has its entry, every header
has its opening contract as the file's description, and Doxygen warns about
nothing (a malformed comment, a reference to nothing). Prints how many
functions carry a description of their own.

Usage: api_reference.py DOXYGEN DOXYFILE SOURCE_ROOT"""
import glob
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abi_symbols import declared  # noqa: E402


def text_of(node):
    return "".join(node.itertext()).strip() if node is not None else ""


def main():
    doxygen, doxyfile, root = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as out:
        conf = open(doxyfile).read()
        conf = re.sub(r"(?m)^OUTPUT_DIRECTORY\s*=.*$", "OUTPUT_DIRECTORY = " + out, conf)
        conf = re.sub(r"(?m)^WARN_LOGFILE\s*=.*$",
                      "WARN_LOGFILE = " + os.path.join(out, "warnings.log"), conf)
        p = subprocess.run([doxygen, "-"], input=conf, text=True, capture_output=True)
        if p.returncode != 0:
            print(p.stdout + p.stderr)
            return 1
        problems = []
        warnings = open(os.path.join(out, "warnings.log")).read().strip()
        if warnings:
            problems += ["doxygen: " + w for w in warnings.splitlines()]
        functions, files = {}, {}
        for x in glob.glob(os.path.join(out, "xml", "*.xml")):
            tree = ET.parse(x)
            for c in tree.iter("compounddef"):
                if c.get("kind") == "file":
                    files[text_of(c.find("compoundname"))] = (
                        text_of(c.find("briefdescription")) + text_of(c.find("detaileddescription")))
            for m in tree.iter("memberdef"):
                if m.get("kind") == "function":
                    functions[text_of(m.find("name"))] = (
                        text_of(m.find("briefdescription")) + text_of(m.find("detaileddescription")))
        for name in sorted(declared(root)):
            if name not in functions:
                problems.append("no reference entry for %s" % name)
        for h in sorted(glob.glob(os.path.join(root, "include", "rhizos", "*.h"))):
            base = os.path.basename(h)
            if not files.get(base):
                problems.append("%s: no description (its opening comment)" % base)
        if not os.path.exists(os.path.join(out, "html", "index.html")):
            problems.append("no html/index.html")
        decl = declared(root)
        described = sum(1 for n in decl if functions.get(n))
        for p in problems:
            print(p)
        print("api-reference: %d functions, %d with a description of their own; "
              "%d headers; %d problems" % (len(decl), described, len(files), len(problems)))
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
