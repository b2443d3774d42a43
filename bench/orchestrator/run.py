#!/usr/bin/env python3
"""The rhizos-orchestrator benchmark (issue 7), on loopback.

Phases, each on a fresh server (random port, a temporary --data):
  submit   durable submissions per second: orch_load closed-loop POST
           /api/v1/jobs over --conns connections (jobs fit no node).
  get      `wrk` on GET /api/v1/jobs/{id} against that same server.
  latency  100 fake nodes long-poll; submissions paced at --rate/s; the
           time from the submit reply to the node holding the assignment,
           and the server's dispatch-latency histogram from /metrics.
  rss      VmRSS / VmHWM of the server after registering --rss-nodes nodes
           and queueing --rss-jobs jobs that fit nowhere.
  results  node results per second: 100 fake nodes answer every assignment
           at once while submissions are offered at --results-rate/s; what
           the audit log took of the event loop (rhizos_audit_seconds_total:
           each job's submit and result are two records each, every record
           a write + fdatasync + one synced LMDB commit of its head).

usage: bench/orchestrator/run.py [--build DIR] [--phases submit,get,latency,rss,results]
       [--seconds S] [--conns C] [--rate R] [--policy P] [--slots N] [--backlog N]
       [--lat-conns C]
       [--rss-nodes N] [--rss-jobs N] [--results-rate R] [--tmpdir DIR] [--json FILE]
"""
import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOWHERE = ('{"module":"echo@1","inputs":{"message":"hi"},"max_cost_micros":1,'
           '"requirements":{"labels":{"bench":"nowhere"}}}')
FITS = '{"module":"echo@1","inputs":{"message":"hi"},"max_cost_micros":1}'


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, exe, tmpdir, policy="cheapest"):
        self.dir = tempfile.mkdtemp(prefix="rz-orch-bench-", dir=tmpdir)
        self.data = os.path.join(self.dir, "data")
        self.admin = "rza_bench_" + os.urandom(16).hex()
        admin_file = os.path.join(self.dir, "admin.key")
        with open(admin_file, "w") as f:
            f.write(self.admin + "\n")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--listen", "127.0.0.1:%d" % self.port, "--data", self.data,
             "--admin-key-file", admin_file, "--quiet",
             "--modules", os.path.join(ROOT, "examples", "modules"),
             "--node-timeout-ms", "3600000", "--policy", policy,
             "--register-rate", "0",    # it registers thousands from one address
             # and one client key submits them all: no per-key quotas
             "--request-rate", "0", "--max-queued-jobs", "10000000"])
        for _ in range(200):
            try:
                self.call("GET", "/health")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the server did not start")

    def call(self, method, path, body=None, key=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = "Bearer " + key
        c.request(method, path, json.dumps(body) if body is not None else None, h)
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:300]))
        ctype = r.getheader("Content-Type") or ""
        return json.loads(data) if "json" in ctype else data.decode()

    def identity(self):
        """The key version 2 node proofs name (GET /api/v1/identity)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("GET", "/api/v1/identity")
        return json.loads(c.getresponse().read())["x25519_public_key"]

    def metric(self, name):
        m = re.search(r"^%s (\S+)$" % re.escape(name),
                      self.call("GET", "/metrics", key=self.admin), re.M)
        return float(m.group(1)) if m else 0.0

    def client(self, credits):
        doc = self.call("POST", "/api/v1/accounts", {"name": "bench"}, self.admin)
        self.call("POST", "/api/v1/accounts/%s/test-credits" % doc["id"],
                  {"amount_micros": credits}, self.admin)
        return doc["api_key"]

    def memory(self):
        out = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0]) // 1024   # MiB
        return out

    def cpu_seconds(self):
        """User + system CPU time the server has used so far."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def load(tool, port, *args):
    r = subprocess.run([tool, "--port", str(port)] + [str(a) for a in args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("orch_load failed: %s" % r.stderr)
    if r.stderr.strip():
        sys.stderr.write(r.stderr)
    return json.loads(r.stdout)


def dispatch_hist(metrics):
    """The server's dispatch-latency histogram: p50/p99 as bucket bounds."""
    b = [(float(m.group(1)) if m.group(1) != "+Inf" else float("inf"), int(m.group(2)))
         for m in re.finditer(r'rhizos_dispatch_latency_seconds_bucket\{le="([^"]+)"\} (\d+)',
                              metrics)]
    total = b[-1][1] if b else 0

    def q(p):
        for le, c in b:
            if total and c >= p * total:
                return le * 1000.0
        return None
    return {"n": total, "p50_le_ms": q(0.5), "p99_le_ms": q(0.99),
            "buckets": {("%g" % le): c for le, c in b}}


def phase_submit(a, tool, exe):
    s = Server(exe, a.tmpdir)
    try:
        key = s.client(10 ** 12)
        cpu = s.cpu_seconds()
        r = load(tool, s.port, "--mode", "submit", "--key", key, "--conns", a.conns,
                 "--seconds", a.seconds, "--body", NOWHERE)
        r["server_cpu_s"] = s.cpu_seconds() - cpu
        print("submit: %(acked)d acknowledged in %(seconds).1f s = %(per_second).0f/s "
              "(%(failed)d failed), %(conns)d connections" % r)
        print("  server CPU %.2f s: %.0f submissions per server CPU-second" % (
            r["server_cpu_s"], r["acked"] / max(r["server_cpu_s"], 1e-9)))
        print("  reply latency p50 %.2f ms, p99 %.2f ms" % (r["reply"]["p50_ms"],
                                                            r["reply"]["p99_ms"]))
        out = {"submit": r}
        if "get" in a.phases:
            out["get"] = phase_get(a, s, key, r["acked"])
        return out
    finally:
        s.stop()


def phase_get(a, s, key, n_jobs):
    job = max(1, n_jobs // 2)
    if not shutil.which("wrk"):
        print("get: wrk is not installed (scripts/bootstrap installs it)")
        return None
    r = subprocess.run(["wrk", "-t2", "-c%d" % a.conns, "-d%ds" % int(a.seconds),
                        "--latency", "-H", "Authorization: Bearer " + key,
                        "http://127.0.0.1:%d/api/v1/jobs/%d" % (s.port, job)],
                       capture_output=True, text=True)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    lat = {m.group(1): m.group(2) for m in
           re.finditer(r"^\s+(50|99)%\s+(\S+)", r.stdout, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    out = {"requests_per_second": float(rps.group(1)) if rps else None,
           "p50": lat.get("50"), "p99": lat.get("99"),
           "non_2xx": int(non2xx.group(1)) if non2xx else 0}
    print("get (wrk -t2 -c%d): %s req/s, p50 %s, p99 %s, non-2xx %d" % (
        a.conns, out["requests_per_second"], out["p50"], out["p99"], out["non_2xx"]))
    return out


def phase_latency(a, tool, exe):
    s = Server(exe, a.tmpdir, a.policy)
    try:
        key = s.client(10 ** 12)
        nodes = os.path.join(s.dir, "nodes.txt")
        load(tool, s.port, "--mode", "register", "--count", 100, "--conns", 8,
             "--out", nodes, "--slots", a.slots, "--orch-key", s.identity())
        if a.backlog:   # jobs that fit nowhere, queued ahead
            load(tool, s.port, "--mode", "submit", "--key", key, "--count", a.backlog,
                 "--conns", a.conns, "--body", NOWHERE)
        r = load(tool, s.port, "--mode", "latency", "--key", key, "--nodes", nodes,
                 "--rate", a.rate, "--conns", a.lat_conns, "--seconds", a.seconds,
                 "--body", FITS)
        h = dispatch_hist(s.call("GET", "/metrics", key=s.admin))
        print("latency (policy %s, %d slots a node, %d jobs that fit nowhere queued "
              "ahead): " % (a.policy, a.slots, a.backlog) +
              "%(nodes)d long-polling nodes, %(rate)d submissions/s offered "
              "over %(conns)d connections, "
              "%(acked)d acknowledged (%(per_second).0f/s), %(assigned)d assigned, "
              "%(results)d results" % r)
        for k in ("submit_reply", "assigned_after_reply", "assigned_after_send"):
            print("  %-22s p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (
                k, r[k]["p50_ms"], r[k]["p99_ms"], r[k]["max_ms"]))
        print("  server dispatch histogram (queued -> handed over): n %d, "
              "p50 <= %s ms, p99 <= %s ms" % (h["n"], h["p50_le_ms"], h["p99_le_ms"]))
        return {"latency": r, "dispatch_histogram": h}
    finally:
        s.stop()


def phase_rss(a, tool, exe):
    s = Server(exe, a.tmpdir)
    try:
        base = s.memory()
        key = s.client(10 ** 12)
        t = time.time()
        reg = load(tool, s.port, "--mode", "register", "--count", a.rss_nodes,
                   "--conns", 16, "--out", os.devnull, "--orch-key", s.identity())
        t_reg = time.time() - t
        t = time.time()
        sub = load(tool, s.port, "--mode", "submit", "--key", key, "--count",
                   a.rss_jobs, "--conns", a.conns, "--body", NOWHERE)
        t_sub = time.time() - t
        m = s.memory()
        t = time.time()
        s.call("GET", "/metrics", key=s.admin)
        t_metrics = time.time() - t
        print("rss: %d nodes registered in %.1f s (%.0f/s), %d jobs queued in %.1f s "
              "(%.0f/s)" % (reg["acked"], t_reg, reg["acked"] / t_reg, sub["acked"],
                            t_sub, sub["acked"] / t_sub))
        print("  server VmRSS %d MiB (anonymous %d, file-backed %d), VmHWM %d MiB "
              "(at start %d MiB); GET /metrics %.1f ms" % (
                  m["VmRSS"], m["RssAnon"], m["RssFile"], m["VmHWM"], base["VmRSS"],
                  t_metrics * 1000))
        return {"rss": {"nodes": reg["acked"], "jobs": sub["acked"], "start": base,
                        "after": m, "metrics_ms": t_metrics * 1000,
                        "register_per_second": reg["acked"] / t_reg,
                        "submit_per_second": sub["acked"] / t_sub}}
    finally:
        s.stop()


def phase_results(a, tool, exe):
    s = Server(exe, a.tmpdir, a.policy)
    try:
        key = s.client(10 ** 12)
        nodes = os.path.join(s.dir, "nodes.txt")
        load(tool, s.port, "--mode", "register", "--count", 100, "--conns", 8,
             "--out", nodes, "--slots", a.slots, "--orch-key", s.identity())
        rec0 = s.metric("rhizos_audit_records_total")
        sec0 = s.metric("rhizos_audit_seconds_total")
        syn0 = s.metric("rhizos_audit_syncs_total")
        cpu0 = s.cpu_seconds()
        r = load(tool, s.port, "--mode", "latency", "--key", key, "--nodes", nodes,
                 "--rate", a.results_rate, "--conns", a.lat_conns, "--seconds", a.seconds,
                 "--body", FITS)
        cpu = s.cpu_seconds() - cpu0
        recs = s.metric("rhizos_audit_records_total") - rec0
        secs = s.metric("rhizos_audit_seconds_total") - sec0
        # Servers before the end records were batched have no syncs counter:
        # one a record.
        syncs = (s.metric("rhizos_audit_syncs_total") - syn0) or recs
        wall = r["seconds"]
        jobs = max(r["results"], 1)
        out = {"offered_per_second": a.results_rate, "seconds": wall,
               "acked": r["acked"], "results": r["results"],
               "results_per_second": r["results_per_second"],
               "server_cpu_s": cpu, "audit_records": recs, "audit_s": secs,
               "audit_syncs": syncs, "audit_syncs_per_job": syncs / jobs,
               "audit_ms_per_record": secs * 1000 / max(recs, 1),
               "audit_ms_per_job": secs * 1000 / jobs,
               "audit_share_of_wall": secs / wall,
               # The loop does nothing else while a record syncs: with the
               # audit's time taken out, the same work in less wall.
               "results_per_second_without_audit_time":
                   r["results"] / max(wall - secs, 1e-9)}
        print("results: %(acked)d submitted at %(offered_per_second)d/s offered, "
              "%(results)d results in %(seconds).1f s = %(results_per_second).0f "
              "results/s; server CPU %(server_cpu_s).1f s" % out)
        print("  audit: %(audit_records)d records in %(audit_syncs)d syncs "
              "(%(audit_syncs_per_job).2f a job), %(audit_s).2f s on the event loop "
              "(%(audit_ms_per_record).2f ms a record, %(audit_ms_per_job).2f ms a job: "
              "submit + result), %(audit_share_of_wall).0f%% of the wall; without that "
              "time: %(results_per_second_without_audit_time).0f results/s" %
              dict(out, audit_share_of_wall=out["audit_share_of_wall"] * 100))
        return {"results": out}
    finally:
        s.stop()


def fsync_probe(directory, n=100):
    """fdatasync of a 4 KiB write on the data's file system: p50, p99 ms."""
    path = os.path.join(directory, "rz-orch-bench-fsync.%d" % os.getpid())
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"\0" * 65536)
        os.fsync(fd)
        t = []
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            t.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    t.sort()
    return t[n // 2] * 1000, t[min(n - 1, n * 99 // 100)] * 1000


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--phases", default="submit,get,latency,rss")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--policy", default="cheapest",
                   help="placement policy of the latency phase's server")
    p.add_argument("--slots", type=int, default=4,
                   help="max_concurrent_jobs of the latency phase's nodes")
    p.add_argument("--lat-conns", type=int, default=32,
                   help="submission connections of the latency phase")
    p.add_argument("--backlog", type=int, default=0,
                   help="jobs that fit nowhere queued before the latency phase")
    p.add_argument("--rss-nodes", type=int, default=10000)
    p.add_argument("--rss-jobs", type=int, default=100000)
    p.add_argument("--results-rate", type=int, default=3000,
                   help="submissions/s offered in the results phase")
    p.add_argument("--tmpdir", default=None)
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    a.phases = a.phases.split(",")
    exe = os.path.join(a.build, "server", "rhizos-orchestrator")
    tool = os.path.join(a.build, "bench", "orchestrator", "orch_load")
    for f in (exe, tool):
        if not os.path.exists(f):
            raise SystemExit("%s is missing: ninja -C %s server/rhizos-orchestrator "
                             "bench/orchestrator/orch_load" % (f, a.build))
    tmp = a.tmpdir or tempfile.gettempdir()
    fs = subprocess.run(["df", "-T", tmp], capture_output=True, text=True).stdout
    print("machine: nproc %d, load %s, data on %s" % (
        os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3]),
        " ".join(fs.splitlines()[-1].split()[:2]) if fs else tmp))
    f50, f99 = fsync_probe(tmp)
    print("fdatasync probe (4 KiB): p50 %.2f ms, p99 %.2f ms" % (f50, f99))
    out = {"fsync_ms": [f50, f99]}
    if "submit" in a.phases or "get" in a.phases:
        out.update(phase_submit(a, tool, exe))
    if "latency" in a.phases:
        out.update(phase_latency(a, tool, exe))
    if "rss" in a.phases:
        out.update(phase_rss(a, tool, exe))
    if "results" in a.phases:
        out.update(phase_results(a, tool, exe))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
