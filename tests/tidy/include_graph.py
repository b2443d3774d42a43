#!/usr/bin/env python3
"""Fail on an #include that docs/architecture.md's include graph forbids.

Reads the two tables of its section "The include graph" (areas: uses /
reaches into; white-box tests: reaches into) and checks every #include of
the source tree against them. Prints FILE:LINE: ... for each forbidden one
and exits 1; exits 0 when all are allowed.

usage: include_graph.py [SOURCE_ROOT]
       include_graph.py --self-test SOURCE_ROOT   (plants forbidden includes
       in a scratch tree under the same docs and expects each one named)
"""
import os
import re
import shutil
import sys
import tempfile

SCANNED = ['include', 'lib', 'cli', 'server', 'bindings', 'tests', 'bench', 'examples']
PROGRAMS = ('cli', 'server', 'bindings', 'bench', 'examples', 'tests')
EXTENSIONS = ('.c', '.h', '.cc', '.cpp')
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')

# C11's standard headers: all a public header may include besides its own.
C_STD = {'assert.h', 'complex.h', 'ctype.h', 'errno.h', 'fenv.h', 'float.h',
         'inttypes.h', 'iso646.h', 'limits.h', 'locale.h', 'math.h', 'setjmp.h',
         'signal.h', 'stdalign.h', 'stdarg.h', 'stdatomic.h', 'stdbool.h',
         'stddef.h', 'stdint.h', 'stdio.h', 'stdlib.h', 'stdnoreturn.h',
         'string.h', 'tgmath.h', 'threads.h', 'time.h', 'uchar.h', 'wchar.h',
         'wctype.h'}


def section(doc, title):
    m = re.search(r'^## ' + re.escape(title) + r'\s*$(.*?)(?=^## |\Z)', doc, re.M | re.S)
    if not m:
        raise SystemExit('docs/architecture.md has no section "## %s"' % title)
    return m.group(1)


def tables(text):
    """Each markdown table of `text` as (header cells, rows of cells)."""
    out, cur = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith('|'):
            cur = None
            continue
        cells = [c.strip() for c in line.strip('|').split('|')]
        if cur is None:
            cur = (cells, [])
            out.append(cur)
        elif not all(re.fullmatch(r':?-+:?', c) for c in cells):
            cur[1].append(cells)
    return out


def names(cell):
    return {n.strip() for n in cell.split(',') if n.strip()}


def load_rules(root):
    with open(os.path.join(root, 'docs', 'architecture.md'), encoding='utf-8') as f:
        doc = f.read()
    text = section(doc, 'The include graph')
    areas, tests = {}, {}
    for head, rows in tables(text):
        if head[:3] == ['area', 'uses', 'reaches into']:
            for area, uses, reaches in rows:
                areas[area] = (names(uses) | {area}, names(reaches) | {area})
        elif head[:2] == ['test', 'reaches into']:
            for test, reaches in rows:
                tests[test.strip('`')] = names(reaches)
    if not areas:
        raise SystemExit('docs/architecture.md: no "| area | uses | reaches into |" table')
    for test, reaches in tests.items():
        for other in reaches - set(areas):
            if '/' not in other:
                raise SystemExit('docs/architecture.md: test %s names unknown area %s' % (test, other))
    for area, (uses, reaches) in areas.items():
        for other in (uses | reaches) - set(areas):
            raise SystemExit('docs/architecture.md: area %s names unknown area %s' % (area, other))
    return areas, tests


def public_area(header, areas):
    """The area of "rhizos/<header>", or None for the umbrella header."""
    name = header[:-2] if header.endswith('.h') else header
    if name in ('common', 'version'):
        return 'common'
    return name if name in areas else None


def check_file(root, rel, areas, tests):
    top = rel.split('/')[0]
    problems = []
    with open(os.path.join(root, rel), encoding='utf-8', errors='replace') as f:
        lines = f.readlines()
    for no, line in enumerate(lines, 1):
        m = INCLUDE.match(line)
        if not m:
            continue
        quote, path = m.groups()
        why = judge(root, rel, top, quote, path, areas, tests)
        if why:
            problems.append('%s:%d: #include %s%s%s: %s' % (
                rel, no, quote, path, '"' if quote == '"' else '>', why))
    return problems


def judge(root, rel, top, quote, path, areas, tests):
    if top == 'include':
        if quote == '<':
            return None if path in C_STD else 'a public header includes only the C standard library'
        return None if path.startswith('rhizos/') else 'a public header includes only rhizos/*.h'
    if quote == '<':
        return None   # system and dependency headers
    first = path.split('/')[0]
    if first == 'rhizos':
        target = public_area(path[len('rhizos/'):], areas)
        if top != 'lib':
            return None if os.path.exists(os.path.join(root, 'include', path)) or \
                path == 'rhizos/version.h' else 'no such public header'
        area = rel.split('/')[1]
        if target is None:
            return 'the library includes the headers it needs, not the umbrella'
        if target not in areas[area][0]:
            return 'area %s may not use %s (docs/architecture.md, "The include graph")' % (area, target)
        return None
    if top == 'lib':
        area = rel.split('/')[1]
        if first not in areas:
            return 'library headers are named <area>/<file>'
        if first not in areas[area][1]:
            return 'area %s may not reach into %s (docs/architecture.md, "The include graph")' % (
                area, first)
        return None
    # Programs and tests: their own headers beside the including file, never lib/.
    here = os.path.dirname(rel)
    local = os.path.normpath(os.path.join(here, path))
    if '..' not in path.split('/') and os.path.exists(os.path.join(root, local)):
        return None
    if rel.startswith('server/') and '/' not in path and \
            os.path.exists(os.path.join(root, 'server', 'common', path)):
        return None   # what both daemons share (server/common)
    for folder in tests.get(rel, set()):
        if '/' in folder and '..' not in path.split('/') and \
                os.path.exists(os.path.join(root, folder, path)):
            return None   # a program's folder its test reaches into
    if first in areas and os.path.exists(os.path.join(root, 'lib', path)):
        if first in tests.get(rel, set()):
            return None
        return 'programs and tests include rhizos/*.h, not lib/ (%s is not listed as ' \
               'reaching into %s in docs/architecture.md)' % (rel, first)
    if local.startswith('lib/'):
        return 'programs and tests include rhizos/*.h, not lib/'
    return 'not a public header, nor a header beside the including file'


def scan(root, areas, tests):
    problems, seen = [], 0
    for sub in SCANNED:
        for d, dirs, files in os.walk(os.path.join(root, sub)):
            dirs[:] = sorted(x for x in dirs if x not in ('node_modules', '.git'))
            for name in sorted(files):
                if not name.endswith(EXTENSIONS):
                    continue
                rel = os.path.relpath(os.path.join(d, name), root)
                if rel.split('/')[0] not in PROGRAMS + ('include', 'lib'):
                    continue
                seen += 1
                problems += check_file(root, rel, areas, tests)
    return problems, seen


PLANTED = {
    # path: (text, the line a forbidden include is on, or 0 when allowed)
    'lib/flow/model.h': ('#include "common/internal.h"\n', 0),
    'lib/flow/loader.h': ('#include "flow/model.h"\n', 0),
    'lib/common/internal.h': ('#include <stddef.h>\n', 0),
    'lib/schema/api.c': ('#include "common/internal.h"\n#include "flow/loader.h"\n', 2),
    'lib/plan/plan.c': ('#include "rhizos/engine.h"\n', 1),
    'cli/flow.c': ('#include "cli.h"\n#include "rhizos/flow.h"\n#include "flow/model.h"\n', 3),
    'cli/cli.h': ('#include "rhizos/rhizos.h"\n', 0),
    'tests/sim/sim.c': ('\n#include "../../lib/flow/model.h"\n', 2),
    'include/rhizos/flow.h': ('#include <stdint.h>\n#include <cjson/cJSON.h>\n', 2),
    'include/rhizos/engine.h': ('#include "rhizos/flow.h"\n', 0),
    'include/rhizos/rhizos.h': ('#include "rhizos/flow.h"\n', 0),
}


def self_test(root):
    """The check must name exactly the planted forbidden includes."""
    scratch = tempfile.mkdtemp(prefix='include-graph-')
    try:
        os.makedirs(os.path.join(scratch, 'docs'))
        shutil.copy(os.path.join(root, 'docs', 'architecture.md'),
                    os.path.join(scratch, 'docs', 'architecture.md'))
        for path, (text, _) in PLANTED.items():
            os.makedirs(os.path.dirname(os.path.join(scratch, path)), exist_ok=True)
            with open(os.path.join(scratch, path), 'w', encoding='utf-8') as f:
                f.write(text)
        areas, _ = load_rules(scratch)
        problems, _ = scan(scratch, areas, {})
        found = sorted(p.split(': ')[0] for p in problems)
        want = sorted('%s:%d' % (p, line) for p, (_, line) in PLANTED.items() if line)
        if found != want:
            print('self-test: expected %s, got:' % want)
            for p in problems:
                print('  ' + p)
            return 1
        print('include graph self-test: %d planted forbidden includes named' % len(want))
        return 0
    finally:
        shutil.rmtree(scratch)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--self-test':
        return self_test(os.path.abspath(sys.argv[2]))
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), '..', '..'))
    areas, tests = load_rules(root)
    problems, seen = scan(root, areas, tests)
    for t in tests:
        if not os.path.exists(os.path.join(root, t)):
            problems.append('docs/architecture.md: listed test %s does not exist' % t)
    for p in problems:
        print(p)
    if problems:
        print('%d forbidden include(s) in %d files' % (len(problems), seen))
        return 1
    print('include graph: %d files, every include allowed' % seen)
    return 0


if __name__ == '__main__':
    sys.exit(main())
