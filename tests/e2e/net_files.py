#!/usr/bin/env python3
"""End-to-end: file outputs (`type: file`) on the network. An orchestrator
and two real `rhizos-node`s: step `make` runs on one (labels place it) and
writes a 100 MB file, which its node uploads to the orchestrator in parts;
step `read` runs on the other, whose node fetches it in parts, digest
checked, and reads it: the digest is right and no process held the file in
memory (peak RSS of the orchestrator and both nodes bounded). Then the
hostile side, with nodes speaking the raw API: uploads by another node or a
client, a wrong digest, an oversized file, a malformed digest, a result
naming a file never uploaded, reads by an unrelated node or account, and a
step whose input names a file the orchestrator does not have.

Usage: net_files.py RHIZOS RHIZOS_NODE RHIZOS_ORCHESTRATOR SOURCE_ROOT"""
import hashlib
import json
import os
import re
import shutil
import sys
import time
import unittest

from harness import NodeKey, http, set_config, start_orchestrator, wait_until
import network
from network import ADMIN, Base

ROOT = sys.argv[4]
MODULES = os.path.join(ROOT, "tests", "e2e", "modules")
MB = int(os.environ.get("RHIZOS_NET_FILES_MB", "100"))
RSS_MAX_KB = 64 * 1024
# Under AddressSanitizer freed memory waits in a quarantine (256 MB by
# default), RSS all the same: a small one, so the bound means the same
# there (no effect on other builds).
os.environ["ASAN_OPTIONS"] = ":".join(
    x for x in (os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=4",
                "thread_local_quarantine_size_kb=64") if x)

FLOW = """flux: 1
name: netfiles
steps:
  make:
    module: file-make@1
    config: {"mb": %d}
  read:
    module: file-read@1
    needs: [make]
    inputs:
      data: "${{ steps.make.outputs.data }}"
"""

FORGED = """flux: 1
name: forged
steps:
  read:
    module: file-read@1
    inputs:
      data: {"$file": {"sha256": "%s", "size": 3, "name": "x"}}
"""


def expected(mb):
    """What file-make writes for `mb` MiB, hashed the same way."""
    piece = bytes(range(256)) * 256
    h = hashlib.sha256()
    for i in range(mb * 16):
        h.update(piece[i % 256:] + piece[:i % 256])
    return h.hexdigest()


def peak_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def reset_peak(pid):
    """Once its memory has settled (a node's start reaches ~80 MB for a
    moment after it registered), start VmHWM again from the current RSS:
    the peak measured is the transfer's."""
    seen = []
    for _ in range(100):
        seen.append(rss_kb(pid))
        if len(seen) >= 4 and max(seen[-4:]) - min(seen[-4:]) < 1024:
            break
        time.sleep(0.1)
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")


def raw(ctype, data):
    return data


class Common(Base):
    orch_args = []

    def setUp(self):
        # The modules, each placed by a label on its own node.
        self.mods = None
        super().setUp()

    def modules(self):
        if not self.mods:
            self.mods = os.path.join(self.tmp.name, "modules")
            for mid, role in (("file-make", "maker"), ("file-read", "reader")):
                d = os.path.join(self.mods, mid)
                shutil.copytree(os.path.join(MODULES, mid), d)
                with open(os.path.join(d, "module.json")) as f:
                    m = json.load(f)
                m["requirements"]["labels"] = {"role": role}
                with open(os.path.join(d, "module.json"), "w") as f:
                    json.dump(m, f)
        return self.mods

    def start_orchestrator(self):
        self.orch = start_orchestrator(
            network.ORCH, self.data,
            ["--quiet", "--node-timeout-ms", str(self.node_timeout_ms),
             "--modules", self.modules(), *self.orch_args],
            admin_key=ADMIN, cwd=ROOT, port=self.port)

    def run_node(self, data):
        n = network.Proc([network.NODE, "start", "--data", data, "--json",
                          "--modules", self.modules(), *network.SANDBOX], cwd=ROOT)
        n.data = data
        self.nodes.append(n)
        return n

    def labelled_node(self, name, role):
        data = self.init_node(name, 1000)
        set_config(data, "labels", "role", '"%s"' % role)
        return self.registered(self.run_node(data), name)

    def fake(self, byte):
        caps = {"cpu": {"cores": 4, "threads": 8}, "memory_mb": 8192,
                "storage": {"total_gb": 100, "free_gb": 100},
                "adapters": ["process"], "labels": {"role": "fake"},
                "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000000000,
                           "memory_gb_hour_micros": 0},
                "max_concurrent_jobs": 1}
        nk = NodeKey(byte * 32)
        doc = self.api("POST", "/api/v1/nodes/register", key=None, code=201,
                       body=nk.register_body(caps))
        network.KEYS[doc["id"]] = nk
        return doc["id"], doc["token"], nk

    @staticmethod
    def read_text(path):
        with open(path) as f:
            return f.read()

    def blob_paths(self):
        found = []
        for d, _, files in os.walk(os.path.join(self.data, "blobs", "sha256")):
            found += [f for f in files if not f.startswith("tmp")]
        return found


class NetFiles(Common):
    def test_100mb_between_two_nodes_streamed(self):
        maker = self.labelled_node("maker", "maker")
        reader = self.labelled_node("reader", "reader")
        path = self.flow_file("netfiles.yaml", FLOW % MB)
        for p in (self.orch, maker, reader):
            reset_peak(p.pid)
        t0 = time.time()
        dep = self.cli_json("flow", "deploy", path, key=self.key)["id"]
        self.cli("flow", "watch", str(dep), key=self.key, timeout=240)
        took = time.time() - t0
        st = self.status(dep)
        made = st["steps"]["make"]["outputs"]["data"]["$file"]
        got = st["steps"]["read"]["outputs"]
        want = expected(MB)
        self.assertEqual(made["sha256"], want)
        self.assertEqual(made["size"], MB << 20)
        self.assertNotIn("path", made)   # the maker's own folder stays its own
        self.assertEqual((got["sha256"], got["size"]), (want, MB << 20), got)
        self.assertFalse(got["writable"], got)
        # Each step ran where its label sent it.
        jobs = {j["step"]: j for j in self.client_jobs() if j.get("step")}
        self.assertEqual(jobs["make"]["node"], maker.id)
        self.assertEqual(jobs["read"]["node"], reader.id)
        # Stored once in the orchestrator's store, read-only; the nodes'
        # stores hold it only while a job uses it.
        blob = os.path.join(self.data, "blobs", "sha256", want[:2], want)
        self.assertEqual(os.stat(blob).st_size, MB << 20)
        self.assertEqual(os.stat(blob).st_mode & 0o777, 0o444)
        for n in (maker, reader):
            left = [f for _, _, fs in os.walk(os.path.join(n.data, "blobs")) for f in fs]
            self.assertEqual(left, [], n.name)
        # Streamed: nobody held the file.
        peaks = {"orchestrator": peak_kb(self.orch.pid), "maker": peak_kb(maker.pid),
                 "reader": peak_kb(reader.pid)}
        print("\n%d MiB between two nodes in %.1f s; peak RSS KiB: %s" %
              (MB, took, peaks), file=sys.stderr)
        for who, kb in peaks.items():
            self.assertLess(kb, RSS_MAX_KB, (who, peaks))
        reader.stop_clean()   # nothing leaks (under ASan)
        self.nodes.remove(reader)
        # The owner may read it back, in parts.
        st_, part = http(self.base, "GET", "/api/v1/blobs/%s?flow=%d&length=1000"
                         % (want, dep), self.key, decode=raw)
        self.assertEqual((st_, len(part)), (200, 1000))
        other = self.cli_json("account", "create", "--name", "other", key=ADMIN)
        st_, doc = http(self.base, "GET", "/api/v1/blobs/%s?flow=%d" % (want, dep),
                        other["api_key"])
        self.assertEqual(st_, 404, doc)

    def test_hostile_uploads_and_reads(self):
        nid, tok, nk = self.fake("33")
        oid, otok, _ = self.fake("44")
        job = self.api("POST", "/api/v1/jobs", key=self.key, code=201,
                       body={"module": "echo", "inputs": {"message": "hi"},
                             "max_cost_micros": 5000000})["id"]
        # Whichever fake node gets it is "ours"; the other is the stranger.
        a = None
        for _ in range(2):
            for n, t in ((nid, tok), (oid, otok)):
                s, got = http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=1" % n, t,
                              timeout=10)
                if s == 200:
                    a, holder, htok = got, n, t
                    break
            if a:
                break
        self.assertTrue(a, "no fake node got the job")
        self.assertEqual(a["job"], job)
        stranger = otok if holder == nid else tok
        data = b"hello file"
        hexd = hashlib.sha256(data).hexdigest()
        put = "/api/v1/blobs/%s?job=%d&offset=0&size=%d" % (hexd, job, len(data))
        raw_put = lambda key, p=put, body=data: http(
            self.base, "PUT", p, key, raw=body, ctype="application/octet-stream")
        # Another node, a client, no key.
        self.assertEqual(raw_put(stranger)[0], 403)
        self.assertEqual(raw_put(self.key)[0], 403)
        self.assertEqual(raw_put(None)[0], 401)
        # Malformed digests.
        for bad in ("abc", hexd.upper(), hexd[:-1] + "g", hexd + "0"):
            s, doc = http(self.base, "PUT", "/api/v1/blobs/%s?job=%d&size=3" % (bad, job),
                          htok, raw=b"abc", ctype="application/octet-stream")
            self.assertEqual(s, 400, (bad, doc))
            s, doc = http(self.base, "GET", "/api/v1/blobs/%s?job=%d" % (bad, job), htok)
            self.assertEqual(s, 400, (bad, doc))
        # Wrong digest: refused at the end, nothing stored.
        wrong = hashlib.sha256(b"other").hexdigest()
        s, doc = raw_put(htok, "/api/v1/blobs/%s?job=%d&offset=0&size=%d"
                         % (wrong, job, len(data)))
        self.assertEqual((s, doc["error"]["code"]), (422, "RZ_EINVALID"), doc)
        self.assertEqual(self.blob_paths(), [])
        # Oversized: refused before a byte is kept.
        s, doc = raw_put(htok, "/api/v1/blobs/%s?job=%d&offset=0&size=%d"
                         % (hexd, job, 2 << 30))
        self.assertEqual(s, 413, doc)
        s, doc = raw_put(htok, put, b"x" * (1024 * 1024 + 1))
        self.assertEqual(s, 413, doc)
        # A part that does not follow: told where to go on.
        s, doc = raw_put(htok, "/api/v1/blobs/%s?job=%d&offset=5&size=%d"
                         % (hexd, job, len(data)), data[5:])
        self.assertEqual((s, doc["offset"]), (409, 0), doc)
        # A result naming a file not uploaded: refused.
        ref = {"$file": {"sha256": hexd, "size": len(data), "name": "f.txt"}}
        body = {"attempt": a["attempt"], "run_ms": 5, "outputs": {"f": ref}}
        s, doc = http(self.base, "POST", "/api/v1/nodes/%d/jobs/%d/result"
                      % (holder, job), htok, network.KEYS[holder].signed(job, body))
        self.assertEqual(s, 409, doc)
        self.assertIn("did not upload", doc["error"]["message"])
        # In two parts, the second repeated (a lost answer): stored once.
        s, doc = raw_put(htok, put, data[:4])
        self.assertEqual((s, doc["offset"], doc["complete"]), (200, 4, False), doc)
        p2 = "/api/v1/blobs/%s?job=%d&offset=4&size=%d" % (hexd, job, len(data))
        s, doc = raw_put(htok, p2, data[4:])
        self.assertEqual((s, doc["complete"]), (201, True), doc)
        s, doc = raw_put(htok, p2, data[4:])
        self.assertEqual(s, 409, doc)
        self.assertEqual(self.blob_paths(), [hexd])
        # Reads: the stranger node and another account are refused; the
        # owner reads it by its job.
        s, doc = http(self.base, "GET", "/api/v1/blobs/%s?job=%d" % (hexd, job), stranger)
        self.assertEqual(s, 404, doc)
        other = self.cli_json("account", "create", "--name", "other", key=ADMIN)
        s, doc = http(self.base, "GET", "/api/v1/blobs/%s?job=%d" % (hexd, job),
                      other["api_key"])
        self.assertEqual(s, 404, doc)
        s, got = http(self.base, "GET", "/api/v1/blobs/%s?job=%d" % (hexd, job),
                      self.key, decode=raw)
        self.assertEqual((s, got), (200, data))
        # Now the result is taken, and shows the reference.
        s, doc = http(self.base, "POST", "/api/v1/nodes/%d/jobs/%d/result"
                      % (holder, job), htok, network.KEYS[holder].signed(job, body))
        self.assertEqual(s, 200, doc)
        self.assertEqual(self.job(job)["outputs"], {"f": ref})
        # The node's job is over: it may upload no more for it.
        self.assertEqual(raw_put(htok)[0], 403)
        # An upload left half way when the orchestrator stops: nothing
        # leaks (under ASan), and its temporary file is gone.
        job2 = self.api("POST", "/api/v1/jobs", key=self.key, code=201,
                        body={"module": "echo", "inputs": {"message": "hi"},
                              "max_cost_micros": 5000000})["id"]
        s, a2 = http(self.base, "GET", "/api/v1/nodes/%d/jobs?wait=5" % holder, htok,
                     timeout=15)
        self.assertEqual((s, a2["job"]), (200, job2), a2)
        s, doc = raw_put(htok, "/api/v1/blobs/%s?job=%d&offset=0&size=%d"
                         % (hexd, job2, len(data)), data[:3])
        self.assertEqual((s, doc["offset"]), (200, 3), doc)
        self.stop_orchestrator()
        self.assertEqual([f for f in os.listdir(os.path.join(self.data, "blobs"))
                          if f.startswith("tmp.")], [])

    def test_resumed_run_reads_an_earlier_runs_file(self):
        # `make` reused from the first run: its file, uploaded then, is
        # fetched for this run's `read` (the same account's).
        self.labelled_node("maker", "maker")
        self.labelled_node("reader", "reader")
        text = (FLOW % 1).replace("needs: [make]", "needs: [make]\n    cache: false")
        path = self.flow_file("resume.yaml", text)
        first = self.cli_json("flow", "deploy", path, key=self.key)["id"]
        self.cli("flow", "watch", str(first), key=self.key, timeout=60)
        st, doc = http(self.base, "POST", "/api/v1/flows/deploy", self.key,
                       {"flow": text, "resume_from": first})
        self.assertEqual(st, 201, doc)
        self.cli("flow", "watch", str(doc["id"]), key=self.key, timeout=60)
        again = self.status(doc["id"])
        self.assertTrue(again["steps"]["make"].get("reused"), again)
        self.assertFalse(again["steps"]["read"].get("reused"), again)
        self.assertEqual(again["steps"]["read"]["outputs"]["sha256"], expected(1))
        # Its owner saves the file with the CLI (parts, digest checked);
        # it never overwrites, and no one else gets it.
        out = os.path.join(self.tmp.name, "saved.bin")
        p = self.cli("flow", "file", str(first), "make", "data", "-o", out, key=self.key)
        with open(out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), expected(1))
        self.assertIn(expected(1), p.stderr)
        p = self.cli("flow", "file", str(first), "make", "data", "-o", out,
                     key=self.key, code=1)
        self.assertIn("exists", p.stderr)
        other = self.cli_json("account", "create", "--name", "other", key=ADMIN)
        theirs = os.path.join(self.tmp.name, "theirs.bin")
        self.cli("flow", "file", str(first), "make", "data", "-o", theirs,
                 key=other["api_key"], code=1)
        self.assertEqual([f for f in os.listdir(self.tmp.name) if "theirs" in f], [])
        p = self.cli("flow", "file", str(first), "make", "nope", key=self.key, code=1)
        self.assertIn("no output 'nope'", p.stderr)

    def test_input_naming_a_file_not_here_fails_clearly(self):
        self.labelled_node("reader", "reader")
        missing = hashlib.sha256(b"nowhere").hexdigest()
        path = self.flow_file("forged.yaml", FORGED % missing)
        st, doc = http(self.base, "POST", "/api/v1/flows/deploy", self.key,
                       {"flow": self.read_text(path)})
        if st != 201:   # refused at the door: as clear
            self.assertIn(st, (400, 422), doc)
            return
        dep = doc["id"]

        def ended():
            s = self.cli_json("flow", "status", str(dep), key=self.key)
            return s if s["status"] not in ("running", "queued", "pending") else None
        s = wait_until(ended, 60, "the deployment to end")
        self.assertEqual(s["status"], "failed", s)
        err = s["steps"]["read"].get("error", "")
        self.assertIn(missing[:12], err, s)


class Retention(Common):
    """A deployment's files leave with it (--retention-days), a blob that
    another deployment also made staying for that one."""
    orch_args = ["--retention-days", "3s"]

    def test_files_leave_with_their_deployment(self):
        self.labelled_node("maker", "maker")
        self.labelled_node("reader", "reader")
        path = self.flow_file("small.yaml", FLOW % 1)
        deps = []
        for _ in range(2):
            deps.append(self.cli_json("flow", "deploy", path, key=self.key)["id"])
            self.cli("flow", "watch", str(deps[-1]), key=self.key, timeout=60)
            if len(deps) == 1:
                time.sleep(1.5)   # the first ends well before the second
        want = expected(1)
        blob = os.path.join(self.data, "blobs", "sha256", want[:2], want)
        owners = os.path.join(self.data, "blobs", "owners")
        self.assertEqual(sorted(os.listdir(owners)),
                         ["a" + self.client] + ["d%d" % d for d in sorted(deps)])
        # the store's, the account's and each deployment's
        self.assertEqual(os.stat(blob).st_nlink, 4)
        wait_until(lambda: not os.path.exists(os.path.join(owners, "d%d" % deps[0])),
                   30, "the first deployment's files to leave")
        self.assertTrue(os.path.exists(blob))   # still the second's
        wait_until(lambda: not os.path.exists(blob) and not os.listdir(owners), 30,
                   "the blob and its last owner to leave")
        self.assertEqual(self.blob_paths(), [])

    def test_same_bytes_from_two_accounts_leave_with_the_last(self):
        # Both accounts' jobs upload the same file: the blob has both
        # accounts' links and stays while either's deployment does.
        self.labelled_node("maker", "maker")
        self.labelled_node("reader", "reader")
        other = self.cli_json("account", "create", "--name", "other", key=ADMIN)
        self.cli("account", "credit", other["id"], "100", key=ADMIN)
        path = self.flow_file("small.yaml", FLOW % 1)
        deps = []
        for key in (self.key, other["api_key"]):
            deps.append(self.cli_json("flow", "deploy", path, key=key)["id"])
            self.cli("flow", "watch", str(deps[-1]), key=key, timeout=60)
        want = expected(1)
        blob = os.path.join(self.data, "blobs", "sha256", want[:2], want)
        owners = os.path.join(self.data, "blobs", "owners")
        self.assertEqual(sorted(os.listdir(owners)),
                         sorted(["a" + self.client, "a" + other["id"]] +
                                ["d%d" % d for d in deps]))
        self.assertEqual(os.stat(blob).st_nlink, 5)
        wait_until(lambda: not os.path.exists(blob) and not os.listdir(owners), 30,
                   "the blob and both accounts' links to leave")
        self.assertEqual(self.blob_paths(), [])



class FlowRuns(Common):
    """A flow deployed and watched to its end, however it ends."""
    def run_flow(self, text):
        path = self.flow_file("caps.yaml", text)
        dep = self.cli_json("flow", "deploy", path, key=self.key)["id"]
        self.cli("flow", "watch", str(dep), key=self.key, timeout=60, code=None)
        return self.cli_json("flow", "status", str(dep), key=self.key)

    def cli(self, *args, key=None, code=0, timeout=60):
        if code is not None:
            return super().cli(*args, key=key, code=code, timeout=timeout)
        from harness import run, cli_env
        return run([network.RHIZOS, "--orchestrator", self.base, *args], cwd=ROOT,
                   env=cli_env(RHIZOS_API_KEY=key), timeout=timeout)


class NodeCaps(FlowRuns):
    """A node's own cap on one file ([limits] max_file_mb): for the files
    its jobs make and for the ones they take."""

    def capped_node(self, name, role, mb):
        data = self.init_node(name, 1000)
        set_config(data, "labels", "role", '"%s"' % role)
        set_config(data, "limits", "max_file_mb", mb)
        n = self.run_node(data)
        n.wait_for(lambda: [e for e in n.events() if e.get("event") == "registered"],
                   30, "node %s to register" % name)
        return n

    def test_node_caps_what_it_makes_and_takes(self):
        self.capped_node("maker", "maker", 1)
        st = self.run_flow(FLOW % 2)
        self.assertEqual(st["steps"]["make"]["status"], "failed", st)
        self.assertIn("at most 1 MiB a file", st["steps"]["make"]["error"])
        for n in self.nodes:
            n.stop_clean()
        self.nodes = []
        self.labelled_node("maker2", "maker")
        self.capped_node("reader", "reader", 1)
        st = self.run_flow(FLOW % 2)
        self.assertEqual(st["steps"]["make"]["status"], "succeeded", st)
        self.assertEqual(st["steps"]["read"]["status"], "failed", st)
        self.assertIn("max_file_mb = 1", st["steps"]["read"]["error"])


class Caps(FlowRuns):
    """The orchestrator's caps: one file, and a deployment's files."""
    orch_args = ["--max-file-mb", "2", "--max-run-files-mb", "2"]

    def test_caps_refuse_uploads(self):
        self.labelled_node("maker", "maker")
        st = self.run_flow("""flux: 1
name: big
steps:
  make:
    module: file-make@1
    config: {"mb": 3}
""")
        self.assertEqual(st["steps"]["make"]["status"], "failed", st)
        self.assertIn("over the cap on one file", st["steps"]["make"]["error"])
        st = self.run_flow("""flux: 1
name: two
steps:
  one:
    module: file-make@1
    config: {"mb": 1}
  two:
    module: file-make@1
    config: {"mb": 2}
    on_failure: continue
""")
        errors = [s.get("error", "") for s in st["steps"].values()
                  if s["status"] == "failed"]
        self.assertEqual(len(errors), 1, st)
        self.assertIn("the run's files would take 3145728 bytes; its cap is 2097152",
                      errors[0])
        # What the one that passed made, only.
        failed = [k for k, v in st["steps"].items() if v["status"] == "failed"]
        self.assertEqual(self.blob_paths(),
                         [expected(1) if failed == ["two"] else expected(2)])



class Limits(Common):
    """A node over its request rate is told to wait (429) part by part and
    still moves the whole file."""
    orch_args = ["--request-rate", "8", "--request-burst", "8"]

    def test_rate_limited_parts_go_on(self):
        self.labelled_node("maker", "maker")
        self.labelled_node("reader", "reader")
        path = self.flow_file("limited.yaml", FLOW % 6)
        dep = self.cli_json("flow", "deploy", path, key=self.key)["id"]
        self.cli("flow", "watch", str(dep), key=self.key, timeout=120)
        st = self.status(dep)
        self.assertEqual(st["steps"]["read"]["outputs"]["sha256"], expected(6))
        s, text = http(self.base, "GET", "/metrics", ADMIN)
        m = re.search(r'rhizos_http_responses_total\{code="429"\} (\d+)', text)
        self.assertTrue(m and int(m.group(1)) > 0, "no part was limited")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
