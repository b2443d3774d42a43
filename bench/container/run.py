#!/usr/bin/env python3
"""The container benchmark (issue 13): a trivial container step through
rhizos against `podman run --rm` of the same image and command, interleaved
in the same run, on the engine of scripts/containers-up.

Each round runs, in this order, one of each:
  podman     `podman run --rm IMAGE sh -c "echo '{\"ok\": 1}'"` (the peer).
  api        the bare engine floor: create, attach, start, wait, remove
             through the Docker API on the socket (Python, one step).
  embedded   `rhizos flow run` of a one-step flow of bench/container/modules/
             ctr-true (the same image and command), --container-host.
  embeddedK  the same with K sequential steps (each needs the one before).
  node       `rhizos flow deploy` of the one-step flow to an orchestrator
             with one rhizos-node on loopback (started once), until the
             flow's status is final (polled every 10 ms).
Medians and p90 of N rounds. The ratio is rhizos / podman. Our own overhead
per step is the marginal cost of one more step in an embedded flow,
(embeddedK - embedded) / (K - 1), minus the bare API floor: what rhizos adds
to one container beyond the engine calls it cannot avoid.

usage: set -a; . /tmp/rhizos-containers/env; set +a
       bench/container/run.py [--build DIR] [-n N] [-k K] [--no-node]
                              [--tmpdir DIR] [--json FILE]
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from common import Net, quantile, read_to_close, run, timed  # noqa: E402

MODULES = os.path.join(ROOT, "bench", "container", "modules")
COMMAND = ["sh", "-c", "echo '{\"ok\": 1}'"]
ADMIN = "bench-admin-" + "b" * 32


def flow_text(k):
    s = "flux: 1\nname: ctr-bench-%d\nsteps:\n" % k
    for i in range(1, k + 1):
        s += "  s%d:\n    module: ctr-true@1\n    max_cost_micros: 50000\n" % i
        if i > 1:
            s += "    needs: [s%d]\n" % (i - 1)
    return s


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class Engine:
    """The Docker API on the socket, through one kept-alive connection."""

    def __init__(self, sock):
        self.sock = sock
        self.c = UnixHTTP(sock)

    def call(self, method, path, body=None, ok=(200, 201, 204)):
        h = {"Content-Type": "application/json"} if body is not None else {}
        self.c.request(method, path, json.dumps(body) if body is not None else None, h)
        r = self.c.getresponse()
        data = r.read()
        if r.status not in ok:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:300]))
        return json.loads(data) if data else None

    def attach(self, cid):
        """A raw connection attached to the container's stdout/stderr."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock)
        s.sendall(("POST /containers/%s/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                   "Host: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                   "Content-Length: 0\r\n\r\n" % cid).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("attach: connection closed")
            head += chunk
        if head.split(b" ", 2)[1] not in (b"101", b"200"):
            raise RuntimeError("attach: %r" % head[:200])
        return s, head.split(b"\r\n\r\n", 1)[1]

    def one(self, image):
        """create, attach, start, wait, remove; the container's stdout."""
        cid = self.call("POST", "/containers/create",
                        {"Image": image, "Cmd": COMMAND, "AttachStdout": True,
                         "AttachStderr": True, "HostConfig": {"NetworkMode": "none"}})["Id"]
        s, buf = self.attach(cid)
        self.call("POST", "/containers/%s/start" % cid)
        buf += read_to_close(s)
        s.close()
        st = self.call("POST", "/containers/%s/wait" % cid)
        self.call("DELETE", "/containers/%s?force=1" % cid)
        if st.get("StatusCode") != 0 or b'"ok"' not in buf:
            raise RuntimeError("api: exit %s, output %r" % (st, buf[:200]))

    def version(self):
        return self.call("GET", "/version")


def stats(xs):
    xs = sorted(xs)
    return {"median_ms": statistics.median(xs), "p90_ms": quantile(xs, 0.9),
            "min_ms": xs[0], "runs_ms": xs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("-n", type=int, default=10, help="rounds (default 10)")
    ap.add_argument("-k", type=int, default=5, help="steps of the K-step flow")
    ap.add_argument("--no-node", action="store_true", help="skip the node phase")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    host = os.environ.get("RHIZOS_TEST_DOCKER_HOST", "")
    image = os.environ.get("RHIZOS_TEST_IMAGE", "localhost/rhizos-demo:latest")
    if not host.startswith("unix://"):
        raise SystemExit("RHIZOS_TEST_DOCKER_HOST is unset: set -a; . "
                         "/tmp/rhizos-containers/env; set +a (scripts/containers-up)")
    sock = host[len("unix://"):]
    podman = shutil.which("podman")
    rhizos = os.path.join(a.build, "cli", "rhizos")
    tmp = tempfile.mkdtemp(prefix="rz-ctr-bench-", dir=a.tmpdir)
    eng = Engine(sock)
    ver = eng.version()
    flow1 = os.path.join(tmp, "one.yaml")
    flowk = os.path.join(tmp, "k.yaml")
    with open(flow1, "w") as f:
        f.write(flow_text(1))
    with open(flowk, "w") as f:
        f.write(flow_text(a.k))

    def embedded(flow):
        def go():
            p = run([rhizos, "flow", "run", flow, "--modules", MODULES, "--data",
                     os.path.join(tmp, "data"), "--container-host", host, "--json"],
                    cwd=ROOT, timeout=120)
            if p.returncode:
                raise SystemExit("rhizos flow run: %s%s" % (p.stdout, p.stderr))
        return go

    def peer():
        p = subprocess.run([podman, "run", "--rm", image, *COMMAND],
                           capture_output=True, text=True, timeout=120)
        if p.returncode or '"ok"' not in p.stdout:
            raise SystemExit("podman run: %s%s" % (p.stdout, p.stderr))

    node = None if a.no_node else Net(a.build, tmp, MODULES, ADMIN, 100000000,
                                      config=[("container", "host", '"%s"' % host)])
    phases = [("podman", peer), ("api", lambda: eng.one(image)),
              ("embedded", embedded(flow1)), ("embeddedK", embedded(flowk))]
    if node:
        phases.append(("node", lambda: node.deploy(flow1, 120, 0.01)))
    times = {name: [] for name, _ in phases}
    try:
        for _, fn in phases:   # warm up: page cache, image layers, first run
            fn()
        for _ in range(a.n):
            for name, fn in phases:
                times[name].append(timed(fn))
    finally:
        if node:
            node.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    r = {name: stats(xs) for name, xs in times.items()}
    po, api, emb, embk = (r[x]["median_ms"] for x in ("podman", "api", "embedded", "embeddedK"))
    marginal = (embk - emb) / (a.k - 1)
    out = {"n": a.n, "k": a.k, "engine": "%s %s (API %s)" % (
        ver.get("Components", [{}])[0].get("Name", "engine"), ver.get("Version"),
        ver.get("ApiVersion")), "phases": r,
        "ratio_embedded": emb / po, "marginal_step_ms": marginal,
        "overhead_per_step_ms": marginal - api}
    print("engine: %s; %d rounds, interleaved; K = %d" % (out["engine"], a.n, a.k))
    print("%-34s %10s %10s %10s" % ("", "median ms", "p90 ms", "vs podman"))
    labels = {"podman": "podman run --rm (peer)",
              "api": "bare API: create..remove",
              "embedded": "rhizos flow run, 1 step",
              "embeddedK": "rhizos flow run, %d steps" % a.k,
              "node": "flow deploy via 1 node, 1 step"}
    for name in times:
        print("%-34s %10.1f %10.1f %9.2fx" % (labels[name], r[name]["median_ms"],
                                              r[name]["p90_ms"], r[name]["median_ms"] / po))
    if node:
        out["ratio_node"] = r["node"]["median_ms"] / po
    print("per step in a %d-step flow: %.1f ms (podman run: %.1f ms, bare API: %.1f ms)"
          % (a.k, marginal, po, api))
    print("rhizos's own overhead per step (marginal step - bare API): %.1f ms "
          "(goal <= 20 ms)" % out["overhead_per_step_ms"])
    print("ratio rhizos/podman, embedded 1 step: %.2fx (goal <= 1.2x)%s" % (
        out["ratio_embedded"],
        "; through a node: %.2fx" % out["ratio_node"] if node else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
