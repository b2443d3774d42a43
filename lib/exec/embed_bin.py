#!/usr/bin/env python3
"""Writes a C file holding a program's bytes (stripped when objcopy is
given): embed_bin.py IN OUT NAME [OBJCOPY] (lib/exec/meson.build: the
sandbox helper's program, rz__sbx_program and rz__sbx_program_len; the
check's, rz__sbx_true). IN '': no program (NAME_len 0)."""
import os
import subprocess
import sys
import tempfile

src, out, name = sys.argv[1:4]
data = b"" if not src else None
if data is None and len(sys.argv) > 4 and sys.argv[4]:
    with tempfile.TemporaryDirectory() as tmp:
        dst = os.path.join(tmp, "prog")
        if subprocess.run([sys.argv[4], "--strip-all", src, dst]).returncode == 0:
            with open(dst, "rb") as f:
                data = f.read()
if data is None:
    with open(src, "rb") as f:
        data = f.read()
lines = ["/* Generated from %s by embed_bin.py; do not edit. */" % os.path.basename(src),
         "#include <stddef.h>",
         "__attribute__((visibility(\"hidden\"))) extern const unsigned char %s[];" % name,
         "__attribute__((visibility(\"hidden\"))) extern const size_t %s_len;" % name,
         "const unsigned char %s[] = {" % name]
for i in range(0, len(data), 24):
    lines.append("    " + ",".join(str(b) for b in data[i:i + 24]) + ",")
if not data:
    lines.append("    0,")
lines.append("};")
lines.append("const size_t %s_len = %d;" % (name, len(data)))
with open(out, "w", encoding="ascii") as f:
    f.write("\n".join(lines) + "\n")
