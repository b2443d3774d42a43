#!/usr/bin/env python3
"""The house rules a compiler does not check, checked over every C file
(after TigerBeetle's tidy.zig and curl's checksrc):

- lines of at most 100 columns, no tabs, no trailing blanks. A line may run
  longer for a string literal of 40 characters or more (messages and test
  data stay whole, so they can be searched for) and for a row of an aligned
  table (`{ ... },`);
- function bodies of at most 70 lines (a definition's `{` and `}` stand at
  the start of their lines, as everywhere in the tree); the longer ones of
  today are listed below, and an entry that no longer needs its place must
  leave the list, so it only shrinks;
- comments say what the code is, not how it came to be: no "previously",
  "used to be", "no longer needed", "the old name" and the like. Bare "now",
  "was" and "no longer" are not flagged: here they mostly speak of run time
  (the engine's `now`, a job that was placed, a node that no longer counts).

Before it looks at the tree it runs each check on a planted violation, so a
check that has stopped finding anything fails here first.

Usage: tidy.py SOURCE_ROOT"""
import os
import re
import sys

MAX_LINE = 100
MAX_FUNCTION = 70
ROOTS = ("lib", "include", "cli", "server", "tests", "bindings", "bench", "examples")
SKIP_DIRS = {"node_modules", ".git"}

# Functions longer than MAX_FUNCTION lines today: split one, then drop it here.
LONG_FUNCTIONS = {
    "bench/match/match_bench.c:run",
    "bench/orchestrator/orch_load.c:main",
    "bench/ledger/ledger_bench.c:main",
    "bench/vault/vault_bench.c:bench_reveal",
    "bindings/node/src/addon.c:js_ledger_op",
    "cli/flow.c:flow_run",
    "lib/flow/json.c:jstring",
    "server/orchestrator/main.c:parse_opts",
    "server/orchestrator/metrics.c:r_metrics",
    "tests/unit/test_ledger_crash.c:child",
    "tests/unit/test_match.c:property_run",
    "tests/unit/test_run.c:test_replica_follows_deployment",
}

# Files whose long lines wait for a change in flight there: path -> how many.
LONG_LINES = {
    "server/orchestrator/routes_flows.c": 2,
    "server/orchestrator/routes_nodes.c": 2,
}

# History-relative phrasing in comments.
HISTORY = re.compile(
    r"\b(previously|formerly|used to be|nowadays|these days"
    r"|no longer (needed|used|necessary|required|supported|relevant)"
    r"|the old (code|way|version|behaviou?r|names?|spelling|format|api|layout)"
    r"|(until|since) (recently|commit|this change)"
    r"|(was|were) (refactored|rewritten|renamed)"
    r"|(moved|renamed|split) (out )?(here )?from [\w/]+\.[ch]"
    r"|in this (commit|patch|change)"
    r"|now (uses|calls|lives|handles|supports))\b", re.I)

STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
TABLE_ROW = re.compile(r"^\s*\{.*\},?\s*$")
DEFINITION = re.compile(r"([A-Za-z_]\w*)\s*\(")


def comments(text):
    """(line number, text) of every comment line, strings and characters
    skipped."""
    out, i, line, n = [], 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k, part in enumerate(text[i:j].split("\n")):
                out.append((line + k, part))
            line += text.count("\n", i, j)
            i = j
            continue
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append((line, text[i:j]))
            i = j
            continue
        elif c in "\"'":
            i += 1
            while i < n and text[i] != c and text[i] != "\n":
                i += 2 if text[i] == "\\" else 1
        i += 1
    return out


def functions(lines):
    """(name, first line, body length) of each definition."""
    out, i = [], 0
    while i < len(lines):
        if lines[i] == "{":
            k = i - 1
            while k >= 0 and not re.match(r"[A-Za-z_]", lines[k]):
                k -= 1
            m = DEFINITION.search(lines[k]) if k >= 0 else None
            j = i + 1
            while j < len(lines) and lines[j] != "}":
                j += 1
            if m:
                out.append((m.group(1), i + 1, j - i - 1))
            i = j
        i += 1
    return out


def long_line_ok(line):
    if TABLE_ROW.match(line):
        return True
    return any(len(s.group(0)) >= 40 for s in STRING.finditer(line))


def check_text(rel, text, problems, seen_functions):
    lines = text.split("\n")
    long_lines = []
    for n, line in enumerate(lines, 1):
        if "\t" in line:
            problems.append("%s:%d: a tab" % (rel, n))
        if line != line.rstrip():
            problems.append("%s:%d: trailing blanks" % (rel, n))
        if len(line) > MAX_LINE and not long_line_ok(line):
            long_lines.append("%s:%d: %d columns (at most %d)" % (rel, n, len(line), MAX_LINE))
    if len(long_lines) > LONG_LINES.get(rel, 0):
        problems.extend(long_lines)
    elif rel in LONG_LINES and len(long_lines) < LONG_LINES[rel]:
        problems.append("%s: %d long lines left; lower its LONG_LINES entry in tidy.py" %
                        (rel, len(long_lines)))
    for name, at, length in functions(lines):
        key = "%s:%s" % (rel, name)
        if length <= MAX_FUNCTION:
            continue
        seen_functions.add(key)
        if key not in LONG_FUNCTIONS:
            problems.append("%s:%d: %s() is %d lines long (at most %d): split it" %
                            (rel, at, name, length, MAX_FUNCTION))
    for n, part in comments(text):
        m = HISTORY.search(part)
        if m:
            problems.append("%s:%d: history in a comment (%r): say what the code is" %
                            (rel, n, m.group(0)))


PLANTED = (
    ("line length", "int x = 1;" + " " * 95 + "/* */\n"),
    ("tab", "int x;\t\n"),
    ("function length", "int f(void)\n{\n" + "    x++;\n" * (MAX_FUNCTION + 1) + "}\n"),
    ("history", "/* The queue was renamed; it used to be a list. */\nint x;\n"),
)
FINE = ("static const char *m = \"%s\";\n" % ("a" * 120) +
        "    { \"GET\", \"/a\", " + "W_ANY, " * 14 + "r_a },\n" +
        "/* Hold it now; the node no longer counts, and was placed. */\n")


def self_test():
    """Each check finds its planted violation and passes the fine text."""
    for what, text in PLANTED:
        problems = []
        check_text("planted.c", text, problems, set())
        if not problems:
            return "the %s check missed a planted violation" % what
    problems = []
    check_text("fine.c", FINE, problems, set())
    return "; ".join(problems) if problems else None


def c_files(root):
    for top in ROOTS:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS)
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    path = os.path.join(d, f)
                    yield os.path.relpath(path, root), path


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tidy.py SOURCE_ROOT")
    why = self_test()
    if why:
        print("tidy: self-test: " + why)
        return 1
    problems, seen, n = [], set(), 0
    for rel, path in c_files(sys.argv[1]):
        with open(path, encoding="utf-8", errors="replace") as f:
            check_text(rel, f.read(), problems, seen)
        n += 1
    for key in sorted(LONG_FUNCTIONS - seen):
        problems.append("%s is at most %d lines long (or gone): remove it from "
                        "LONG_FUNCTIONS in tidy.py" % (key, MAX_FUNCTION))
    for p in problems:
        print(p)
    print("tidy: %d C files, %d problems" % (n, len(problems)))
    return 1 if problems or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
