#!/usr/bin/env python3
"""End-to-end: docker steps through a real container engine (Podman's Docker
API service from scripts/containers-up), embedded with `rhizos flow run`.
Usage: containers.py RHIZOS SOURCE_ROOT

Skipped (exit 77) when RHIZOS_TEST_DOCKER_HOST is unset. The test modules
are written into a temporary folder: each is one busybox command in the demo
image (RHIZOS_TEST_IMAGE)."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from harness import run, wait_until

RHIZOS, ROOT = sys.argv[1], sys.argv[2]
HOST = os.environ.get("RHIZOS_TEST_DOCKER_HOST", "")
IMAGE = os.environ.get("RHIZOS_TEST_IMAGE", "localhost/rhizos-demo:latest")
REMOTE = os.environ.get("RHIZOS_TEST_REMOTE_IMAGE", "")
DIGEST = os.environ.get("RHIZOS_TEST_IMAGE_DIGEST", "")
SOCK = HOST[len("unix://"):] if HOST.startswith("unix://") else HOST
SECRET = "ctr-planted-5e1d7a93c0"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("d", timeout=30)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.unix_path)
        self.sock = s


def engine(method, path):
    """One request to the engine: (status, parsed JSON or raw text)."""
    c = _UnixHTTP(SOCK)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
    finally:
        c.close()
    try:
        return r.status, json.loads(body)
    except ValueError:
        return r.status, body


def containers(label):
    """Ids of every container, running or not, carrying `label` (k=v)."""
    q = urllib.parse.quote(json.dumps({"label": [label]}))
    status, body = engine("GET", "/containers/json?all=1&filters=" + q)
    assert status == 200, body
    return [c["Id"] for c in body]


def write_module(folder, mid, command, outputs, memory_mb=64, timeout_s=30,
                 image=IMAGE, pull=None, creds=(), cred_type="llm_api"):
    d = os.path.join(folder, mid)
    os.makedirs(d)
    ex = {"adapter": "docker", "image": image, "command": command,
          "timeout_s": timeout_s}
    if pull:
        ex["pull"] = pull
    m = {"id": mid, "version": "1.0.0", "name": mid, "inputs": [],
         "outputs": [{"name": o, "type": "any"} for o in outputs],
         "config": {"type": "object"},
         "credentials": [{"name": c, "type": cred_type, "required": True}
                         for c in creds],
         "requirements": {"adapter": "docker", "cpu_cores": 1,
                          "memory_mb": memory_mb},
         "estimate": {"seconds": 1}, "exec": ex}
    with open(os.path.join(d, "module.json"), "w") as f:
        json.dump(m, f)


def host_ipv4():
    """An address of this machine other than loopback (None if none)."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("10.255.255.255", 1))   # no packet is sent
        ip = s.getsockname()[0]
        s.close()
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


class Embedded(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.mods = os.path.join(cls.tmp.name, "modules")
        os.makedirs(cls.mods)
        sh = lambda script: ["sh", "-c", script]   # noqa: E731
        write_module(cls.mods, "ctr-oom",
                     ["awk", 'BEGIN { s = "xxxxxxxxxxxxxxxx"; while (1) s = s s }'],
                     ["x"], memory_mb=16)
        write_module(cls.mods, "ctr-forks", sh(
            "for i in $(seq 1 600); do (echo s >> /tmp/c; sleep 3) & done; "
            "wait; printf '{\"started\": %d}' $(wc -l < /tmp/c)"), ["started"])
        write_module(cls.mods, "ctr-sleep", sh("sleep 60"), ["x"], timeout_s=3)
        write_module(cls.mods, "ctr-secret", sh(
            "v=$(cat \"$RZ_CRED_API_FILE\"); echo \"using $v\" >&2; "
            "env | grep -c \"$v\" >&2; sleep 4; "
            "printf '{\"seen\": \"key=%s\", \"length\": %d, \"file\": \"%s\"}' "
            "\"$v\" ${#v} \"$RZ_CRED_API_FILE\""),
            ["seen", "length", "file"], creds=("api",))
        write_module(cls.mods, "ctr-talk", sh(
            "echo 'first line' >&2; sleep 3; echo 'second line' >&2; "
            "echo '{\"ok\": true}'"), ["ok"])
        write_module(cls.mods, "ctr-quick", sh("echo '{\"ok\": 1}'"), ["ok"])
        write_module(cls.mods, "ctr-ticker", sh(
            "echo '{\"ready\": true}'; for i in 1 2 3; do "
            "printf '{\"event\": \"tick\", \"data\": {\"n\": %d}}\\n' $i; "
            "echo \"said $i\"; echo \"err $i\" >&2; sleep 0.2; done"), [])
        write_module(cls.mods, "ctr-web", sh(
            "mkdir -p /tmp/w && echo ok > /tmp/w/health && sleep 1 && "
            "echo listening && exec httpd -f -p 8080 -h /tmp/w"), [])
        write_module(cls.mods, "ctr-missing", sh("true"), ["x"],
                     image="localhost/rhizos-no-such-image:latest")
        write_module(cls.mods, "ctr-never", sh("true"), ["x"],
                     image="localhost/rhizos-no-such-image:latest", pull="never")
        write_module(cls.mods, "ctr-context", sh(
            "printf '{\"run\": \"%s\", \"step\": \"%s\", \"uid\": \"%s\", "
            "\"ro\": \"%s\"}' \"$RZ_RUN_ID\" \"$RZ_STEP_ID\" $(id -u) "
            "$(touch /x 2>/dev/null && echo no || echo yes)"),
            ["run", "step", "uid", "ro"])
        if REMOTE and DIGEST:
            write_module(cls.mods, "ctr-pinned", sh("echo '{\"ok\": true}'"),
                         ["ok"], image="%s@%s" % (REMOTE, DIGEST), pull="always")
            write_module(cls.mods, "ctr-private", sh(
                "printf '{\"files\": \"%s\", \"env\": %d}' "
                "\"$(ls /run/secrets 2>/dev/null)\" $(env | grep -c RZ_CRED)"),
                ["files", "env"], image="%s@%s" % (REMOTE, DIGEST),
                pull="always", creds=("registry-login",), cred_type="registry_auth")
            write_module(cls.mods, "ctr-mismatch", sh("true"), ["x"],
                         image="%s@sha256:%s" % (REMOTE, "0" * 64), pull="always")
        write_module(cls.mods, "ctr-fmake", sh(
            "mkdir -p \"$RZ_OUTPUT_DIR/sub\" && seq 1 20000 > \"$RZ_OUTPUT_DIR/sub/n.txt\" && "
            "echo '{\"data\": \"sub/n.txt\"}'"), [])
        write_module(cls.mods, "ctr-fread", sh(
            "f=$(sed 's/.*\"data\": *\"\\([^\"]*\\)\".*/\\1/' /rz/in/request.json); "
            "if echo x >> \"$f\" 2>/dev/null; then w=true; else w=false; fi; "
            "printf '{\"path\": \"%s\", \"lines\": %d, \"writable\": %s}' "
            "\"$f\" $(wc -l < \"$f\") $w"), ["path", "lines", "writable"])
        for mid, key, port in (("ctr-fmake", "outputs", "data"), ("ctr-fread", "inputs", "data")):
            mp = os.path.join(cls.mods, mid, "module.json")
            with open(mp) as f:
                m = json.load(f)
            m[key] = m[key] + [{"name": port, "type": "file"}]
            with open(mp, "w") as f:
                json.dump(m, f)
        cls.ip = host_ipv4()
        cls.listener = None
        if cls.ip:
            cls.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            cls.listener.bind(("0.0.0.0", 0))
            cls.listener.listen(8)
            cls.listener.settimeout(0.2)
            port = cls.listener.getsockname()[1]
            write_module(cls.mods, "ctr-net", sh(
                "n=$(grep -c : /proc/net/dev); "
                "if nc -w 2 %s %d </dev/null; then r=true; else r=false; fi; "
                "printf '{\"reached\": %%s, \"interfaces\": %%d}' $r $n"
                % (cls.ip, port)), ["reached", "interfaces"])

    @classmethod
    def tearDownClass(cls):
        if cls.listener:
            cls.listener.close()
        cls.tmp.cleanup()

    def setUp(self):
        self.work = tempfile.TemporaryDirectory()
        self.data = os.path.join(self.work.name, "data")

    def tearDown(self):
        self.work.cleanup()

    def flow(self, step, module, extra=""):
        path = os.path.join(self.work.name, step + ".yaml")
        with open(path, "w") as f:
            f.write("flux: 1\nname: %s\nsteps:\n  %s:\n    module: %s@1\n%s"
                    % (step, step, module, extra))
        return path

    def cli(self, *args, env=None, host=HOST):
        cmd = [RHIZOS, *args, "--modules", self.mods, "--modules",
               os.path.join(ROOT, "examples", "modules"), "--data", self.data]
        if host:
            cmd += ["--container-host", host]
        return run(cmd, cwd=ROOT, env=env, timeout=180)

    def run_step(self, step, module, extra="", env=None):
        p = self.cli("flow", "run", self.flow(step, module, extra), "--json",
                     env=env)
        self.assertTrue(p.stdout.strip(), p.stderr)
        doc = json.loads(p.stdout)
        return p, doc, doc["steps"][step]

    def assert_no_container(self, run_id):
        self.assertEqual(containers("io.rhizos.run=" + run_id), [])

    def test_wordcount_flow(self):
        flow = os.path.join(ROOT, "examples", "flows", "containers",
                            "container-wordcount.yaml")
        p = self.cli("flow", "run", flow, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["status"], "succeeded")
        self.assertEqual(doc["steps"]["count"]["outputs"],
                         {"words": 28, "unique": 22, "lines": 1})
        self.assert_no_container(doc["id"])

    def test_file_outputs_and_inputs(self):
        # Written under RZ_OUTPUT_DIR in one container, taken by digest, and
        # a read-only copy at a path under /rz in the next one.
        path = os.path.join(self.work.name, "files.yaml")
        with open(path, "w") as f:
            f.write("flux: 1\nname: files\nsteps:\n  make:\n    module: ctr-fmake@1\n"
                    "  read:\n    module: ctr-fread@1\n    needs: [make]\n"
                    "    inputs: {data: \"${{ steps.make.outputs.data }}\"}\n")
        p = self.cli("flow", "run", path, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        ref = doc["steps"]["make"]["outputs"]["data"]["$file"]
        with open(ref["path"], "rb") as f:
            data = f.read()
        self.assertEqual(data, "".join("%d\n" % i for i in range(1, 20001)).encode())
        self.assertEqual((ref["name"], ref["size"]), ("sub/n.txt", len(data)))
        got = doc["steps"]["read"]["outputs"]
        self.assertEqual(got["path"], "/rz/in/files/%s/n.txt" % ref["sha256"])
        self.assertEqual((got["lines"], got["writable"]), (20000, False))
        self.assert_no_container(doc["id"])

    def test_context_and_read_only_root(self):
        p, doc, st = self.run_step("ctx", "ctr-context")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(st["outputs"]["run"], doc["id"])
        self.assertEqual(st["outputs"]["step"], "ctx")
        self.assertEqual(st["outputs"]["ro"], "yes")
        self.assertEqual(st["outputs"]["uid"], str(os.geteuid()))

    def test_over_memory_is_oom(self):
        p, doc, st = self.run_step("hog", "ctr-oom")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(st["status"], "failed")
        self.assertIn("killed for memory (limit 16 MB)", p.stdout + p.stderr)
        self.assert_no_container(doc["id"])

    def test_fork_bomb_held_by_pids_limit(self):
        t0 = time.monotonic()
        p, doc, st = self.run_step("bomb", "ctr-forks")
        self.assertLess(time.monotonic() - t0, 60)
        if st["status"] == "succeeded":
            self.assertLess(st["outputs"]["started"], 256)
            self.assertGreater(st["outputs"]["started"], 1)
        else:   # the shell gave up when a fork failed
            self.assertIn("fork", p.stdout + p.stderr)
        self.assert_no_container(doc["id"])

    def test_network_none_cannot_reach_listener(self):
        if not self.ip:
            self.skipTest("no non-loopback address here")
        p, doc, st = self.run_step("net", "ctr-net")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(st["outputs"]["reached"], False)
        self.assertEqual(st["outputs"]["interfaces"], 1)   # lo only
        with self.assertRaises(socket.timeout):
            self.listener.accept()[0].close()

    def test_timeout_removes_container(self):
        t0 = time.monotonic()
        p, doc, st = self.run_step("slow", "ctr-sleep")
        self.assertLess(time.monotonic() - t0, 40)
        self.assertEqual(p.returncode, 1)
        self.assertIn("timed out after 3 s", p.stdout + p.stderr)
        self.assert_no_container(doc["id"])
        self.assertEqual(containers("io.rhizos.step=slow"), [])

    def test_log_lines_live(self):
        """A container step's log lines reach `flow run` as they come: the
        first is shown while the step still sleeps before its second."""
        path = self.flow("talk", "ctr-talk")
        proc = subprocess.Popen(
            [RHIZOS, "flow", "run", path, "--modules", self.mods, "--data",
             self.data, "--container-host", HOST], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        try:
            for line in proc.stderr:
                seen.append((time.monotonic(), line.rstrip("\n")))
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        lines = [l for _, l in seen]
        self.assertEqual(proc.returncode, 0, "\n".join(lines))
        first = [t for t, l in seen if l.endswith("talk                 | first line")]
        second = [t for t, l in seen if l.endswith("| second line")]
        done = [t for t, l in seen if "talk" in l and l.endswith("succeeded")]
        self.assertTrue(first and second and done, "\n".join(lines))
        self.assertGreater(done[0] - first[0], 1.5, "\n".join(lines))
        self.assertLessEqual(second[0], done[0])

    def test_service_events_from_a_container(self):
        """A container service: stdout read line by line (ready, events,
        log lines), one listener run per event, stopped when it ends."""
        path = self.flow("tick", "ctr-ticker",
                         "    kind: service\n    ready: line\n"
                         "    restart: {policy: never}\n"
                         "  ann:\n    module: echo@1\n"
                         "    on: {event: steps.tick.events.tick}\n"
                         "    inputs: {message: \"n=${{ event.data.n }}\"}\n")
        p = self.cli("flow", "run", path, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["steps"]["tick"]["events"], 3, doc)
        runs = doc["steps"]["ann"]["runs"]
        self.assertEqual([r["outputs"]["message"] for r in runs],
                         ["n=1", "n=2", "n=3"])
        self.assertIn("tick                 | said 2", p.stderr)
        self.assertIn("tick                 | err 3", p.stderr)
        self.assert_no_container(doc["id"])

    def test_service_ready_check_inside_the_container_then_stopped(self):
        """ready: {http} is checked inside the container's own network (it
        has none to the host); the dependant runs once httpd answers; the
        run goes on until Ctrl-C, which stops and removes the container."""
        path = self.flow("web", "ctr-web",
                         "    kind: service\n"
                         "    ready: {http: \"http://127.0.0.1:8080/health\", timeout_s: 30}\n"
                         "  after:\n    module: echo@1\n    needs: [web]\n"
                         "    inputs: {message: up}\n")
        proc = subprocess.Popen(
            [RHIZOS, "flow", "run", path, "--json", "--modules", self.mods,
             "--modules", os.path.join(ROOT, "examples", "modules"), "--data",
             self.data, "--container-host", HOST], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        try:
            for line in proc.stderr:
                seen.append(line.rstrip("\n"))
                if "after" in line and line.rstrip().endswith("succeeded"):
                    break
            time.sleep(0.5)
            self.assertIsNone(proc.poll(), "\n".join(seen))
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 130, "\n".join(seen) + err)
        doc = json.loads(out)
        self.assertEqual(doc["steps"]["after"]["status"], "succeeded", doc)
        self.assertEqual(doc["steps"]["web"]["status"], "cancelled", doc)
        # httpd starts a second in: `after` waited for it.
        started = [float(l.split("s]")[0].strip("[ ")) for l in seen
                   if "after" in l and l.endswith("started")]
        self.assertTrue(started and started[0] >= 1.0, "\n".join(seen))
        self.assert_no_container(doc["id"])

    def test_no_engine_noise_in_logs(self):
        """Podman 4.3 writes 'Error: read/write unixpacket ...' into about one
        attach stream in three of containers that exit at once (one at a
        time; seen 0 times in 24 with --jobs 2): never a
        step's log, live or kept (8 such steps: one would show it)."""
        path = os.path.join(self.work.name, "quick.yaml")
        with open(path, "w") as f:
            f.write("flux: 1\nname: quick\nsteps:\n" + "".join(
                "  q%d:\n    module: ctr-quick@1\n" % i for i in range(8)))
        p = self.cli("flow", "run", path, "--json", "--jobs", "1")
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        self.assertNotIn("unixpacket", p.stderr)
        for sid, st in doc["steps"].items():
            self.assertEqual(st["status"], "succeeded", sid)
            self.assertNotIn("unixpacket", st.get("log") or "", sid)

    def test_cancel_removes_container(self):
        path = self.flow("cancelme", "ctr-sleep")
        proc = subprocess.Popen(
            [RHIZOS, "flow", "run", path, "--modules", self.mods, "--data",
             self.data, "--container-host", HOST], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: containers("io.rhizos.step=cancelme"), 30,
                       "the container to appear")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertNotEqual(proc.returncode, 0)
        self.assertEqual(containers("io.rhizos.step=cancelme"), [])

    def test_secret_only_as_a_file(self):
        env = dict(os.environ,
                   RHIZOS_VAULT=os.path.join(self.work.name, "vault"),
                   RHIZOS_VAULT_PASSWORD="correct horse",
                   RHIZOS_VAULT_KDF="interactive")
        for args, stdin in ((("vault", "init"), None),
                            (("vault", "add", "openai", "--type", "llm_api"),
                             SECRET + "\n")):
            q = run([RHIZOS, *args], cwd=ROOT, env=env, stdin=stdin)
            self.assertEqual(q.returncode, 0, q.stderr)
        path = self.flow("sec", "ctr-secret", "    credentials:\n      api: "
                         "{ credentialId: openai, type: llm_api }\n")
        inspected = []

        def watch():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not inspected:
                for cid in containers("io.rhizos.step=sec"):
                    status, body = engine("GET", "/containers/%s/json" % cid)
                    if status == 200:
                        inspected.append(json.dumps(body))
                time.sleep(0.2)
        t = threading.Thread(target=watch)
        t.start()
        p = run([RHIZOS, "flow", "run", path, "--json", "--modules", self.mods,
                 "--data", self.data, "--container-host", HOST], cwd=ROOT,
                env=env, timeout=120)
        t.join()
        self.assertEqual(p.returncode, 0, p.stderr)
        st = json.loads(p.stdout)["steps"]["sec"]
        self.assertEqual(st["outputs"]["length"], len(SECRET))
        self.assertEqual(st["outputs"]["seen"], "key=[redacted]")
        self.assertEqual(st["outputs"]["file"], "/run/secrets/api")
        self.assertTrue(inspected, "the container was never seen running")
        self.assertIn("RZ_CRED_API_FILE=/run/secrets/api", inspected[0])
        runs = run([RHIZOS, "flow", "runs", "--json", "--data", self.data],
                   cwd=ROOT, env=env)
        for text in (p.stdout, p.stderr, runs.stdout, inspected[0]):
            self.assertNotIn(SECRET, text)
        for dirpath, _, files in os.walk(self.work.name):
            for f in files:
                if f == "vault":
                    continue
                with open(os.path.join(dirpath, f), "rb") as fh:
                    self.assertNotIn(SECRET.encode(), fh.read(), f)
        leftovers = [e for e in os.listdir("/dev/shm")
                     if e.startswith("rz-secrets-")]
        self.assertEqual(leftovers, [])

    def test_bad_image_names_it(self):
        p, doc, st = self.run_step("missing", "ctr-missing")
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot pull image localhost/rhizos-no-such-image:latest",
                      p.stdout + p.stderr)
        p, doc, st = self.run_step("never", "ctr-never")
        self.assertEqual(p.returncode, 1)
        self.assertIn("image localhost/rhizos-no-such-image:latest is not "
                      "present and pull is 'never'", p.stdout + p.stderr)

    def test_pinned_pull_and_digest_mismatch(self):
        if not (REMOTE and DIGEST):
            self.skipTest("no loopback registry (RHIZOS_TEST_REMOTE_IMAGE)")
        p, doc, st = self.run_step("pinned", "ctr-pinned")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(st["outputs"], {"ok": True})
        p, doc, st = self.run_step("mismatch", "ctr-mismatch")
        self.assertEqual(p.returncode, 1)
        self.assertIn("digest mismatch", p.stdout + p.stderr)

    def test_pull_progress_on_a_tty(self):
        """The pull's progress reaches the runner's events and `flow run`
        draws it on the status line of a terminal; without one, nothing."""
        if not (REMOTE and DIGEST):
            self.skipTest("no loopback registry (RHIZOS_TEST_REMOTE_IMAGE)")
        import pty
        path = self.flow("pulled", "ctr-pinned")
        cmd = [RHIZOS, "flow", "run", path, "--modules", self.mods, "--data",
               self.data, "--container-host", HOST]
        leader, follower = pty.openpty()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=follower,
                                stdout=follower, stderr=follower,
                                env=dict(os.environ, TERM="xterm"))
        os.close(follower)
        seen = b""
        try:
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:            # EIO: the other side closed
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(leader)
            rc = proc.wait(timeout=120)
        text = seen.decode("utf-8", "replace")
        self.assertEqual(rc, 0, text)
        self.assertIn("pulled: pulling %s@sha256:" % REMOTE, text)
        # Not a terminal: the same run prints no progress line.
        p = self.cli("flow", "run", path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("pulling", p.stdout + p.stderr)

    def test_registry_auth_from_the_vault(self):
        """A registry_auth credential goes to the pull (the loopback
        registry needs none, so only that the pull still works is seen
        live; tests/unit/test_docker_api.c checks the header itself), never
        into the container, and a malformed one fails naming it only."""
        if not (REMOTE and DIGEST):
            self.skipTest("no loopback registry (RHIZOS_TEST_REMOTE_IMAGE)")
        password = "reg-pass-41c9e0"
        env = dict(os.environ,
                   RHIZOS_VAULT=os.path.join(self.work.name, "vault"),
                   RHIZOS_VAULT_PASSWORD="correct horse",
                   RHIZOS_VAULT_KDF="interactive")
        # A name the environment spells otherwise (REGISTRY_LOGIN): still
        # the pull's, never a file in the container.
        cred = "    credentials:\n      registry-login: " \
               "{ credentialId: %s, type: registry_auth }\n"
        for args, stdin in (
                (("vault", "init"), None),
                (("vault", "add", "reg", "--type", "registry_auth"),
                 json.dumps({"username": "bob", "password": password,
                             "serveraddress": REMOTE.split("/")[0]}) + "\n"),
                (("vault", "add", "badreg", "--type", "registry_auth"),
                 password + "\n")):
            q = run([RHIZOS, *args], cwd=ROOT, env=env, stdin=stdin)
            self.assertEqual(q.returncode, 0, q.stderr)
        p, doc, st = self.run_step("private", "ctr-private", cred % "reg", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(st["outputs"], {"files": "", "env": 0})
        p2, doc2, st2 = self.run_step("badauth", "ctr-private", cred % "badreg",
                                      env=env)
        self.assertEqual(p2.returncode, 1)
        self.assertIn("credential 'registry-login' (registry_auth)",
                      p2.stdout + p2.stderr)
        for text in (p.stdout, p.stderr, p2.stdout, p2.stderr):
            self.assertNotIn(password, text)
        for dirpath, _, files in os.walk(self.work.name):
            for f in files:
                if f == "vault":
                    continue
                with open(os.path.join(dirpath, f), "rb") as fh:
                    self.assertNotIn(password.encode(), fh.read(), f)

    def test_unreachable_engine_runs_nothing(self):
        flow = os.path.join(ROOT, "examples", "flows", "containers",
                            "container-wordcount.yaml")
        p = self.cli("flow", "run", flow,
                     host="unix:///nonexistent/rhizos-engine.sock")
        self.assertEqual(p.returncode, 1)
        self.assertIn("step 'count' (image localhost/rhizos-demo:latest)",
                      p.stderr)
        self.assertIn("no container engine answers at "
                      "/nonexistent/rhizos-engine.sock", p.stderr)
        self.assertIn("--container-host", p.stderr)
        self.assertIn("nothing was run", p.stderr)
        self.assertNotIn("started", p.stderr)
        runs = run([RHIZOS, "flow", "runs", "--json", "--data", self.data],
                   cwd=ROOT)
        self.assertEqual(json.loads(runs.stdout), [])


if __name__ == "__main__":
    if not HOST:
        print("RHIZOS_TEST_DOCKER_HOST is unset: no container engine to test "
              "against (scripts/containers-up starts one)")
        sys.exit(77)
    unittest.main(argv=sys.argv[:1], verbosity=2)
