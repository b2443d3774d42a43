#!/usr/bin/env python3
"""docs/openapi.yaml through the two common validators: `redocly lint`
(tools/openapi/redocly.yaml: every operation has an operationId, the
license is there, ...) and `swagger-cli validate`. They come pinned from
tools/openapi (package-lock.json; `npm ci` there, as .ci/run does);
without its node_modules the test is skipped (77), saying so.

Usage: openapi_lint.py SOURCE_ROOT"""
import os
import subprocess
import sys

ROOT = os.path.abspath(sys.argv[1])
TOOLS = os.path.join(ROOT, "tools", "openapi")
SPEC = os.path.join(ROOT, "docs", "openapi.yaml")


def main():
    bins = os.path.join(TOOLS, "node_modules", ".bin")
    if not os.path.isdir(bins):
        print("SKIP: no %s: run `npm ci` in tools/openapi (the validators, "
              "pinned by its package-lock.json)" % bins)
        return 77
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               NO_COLOR="1")
    failed = 0
    for name, cmd in (("redocly lint", [os.path.join(bins, "redocly"), "lint", "--config",
                                        os.path.join(TOOLS, "redocly.yaml"),
                                        "--format=stylish", SPEC]),
                      ("swagger-cli validate", [os.path.join(bins, "swagger-cli"),
                                                "validate", SPEC])):
        p = subprocess.run(cmd, cwd=TOOLS, env=env, capture_output=True, text=True,
                           timeout=120)
        out = p.stdout + p.stderr
        # Warnings fail too: the document is kept clean, not merely valid.
        warned = [l for l in out.splitlines() if " warning " in l]
        ok = p.returncode == 0 and not warned
        print("%s: %s" % (name, "ok" if ok else "FAILED (exit %d)" % p.returncode))
        if not ok:
            print(out[-6000:])
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
