#!/usr/bin/env python3
"""End-to-end: the web console in a real browser (issue 19).

A real orchestrator serving the built console (--ui-dir), one real
`rhizos-node`, a client account with test credits, and Debian's chromium
driven headless by puppeteer-core (console/node_modules) from
console_browser.mjs: sign in, see the node, build the word-count flow by
drag and connect, a schema error on its field, the estimate, deploy, the
steps turning green live, a step's log, another deployment cancelled, the
builder's export equal to examples/flows/wordcount.json after
normalisation, axe-core, no console errors, a bad key back at the login.
Then this script checks on the API what the browser did: the deployment it
made succeeded with the right counts, the one it cancelled is cancelled.

Screenshots and a summary go to ARTEFACTS (the build tree's
console-e2e/). Exits 77 (skipped) when chromium, the console's
node_modules, the built console or an orchestrator with --ui-dir is missing.

With RHIZOS (the CLI), a credential is stored first with `rhizos
credentials put` from a vault, and the browser deploys
tests/e2e/secret_flow.yaml naming it by id only: the module gets the value,
and it is in no page, console message, reply or server log.

Usage: console.py ORCHESTRATOR NODE SOURCE_ROOT DIST ARTEFACTS [RHIZOS]"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from harness import (Proc, cli_env, free_port, http, run, sandbox_flags, set_config,
                     start_orchestrator, wait_until)

ORCH, NODE, ROOT, DIST, ART = sys.argv[1:6]
RHIZOS = sys.argv[6] if len(sys.argv) > 6 else None
SECRET = "sk-console-stored-5551234"
E2E_MODULES = os.path.join(ROOT, "tests", "e2e", "modules")
CHROMIUM = os.environ.get("RHIZOS_CHROMIUM", "/usr/bin/chromium")
ADMIN = "console-admin-" + "c" * 32
CREDITS = 1000 * 1000000


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def preconditions():
    if not os.access(CHROMIUM, os.X_OK):
        skip("no chromium at %s (apt-get install chromium, or set RHIZOS_CHROMIUM)" % CHROMIUM)
    if not shutil.which("node"):
        skip("no node on PATH")
    mods = os.path.join(ROOT, "console", "node_modules")
    for pkg in ("puppeteer-core", "axe-core"):
        if not os.path.isdir(os.path.join(mods, pkg)):
            skip("console/node_modules/%s is missing (cd console && npm ci)" % pkg)
    if not os.path.isfile(os.path.join(DIST, "index.html")):
        skip("the console is not built at %s (meson setup -Dui=enabled)" % DIST)
    helptext = run([ORCH, "--help"]).stdout + run([ORCH, "--help"]).stderr
    if "--ui-dir" not in helptext:
        skip("this rhizos-orchestrator has no --ui-dir (it cannot serve the console)")


def start_node(tmp, base):
    data = os.path.join(tmp, "node")
    p = run([NODE, "init", "--data", data, "--orchestrator", base], cwd=ROOT, timeout=30)
    assert p.returncode == 0, p.stderr
    set_config(data, "pricing", "cpu_hour_micros", 3600)   # under the estimate the flow is held for
    set_config(data, "pricing", "gpu_hour_micros", 0)
    set_config(data, "pricing", "memory_gb_hour_micros", 0)
    set_config(data, "limits", "max_concurrent_jobs", 2)
    set_config(data, "node", "heartbeat_s", 0.5)
    n = Proc([NODE, "start", "--data", data, "--json", "--modules", E2E_MODULES,
              *sandbox_flags()], cwd=ROOT)
    n.wait_for(lambda: [e for e in n.events() if e.get("event") == "registered"],
               30, "the node to register")
    return n


def store_credential(tmp, base, key):
    """The CLI stores the secret from a vault (`rhizos credentials put`)."""
    env = cli_env(RHIZOS_VAULT=os.path.join(tmp, "vault"), RHIZOS_VAULT_PASSWORD="console e2e",
                  RHIZOS_VAULT_KDF="interactive")
    args = [RHIZOS, "--orchestrator", base, "--api-key", key]
    for cmd, stdin in ((["vault", "init"], None),
                       (["vault", "add", "openai", "--type", "llm_api"], SECRET),
                       (["credentials", "put", "openai"], None)):
        p = run(args + cmd, cwd=ROOT, env=env, stdin=stdin)
        assert p.returncode == 0, (cmd, p.stdout, p.stderr)
        assert SECRET not in p.stdout + p.stderr, cmd


def main():
    preconditions()
    os.makedirs(ART, exist_ok=True)
    tmp = tempfile.TemporaryDirectory(prefix="rz-console-")
    orch = node = None
    try:
        orch = start_orchestrator(ORCH, os.path.join(tmp.name, "orch"),
                                  ["--quiet", "--ui-dir", DIST, "--node-timeout-ms", "5000",
                                   "--modules", E2E_MODULES],
                                  admin_key=ADMIN, cwd=ROOT)
        st, acct = http(orch.base, "POST", "/api/v1/accounts", key=ADMIN, body={"name": "console"})
        assert st == 201, (st, acct)
        st, _ = http(orch.base, "POST", "/api/v1/accounts/%s/test-credits" % acct["id"],
                     key=ADMIN, body={"amount_micros": CREDITS})
        assert st == 200, st
        node = start_node(tmp.name, orch.base)
        st, page = http(orch.base, "GET", "/")
        assert st == 200 and "<div id=\"root\">" in page, (st, page)

        # Another tenant's job, which the console must never show.
        st, other = http(orch.base, "POST", "/api/v1/accounts", key=ADMIN, body={"name": "other"})
        assert st == 201, (st, other)
        http(orch.base, "POST", "/api/v1/accounts/%s/test-credits" % other["id"], key=ADMIN,
             body={"amount_micros": CREDITS})
        st, job = http(orch.base, "POST", "/api/v1/jobs", key=other["api_key"],
                       body={"module": "echo", "config": {"message": "other-tenant-secret"}})
        assert st == 201, (st, job)
        wait_until(lambda: http(orch.base, "GET", "/api/v1/jobs/%d" % job["id"],
                                key=other["api_key"])[1]["status"] == "succeeded",
                   30, "the other tenant's job to finish")

        if RHIZOS:
            store_credential(tmp.name, orch.base, acct["api_key"])
        env = dict(os.environ, RZ_BASE=orch.base, RZ_KEY=acct["api_key"], RZ_ROOT=ROOT,
                   RZ_ART=ART, RZ_CHROMIUM=CHROMIUM, RZ_OTHER_JOB=str(job["id"]),
                   RZ_ADMIN=ADMIN, RZ_NODE_PID=str(node.p.pid),
                   RZ_SECRET=SECRET if RHIZOS else "")
        p = subprocess.run(["node", os.path.join(ROOT, "tests", "e2e", "console_browser.mjs")],
                           env=env, capture_output=True, text=True, timeout=240)
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        assert p.returncode == 0, "the browser run failed (exit %d)" % p.returncode
        with open(os.path.join(ART, "summary.json")) as f:
            summary = json.load(f)

        # What the browser did, as the API sees it.
        key = acct["api_key"]
        st, dep = http(orch.base, "GET", "/api/v1/flows/%d/status" % summary["deployed"], key=key)
        assert st == 200 and dep["status"] == "succeeded", dep
        assert sorted(dep["steps"]) == ["count1", "count2", "count3", "merge", "source", "split"], dep
        merged = dep["steps"]["merge"]["outputs"]
        assert merged["total"] == 13 and merged["top"][0] in (["the", 4], {"word": "the", "count": 4}), merged
        st, gone = http(orch.base, "GET", "/api/v1/flows/%d/status" % summary["cancelled"], key=key)
        assert st == 200 and gone["status"] == "cancelled", gone
        if RHIZOS:
            st, sdep = http(orch.base, "GET", "/api/v1/flows/%d/status" % summary["secret_deployed"],
                            key=key)
            assert st == 200 and sdep["status"] == "succeeded", sdep
            outs = sdep["steps"]["call"]["outputs"]
            assert outs == {"seen": "key=[redacted]", "length": len(SECRET)}, outs
            logs = "\n".join(orch.out + orch.err + node.out + node.err)
            assert SECRET not in json.dumps(sdep) and SECRET not in logs, "the secret leaked"
            print("console e2e: a flow needing a stored credential deployed from the browser")
        print("console e2e: ok (deployment %d succeeded, %d cancelled; first view in %d ms, median of 5)" %
              (summary["deployed"], summary["cancelled"], summary["first_view_median_ms"]))
    finally:
        if node:
            node.stop(signal.SIGKILL)
        if orch:
            orch.stop(signal.SIGKILL)
        tmp.cleanup()


if __name__ == "__main__":
    main()
