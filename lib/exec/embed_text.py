#!/usr/bin/env python3
"""Writes a C header holding a text file as one string constant:
embed_text.py IN OUT NAME (lib/exec/meson.build: the wasm runner)."""
import sys

src, out, name = sys.argv[1:4]
with open(src, encoding="utf-8") as f:
    text = f.read()
lines = ['/* Generated from %s by embed_text.py; do not edit. */' % src.split("/")[-1],
         "static const char %s[] =" % name]
for line in text.splitlines(True):
    esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    lines.append('    "%s"' % esc)
lines[-1] += ";"
with open(out, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
