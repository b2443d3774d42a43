#!/usr/bin/env python3
"""The wasm adapter's cost (issue 23): the same C step (examples/wasm/
wasm-hash/step.c) as a native process and as WebAssembly under node:wasi,
both through `rhizos flow run` in the sandbox (and with --no-sandbox).

  trivial  a flow of N independent steps of one hash round each, --jobs 1:
           wall / N is the per-step cost (start, run, collect)
  compute  one step of R rounds of the hash chain (FNV-1a of the previous
           8-byte digest): wall of the whole run, so the ratio includes one
           step's start-up

The native program is compiled here with clang-14 -O2 (the wasm module's
compiler; else clang, else cc) from the same source; the wasm one is
meson's (build/examples/wasm). Median of -n runs each.

usage: bench/runner/wasm.py [--build DIR] [-n 5] [--steps 20]
                            [--rounds 50000000] [--cases trivial,compute]
                            [--json FILE]"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def modules(tmp, build):
    """A registry with wasm-hash (the built module) and native-hash (the
    same source compiled for this machine)."""
    mods = os.path.join(tmp, "mods")
    shutil.copytree(os.path.join(build, "examples", "wasm", "wasm-hash"),
                    os.path.join(mods, "wasm-hash"))
    nat = os.path.join(mods, "native-hash")
    os.makedirs(nat)
    # The wasm module's compiler, so that the ratio is the runtime's.
    cc = shutil.which("clang-14") or shutil.which("clang") or "cc"
    subprocess.run([cc, "-O2", "-I", os.path.join(ROOT, "examples", "wasm", "common"),
                    "-o", os.path.join(nat, "step"),
                    os.path.join(ROOT, "examples", "wasm", "wasm-hash", "step.c")],
                   check=True)
    with open(os.path.join(mods, "wasm-hash", "module.json")) as f:
        man = json.load(f)
    man["id"] = "native-hash"
    man["requirements"]["adapter"] = "process"
    man["exec"] = {"adapter": "process", "command": ["./step"], "timeout_s": 600}
    with open(os.path.join(nat, "module.json"), "w") as f:
        json.dump(man, f)
    return mods


def flow(path, module, steps, rounds):
    with open(path, "w") as f:
        f.write("flux: 1\nname: wasm-bench\nsteps:\n")
        for i in range(steps):
            f.write("  s%d:\n    module: %s@1\n    config: {rounds: %d}\n"
                    "    inputs: {text: \"bench %d\"}\n" % (i, module, rounds, i))


def timed(argv, env):
    t = time.monotonic()
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(argv), p.stderr[-2000:]))
    return wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=50000000)
    ap.add_argument("--cases", default="trivial,compute")
    ap.add_argument("--json")
    a = ap.parse_args()
    rz = os.path.join(a.build, "cli", "rhizos")
    if not os.path.exists(os.path.join(a.build, "examples", "wasm", "wasm-hash",
                                       "step.wasm")):
        sys.exit("no build/examples/wasm/wasm-hash/step.wasm (clang for "
                 "wasm32-wasi missing?)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mods = modules(tmp, a.build)
        env = dict(os.environ, XDG_DATA_HOME=os.path.join(tmp, "data"))
        for kind, steps, rounds in (("trivial", a.steps, 1),
                                    ("compute", 1, a.rounds)):
            if kind not in a.cases.split(","):
                continue
            for sandbox in (True, False):
                row = {"case": kind, "sandbox": sandbox, "steps": steps,
                       "rounds": rounds}
                for mod in ("native-hash", "wasm-hash"):
                    path = os.path.join(tmp, "%s-%s.yaml" % (kind, mod))
                    flow(path, mod, steps, rounds)
                    argv = [rz, "flow", "run", path, "--jobs", "1", "--modules",
                            mods, "--data", os.path.join(tmp, "d")]
                    if not sandbox:
                        argv.append("--no-sandbox")
                    walls = []
                    for _ in range(a.n):
                        shutil.rmtree(os.path.join(tmp, "d"), ignore_errors=True)
                        walls.append(timed(argv, env))
                    med = statistics.median(walls)
                    row[mod] = med / steps * 1000.0   # ms per step
                row["ratio"] = row["wasm-hash"] / row["native-hash"]
                rows.append(row)
                print("%-8s sandbox=%-5s native %8.1f ms  wasm %8.1f ms  "
                      "wasm/native %.2f" % (kind, sandbox, row["native-hash"],
                                            row["wasm-hash"], row["ratio"]),
                      flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
