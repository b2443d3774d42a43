"""What the end-to-end scripts share: a free loopback port, one HTTP call,
raw requests and event-stream sockets, processes started in the background
with their output kept, waits that fail early when the process they wait
for has died, a command's JSON, and an orchestrator started on a free port
and answering /health.

The scripts import it from their own folder (python3 puts a script's
folder first on sys.path). Standard library only, and libsodium (the
project's own dependency) through ctypes for node keys."""
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.client import HTTPConnection


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _decode(ctype, data):
    if not data:
        return None
    if "json" in ctype:
        return json.loads(data)
    return data.decode(errors="replace")


def http(base, method, path, key=None, body=None, raw=None, ctype=None,
         accept=None, timeout=10, decode=_decode, headers=None):
    """One request to `base` ("http://127.0.0.1:PORT") + `path`:
    (status, reply). `body` is sent as JSON, `raw` as given (with `ctype`);
    `key` goes in a bearer header. The reply is decode(content type, bytes):
    by default parsed JSON when it says so, None when empty, else text.
    Connection failures raise OSError; HTTP errors are only a status.
    `headers`: more request headers."""
    host, _, port = base.split("://", 1)[-1].rstrip("/").partition(":")
    c = HTTPConnection(host, int(port or 80), timeout=timeout)
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = "Bearer " + key
    if raw is None and body is not None:
        raw = json.dumps(body).encode()
        ctype = ctype or "application/json"
    if ctype:
        headers["Content-Type"] = ctype
    if accept:
        headers["Accept"] = accept
    try:
        c.request(method, path, body=raw, headers=headers)
        r = c.getresponse()
        data = r.read()
    finally:
        c.close()
    return r.status, decode(r.getheader("Content-Type") or "", data)


_sodium = None


def _lib():
    global _sodium
    if _sodium is None:
        _sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so")
        if _sodium.sodium_init() < 0:
            raise OSError("libsodium cannot start")
    return _sodium


def compact(doc):
    """A JSON value as the orchestrator keeps it (compact, UTF-8 as is):
    the text a node's result signature covers."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class NodeKey:
    """A node's Ed25519 key (libsodium, the project's own dependency) and
    the requests it signs, byte for byte as docs/api.md "Node identity"
    defines them."""

    def __init__(self, x25519=None):
        self.pk = ctypes.create_string_buffer(32)
        self.sk = ctypes.create_string_buffer(64)
        _lib().crypto_sign_keypair(self.pk, self.sk)
        self.hex = self.pk.raw.hex()
        self.x25519 = x25519 or os.urandom(32).hex()

    def sign(self, message):
        sig = ctypes.create_string_buffer(64)
        _lib().crypto_sign_detached(sig, None, message, ctypes.c_ulonglong(len(message)),
                                    self.sk)
        return sig.raw.hex()

    # The key of the orchestrator start_orchestrator started last: what a
    # proof names unless told otherwise.
    default_orchestrator = None

    def proof(self, action, ts=None, nonce=None, x25519=None, orchestrator=None,
              v1=False):
        """The signed fields of a register or retire request: version 2,
        good at the orchestrator whose key (hex, GET /api/v1/identity) is
        `orchestrator` (default: the one started last), or with v1 the old
        proof naming none (taken only under --accept-v1-proofs)."""
        if v1:
            orchestrator = None
        elif orchestrator is None:
            orchestrator = NodeKey.default_orchestrator
            assert orchestrator, "no orchestrator started to sign a proof for"
        ts = int(time.time() * 1000) if ts is None else ts
        nonce = nonce or os.urandom(16).hex()
        x = (x25519 or self.x25519) if action == "register" else ""
        if orchestrator is None:
            msg = ("rhizos-node-v1\naction=%s\ned25519=%s\nx25519=%s\n"
                   "timestamp_ms=%d\nnonce=%s\n" % (action, self.hex, x, ts, nonce))
        else:
            msg = ("rhizos-node-v2\naction=%s\norchestrator=%s\ned25519=%s\n"
                   "x25519=%s\ntimestamp_ms=%d\nnonce=%s\n"
                   % (action, orchestrator, self.hex, x, ts, nonce))
        body = {"ed25519_public_key": self.hex, "timestamp_ms": ts,
                "nonce": nonce, "signature": self.sign(msg.encode())}
        if orchestrator is not None:
            body["orchestrator_public_key"] = orchestrator
        return body

    def register_body(self, caps, **kw):
        body = {"capabilities": caps, "x25519_public_key": kw.get("x25519") or self.x25519}
        body.update(self.proof("register", **kw))
        return body

    def sign_result(self, job, attempt, outputs=None, error=None):
        text = compact(outputs) if error is None else error
        msg = ("rhizos-result-v1\njob=%d\nattempt=%d\noutcome=%s\nsha256=%s\n"
               % (job, attempt, "outputs" if error is None else "error",
                  hashlib.sha256(text.encode()).hexdigest()))
        return self.sign(msg.encode())

    def signed(self, job, body):
        """`body` (a result: attempt, outputs or error, ...) with its
        signature."""
        return dict(body, signature=self.sign_result(
            job, body["attempt"], body.get("outputs"), body.get("error")))

    def result_body(self, job, attempt, outputs=None, error=None, **extra):
        """A result body with its signature; `extra` (run_ms, log) as given."""
        body = {"attempt": attempt}
        if error is None:
            body["outputs"] = outputs
        else:
            body["error"] = error
        body.update(extra)
        body.setdefault("run_ms", 1)
        body["signature"] = self.sign_result(job, attempt, outputs, error)
        return body


def wait_until(pred, timeout, what, proc=None):
    """Poll pred() until it returns something true, and return that. An
    OSError from pred (a server not listening yet) counts as not yet. When
    `proc` (a Proc) exits first, fail at once with its output."""
    end = time.monotonic() + timeout
    while True:
        try:
            got = pred()
            if got:
                return got
        except OSError:
            pass
        if proc is not None and not proc.alive():
            raise AssertionError("%s: the process exited (%s) first:\n%s" %
                                 (what, proc.p.returncode, proc.output()))
        if time.monotonic() > end:
            raise AssertionError("timed out after %g s waiting for %s" %
                                 (timeout, what))
        time.sleep(0.05)


def run(cmd, cwd=None, env=None, stdin=None, timeout=60):
    """Run a command to its end: its CompletedProcess, output as text. Past
    `timeout` the error says what was still running (hang_report)."""
    with subprocess.Popen(cmd, cwd=cwd, env=env, text=True,
                          stdin=subprocess.PIPE if stdin is not None else None,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        try:
            out, err = p.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            report = hang_report(p)
            p.kill()
            out, err = p.communicate()
            raise AssertionError("%s: no end in %s s\n%s\nstderr:\n%s" %
                                 (cmd, timeout, report, err[-4000:])) from None
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def hang_report(p):
    """What a command past its timeout left running: whether it has exited
    (then something else holds its output pipes: communicate waits for
    every writer), the processes holding those pipes, its descendants, and
    each one's kernel stack (root only), and the command's threads' stacks
    while it runs (gdb, if there)."""
    pipes = {"pipe:[%d]" % os.fstat(f.fileno()).st_ino
             for f in (p.stdout, p.stderr)}
    holders, kids = set(), {}
    for pid in (int(d) for d in os.listdir("/proc") if d.isdigit()):
        try:
            ppid = int(open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(pid)
            fds = os.listdir("/proc/%d/fd" % pid)
            if any(os.readlink("/proc/%d/fd/%s" % (pid, fd)) in pipes for fd in fds):
                holders.add(pid)
        except (OSError, IndexError, ValueError):
            continue
    tree, todo = set(), [p.pid]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += kids.get(pid, [])
    lines = ["exited: %s; pipe holders: %s" % (p.poll(), sorted(holders - {os.getpid()}))]
    for pid in sorted((tree | holders) - {os.getpid()}):
        for name in ("cmdline", "stack"):
            try:
                lines.append("%d %s: %s" % (pid, name, open("/proc/%d/%s" % (pid, name))
                                            .read().replace("\0", " ")))
            except OSError as e:
                lines.append("%d %s: %s" % (pid, name, e))
        if pid == p.pid and p.poll() is None and shutil.which("gdb"):
            try:
                g = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex",
                                    "thread apply all bt"],
                                   capture_output=True, text=True, timeout=30)
                lines.append(g.stdout[-6000:])
            except subprocess.TimeoutExpired:
                lines.append("gdb: no answer in 30 s")
    return "\n".join(lines)


def run_json(case, cmd, code=0, **kw):
    """Run a command (as run(), with `kw`) that must exit `code` (its
    stderr in the failure) and print JSON: (the document, the process)."""
    p = run(cmd, **kw)
    case.assertEqual(p.returncode, code, p.stderr)
    return json.loads(p.stdout), p


def write_text(path, text):
    """Write `text` to `path`, replacing it: the path."""
    with open(path, "w") as f:
        f.write(text)
    return path


def wait_port(port, timeout=10):
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close()
               or True, timeout, "a listener on port %d" % port)


def read_to_close(sock):
    """Everything `sock` receives until the other side closes."""
    got = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return got
        got += chunk


def raw_request(port, data, timeout=10):
    """Send `data` (a whole request, bytes) to 127.0.0.1:`port` as it is and
    return the reply, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_to_close(s)


def events_socket(port, dep, key):
    """A socket whose GET of deployment `dep`'s event stream (with `key`) was
    sent: the caller reads the stream and closes it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("GET /api/v1/flows/%d/events HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (dep, key)).encode())
    return s


def cli_env(**values):
    """This environment without the CLI's RHIZOS_URL, RHIZOS_API_KEY and
    the rest that choose a connection, and with no client config (so a
    test says which orchestrator and key it means), plus `values`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RHIZOS_URL", "RHIZOS_API_KEY", "RHIZOS_API_KEY_FILE",
                        "RHIZOS_CONTEXT", "RHIZOS_CONFIG", "RHIZOS_CA_FILE")}
    env["XDG_CONFIG_HOME"] = "/nonexistent/rhizos-test-config"
    env.update(values)
    return env


_sandbox = None


def sandbox_works():
    """Whether bubblewrap can sandbox a job here, the way the node does it
    (not in containers without user namespaces)."""
    global _sandbox
    if _sandbox is None:
        try:
            _sandbox = bool(shutil.which("bwrap")) and subprocess.run(
                ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                 "--unshare-all", "true"], capture_output=True,
                timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _sandbox = False
    return _sandbox


def sandbox_flags():
    """--no-sandbox for rhizos-node only where bubblewrap cannot run."""
    return [] if sandbox_works() else ["--no-sandbox"]


def set_config(data, section, key, value):
    """Set `key = value` in [section] of DATA/config.toml (rhizos-node's),
    adding the key, and the section, where absent."""
    path = os.path.join(data, "config.toml")
    with open(path) as f:
        lines = f.read().rstrip("\n").split("\n")
    cur, at, done = None, None, False
    for i, line in enumerate(lines):
        if line.startswith("["):
            cur = line.strip().strip("[]")
            if cur == section:
                at = i
        elif cur == section and line.split("=")[0].strip() == key:
            lines[i] = "%s = %s" % (key, value)
            done = True
    if not done:
        if at is None:
            lines += ["[%s]" % section]
            at = len(lines) - 1
        lines.insert(at + 1, "%s = %s" % (key, value))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def sanitizer_report(text):
    return "Sanitizer" in text or "runtime error" in text


class Proc:
    """A process in the background whose output lines are kept (out, err),
    read by threads so that a chatty process never blocks on a pipe."""

    def __init__(self, cmd, cwd=None, env=None):
        self.cmd = cmd
        self.p = subprocess.Popen(cmd, cwd=cwd, env=env, text=True,
                                  errors="replace", stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.pid = self.p.pid
        self.out, self.err, self.threads = [], [], []
        for stream, sink in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            t = threading.Thread(target=self._drain, args=(stream, sink),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _drain(stream, sink):
        for line in stream:
            sink.append(line.rstrip("\n"))

    def events(self):
        """The JSON lines of stdout (`--json` progress), others skipped."""
        evs = []
        for line in list(self.out):
            try:
                evs.append(json.loads(line))
            except ValueError:
                pass
        return evs

    def alive(self):
        return self.p.poll() is None

    def stderr_text(self):
        return "\n".join(self.err)

    def output(self, tail=4000):
        """The end of stdout and stderr, for a failure message."""
        return ("--- stdout ---\n%s\n--- stderr ---\n%s" %
                ("\n".join(self.out)[-tail:], self.stderr_text()[-tail:]))

    def wait_for(self, pred, timeout, what):
        return wait_until(pred, timeout, what, proc=self)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signal it (if still running) and reap it: its exit status."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for t in self.threads:
            t.join(timeout=5)
        self.p.stdout.close()
        self.p.stderr.close()
        return self.p.returncode

    def stop_clean(self):
        """Stop; the exit must be clean (0, no sanitizer report)."""
        rc = self.stop()
        err = self.stderr_text()
        if rc != 0 or sanitizer_report(err):
            raise AssertionError("%s exit %d:\n%s" % (self.cmd[0], rc, err[-4000:]))


def start_orchestrator(exe, data, args=(), admin_key=None, cwd=None, env=None,
                       port=None, prefix=(), timeout=30):
    """rhizos-orchestrator on a loopback port (`port`, or a free one) with
    --data `data` and `args`, answering /health: a Proc with .port and .base
    (its URL). `admin_key` is passed as RHIZOS_ADMIN_KEY; `prefix` goes
    before the command (a wrapper such as a shell that lowers a limit)."""
    env = dict(env if env is not None else os.environ)
    if admin_key:
        env["RHIZOS_ADMIN_KEY"] = admin_key
    # A port free_port found may be taken before the orchestrator binds it
    # (another test's connection, tests running side by side): another one.
    for tries in range(1 if port else 3, 0, -1):
        at = port or free_port()
        cmd = [exe, "--listen", "127.0.0.1:%d" % at, "--data", data, *args]
        proc = Proc(list(prefix) + cmd, cwd=cwd, env=env)
        proc.port, proc.base = at, "http://127.0.0.1:%d" % at
        try:
            proc.wait_for(lambda: http(proc.base, "GET", "/health", timeout=1)[0] == 200,
                          timeout, "the orchestrator to answer /health")
            break
        except AssertionError:
            proc.stop()
            if tries == 1 or "Address already in use" not in proc.output():
                raise
    st, doc = http(proc.base, "GET", "/api/v1/identity", timeout=5)
    if st == 200:
        NodeKey.default_orchestrator = doc["x25519_public_key"]
    return proc


class FakeOrchestrator:
    """An orchestrator played by a test, for the real rhizos-node: it
    answers what every node calls the same way (identity, challenge,
    register, heartbeat) and hands the rest to the test's two functions:
    `assign()` returns the next assignment (a dict) or None, and
    `post(path, body)` returns (code, doc) for a result, log or decline.
    One place, so a new node route breaks no fake twice. Replies are JSON
    (the node reads JSON or CBOR)."""

    def __init__(self, assign, post):
        import http.server
        polls = self.polls = []   # the paths of the node's polls, in order

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, doc=None):
                body = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass   # the node stopped meanwhile

            def do_GET(self):
                if self.path == "/api/v1/identity":    # what registration names
                    return self.reply(200, {"x25519_public_key": "cd" * 32})
                if self.path.endswith("/challenge"):   # none due here
                    return self.reply(204)
                polls.append(self.path)
                asg = assign()
                if asg is not None:
                    return self.reply(200, asg)
                time.sleep(0.2)
                self.reply(204)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/register"):
                    return self.reply(201, {"id": 1, "token": "rzn_fake",
                                            "account": "ab" * 16})
                if self.path.endswith("/heartbeat"):
                    return self.reply(200, {"stop": []})
                self.reply(*post(self.path, body))

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
