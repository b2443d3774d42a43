#!/usr/bin/env python3
"""End-to-end: `rhizos ui` in a real browser (issue 19, one machine).

`rhizos ui` serving the built console over a fresh --data, and Debian's
chromium driven headless by puppeteer-core (ui_browser.mjs): open the
printed #token= address (the token leaves the address bar), only the
views one machine has, load examples/flows/wordcount.yaml into the
builder, deploy (an embedded run), watch the steps finish, a step's log,
the run listed; without the token, the key form. Then the run is checked
where `rhizos flow runs` sees it. Screenshots in ARTEFACTS. Exits 77
(skipped) when chromium, puppeteer-core or the built console is missing.

Usage: ui_browser.py RHIZOS SOURCE_ROOT DIST ARTEFACTS"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import Proc, cli_env, run, sandbox_flags

EXE, ROOT, DIST, ART = sys.argv[1:5]
CHROMIUM = os.environ.get("RHIZOS_CHROMIUM", "/usr/bin/chromium")


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def main():
    if not os.access(CHROMIUM, os.X_OK):
        skip("no chromium at %s (apt-get install chromium, or set RHIZOS_CHROMIUM)" % CHROMIUM)
    if not shutil.which("node"):
        skip("no node on PATH")
    if not os.path.isdir(os.path.join(ROOT, "console", "node_modules", "puppeteer-core")):
        skip("console/node_modules/puppeteer-core is missing (cd console && npm ci)")
    if not os.path.isfile(os.path.join(DIST, "index.html")):
        skip("the console is not built at %s (meson setup -Dui=enabled)" % DIST)
    os.makedirs(ART, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rz-ui-") as tmp:
        data = os.path.join(tmp, "data")
        ui = Proc([EXE, "--data", data, "ui", "--listen", "127.0.0.1:0", "--ui-dir", DIST] +
                  sandbox_flags(), env=cli_env())
        try:
            url = ui.wait_for(lambda: next((m.group(1) for m in
                                            (re.search(r"open (http://\S+#token=[0-9a-f]+)$", l)
                                             for l in ui.out) if m), None),
                              30, "the address rhizos ui prints")
            env = dict(os.environ, RZ_URL=url, RZ_ROOT=ROOT, RZ_ART=ART, RZ_CHROMIUM=CHROMIUM)
            p = subprocess.run(["node", os.path.join(ROOT, "tests", "e2e", "ui_browser.mjs")],
                               env=env, capture_output=True, text=True, timeout=200)
            sys.stdout.write(p.stdout)
            sys.stderr.write(p.stderr)
            assert p.returncode == 0, "the browser run failed (exit %d)" % p.returncode
            with open(os.path.join(ART, "ui-summary.json")) as f:
                summary = json.load(f)
        finally:
            rc = ui.stop()
        assert rc == 0, "rhizos ui exit %d:\n%s" % (rc, ui.output())
        # On record where the CLI looks (rhizos ui is stopped: the store is the CLI's).
        r = run([EXE, "--data", data, "--json", "flow", "runs"], env=cli_env())
        assert r.returncode == 0, r.stderr
        runs = {x["id"]: x for x in json.loads(r.stdout)}
        assert runs[summary["run"]]["status"] == "succeeded", runs
        print("ui browser e2e: ok (run %s succeeded)" % summary["run"])


if __name__ == "__main__":
    main()
