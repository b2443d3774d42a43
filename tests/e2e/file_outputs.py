#!/usr/bin/env python3
"""End-to-end: file outputs (`type: file`) between steps of `rhizos flow
run`, sandboxed and not: the file stored by digest in the data folder's
blob store, the dependant handed a read-only copy by absolute path, hostile
names and files refused, the caps, and a 100 MB file passed with the
runner's memory bounded. Usage: file_outputs.py RHIZOS SOURCE_ROOT"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

from harness import cli_env, sandbox_works

RHIZOS, ROOT = sys.argv[1], sys.argv[2]
MODULES = os.path.join(ROOT, "tests", "e2e", "modules")

FLOW = """flux: 1
name: files
steps:
  make:
    module: file-make@1
    config: %s
  read:
    module: file-read@1
    needs: [make]
    inputs:
      data: "${{ steps.make.outputs.data }}"
"""

# A file, then a slow step: a run killed in the second has stored the first
# step's file, which its record (written at the start) does not name.
TWO_STEPS = """flux: 1
name: two
steps:
  make:
    module: file-make@1
    config: %s
  slow:
    module: file-make@1
    needs: [make]
    config: %s
"""


def expected(mb):
    """What file-make writes for `mb` MiB, hashed the same way."""
    piece = bytes(range(256)) * 256
    h = hashlib.sha256()
    for i in range(mb * 16):
        h.update(piece[i % 256:] + piece[:i % 256])
    return h.hexdigest()


class FileOutputs(unittest.TestCase):
    sandbox = False
    env = {}

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.data = os.path.join(self.tmp.name, "data")

    def tearDown(self):
        self.tmp.cleanup()

    def flow(self, config, **env):
        """Runs FLOW with file-make's config: (exit code, the --json doc or
        None, stderr)."""
        path = os.path.join(self.tmp.name, "files.yaml")
        with open(path, "w") as f:
            f.write(FLOW % json.dumps(config))
        cmd = [RHIZOS, "flow", "run", path, "--json", "--modules", MODULES,
               "--data", self.data] + ([] if self.sandbox else ["--no-sandbox"])
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=cli_env(**self.env, **env), text=True)
        out, err = p.communicate(timeout=240)
        return p.returncode, json.loads(out) if out.strip() else None, err

    def step(self, doc, sid):
        return doc["steps"][sid]

    def blobs(self):
        root = os.path.join(self.data, "blobs", "sha256")
        found = []
        for d, _, files in os.walk(root):
            found += [os.path.join(d, f) for f in files]
        return found

    def test_file_passed_by_digest_read_only(self):
        rc, doc, err = self.flow({"mb": 1})
        self.assertEqual(rc, 0, err)
        ref = self.step(doc, "make")["outputs"]["data"]["$file"]
        want = expected(1)
        self.assertEqual(ref["sha256"], want)
        self.assertEqual(ref["size"], 1 << 20)
        self.assertEqual(ref["name"], "sub/data.bin")
        self.assertTrue(ref["path"].startswith(os.path.join(self.data, "blobs") + "/"))
        with open(ref["path"], "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), want)
        self.assertEqual(os.stat(ref["path"]).st_mode & 0o777, 0o444)
        got = self.step(doc, "read")["outputs"]
        self.assertEqual((got["sha256"], got["size"]), (want, 1 << 20))
        self.assertTrue(os.path.isabs(got["path"]))
        self.assertTrue(got["path"].endswith("/data.bin"), got["path"])
        self.assertNotEqual(got["path"], ref["path"])   # a copy, not the blob
        self.assertEqual(got["mode"], 0o444)
        if self.sandbox:
            self.assertFalse(got["writable"])   # bound read-only
        # The record keeps the reference.
        runs = subprocess.run([RHIZOS, "flow", "runs", doc["id"], "--json",
                               "--data", self.data], capture_output=True, text=True,
                              env=cli_env())
        self.assertIn(want, runs.stdout)

    def refused(self, config, words, **env):
        rc, doc, err = self.flow(config, **env)
        self.assertEqual(rc, 1, err)
        make = self.step(doc, "make")
        self.assertEqual(make["status"], "failed")
        for w in words:
            self.assertIn(w, make["error"])
        self.assertEqual(self.step(doc, "read")["status"], "skipped")
        self.assertEqual(self.blobs(), [])
        return make["error"]

    def test_symlink_to_shadow_refused(self):
        self.refused({"mode": "symlink", "name": "link"}, ["output 'data'", "link"])

    def test_symlinked_folder_refused(self):
        self.refused({"mode": "linkdir"}, ["output 'data'", "etc/shadow"])

    def test_fifo_refused(self):
        self.refused({"mode": "fifo", "name": "fifo"}, ["output 'data'", "fifo"])

    def test_dotdot_refused(self):
        self.refused({"mode": "dotdot"}, ["output 'data'", "'..'"])

    def test_absolute_refused(self):
        self.refused({"mode": "absolute"}, ["output 'data'", "absolute"])

    def test_file_over_cap(self):
        err = self.refused({"mb": 3}, ["cap", "2 MiB"], RHIZOS_MAX_FILE_MB="2")
        self.assertIn("file", err)

    def test_run_cap(self):
        self.refused({"mb": 3}, ["cap", "2 MiB"], RHIZOS_MAX_RUN_FILES_MB="2")

    def test_forged_reference_refused(self):
        # A blob of an earlier run, named by a step's JSON output: the
        # dependant is refused before it starts, nothing copied to it.
        rc, doc, err = self.flow({"mb": 1})
        self.assertEqual(rc, 0, err)
        digest = self.step(doc, "make")["outputs"]["data"]["$file"]["sha256"]
        path = os.path.join(self.tmp.name, "forge.yaml")
        for as_list in (False, True):
            with open(path, "w") as f:
                f.write("flux: 1\nname: forge\nsteps:\n  forge:\n    module: file-forge@1\n"
                        "    config: {sha256: %s, list: %s}\n"
                        "  read:\n    module: file-read@1\n    needs: [forge]\n"
                        "    inputs:\n      data: \"${{ steps.forge.outputs.ref%s }}\"\n"
                        % (digest, "true" if as_list else "false", "[0]" if as_list else ""))
            cmd = [RHIZOS, "flow", "run", path, "--json", "--modules", MODULES,
                   "--data", self.data] + ([] if self.sandbox else ["--no-sandbox"])
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                               env=cli_env(**self.env))
            self.assertEqual(p.returncode, 1, p.stderr)
            doc = json.loads(p.stdout)
            self.assertEqual(self.step(doc, "forge")["status"], "succeeded")
            read = self.step(doc, "read")
            self.assertEqual(read["status"], "failed")
            self.assertIn("input 'data' is a '$file' reference this run did not make",
                          read["error"])
            self.assertIn(digest[:12], read["error"])
            self.assertEqual(read.get("outputs") or {}, {})

    def test_resumed_run_passes_a_reused_file(self):
        # The reused step's reference is the earlier run's, and still this
        # run's to hand on (not taken for a forged one).
        path = os.path.join(self.tmp.name, "r.yaml")
        with open(path, "w") as f:
            f.write("flux: 1\nname: r\nsteps:\n  make:\n    module: file-make@1\n"
                    "  bad:\n    module: file-forge@1\n    needs: [make]\n")
        flags = ["--json", "--modules", MODULES, "--data", self.data] + \
            ([] if self.sandbox else ["--no-sandbox"])
        p = subprocess.run([RHIZOS, "flow", "run", path] + flags, capture_output=True,
                           text=True, timeout=240, env=cli_env(**self.env))
        self.assertEqual(p.returncode, 1, p.stderr)
        first = json.loads(p.stdout)["id"]
        with open(path, "w") as f:
            f.write(FLOW % "{}")
        p = subprocess.run([RHIZOS, "flow", "resume", first, path] + flags,
                           capture_output=True, text=True, timeout=240,
                           env=cli_env(**self.env))
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        self.assertTrue(self.step(doc, "make").get("reused"), doc)
        self.assertEqual(self.step(doc, "read")["outputs"]["sha256"], expected(1))

    def parallel(self, cap_mb):
        """Two steps started together, each storing 3 MiB (after a second,
        so both run at once), under a run cap of cap_mb."""
        path = os.path.join(self.tmp.name, "par.yaml")
        with open(path, "w") as f:
            f.write("flux: 1\nname: par\nsteps:\n" + "".join(
                "  m%d:\n    module: file-make@1\n    on_failure: continue\n"
                "    config: {mb: 3, sleep: 1, name: f%d}\n" % (i, i) for i in (1, 2)))
        cmd = [RHIZOS, "flow", "run", path, "--json", "--modules", MODULES, "--jobs", "2",
               "--data", self.data] + ([] if self.sandbox else ["--no-sandbox"])
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                           env=cli_env(**self.env, RHIZOS_MAX_RUN_FILES_MB=str(cap_mb)))
        doc = json.loads(p.stdout)
        return [doc["steps"][s]["status"] for s in ("m1", "m2")], doc

    def test_parallel_steps_share_the_run_cap(self):
        # Each alone is within 5 MiB, both are not: the second waits for the
        # first's share and is then refused, never both stored.
        st, doc = self.parallel(5)
        self.assertEqual(sorted(st), ["failed", "succeeded"], doc)
        failed = doc["steps"]["m1" if st[0] == "failed" else "m2"]["error"]
        self.assertIn("cap", failed)
        self.assertEqual(sum(os.path.getsize(b) for b in self.blobs()), 3 << 20)
        # With room for both, the second waits and then runs.
        self.tearDown()
        self.setUp()
        st, doc = self.parallel(7)
        self.assertEqual(st, ["succeeded", "succeeded"], doc)

    def test_bad_cap_is_usage_error(self):
        rc, doc, err = self.flow({"mb": 1}, RHIZOS_MAX_FILE_MB="lots")
        self.assertEqual(rc, 2)
        self.assertIn("RHIZOS_MAX_FILE_MB", err)

    def test_100mb_streamed_with_bounded_memory(self):
        path = os.path.join(self.tmp.name, "files.yaml")
        with open(path, "w") as f:
            f.write(FLOW % json.dumps({"mb": 100}))
        cmd = [RHIZOS, "flow", "run", path, "--json", "--modules", MODULES,
               "--data", self.data] + ([] if self.sandbox else ["--no-sandbox"])
        with open(os.path.join(self.tmp.name, "out"), "w+") as out, \
                open(os.path.join(self.tmp.name, "err"), "w+") as err:
            p = subprocess.Popen(cmd, stdout=out, stderr=err, env=cli_env(**self.env))
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            self.assertEqual(p.returncode, 0, err.read())
            doc = json.load(out)
        want = expected(100)
        self.assertEqual(self.step(doc, "make")["outputs"]["data"]["$file"]["sha256"], want)
        self.assertEqual(self.step(doc, "read")["outputs"]["sha256"], want)
        # ru_maxrss: the most any of rhizos and the processes it waited for
        # held (the steps stream in 64 KiB pieces too). Holding the file
        # whole anywhere would put it past 100 MiB.
        self.assertLess(ru.ru_maxrss, 64 * 1024, "peak RSS %d KiB" % ru.ru_maxrss)
        print("100 MB file, sandbox=%s: peak RSS %d KiB" % (self.sandbox, ru.ru_maxrss))


class BlobRetention(unittest.TestCase):
    """Pruning runs removes the blobs no kept run names, never one a kept
    run (or a run still going) may need."""
    sandbox = False
    env = {}
    setUp, tearDown = FileOutputs.setUp, FileOutputs.tearDown
    flow, step = FileOutputs.flow, FileOutputs.step

    def prune(self, age):
        p = subprocess.run([RHIZOS, "flow", "runs", "--prune", "--older-than", age, "--json",
                            "--data", self.data], capture_output=True, text=True,
                           env=cli_env())
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def orphan(self, age_s):
        """A blob no run names, last written age_s ago."""
        hexd = hashlib.sha256(os.urandom(16)).hexdigest()
        d = os.path.join(self.data, "blobs", "sha256", hexd[:2])
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, hexd)
        with open(path, "wb") as f:
            f.write(b"orphan")
        os.utime(path, (time.time() - age_s,) * 2)
        return path

    def test_prune_sweeps_what_no_kept_run_names(self):
        rc, a, err = self.flow({"mb": 2})
        self.assertEqual(rc, 0, err)
        rc, b, err = self.flow({"mb": 1})
        self.assertEqual(rc, 0, err)
        kept = [self.step(d, "make")["outputs"]["data"]["$file"]["path"] for d in (a, b)]
        for path in kept:
            os.utime(path, (time.time() - 40 * 86400,) * 2)
        old, new = self.orphan(40 * 86400), self.orphan(10)
        # The runs are kept: their blobs stay however old; an old orphan goes.
        got = self.prune("30d")
        self.assertEqual((got["removed_runs"], got["removed_blobs"]), (0, 1))
        self.assertEqual(got["removed_blob_bytes"], 6)
        self.assertFalse(os.path.exists(old))
        self.assertTrue(all(os.path.exists(p) for p in kept + [new]))
        # A run still going holds back what was written since it started.
        bg = subprocess.Popen([RHIZOS, "flow", "run", self.write_flow({"mb": 1, "sleep": 4}),
                               "--json", "--no-sandbox", "--modules", MODULES,
                               "--data", self.data], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=cli_env())
        time.sleep(1.5)
        during = self.orphan(0)
        time.sleep(1.2)
        got = self.prune("0")
        self.assertEqual(got["removed_runs"], 2)
        self.assertTrue(os.path.exists(during))
        self.assertFalse(any(os.path.exists(p) for p in kept + [new]))
        out, err = bg.communicate(timeout=120)
        self.assertEqual(bg.returncode, 0, err)
        # Its own file, named by its record, stays; the orphan then goes.
        mine = self.step(json.loads(out), "make")["outputs"]["data"]["$file"]["path"]
        for path in (mine, during):
            os.utime(path, (time.time() - 60,) * 2)
        got = self.prune("30s")
        self.assertEqual((got["removed_runs"], got["removed_blobs"]), (0, 1))
        self.assertFalse(os.path.exists(during))
        self.assertTrue(os.path.exists(mine))

    def runs(self, *args):
        p = subprocess.run([RHIZOS, "flow", "runs", *args, "--data", self.data],
                           capture_output=True, text=True, env=cli_env())
        self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def test_a_killed_run_holds_back_nothing(self):
        # A run killed with SIGKILL keeps "status":"running" in its record;
        # its process is gone (no one holds its lock), so the sweep no
        # longer keeps what was written since it started, and its record
        # goes with the age. A run that really goes still holds back what
        # it wrote. `flow runs` and `flow runs RUN` tell the two apart.
        def start(mb, sleep, name):
            path = os.path.join(self.tmp.name, name + ".yaml")
            with open(path, "w") as f:
                f.write(TWO_STEPS % (json.dumps({"mb": mb}),
                                     json.dumps({"mb": 3, "sleep": sleep, "name": "s.bin"})))
            return subprocess.Popen([RHIZOS, "flow", "run", path, "--json", "--no-sandbox",
                                     "--modules", MODULES, "--data", self.data],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=cli_env())

        def stored(mb):
            hexd = expected(mb)
            path = os.path.join(self.data, "blobs", "sha256", hexd[:2], hexd)
            for _ in range(400):
                if os.path.exists(path):
                    return path
                time.sleep(0.05)
            self.fail("no blob of %d MiB stored" % mb)

        killed = start(1, 8, "killed")
        try:
            mine = stored(1)   # its first step's file: in no record yet
        finally:
            killed.kill()
            killed.communicate(timeout=30)
        time.sleep(1.2)   # written over a second before the next run starts
        going = start(2, 3, "going")
        try:
            theirs = stored(2)
            # `flow runs` tells the killed run from the one going.
            runs = json.loads(self.runs("--json").stdout)
            self.assertEqual(sorted((r["status"], r.get("process_gone", False))
                                    for r in runs),
                             [("running", False), ("running", True)], runs)
            table = self.runs().stdout
            self.assertEqual(len(re.findall(r" killed ", table)), 1, table)
            # So does `flow runs RUN`, one run at a time (--json and text).
            for r in runs:
                gone = r.get("process_gone", False)
                one = json.loads(self.runs(r["id"], "--json").stdout)
                self.assertEqual((one["status"], one.get("process_gone", False)),
                                 ("running", gone), one)
                head = self.runs(r["id"]).stdout.splitlines()[0]
                self.assertTrue(head.startswith("run %s %s " % (
                    r["id"], "killed" if gone else "running")), head)
            got = self.prune("0")
            self.assertEqual((got["removed_runs"], got["removed_blobs"]), (1, 1), got)
            self.assertFalse(os.path.exists(mine))
            self.assertTrue(os.path.exists(theirs))
            out, err = going.communicate(timeout=120)
        finally:
            going.kill()
        self.assertEqual(going.returncode, 0, err)
        self.assertEqual(self.step(json.loads(out), "make")["outputs"]["data"]["$file"]["path"],
                         theirs)
        self.assertTrue(os.path.exists(theirs))

    def write_flow(self, config):
        path = os.path.join(self.tmp.name, "bg.yaml")
        with open(path, "w") as f:
            f.write(FLOW % json.dumps(config))
        return path


class SaveFile(unittest.TestCase):
    """`rhizos flow file RUN STEP OUTPUT`: a run's file output saved from
    the store with its digest checked; a damaged blob or an existing
    target leaves nothing new behind."""
    sandbox = False
    env = {}
    setUp, tearDown = FileOutputs.setUp, FileOutputs.tearDown
    flow, blobs = FileOutputs.flow, FileOutputs.blobs

    def save(self, run, *args, code=0):
        p = subprocess.run([RHIZOS, "flow", "file", run, *args, "--data", self.data],
                           capture_output=True, cwd=self.tmp.name, env=cli_env())
        self.assertEqual(p.returncode, code, p.stderr)
        return p

    def test_saved_checked_never_overwritten(self):
        rc, doc, err = self.flow({"mb": 1})
        self.assertEqual(rc, 0, err)
        self.save(doc["id"], "make", "data")   # its own name, here
        with open(os.path.join(self.tmp.name, "data.bin"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), expected(1))
        p = self.save(doc["id"], "make", "data", code=1)
        self.assertIn(b"exists", p.stderr)
        out = self.save(doc["id"], "make", "data", "-o", "-").stdout
        self.assertEqual(hashlib.sha256(out).hexdigest(), expected(1))
        self.assertIn(b"no output 'x'", self.save(doc["id"], "make", "x", code=1).stderr)
        self.assertIn(b"no step 'y'", self.save(doc["id"], "y", "data", code=1).stderr)
        self.assertIn(b"not a file", self.save(doc["id"], "read", "sha256", code=1).stderr)
        # A blob damaged in the store: refused, nothing saved.
        blob = self.blobs()[0]
        os.chmod(blob, 0o644)
        with open(blob, "r+b") as f:
            f.seek(100)
            f.write(b"X")
        p = self.save(doc["id"], "make", "data", "-o", "copy.bin", code=1)
        self.assertIn(b"nothing saved", p.stderr)
        self.assertEqual(sorted(os.listdir(self.tmp.name)), ["data", "data.bin", "files.yaml"])


class FileTyping(unittest.TestCase):
    def test_file_output_connects_to_file_or_string_only(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "v.yaml")
            with open(path, "w") as f:
                f.write("flux: 1\nname: v\nsteps:\n  make:\n    module: file-make@1\n"
                        "  cnt:\n    module: wordcount-count@1\n    needs: [make]\n"
                        "    inputs:\n      text: \"${{ steps.make.outputs.data }}\"\n")
            p = subprocess.run([RHIZOS, "flow", "validate", path, "--modules", MODULES],
                               capture_output=True, text=True, env=cli_env())
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(path, "a") as f:
                f.write("  cmp:\n    module: compare@1\n    needs: [make]\n"
                        "    inputs:\n      value: \"${{ steps.make.outputs.data }}\"\n")
            p = subprocess.run([RHIZOS, "flow", "validate", path, "--modules", MODULES],
                               capture_output=True, text=True, env=cli_env())
            self.assertEqual(p.returncode, 1)
            self.assertIn(":15:14: error: output 'data' of 'make' is file but input "
                          "'value' of 'cmp' is number", p.stderr)


class FileOutputsSandboxed(FileOutputs):
    sandbox = True

    def setUp(self):
        if not sandbox_works():
            self.skipTest("no sandbox here (bubblewrap cannot run)")
        super().setUp()


class FileOutputsBwrap(FileOutputsSandboxed):
    """Through bubblewrap, the sandbox of runners that are not root:
    RZ_OUTPUT_DIR is a tmpfs of the step's share of the run's cap, copied
    out after the step as the helper does."""
    env = {"RHIZOS_SANDBOX": "bwrap"}

    def test_over_cap_while_running_is_held(self):
        # The step's writes stop at the cap while it runs (the host's disk
        # is not where they go); what it leaves within the cap is taken.
        rc, doc, err = self.flow({"mode": "fill"}, RHIZOS_MAX_RUN_FILES_MB="3")
        self.assertEqual(rc, 0, err)
        self.assertLessEqual(int(self.step(doc, "make")["outputs"]["note"]), 3)
        rc, doc, err = self.flow({"mode": "fill"})
        self.assertEqual(rc, 0, err)
        self.assertGreaterEqual(int(self.step(doc, "make")["outputs"]["note"]), 64)

    def test_run_cap_says_the_folder_is_full(self):
        err = self.refused({"mb": 3}, ["cap", "2 MiB"], RHIZOS_MAX_RUN_FILES_MB="2")
        self.assertIn("the step's file outputs (RZ_OUTPUT_DIR) are over their cap", err)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
