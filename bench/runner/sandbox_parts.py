#!/usr/bin/env python3
"""What one sandboxed step costs, part by part (issue 22): the median wall
time of starting and reaping `/bin/sh -c "echo {}"`
  plain      directly (what `--no-sandbox` starts),
  bwrap-min  under bubblewrap with only new namespaces and /usr read-only,
  bwrap-full under the arguments rhizos passes today (the /etc allow-list,
             /proc, /dev, tmpfs for /dev/shm, /tmp and scratch, uid 65534,
             no capabilities; the seccomp filter and synthesized passwd are
             left out: they need descriptors),
  cgroup     only the per-step cgroups (mkdir, limits, rmdir in the memory,
             pids and cpu hierarchies) without starting anything,
  rhizos-1   `rhizos flow run` of one step, --no-sandbox and sandboxed,
alternating, -n rounds. Needs root for the cgroup part (skipped otherwise).

usage: bench/runner/sandbox_parts.py [-n N] [--build DIR]"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SH = ["/bin/sh", "-c", "echo {}"]


def bwrap_min():
    return ["bwrap", "--unshare-all", "--unshare-user", "--die-with-parent",
            "--new-session", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--"] + SH


def bwrap_full(scratch):
    a = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--uid", "65534",
         "--gid", "65534", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
         "--ro-bind", "/usr", "/usr"]
    for d in ("bin", "sbin", "lib", "lib32", "lib64"):
        a += ["--symlink", "usr/" + d, "/" + d]
    for e in ("ld.so.cache", "alternatives", "localtime", "nsswitch.conf", "gai.conf",
              "services", "protocols", "mime.types", "os-release", "ssl/certs",
              "ssl/openssl.cnf"):
        a += ["--ro-bind-try", "/etc/" + e, "/etc/" + e]
    a += ["--proc", "/proc", "--dev", "/dev", "--size", "67108864", "--tmpfs", "/dev/shm",
          "--size", "268435456", "--tmpfs", "/tmp", "--size", "268435456", "--tmpfs", scratch,
          "--chdir", scratch, "--"] + SH
    return a


def cgroup_dirs():
    base = []
    for ctl in ("memory", "pids", "cpu"):
        own = "/"
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, names, path = line.rstrip("\n").split(":", 2)
                if ctl in names.split(","):
                    own = path
        d = "/sys/fs/cgroup/%s%s" % (ctl, own)
        if os.access(d, os.W_OK):
            base.append((ctl, d))
    return base


def cgroup_step(bases, k):
    limits = {"memory": ("memory.limit_in_bytes", "268435456"),
              "pids": ("pids.max", "64"), "cpu": ("cpu.shares", "1024")}
    made = []
    for ctl, b in bases:
        d = "%s/rz-bench-%d-%d" % (b, os.getpid(), k)
        os.mkdir(d)
        made.append(d)
        name, v = limits[ctl]
        with open(os.path.join(d, name), "w") as f:
            f.write(v)
    for d in made:
        os.rmdir(d)


def run(argv):
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="rz-sbx-")
    rz = os.path.join(a.build, "cli", "rhizos")
    flow = os.path.join(scratch, "one.json")
    with open(flow, "w") as f:
        f.write('{"id":"b","name":"one","version":"1.0.0","nodes":[{"id":"n0",'
                '"moduleId":"sh"}],"connections":[]}\n')
    mods = os.path.join(HERE, "modules")
    bases = cgroup_dirs() if os.geteuid() == 0 else []
    parts = [("plain", lambda k: run(SH)),
             ("bwrap-min", lambda k: run(bwrap_min())),
             ("bwrap-full", lambda k: run(bwrap_full(scratch))),
             ("rhizos-1 --no-sandbox", lambda k: run([rz, "flow", "run", flow, "--data",
                                                      os.path.join(scratch, "d%d" % k),
                                                      "--modules", mods, "--no-sandbox"])),
             ("rhizos-1 sandboxed", lambda k: run([rz, "flow", "run", flow, "--data",
                                                   os.path.join(scratch, "e%d" % k),
                                                   "--modules", mods]))]
    if bases:
        parts.insert(3, ("cgroup (%s)" % ",".join(c for c, _ in bases),
                         lambda k: cgroup_step(bases, k)))
    times = {name: [] for name, _ in parts}
    load = os.getloadavg()[0]
    for k in range(a.n):
        for name, f in parts[k % len(parts):] + parts[:k % len(parts)]:
            t0 = time.perf_counter()
            f(k)
            times[name].append((time.perf_counter() - t0) * 1000)
    print("load %.2f -> %.2f, %d rounds" % (load, os.getloadavg()[0], a.n))
    print("%-28s %10s %8s" % ("part", "median ms", "min ms"))
    for name, _ in parts:
        print("%-28s %10.2f %8.2f" % (name, statistics.median(times[name]), min(times[name])))
    print("\nrepeat: bench/runner/sandbox_parts.py -n %d" % a.n)
    subprocess.run(["rm", "-rf", scratch])


if __name__ == "__main__":
    sys.exit(main())
