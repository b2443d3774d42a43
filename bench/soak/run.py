#!/usr/bin/env python3
"""The RhizOS soak (issue 14): an orchestrator and N nodes under mixed load
for --duration seconds, with node churn and orchestrator restarts, sampling
each process's RSS, descriptors and LMDB sizes; at the end, growth after
warm-up and the money invariants. Not part of CI (docs/benchmarks.md).

Load (--rate operations a second over --workers threads, weighted at
random): accounts with test credits, deposits requested and confirmed by
the admin (some left to expire, some cancelled), jobs of the small process
modules (echo, sleep, compare, text-source), jobs cancelled, flows of
examples/flows deployed and some cancelled, SSE watchers that open a
deployment's event stream and close it early or at its end, withdrawals
requested, reads, and bad requests (malformed, wrong key, unknown path,
invalid UTF-8, past 2^53) that must answer 4xx.

Churn: every --node-churn seconds one node is killed (SIGKILL, or SIGTERM
one time in four) and started again on the same data directory; every
--orch-restart seconds the orchestrator is stopped (SIGTERM or SIGKILL in
turn) and started again on the same port and data directory.

Every --sample seconds a CSV row per process: VmRSS, VmHWM, threads,
descriptors, and the orchestrator's LMDB files (engine, ledger, auth):
file size and the pages in use (from the meta page). The summary compares
a window just after warm-up with the last one, per process kind, and fits
a slope (MiB/h, fds/h) over the samples after warm-up, counting each
process's age from its own start (restarts reset it).

Invariants at the end (churn stopped, every acked job given time to end):
every acknowledged account, job, cancel, deposit confirmation, withdrawal
and deployment is there as acknowledged; per client account the credits
are the acknowledged test credits and confirmed deposits (plus at most
those whose reply was lost in a restart), the debits are the sum of its
jobs' costs, what is pending is its pending withdrawals, and
balance + pending = credits - debits; the server holds nothing for
finished jobs; no 5xx; `rhizos-orchestrator check` and `audit --verify`
pass on the data directory after a clean stop; the processes' stderr has
no sanitizer report.

Exit status: 0 when no growth past the thresholds and every invariant
holds; 1 otherwise (the summary says which). Growth is judged on the heap
(RssAnon: end <= warm x (1 + --rss-growth) + --rss-slack) and on the
file-backed RSS (RssFile: end <= warm + what the orchestrator's store files
grew + --file-slack: a map holds at most its file); VmRSS, their sum, is
reported.

--mix stateless drives only what adds no lasting state (reads, bad
requests, watchers of finished deployments, refused cancels) over accounts,
jobs and deployments made first. (The engine keeps only live work in
memory since 2026-12-05; the stores' files still grow with every job, and
their mapped pages count in RSS as RssFile, so RssAnon is the leak check
of the full mix.)

usage: bench/soak/run.py [--build DIR] [--duration S] [--nodes N]
       [--steady-nodes N] [--node-churn M] [--orch-restart K] [--sample S]
       [--warmup S] [--window S] [--mix full|stateless] [--rate R]
       [--workers W] [--accounts N] [--seed N] [--csv FILE] [--json FILE]
       [--workdir DIR] [--keep] [--rss-growth FRAC] [--rss-slack MIB]
       [--file-slack MIB]
       [--fd-growth N] [--drain S]
(--help lists them all with their defaults.)
Standard library only; uses tests/e2e/harness.py."""
import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import (Proc, free_port, http, run, sandbox_flags,  # noqa: E402
                     sanitizer_report, set_config, wait_until)

TERMINAL = ("succeeded", "failed", "cancelled")
MICROS = 10000   # micro-dollars a cent: the ledger's unit since issue 15
# RssFile (file-backed RSS) may rise past the warm-up by what the stores'
# files grew, plus this: once warm, the code and libraries are paged in,
# and the only file pages that can keep coming are the stores' maps, which
# hold at most their files (and less: the engine sheds its map every 1,024
# commits, the auth store every 256, the ledger at each checkpoint).
# Anything else file-backed that grows (a mapping never unmapped) fails.
FILE_SLACK_MIB = 8
FLOWS = ("inputs.yaml", "branch.yaml", "wordcount.yaml", "fanout.yaml")
LMDB_MAGIC = 0xBEEFC0DE


def now():
    return time.monotonic()


def money(doc, name):
    """A reply's amount `name` in micro-dollars, whichever unit the server
    speaks (`name_micros`, or the older `name_cents`)."""
    if name + "_micros" in doc:
        return doc[name + "_micros"]
    return doc[name + "_cents"] * MICROS


# ---- sampling ----

def proc_status(pid):
    """(rss, hwm, anon, file, threads) from /proc/PID/status (KiB), or
    None. RssFile counts the LMDB pages the process has touched through its
    map (page cache, reclaimable); RssAnon is its own heap."""
    got = {}
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    got[k] = int(v.split()[0])
    except OSError:
        return None
    if "VmRSS" not in got:
        return None   # a zombie
    return tuple(got.get(k, 0) for k in keys)


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def lmdb_sizes(path):
    """(file bytes, bytes in use) of an LMDB data.mdb: the in-use size is
    (last page + 1) x page size of the newer of the two meta pages."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(2 * 65536)
    except OSError:
        return None, None
    best = None
    # Meta page 0 is at 0; page 1 at the page size (read from page 0).
    def meta(off):
        if len(head) < off + 152:
            return None
        magic, = struct.unpack_from("<I", head, off + 16)
        if magic != LMDB_MAGIC:
            return None
        psize, = struct.unpack_from("<I", head, off + 40)    # mm_dbs[0].md_pad
        last, txn = struct.unpack_from("<QQ", head, off + 136)
        return txn, last, psize
    m0 = meta(0)
    if m0:
        best = m0
        m1 = meta(m0[2]) if m0[2] else None
        if m1 and m1[0] > best[0]:
            best = m1
    if not best:
        return size, None
    return size, (best[1] + 1) * best[2]


class Sampler:
    """Rows of (t, kind, name, pid, age_s, rss_kib, hwm_kib, threads, fds,
    engine/ledger/auth file and used bytes) every `every` seconds."""

    COLS = ("t_s", "kind", "name", "pid", "age_s", "rss_kib", "hwm_kib", "anon_kib",
            "file_kib", "threads",
            "fds", "engine_file", "engine_used", "ledger_file", "ledger_used",
            "auth_file", "auth_used", "jobs", "deployments", "ops", "loadavg1")

    def __init__(self, soak, every, csv_path):
        self.soak, self.every = soak, every
        self.rows = []
        self.f = open(csv_path, "w")
        self.f.write(",".join(self.COLS) + "\n")
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)

    def sample(self):
        s = self.soak
        t = now() - s.t0
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
        procs = []
        with s.lock:
            if s.orch is not None:
                procs.append(("orchestrator", "orch", s.orch))
            for i, n in enumerate(s.nodes):
                if n is not None:
                    procs.append(("node", "node%d" % i, n))
        counts = [None, None]
        if s.orch_up.is_set():
            try:
                st, doc = http(s.base, "GET", "/api/v1/stats", s.admin, timeout=5)
                if st == 200:
                    counts = [sum(doc["jobs"].values()), sum(doc["deployments"].values())]
            except (OSError, ValueError, KeyError, TypeError):
                pass
        for kind, name, p in procs:
            st = proc_status(p.pid)
            fds = fd_count(p.pid)
            if st is None or fds is None or not p.alive():
                continue
            sizes = [None] * 6
            if kind == "orchestrator":
                for j, store in enumerate(("engine", "ledger", "auth")):
                    sizes[2 * j:2 * j + 2] = lmdb_sizes(
                        os.path.join(s.orch_data, store, "data.mdb"))
            row = dict(zip(self.COLS, (round(t, 1), kind, name, p.pid,
                                       round(now() - p.started, 1), *st,
                                       fds, *sizes, *(counts if kind == "orchestrator"
                                                       else [None, None]),
                                       s.stats.total(), round(load, 2))))
            self.rows.append(row)
            self.f.write(",".join("" if row[c] is None else str(row[c])
                                  for c in self.COLS) + "\n")
        self.f.flush()

    def loop(self):
        while not self.stop.wait(self.every):
            try:
                self.sample()
            except Exception as e:   # a sample lost is not a soak lost
                self.soak.stats.err("sampler", type(e).__name__)

    def close(self):
        self.stop.set()
        self.t.join(timeout=10)
        self.sample()
        self.f.close()


# ---- counters and the book of what was acknowledged ----

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = collections.Counter()      # op -> done (any answer)
        self.errors = collections.Counter()   # "op: what" -> n (unexpected)
        self.unavail = collections.Counter()  # op -> refused while restarting
        self.limited = collections.Counter()  # op -> 429

    def op(self, name):
        with self.lock:
            self.ops[name] += 1

    def err(self, name, what):
        with self.lock:
            self.errors["%s: %s" % (name, what)] += 1

    def down(self, name):
        with self.lock:
            self.unavail[name] += 1

    def limit(self, name):
        with self.lock:
            self.limited[name] += 1

    def total(self):
        with self.lock:
            return sum(self.ops.values())


class Account:
    def __init__(self, aid, key):
        self.id, self.key = aid, key
        self.lock = threading.Lock()
        self.in_acked = 0        # test credits and confirmed deposits, 200
        self.in_unknown = 0      # their replies lost (a restart)
        self.withdraw_acked = {}   # id -> cents
        self.withdraw_unknown = 0
        self.deposits_open = []    # deposit ids not yet confirmed
        self.deposits_confirmed = set()
        self.jobs = {}             # id -> "submitted" | "cancelled"
        self.flows = {}            # id -> "deployed" | "cancelled"


# ---- the soak ----

class Soak:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.orch_exe = os.path.join(a.build, "server", "rhizos-orchestrator")
        self.node_exe = os.path.join(a.build, "server", "rhizos-node")
        for exe in (self.orch_exe, self.node_exe):
            if not os.access(exe, os.X_OK):
                sys.exit("soak: %s is not built (meson compile -C %s)" % (exe, a.build))
        self.work = a.workdir or tempfile.mkdtemp(prefix="rhizos-soak-")
        os.makedirs(self.work, exist_ok=True)
        self.orch_data = os.path.join(self.work, "orch")
        self.admin = "rza_soak_" + os.urandom(24).hex()
        self.key_file = os.path.join(self.work, "admin.key")
        with open(self.key_file, "w") as f:
            f.write(self.admin + "\n")
        os.chmod(self.key_file, 0o600)
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.orch = None
        self.orch_up = threading.Event()
        self.nodes = [None] * a.nodes
        self.node_data = [os.path.join(self.work, "node%d" % i) for i in range(a.nodes)]
        self.stats = Stats()
        self.accounts = []
        self.flows = {n: open(os.path.join(ROOT, "examples", "flows", n)).read()
                      for n in FLOWS}
        self.stop_load = threading.Event()
        self.stderr_bad = []     # sanitizer reports, unexpected exits
        self.restarts = collections.Counter()
        self.micros = True     # told apart by the first account's reply
        self.t0 = now()

    # -- processes --

    def start_orch(self):
        args = [self.orch_exe, "--listen", "127.0.0.1:%d" % self.port,
                "--data", self.orch_data, "--admin-key-file", self.key_file,
                "--modules", os.path.join(ROOT, "examples", "modules"), "--quiet",
                "--node-timeout-ms", "4000", "--queue-timeout", "300",
                # One address drives every client: the per-address limits
                # would throttle the whole load; per-account caps stay on.
                "--request-rate", "0", "--register-rate", "0", "--auth-failures", "0",
                "--deposit-ttl", str(self.a.deposit_ttl)]
        p = Proc(args, cwd=ROOT)
        p.started = now()
        p.wait_for(lambda: http(self.base, "GET", "/health", timeout=1)[0] == 200,
                   60, "the orchestrator to answer /health")
        with self.lock:
            self.orch = p
        self.orch_up.set()
        return p

    def stop_orch(self, sig):
        self.orch_up.clear()
        with self.lock:
            p, self.orch = self.orch, None
        rc = p.stop(sig, timeout=30)
        self.check_exit("orchestrator", p, rc, sig)
        return rc

    def check_exit(self, what, p, rc, sig):
        err = p.stderr_text()
        if sanitizer_report(err):
            self.stderr_bad.append("%s: sanitizer report:\n%s" % (what, err[-3000:]))
        if sig == signal.SIGTERM and rc != 0:
            self.stderr_bad.append("%s: SIGTERM exit %s:\n%s" % (what, rc, err[-2000:]))
        # Memory: a Proc keeps its output; drop it once checked.
        p.out.clear()
        p.err.clear()

    def init_node(self, i):
        d = self.node_data[i]
        r = run([self.node_exe, "init", "--data", d, "--orchestrator", self.base],
                cwd=ROOT)
        if r.returncode != 0:
            sys.exit("soak: rhizos-node init: %s" % r.stderr)
        set_config(d, "limits", "max_concurrent_jobs", str(self.a.node_slots))
        # Prices that make a job cost whole cents (1 cent a CPU second), so
        # the money checks see charges and payouts.
        with open(os.path.join(d, "config.toml")) as f:
            micros = "cpu_hour_micros" in f.read()
        set_config(d, "pricing", "cpu_hour_micros" if micros else "cpu_hour_cents",
                   str(self.a.cpu_hour_cents * (MICROS if micros else 1)))

    def start_node(self, i):
        p = Proc([self.node_exe, "start", "--data", self.node_data[i],
                  "--orchestrator", self.base, "--quiet", *sandbox_flags()], cwd=ROOT)
        p.started = now()
        with self.lock:
            self.nodes[i] = p
        return p

    def stop_node(self, i, sig):
        with self.lock:
            p, self.nodes[i] = self.nodes[i], None
        if p is None:
            return None
        rc = p.stop(sig, timeout=30)
        self.check_exit("node%d" % i, p, rc, sig)
        return rc

    # -- calls --

    def amount(self, name, cents):
        """{name_micros: ...} or {name_cents: ...}, as the server speaks."""
        if self.micros:
            return {name + "_micros": cents * MICROS}
        return {name + "_cents": cents}

    def call(self, op, method, path, key=None, body=None, raw=None, ctype=None,
             ok=(200,), timeout=15):
        """(status, doc), or (None, None) when the server was not there. An
        unexpected status is counted as an error of `op` (5xx always)."""
        self.stats.op(op)
        try:
            st, doc = http(self.base, method, path, key=key, body=body, raw=raw,
                           ctype=ctype, timeout=timeout)
        except (OSError, ValueError) as e:
            if self.orch_up.is_set():
                # Up by our flag but the call failed: in a restart's window,
                # or a real error; told apart by a /health probe.
                try:
                    up = http(self.base, "GET", "/health", timeout=2)[0] == 200
                except OSError:
                    up = False
                if up and self.orch_up.is_set():
                    self.stats.err(op, type(e).__name__)
                    return None, None
            self.stats.down(op)
            return None, None
        if st == 429:
            self.stats.limit(op)
        elif st == 402 and st not in ok:
            # Holds and pending withdrawals used the balance up: an answer
            # the client must expect, counted beside the 429s.
            self.stats.limit(op + " 402")
        elif st not in ok:
            msg = ""
            if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
                msg = " " + str(doc["error"].get("code"))
            self.stats.err(op, "%d%s" % (st, msg))
        return st, doc

    def account(self):
        with self.lock:
            have = list(self.accounts)
        if len(have) < self.a.accounts or not have:
            return self.new_account()
        return self.rng.choice(have)

    def new_account(self):
        st, doc = self.call("account", "POST", "/api/v1/accounts", self.admin,
                            {"name": "soak"}, ok=(201,))
        if st != 201:
            return None
        acct = Account(doc["id"], doc["api_key"])
        st, d = self.call("account", "GET", "/api/v1/accounts/%s" % acct.id, self.admin)
        if st == 200:
            self.micros = "balance_micros" in d
        self.credit(acct, 20000)
        with self.lock:
            self.accounts.append(acct)
        return acct

    def credit(self, acct, cents):
        st, _ = self.call("test-credit", "POST", "/api/v1/accounts/%s/test-credits"
                          % acct.id, self.admin, self.amount("amount", cents))
        with acct.lock:
            if st == 200:
                acct.in_acked += cents * MICROS
            elif st is None:
                acct.in_unknown += cents * MICROS

    # -- operations (each one step of the load) --

    def op_deposit(self, acct):
        cents = self.rng.randint(1, 5000)
        st, d = self.call("deposit", "POST", "/api/v1/accounts/%s/deposit" % acct.id,
                          acct.key, self.amount("amount", cents), ok=(201,))
        if st != 201:
            return
        roll = self.rng.random()
        if roll < 0.1:          # its owner changes their mind
            self.call("deposit-cancel", "DELETE", "/api/v1/deposits/%s"
                      % d["deposit_id"], acct.key)
            return
        if roll < 0.2:          # never paid: it expires
            return
        st, _ = self.call("deposit-confirm", "POST", "/api/v1/deposits/%s/confirm"
                          % d["deposit_id"], self.admin, ok=(200, 409))
        with acct.lock:
            if st == 200:
                acct.in_acked += cents * MICROS
                acct.deposits_confirmed.add(d["deposit_id"])
            elif st is None:
                acct.in_unknown += cents * MICROS

    def op_job(self, acct, cancel=False):
        mod = self.rng.choice((
            {"module": "echo", "inputs": {"message": "soak %d" % self.rng.randint(0, 1 << 30)}},
            {"module": "sleep", "config": {"seconds": round(self.rng.uniform(0.05, 1.5), 2)}},
            {"module": "compare", "inputs": {"value": self.rng.randint(0, 20)},
             "config": {"threshold": 10}},
            {"module": "text-source", "config": {"text": "the roots meet the roots"}},
        ))
        if cancel:
            mod = {"module": "sleep", "config": {"seconds": 3}}
        mod.update(self.amount("max_cost", self.rng.randint(5, 60)))
        st, j = self.call("job", "POST", "/api/v1/jobs", acct.key, mod, ok=(201,))
        if st != 201:
            return
        with acct.lock:
            acct.jobs[j["id"]] = "submitted"
        if cancel:
            time.sleep(self.rng.uniform(0, 1.5))
            st, _ = self.call("job-cancel", "DELETE", "/api/v1/jobs/%d" % j["id"],
                              acct.key, ok=(200, 409))
            if st == 200:
                with acct.lock:
                    acct.jobs[j["id"]] = "cancelled"

    def op_flow(self, acct):
        name = self.rng.choice(FLOWS)
        st, d = self.call("flow", "POST", "/api/v1/flows/deploy", acct.key,
                          {"flow": self.flows[name]}, ok=(201,))
        if st != 201:
            return
        with acct.lock:
            acct.flows[d["id"]] = "deployed"
        roll = self.rng.random()
        if roll < 0.15:
            time.sleep(self.rng.uniform(0, 1))
            st, _ = self.call("flow-cancel", "DELETE", "/api/v1/flows/%d" % d["id"],
                              acct.key, ok=(200, 409))
            if st == 200:
                with acct.lock:
                    acct.flows[d["id"]] = "cancelled"
        elif roll < 0.5:
            self.watch(acct, d["id"])

    def watch(self, acct, dep):
        """An SSE watcher: reads the stream for a while (to its end, or
        closes it early), on a raw socket as a browser would."""
        self.stats.op("sse")
        limit = self.rng.choice((0.2, 1.0, 5.0))
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            self.stats.down("sse")
            return
        try:
            s.sendall(("GET /api/v1/flows/%d/events HTTP/1.1\r\nHost: soak\r\n"
                       "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n"
                       % (dep, acct.key)).encode())
            end = now() + limit
            got = b""
            while now() < end:
                s.settimeout(max(0.05, end - now()))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                got += chunk[:4096] if len(got) < 8192 else b""
                if b"event: end" in got:
                    break
            head = got.split(b"\r\n", 1)[0]
            if got and b" 200 " not in head and b" 429 " not in head:
                self.stats.err("sse", head.decode(errors="replace")[:40])
        except OSError:
            self.stats.down("sse")
        finally:
            s.close()

    def op_withdraw(self, acct):
        cents = self.rng.randint(1, 20)
        st, w = self.call("withdraw", "POST", "/api/v1/accounts/%s/withdraw" % acct.id,
                          acct.key, dict(self.amount("amount", cents), address="soak"),
                          ok=(201, 402))
        with acct.lock:
            if st == 201:
                acct.withdraw_acked[w["withdrawal_id"]] = cents * MICROS
            elif st is None:
                acct.withdraw_unknown += cents * MICROS

    def op_read(self, acct):
        path, key = self.rng.choice((
            ("/api/v1/accounts/me", acct.key), ("/api/v1/jobs?limit=20", acct.key),
            ("/api/v1/flows", acct.key), ("/api/v1/stats", acct.key),
            ("/api/v1/nodes", acct.key), ("/api/v1/payments/stats", self.admin),
            ("/metrics", self.admin), ("/api/v1/accounts/%s/payments" % acct.id, acct.key)))
        self.call("read", "GET", path, key)

    def op_bad(self, acct):
        kind = self.rng.randrange(8)
        bad = (400, 401, 403, 404, 405, 409, 413, 415, 422)
        if kind == 0:
            self.call("bad-json", "POST", "/api/v1/jobs", acct.key, raw=b'{"module":',
                      ctype="application/json", ok=bad)
        elif kind == 1:
            self.call("bad-key", "GET", "/api/v1/accounts/me", "rzk_" + "0" * 64, ok=bad)
        elif kind == 2:
            self.call("bad-path", "GET", "/api/v1/nothing/%d" % self.rng.randint(0, 99),
                      acct.key, ok=bad)
        elif kind == 3:
            self.call("bad-utf8", "POST", "/api/v1/jobs", acct.key,
                      raw=b'{"module":"echo","inputs":{"message":"\xff\xfe"}}',
                      ctype="application/json", ok=bad)
        elif kind == 4:
            self.call("bad-number", "POST", "/api/v1/accounts/%s/deposit" % acct.id,
                      acct.key, raw=(b'{"amount_micros":18014398509481985}' if self.micros
                                     else b'{"amount_cents":18014398509481985}'),
                      ctype="application/json", ok=bad)
        elif kind == 5:
            self.call("bad-module", "POST", "/api/v1/jobs", acct.key,
                      dict({"module": "no-such-module"}, **self.amount("max_cost", 5)),
                      ok=bad)
        elif kind == 6:
            self.call("bad-flow", "POST", "/api/v1/flows/deploy", acct.key,
                      {"flow": "flux: 1\nname: x\nsteps:\n  a:\n    module: nope@1\n"},
                      ok=bad)
        else:
            with self.lock:
                other = self.rng.choice(self.accounts)
            # Another client's account: not this key's.
            if other is not acct:
                self.call("bad-owner", "GET", "/api/v1/accounts/%s/payments" % other.id,
                          acct.key, ok=bad)

    OPS = (("deposit", 12), ("job", 20), ("job-cancel", 4), ("flow", 5),
           ("withdraw", 5), ("read", 30), ("bad", 12), ("account", 1))
    # Operations that add no lasting state (the server's memory may hold
    # what each job and deployment ever was; this mix tells a leak from it).
    STATELESS = (("read", 50), ("bad", 30), ("watch", 10), ("cancel-done", 10))

    def op_watch(self, acct):
        with acct.lock:
            flows = list(acct.flows)
        if flows:
            self.watch(acct, self.rng.choice(flows))

    def op_cancel_done(self, acct):
        with acct.lock:
            jobs = list(acct.jobs)
        if jobs:
            self.call("cancel-done", "DELETE", "/api/v1/jobs/%d" % self.rng.choice(jobs),
                      acct.key, ok=(409,))

    def seed_state(self):
        """The stateless mix's accounts, jobs and deployments, made first."""
        for _ in range(self.a.accounts):
            acct = self.new_account()
            if acct is None:
                continue
            for _ in range(5):
                self.op_job(acct)
            self.op_flow(acct)
        self.drain(self.a.drain)

    def worker(self, seed):
        rng = random.Random(seed)
        mix = self.STATELESS if self.a.mix == "stateless" else self.OPS
        names = [n for n, _ in mix]
        weights = [w for _, w in mix]
        gap = self.a.workers / self.a.rate
        while not self.stop_load.is_set():
            t = now()
            if not self.orch_up.wait(1):
                continue
            name = rng.choices(names, weights)[0]
            try:
                acct = self.new_account() if name == "account" else self.account()
                if acct is None:
                    pass
                elif name == "deposit":
                    self.op_deposit(acct)
                elif name == "job":
                    self.op_job(acct)
                elif name == "job-cancel":
                    self.op_job(acct, cancel=True)
                elif name == "flow":
                    self.op_flow(acct)
                elif name == "withdraw":
                    self.op_withdraw(acct)
                elif name == "read":
                    self.op_read(acct)
                elif name == "bad":
                    self.op_bad(acct)
                elif name == "watch":
                    self.op_watch(acct)
                elif name == "cancel-done":
                    self.op_cancel_done(acct)
            except Exception as e:   # the load goes on; the summary tells
                self.stats.err(name, "%s %s" % (type(e).__name__, str(e)[:60]))
            left = gap - (now() - t)
            if left > 0:
                self.stop_load.wait(left)

    # -- churn --

    def churn(self):
        a = self.a
        next_node = now() + a.node_churn if a.node_churn else None
        next_orch = now() + a.orch_restart if a.orch_restart else None
        orch_sig = [signal.SIGTERM, signal.SIGKILL]
        while not self.stop_load.wait(0.5):
            t = now()
            if next_node and t >= next_node:
                i = self.rng.randrange(min(a.steady_nodes, a.nodes - 1), a.nodes)
                sig = signal.SIGTERM if self.rng.random() < 0.25 else signal.SIGKILL
                self.stop_node(i, sig)
                self.restarts["node %s" % sig.name] += 1
                time.sleep(self.rng.uniform(0, 2))
                self.start_node(i)
                next_node = now() + a.node_churn
            if next_orch and t >= next_orch:
                sig = orch_sig[self.restarts["orch"] % 2]
                self.stop_orch(sig)
                self.restarts["orch"] += 1
                self.restarts["orch %s" % sig.name] += 1
                try:
                    self.start_orch()
                except AssertionError as e:
                    self.stderr_bad.append("orchestrator restart: %s" % e)
                    self.stop_load.set()
                    return
                next_orch = now() + a.orch_restart
            with self.lock:
                dead = [(i, n) for i, n in enumerate(self.nodes)
                        if n is not None and not n.alive()]
            for i, n in dead:    # a node that died by itself: say so, restart
                self.stderr_bad.append("node%d exited by itself (%s):\n%s" %
                                       (i, n.p.returncode, n.stderr_text()[-2000:]))
                self.stop_node(i, signal.SIGKILL)
                self.start_node(i)

    # -- the end --

    def drain(self, timeout):
        """Wait until every acknowledged job and deployment has ended."""
        end = now() + timeout
        left = None
        while now() < end:
            left = 0
            for acct in list(self.accounts):
                st, doc = self.call("final", "GET", "/api/v1/jobs?limit=1000", acct.key)
                if st != 200:
                    left += 1
                    continue
                left += sum(j["status"] not in TERMINAL for j in doc["jobs"])
            if left == 0:
                return 0
            time.sleep(2)
        return left

    def invariants(self):
        """A list of broken invariants (empty: all hold)."""
        broken = []
        sum_credits = 0
        for acct in self.accounts:
            st, doc = self.call("final", "GET", "/api/v1/accounts/%s" % acct.id, self.admin)
            if st != 200:
                broken.append("account %s acknowledged, now %s" % (acct.id, st))
                continue
            st, jl = self.call("final", "GET", "/api/v1/jobs?limit=1000", acct.key)
            jobs = {j["id"]: j for j in jl["jobs"]} if st == 200 else {}
            for jid, what in acct.jobs.items():
                j = jobs.get(jid)
                if j is None:
                    st, j = self.call("final", "GET", "/api/v1/jobs/%d" % jid, acct.key)
                    if st != 200:
                        broken.append("job %d acknowledged, now %s" % (jid, st))
                        continue
                if j["status"] not in TERMINAL:
                    broken.append("job %d still %s" % (jid, j["status"]))
                if what == "cancelled" and j["status"] != "cancelled":
                    broken.append("job %d cancel acknowledged, now %s" % (jid, j["status"]))
                if money(j, "cost") > money(j, "max_cost"):
                    broken.append("job %d cost %d over its max %d" %
                                  (jid, money(j, "cost"), money(j, "max_cost")))
            for fid, what in acct.flows.items():
                st, f = self.call("final", "GET", "/api/v1/flows/%d/status" % fid, acct.key)
                if st != 200:
                    broken.append("deployment %d acknowledged, now %s" % (fid, st))
                elif what == "cancelled" and f["status"] != "cancelled":
                    broken.append("deployment %d cancel acknowledged, now %s"
                                  % (fid, f["status"]))
            st, pays = self.call("final", "GET", "/api/v1/accounts/%s/payments" % acct.id,
                                 acct.key)
            if st == 200:
                by_id = {p["id"]: p for p in pays["payments"]}
                # The route gives the newest 100: older ids are checked by
                # the sums below only.
                complete = len(pays["payments"]) < 100
                for wid in acct.withdraw_acked:
                    if wid not in by_id and complete:
                        broken.append("withdrawal %s acknowledged, not in payments" % wid)
                for did in acct.deposits_confirmed:
                    p = by_id.get(did)
                    if complete and (p is None or p["status"] not in ("posted", "done")):
                        broken.append("deposit %s confirmed, payments say %s" % (did, p))
            cr, de = money(doc, "credits"), money(doc, "debits")
            pend, bal = money(doc, "pending"), money(doc, "balance")
            sum_credits += cr
            if not acct.in_acked <= cr <= acct.in_acked + acct.in_unknown:
                broken.append("account %s credits %d, acknowledged %d (+%d unknown)"
                              % (acct.id, cr, acct.in_acked, acct.in_unknown))
            if len(jobs) < 1000:
                cost = sum(money(j, "cost") for j in jobs.values())
                if de != cost:
                    broken.append("account %s debits %d, its jobs cost %d"
                                  % (acct.id, de, cost))
            wd = sum(acct.withdraw_acked.values())
            if not wd <= pend <= wd + acct.withdraw_unknown:
                broken.append("account %s pending %d, withdrawals acknowledged %d "
                              "(+%d unknown)" % (acct.id, pend, wd,
                                                 acct.withdraw_unknown))
            if bal + pend != cr - de:
                broken.append("account %s balance %d + pending %d != credits %d - "
                              "debits %d" % (acct.id, bal, pend, cr, de))
        st, stats = self.call("final", "GET", "/api/v1/payments/stats", self.admin)
        if st == 200:
            self.pay_stats = stats
            if money(stats, "deposits") != sum_credits:
                broken.append("payments/stats deposits %d != the accounts' credits %d"
                              % (money(stats, "deposits"), sum_credits))
            if "withdrawals_pending_micros" in stats:
                wd = sum(sum(x.withdraw_acked.values()) for x in self.accounts)
                unk = sum(x.withdraw_unknown for x in self.accounts)
                got = stats["withdrawals_pending_micros"]
                if not wd <= got <= wd + unk:
                    broken.append("payments/stats withdrawals pending %d, acknowledged "
                                  "%d (+%d unknown)" % (got, wd, unk))
            if money(stats, "held") != 0:
                broken.append("payments/stats still holds %d micros" % money(stats, "held"))
        else:
            broken.append("payments/stats: %s" % st)
        return broken

    def offline_checks(self):
        broken = []
        r = run([self.orch_exe, "check", "--data", self.orch_data], timeout=600)
        self.check_out = (r.stdout + r.stderr).strip()
        if r.returncode != 0:
            broken.append("rhizos-orchestrator check: exit %d: %s" %
                          (r.returncode, self.check_out[-1000:]))
        r = run([self.orch_exe, "audit", "--data", self.orch_data, "--verify"],
                timeout=600)
        self.audit_out = (r.stdout + r.stderr).strip()
        if r.returncode != 0:
            broken.append("audit --verify: exit %d: %s" % (r.returncode,
                                                           self.audit_out[-1000:]))
        return broken


# ---- growth ----

def slope(points):
    """Least-squares slope of (x, y) points, or None."""
    if len(points) < 3:
        return None
    mx = statistics.fmean(p[0] for p in points)
    my = statistics.fmean(p[1] for p in points)
    den = sum((p[0] - mx) ** 2 for p in points)
    if den == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den


def stores_mib(rows):
    """Median size of the engine, ledger and auth files together, MiB."""
    sizes = [sum(r[k] or 0 for k in ("engine_file", "ledger_file", "auth_file"))
             for r in rows]
    return statistics.median(sizes) / (1 << 20) if sizes else 0.0


def growth(rows, kind, warm, window, end_t):
    """Per kind: medians of RSS (MiB) and fds in the window after warm-up
    and in the last window, and slopes per hour over the samples after
    warm-up. RSS and fds are taken at a process age past warm-up when
    restarts are frequent (a process younger than that is still warming)."""
    rs = [r for r in rows if r["kind"] == kind]
    aged = [r for r in rs if r["age_s"] >= min(warm, 60) and r["t_s"] >= warm]
    first = [r for r in aged if r["t_s"] < warm + window]
    last = [r for r in aged if r["t_s"] >= end_t - window]
    if not first or not last:
        return None
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    g = {
        "samples": len(aged),
        "rss_warm_mib": med(first, "rss_kib") / 1024, "rss_end_mib": med(last, "rss_kib") / 1024,
        "anon_warm_mib": med(first, "anon_kib") / 1024,
        "anon_end_mib": med(last, "anon_kib") / 1024,
        "file_warm_mib": med(first, "file_kib") / 1024,
        "file_end_mib": med(last, "file_kib") / 1024,
        "file_max_mib": max(r["file_kib"] for r in aged) / 1024,
        # The orchestrator's three LMDB files (none sampled for nodes).
        "stores_warm_mib": stores_mib(first), "stores_end_mib": stores_mib(last),
        "fds_warm": med(first, "fds"), "fds_end": med(last, "fds"),
        "rss_max_mib": max(r["rss_kib"] for r in aged) / 1024,
        "fds_max": max(r["fds"] for r in aged),
        "threads_max": max(r["threads"] for r in aged),
    }
    s = slope([(r["t_s"] / 3600, r["rss_kib"] / 1024) for r in aged])
    g["rss_slope_mib_h"] = s
    g["anon_slope_mib_h"] = slope([(r["t_s"] / 3600, r["anon_kib"] / 1024) for r in aged])
    s = slope([(r["t_s"] / 3600, r["fds"]) for r in aged])
    g["fds_slope_h"] = s
    # Within each process's own life: slope against its age.
    by_pid = collections.defaultdict(list)
    for r in aged:
        by_pid[r["pid"]].append((r["age_s"] / 3600, r["rss_kib"] / 1024))
    per = [slope(v) for v in by_pid.values() if len(v) >= 6]
    per = [p for p in per if p is not None]
    g["rss_slope_in_life_mib_h"] = statistics.median(per) if per else None
    return g


def kill_all(s):
    """On an interruption: no process of the soak left behind."""
    s.stop_load.set()
    with s.lock:
        procs = [p for p in [s.orch, *s.nodes] if p is not None]
    for p in procs:
        if p.alive():
            p.p.kill()
            p.p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the meson build folder")
    ap.add_argument("--duration", type=float, default=3600,
                    help="seconds of load")
    ap.add_argument("--nodes", type=int, default=3,
                    help="rhizos-node processes")
    ap.add_argument("--node-slots", type=int, default=2,
                    help="max_concurrent_jobs of each node")
    ap.add_argument("--steady-nodes", type=int, default=1,
                    help="nodes never churned (their growth is read over the "
                    "whole run); at least one node is always churned")
    ap.add_argument("--cpu-hour-cents", type=int, default=3600,
                    help="the nodes' CPU price")
    ap.add_argument("--node-churn", type=float, default=60, help="seconds; 0: none")
    ap.add_argument("--orch-restart", type=float, default=300, help="seconds; 0: none")
    ap.add_argument("--sample", type=float, default=10,
                    help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds (default: 10%% of the duration, 60 to 600)")
    ap.add_argument("--window", type=float, default=None,
                    help="seconds compared at each end (default: 10%% of the run)")
    ap.add_argument("--mix", choices=("full", "stateless"), default="full",
                    help="full: the mixed load; stateless: reads, bad requests, "
                    "watchers and refused cancels over state made first")
    ap.add_argument("--rate", type=float, default=15, help="operations a second")
    ap.add_argument("--workers", type=int, default=3,
                    help="load threads")
    ap.add_argument("--accounts", type=int, default=40,
                    help="client accounts before new ones are rare")
    ap.add_argument("--deposit-ttl", type=int, default=120,
                    help="the orchestrator's --deposit-ttl")
    ap.add_argument("--seed", type=int, default=14,
                    help="of the load's choices")
    ap.add_argument("--csv", default=None,
                    help="the samples (default: a file in the temp folder)")
    ap.add_argument("--json", default=None,
                    help="the summary as JSON")
    ap.add_argument("--workdir", default=None,
                    help="data folders here, kept (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--rss-growth", type=float, default=0.25,
                    help="fail when the end's heap (RssAnon) > the warm-up's "
                    "x (1 + FRAC) + slack")
    ap.add_argument("--rss-slack", type=float, default=8, help="MiB")
    ap.add_argument("--file-slack", type=float, default=FILE_SLACK_MIB,
                    help="MiB: fail when the end's file-backed RSS (RssFile: "
                    "code and the stores' mapped pages) > the warm-up's + "
                    "what the stores' files grew + this (docs/benchmarks.md "
                    "\"Soak\")")
    ap.add_argument("--fd-growth", type=int, default=16,
                    help="fail when end fds > warm fds + N")
    ap.add_argument("--drain", type=float, default=180,
                    help="seconds for jobs to end after the load")
    a = ap.parse_args()
    if a.warmup is None:
        a.warmup = min(600, max(60, a.duration * 0.1))
    if a.window is None:
        a.window = max(3 * a.sample, a.duration * 0.1)

    s = Soak(a)
    try:
        return soak(s, a)
    except BaseException:
        kill_all(s)
        raise


def soak(s, a):
    csv_path = a.csv or os.path.join(tempfile.gettempdir(),
                                     "rhizos-soak-%d.csv" % os.getpid())
    print("soak: %s for %g s, %d nodes, churn %g s, orchestrator restart %g s, "
          "sample %g s, warm-up %g s; work in %s, CSV %s" %
          (s.base, a.duration, a.nodes, a.node_churn, a.orch_restart, a.sample,
           a.warmup, s.work, csv_path), flush=True)
    s.start_orch()
    for i in range(a.nodes):
        s.init_node(i)
        s.start_node(i)
    wait_until(lambda: http(s.base, "GET", "/api/v1/stats", s.admin)[1]["nodes"]["active"]
               == a.nodes, 60, "the nodes to register")
    if a.mix == "stateless":
        s.seed_state()
        s.t0 = now()
    sampler = Sampler(s, a.sample, csv_path)
    sampler.sample()
    sampler.t.start()
    threads = [threading.Thread(target=s.worker, args=(a.seed * 100 + i,), daemon=True)
               for i in range(a.workers)]
    churn = threading.Thread(target=s.churn, daemon=True)
    for t in threads + [churn]:
        t.start()
    load0 = os.getloadavg()
    last_report = now()
    while now() - s.t0 < a.duration and not s.stop_load.is_set():
        time.sleep(1)
        if now() - last_report >= 60:
            last_report = now()
            print("soak: %4.0f s, %d ops, %d errors, %d restarts, load %.1f" %
                  (now() - s.t0, s.stats.total(), sum(s.stats.errors.values()),
                   sum(v for k, v in s.restarts.items() if " " not in k or
                       k.startswith("node")), os.getloadavg()[0]), flush=True)
    run_end = now() - s.t0
    s.stop_load.set()
    for t in threads + [churn]:
        t.join(timeout=60)
    sampler.close()
    loadavg = os.getloadavg()

    # Every node up for the drain (churn may have left one stopping).
    for i in range(a.nodes):
        if s.nodes[i] is None or not s.nodes[i].alive():
            s.stop_node(i, signal.SIGKILL)
            s.start_node(i)
    if s.orch is None:
        s.start_orch()
    left = s.drain(a.drain)
    broken = []
    if left:
        broken.append("%d jobs still unfinished %g s after the load stopped"
                      % (left, a.drain))
    broken += s.invariants()
    for i in range(a.nodes):
        s.stop_node(i, signal.SIGTERM)
    s.stop_orch(signal.SIGTERM)
    broken += s.offline_checks()
    broken += s.stderr_bad
    five = {k: v for k, v in s.stats.errors.items() if ": 5" in k}
    if five:
        broken.append("5xx answers: %s" % five)

    # ---- summary ----
    ops = dict(s.stats.ops)
    ops.pop("final", None)
    report = {"duration_s": round(run_end, 1), "nodes": a.nodes, "rate": a.rate,
              "loadavg_start": [round(x, 2) for x in load0],
              "loadavg_end": [round(x, 2) for x in loadavg],
              "ops": ops, "ops_total": sum(ops.values()),
              "errors": dict(s.stats.errors), "unavailable": dict(s.stats.unavail),
              "limited_429": dict(s.stats.limited), "restarts": dict(s.restarts),
              "accounts": len(s.accounts),
              "jobs_acked": sum(len(x.jobs) for x in s.accounts),
              "jobs_cancel_acked": sum(v == "cancelled" for x in s.accounts
                                       for v in x.jobs.values()),
              "flows_acked": sum(len(x.flows) for x in s.accounts),
              "money_in_acked_micros": sum(x.in_acked for x in s.accounts),
              "money_in_unknown_micros": sum(x.in_unknown for x in s.accounts),
              "withdrawals_acked": sum(len(x.withdraw_acked) for x in s.accounts),
              "payments_stats": getattr(s, "pay_stats", None),
              "check": getattr(s, "check_out", ""), "audit": getattr(s, "audit_out", ""),
              "growth": {}, "lmdb": {}, "broken": broken}
    grew = []
    steady = ["node%d" % i for i in range(min(a.steady_nodes, a.nodes - 1))]
    kinds = ["orchestrator", "node"] + ["steady " + n for n in steady]
    for r in sampler.rows:
        if r["name"] in steady:
            r["kind"] = "steady " + r["name"]
    for kind in kinds:
        g = growth(sampler.rows, kind, a.warmup, a.window, run_end)
        report["growth"][kind] = g
        if g is None:
            continue
        # The check of record is the heap: VmRSS also counts the stores'
        # mapped pages, which the kernel reclaims and the stores shed.
        w, e = g["anon_warm_mib"], g["anon_end_mib"]
        if e > w * (1 + a.rss_growth) + a.rss_slack:
            grew.append("%s RssAnon %.1f -> %.1f MiB" % (kind, w, e))
        w, e = g["file_warm_mib"], g["file_end_mib"]
        more = max(0.0, g["stores_end_mib"] - g["stores_warm_mib"])
        if e > w + more + a.file_slack:
            grew.append("%s RssFile %.1f -> %.1f MiB (bound: + %.1f MiB the "
                        "stores grew + %g)" % (kind, w, e, more, a.file_slack))
        if g["fds_end"] > g["fds_warm"] + a.fd_growth:
            grew.append("%s fds %g -> %g" % (kind, g["fds_warm"], g["fds_end"]))
    orow = [r for r in sampler.rows if r["kind"] == "orchestrator"]
    # What the orchestrator's memory holds per job in its engine: RSS
    # against the job count, over samples after warm-up.
    pts = [(r["jobs"], r["rss_kib"]) for r in orow
           if r["jobs"] is not None and r["t_s"] >= a.warmup
           and r["age_s"] >= min(a.warmup, 60)]
    if len(set(p[0] for p in pts)) >= 3:
        report["rss_kib_per_job"] = slope(pts)
        report["anon_kib_per_job"] = slope(
            [(r["jobs"], r["anon_kib"]) for r in orow if r["jobs"] is not None
             and r["t_s"] >= a.warmup and r["age_s"] >= min(a.warmup, 60)])
    if orow:
        for store in ("engine", "ledger", "auth"):
            f0 = next((r for r in orow if r[store + "_used"]), None)
            f1 = orow[-1]
            if f0:
                report["lmdb"][store] = {
                    "used_start_kib": f0[store + "_used"] // 1024,
                    "used_end_kib": (f1[store + "_used"] or 0) // 1024,
                    "file_end_kib": (f1[store + "_file"] or 0) // 1024}
    report["grew"] = grew
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)

    print("\n== soak summary (%.0f s, load average %s at the start, %s at the end)"
          % (run_end, report["loadavg_start"], report["loadavg_end"]))
    print("operations: %d  %s" % (report["ops_total"], json.dumps(ops, sort_keys=True)))
    print("acknowledged: %d accounts, %d jobs (%d cancels), %d deployments, "
          "%d withdrawals, %d cents in (+%d unknown)" %
          (report["accounts"], report["jobs_acked"], report["jobs_cancel_acked"],
           report["flows_acked"], report["withdrawals_acked"],
           report["money_in_acked_micros"] // MICROS,
           report["money_in_unknown_micros"] // MICROS))
    print("restarts: %s" % json.dumps(dict(s.restarts), sort_keys=True))
    print("refused while the orchestrator restarted: %s" %
          json.dumps(report["unavailable"], sort_keys=True))
    print("429s (and 402s for want of funds): %s" %
          json.dumps(report["limited_429"], sort_keys=True))
    print("unexpected answers (errors by kind): %s" %
          (json.dumps(report["errors"], sort_keys=True) or "none"))
    for kind, g in report["growth"].items():
        if not g:
            print("%s: too few samples after warm-up" % kind)
            continue
        fmt = lambda v: "n/a" if v is None else "%+.2f" % v
        print("%-12s RSS %.1f -> %.1f MiB (max %.1f), slope %s MiB/h (in a "
              "process's life %s); RssAnon %.1f -> %.1f MiB, slope %s MiB/h; "
              "RssFile %.1f -> %.1f MiB (max %.1f; stores' files %.1f -> %.1f MiB); "
              "fds %g -> %g (max %d), slope %s/h; threads max %d"
              % (kind, g["rss_warm_mib"], g["rss_end_mib"], g["rss_max_mib"],
                 fmt(g["rss_slope_mib_h"]), fmt(g["rss_slope_in_life_mib_h"]),
                 g["anon_warm_mib"], g["anon_end_mib"], fmt(g["anon_slope_mib_h"]),
                 g["file_warm_mib"], g["file_end_mib"], g["file_max_mib"],
                 g["stores_warm_mib"], g["stores_end_mib"],
                 g["fds_warm"], g["fds_end"], g["fds_max"], fmt(g["fds_slope_h"]),
                 g["threads_max"]))
    if report.get("rss_kib_per_job") is not None:
        print("orchestrator RSS against its jobs (all states): %+.2f KiB a job, "
              "RssAnon %+.2f (%s -> %s jobs)" % (
                  report["rss_kib_per_job"], report["anon_kib_per_job"] or 0,
                  orow[0]["jobs"], orow[-1]["jobs"]))
    for store, v in report["lmdb"].items():
        print("lmdb %-7s in use %d -> %d KiB (file %d KiB)" %
              (store, v["used_start_kib"], v["used_end_kib"], v["file_end_kib"]))
    if report["payments_stats"]:
        print("payments/stats: %s" % json.dumps(report["payments_stats"], sort_keys=True))
    print("check: %s" % report["check"].replace("\n", " | ")[:300])
    print("audit: %s" % report["audit"].replace("\n", " | ")[:300])
    for g in grew:
        print("GROWTH: " + g)
    for b in broken:
        print("BROKEN: " + b)
    print("soak: %s" % ("FAIL" if grew or broken else "PASS"))
    if not a.keep and not a.workdir:
        shutil.rmtree(s.work, ignore_errors=True)
    elif a.workdir or a.keep:
        print("soak: work directory kept: %s" % s.work)
    return 1 if grew or broken else 0


if __name__ == "__main__":
    sys.exit(main())
