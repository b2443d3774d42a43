#!/usr/bin/env python3
"""Doxygen's input filter for include/rhizos/*.h: the headers are written
with plain C comments (DESIGN.md §3), and this makes Doxygen read them as
documentation without changing their style. The file's opening comment
becomes its @file page; a comment on lines of its own documents what
follows; a comment after code on the same line documents that member.
Inside comments, Doxygen's command characters (\\, @, <) are escaped: the
headers mean them literally ("@daily", "<node>", "\\uXXXX").

Usage (Doxyfile INPUT_FILTER): doxyfilter.py HEADER   (prints the result)"""
import re
import sys

COMMENT = re.compile(r"/\*(.*?)\*/", re.S)


def escaped(body):
    return re.sub(r"([\\@<])", r"\\\1", body)


def filtered(text):
    out, at, first = [], 0, True
    for m in COMMENT.finditer(text):
        code = text[at:m.start()]
        line_start = text.rfind("\n", 0, m.start()) + 1
        alone = not text[line_start:m.start()].strip()
        body = m.group(1)
        if body.startswith(("*", "!")):   # already Doxygen's: as written
            out.append(code + m.group(0))
        elif alone:
            tag = "/** @file " if first and not text[:m.start()].strip() else "/** "
            out.append(code + tag + escaped(body.lstrip(" ")) + "*/")
        else:
            out.append(code + "/**<" + escaped(body) + "*/")
        first = False
        at = m.end()
    out.append(text[at:])
    return "".join(out)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        sys.stdout.write(filtered(f.read()))
