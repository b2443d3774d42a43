#!/usr/bin/env python3
"""librhizos loads no library that only some commands need (issue 22):
libcurl, hwloc and libevent must not be DT_NEEDED by the shared library,
directly or through another; lib/common/lazy_curl.c and lib/hw/lazy_hwloc.c
dlopen the first two when used. Also checks that `rhizos --version` maps
none of them.

usage: startup_deps.py LIBRHIZOS.so RHIZOS"""
import os
import subprocess
import sys

OPTIONAL = ("libcurl", "libhwloc", "libevent", "libudev", "libssl", "libgnutls")


def main():
    lib, cli = sys.argv[1], sys.argv[2]
    out = subprocess.run(["ldd", lib], capture_output=True, text=True, check=True).stdout
    bad = [line.split()[0] for line in out.splitlines()
           if line.strip() and line.split()[0].startswith(OPTIONAL)]
    env = dict(os.environ, LD_DEBUG="libs")
    trace = subprocess.run([cli, "--version"], capture_output=True, text=True,
                           env=env).stderr
    loaded = sorted({w for line in trace.splitlines() if "calling init:" in line
                     for w in [os.path.basename(line.split()[-1])]
                     if w.startswith(OPTIONAL)})
    if bad or loaded:
        print("startup_deps: librhizos needs %s; `rhizos --version` loads %s"
              % (bad or "nothing optional", loaded or "nothing optional"))
        return 1
    print("startup_deps: %s needs none of %s" % (os.path.basename(lib), ", ".join(OPTIONAL)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
