#!/usr/bin/env python3
"""End-to-end: what the web console needs of rhizos-orchestrator.

The console's files at / from --ui-dir (types, ETag and 304, immutable
assets/, index.html for the app's own paths, HEAD); nothing outside the
folder, no dotfile and no symbolic link is ever served, however the path
is spelled; every reply carries a strict CSP, X-Frame-Options DENY,
nosniff and Referrer-Policy; a missing console is a JSON 404 naming
-Dui=enabled. The API: 405 with Allow for a known path and a wrong method,
HEAD for GET routes, OPTIONS, CORS only for --cors-origin; POST
/api/v1/flows/validate and /estimate answer without deploying or holding
anything, with JSON pointers; GET /api/v1/modules searches the registry.

Usage: orchestrator_console.py ORCHESTRATOR SOURCE_ROOT BUILD_ROOT"""
import json
import os
import sys
import tempfile
import unittest
from http.client import HTTPConnection

from harness import NodeKey, free_port, run, start_orchestrator

EXE, ROOT, BUILD = sys.argv[1], sys.argv[2], sys.argv[3]
INDEX = b"<!doctype html><title>RhizOS</title><script src=/assets/app-3f2a.js></script>\n"
APP_JS = b"console.log('rhizos');\n"
ORIGIN = "http://localhost:5173"
REPLIES = []   # (method, path, status, JSON reply or None)
FLOW = "flux: 1\nname: m\nsteps:\n  s:\n    module: echo@1\n"
BAD_FLOW = "flux: 1\nname: m\nsteps:\n  s:\n    module: nope@1\n"
NODE_CAPS = {"cpu": {"cores": 2, "threads": 2}, "memory_mb": 2048,
             "storage": {"total_gb": 10, "free_gb": 10}, "adapters": ["process"],
             "prices": {"gpu_hour_micros": 0, "cpu_hour_micros": 36000,
                        "memory_gb_hour_micros": 0}, "max_concurrent_jobs": 1}


def request(base, method, path, body=None, key=None, headers=None, conn=None):
    """(status, headers as a lowercase dict, body bytes); `conn` reused."""
    host, port = base.split("://")[1].split(":")
    c = conn or HTTPConnection(host, int(port), timeout=15)
    h = dict(headers or {})
    if key:
        h["Authorization"] = "Bearer " + key
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    if raw is not None:
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=raw, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if not conn:
        c.close()
    try:
        doc = json.loads(data) if "json" in hdrs.get("content-type", "") else None
    except ValueError:
        doc = None
    REPLIES.append((method, path.split("?")[0], r.status, doc))
    return r.status, hdrs, data


def make_console(root):
    os.makedirs(os.path.join(root, "assets", "img"))
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(INDEX)
    files = {"assets/app-3f2a.js": APP_JS, "assets/app-3f2a.css": b"body{}\n",
             "assets/img/logo-9a.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
             "assets/blob-77.bin": b"\0\1", ".env": b"SECRET=1\n",
             "assets/.hidden.js": b"x"}
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    os.makedirs(os.path.join(root, ".git"))
    with open(os.path.join(root, ".git", "config"), "w") as f:
        f.write("secret\n")
    return files


class Console(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        t = cls.tmp.name
        cls.ui = os.path.join(t, "ui")
        make_console(cls.ui)
        # Outside the folder, reachable only by a link or a ..
        cls.outside = os.path.join(t, "outside.txt")
        with open(cls.outside, "w") as f:
            f.write("outside\n")
        os.symlink(cls.outside, os.path.join(cls.ui, "assets", "link.js"))
        os.symlink(t, os.path.join(cls.ui, "up"))
        os.mkfifo(os.path.join(cls.ui, "assets", "fifo.js"))
        cls.admin = "rza_console_" + os.urandom(16).hex()
        cls.p = start_orchestrator(
            EXE, os.path.join(t, "data"),
            ["--ui-dir", cls.ui, "--cors-origin", ORIGIN, "--quiet",
             "--modules", os.path.join(ROOT, "examples", "modules")],
            admin_key=cls.admin)
        cls.base = cls.p.base

    @classmethod
    def tearDownClass(cls):
        try:
            cls.p.stop_clean()
        finally:
            cls.tmp.cleanup()

    def get(self, path, **kw):
        return request(self.base, "GET", path, **kw)

    def assert_secure(self, h):
        csp = h.get("content-security-policy", "")
        self.assertIn("default-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertIn("object-src 'none'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("unsafe-eval", csp)
        self.assertEqual(h.get("x-frame-options"), "DENY")
        self.assertEqual(h.get("x-content-type-options"), "nosniff")
        self.assertEqual(h.get("referrer-policy"), "no-referrer")

    def test_files_types_and_caching(self):
        st, h, body = self.get("/")
        self.assertEqual((st, body), (200, INDEX))
        self.assertEqual(h["content-type"], "text/html; charset=utf-8")
        self.assertEqual(h["cache-control"], "no-cache")
        self.assert_secure(h)
        st, h, body = self.get("/assets/app-3f2a.js")
        self.assertEqual((st, body), (200, APP_JS))
        self.assertTrue(h["content-type"].startswith("text/javascript"))
        self.assertIn("immutable", h["cache-control"])
        self.assert_secure(h)
        for path, ctype in (("/assets/app-3f2a.css", "text/css; charset=utf-8"),
                            ("/assets/img/logo-9a.svg", "image/svg+xml"),
                            ("/assets/blob-77.bin", "application/octet-stream"),
                            ("/index.html", "text/html; charset=utf-8")):
            st, h, _ = self.get(path)
            self.assertEqual((st, h["content-type"]), (200, ctype), path)
        # A client holding the file: 304, no body; another tag: the file.
        etag = self.get("/assets/app-3f2a.js")[1]["etag"]
        st, h, body = self.get("/assets/app-3f2a.js", headers={"If-None-Match": etag})
        self.assertEqual((st, body, h["etag"]), (304, b"", etag))
        st, _, body = self.get("/assets/app-3f2a.js", headers={"If-None-Match": '"x"'})
        self.assertEqual((st, body), (200, APP_JS))

    def test_app_paths_fall_back_to_index(self):
        for path in ("/flows/12", "/nodes", "/builder/", "/flows/12?tab=logs"):
            st, h, body = self.get(path)
            self.assertEqual((st, body), (200, INDEX), path)
        # Missing files and API paths do not.
        for path in ("/assets/gone.js", "/favicon.ico", "/api/v1/nope", "/api",
                     "/healthz.json"):
            st, h, body = self.get(path)
            self.assertEqual(st, 404, path)
            self.assertEqual(json.loads(body)["error"]["code"], "RZ_ENOENT")

    def test_nothing_outside_no_dotfile_no_link(self):
        hostile = ["/../outside.txt", "/assets/../../outside.txt", "/%2e%2e/outside.txt",
                   "/assets/%2e%2e/%2e%2e/outside.txt", "/assets%2f..%2f..%2foutside.txt",
                   "/.env", "/%2eenv", "/.git/config", "/assets/.hidden.js",
                   "/assets/link.js", "/up/outside.txt", "/up", "/assets/fifo.js",
                   "/assets", "/assets/", "//etc/passwd", "/assets//app-3f2a.js",
                   "/index.html%00.js", "/assets/app-3f2a.js%00", "/a\\..\\outside.txt",
                   "/" + "a/" * 40 + "x.js", "/" + "a" * 300 + ".js",
                   "/%ff%fe.js", "/./index.html", "/assets/./app-3f2a.js"]
        c = HTTPConnection("127.0.0.1", self.p.port, timeout=15)
        try:
            for path in hostile:
                c.putrequest("GET", path, skip_host=False, skip_accept_encoding=True)
                c.endheaders()
                r = c.getresponse()
                body = r.read()
                self.assertNotIn(b"outside", body, path)
                self.assertNotIn(b"SECRET", body, path)
                self.assertNotIn(b"secret", body, path)
                self.assertNotIn(b"root:", body, path)
                if path.startswith("//"):   # //host/path: the app's /path
                    self.assertEqual((r.status, body), (200, INDEX), path)
                    continue
                self.assertIn(r.status, (404, 400), path)
                if r.status == 404:
                    self.assertEqual(r.getheader("Content-Type"), "application/json", path)
        finally:
            c.close()
        self.assertTrue(self.p.alive())

    def test_head_is_get_without_body(self):
        host = HTTPConnection("127.0.0.1", self.p.port, timeout=15)
        try:
            # On one connection: the HEAD's missing body must not shift the next reply.
            for path, key in (("/", None), ("/assets/app-3f2a.js", None),
                              ("/api/v1/stats", self.admin), ("/health", None)):
                st, h, body = request(self.base, "HEAD", path, key=key, conn=host)
                gst, gh, gbody = request(self.base, "GET", path, key=key, conn=host)
                self.assertEqual((st, body), (gst, b""), path)
                self.assertEqual(int(h["content-length"]), len(gbody), path)
                self.assertEqual(h["content-type"], gh["content-type"], path)
        finally:
            host.close()
        st, h, body = request(self.base, "HEAD", "/api/v1/stats")
        self.assertEqual((st, body), (401, b""))
        # A stream has no HEAD.
        st, h, _ = request(self.base, "HEAD", "/api/v1/flows/1/events", key=self.admin)
        self.assertEqual(st, 405)
        self.assertNotIn("HEAD", h["allow"])

    def test_405_with_allow_and_options(self):
        cases = {("DELETE", "/api/v1/stats"): "GET, HEAD, OPTIONS",
                 ("GET", "/api/v1/flows/validate"): "POST, OPTIONS",
                 ("DELETE", "/api/v1/flows/validate"): "POST, OPTIONS",
                 ("PUT", "/api/v1/jobs"): "GET, HEAD, POST, OPTIONS",
                 ("PATCH", "/api/v1/jobs/5"): "GET, HEAD, DELETE, OPTIONS",
                 ("POST", "/health"): "GET, HEAD, OPTIONS",
                 ("POST", "/"): "GET, HEAD, OPTIONS"}
        for (method, path), allow in cases.items():
            st, h, body = request(self.base, method, path, body=b"{}" if method != "GET" else None,
                                  key=self.admin)
            self.assertEqual(st, 405, (method, path, body))
            self.assertEqual(h["allow"], allow, (method, path))
            self.assertEqual(json.loads(body)["error"]["code"], "RZ_EINVAL")
            self.assert_secure(h)
        st, h, body = request(self.base, "OPTIONS", "/api/v1/accounts/abc")
        self.assertEqual((st, body), (204, b""))
        self.assertEqual(h["allow"], "GET, HEAD, OPTIONS")
        st, h, _ = request(self.base, "OPTIONS", "/api/v1/nope")
        self.assertEqual(st, 404)
        st, h, _ = request(self.base, "PUT", "/api/v1/nope")
        self.assertEqual(st, 404)
        # Nothing written by any of it.
        st, _, body = request(self.base, "GET", "/api/v1/jobs", key=self.admin)
        self.assertEqual(json.loads(body)["jobs"], [])

    def test_cors_only_for_the_origin(self):
        pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
        st, h, _ = request(self.base, "OPTIONS", "/api/v1/flows/validate", headers=pre)
        self.assertEqual(st, 204)
        self.assertEqual(h["access-control-allow-origin"], ORIGIN)
        self.assertIn("POST", h["access-control-allow-methods"])
        self.assertIn("Authorization", h["access-control-allow-headers"])
        self.assertNotIn("access-control-allow-credentials", h)
        for origin in ("http://evil.example", ORIGIN + ".evil.example", "null",
                       ORIGIN.upper(), ORIGIN + "/"):
            st, h, body = request(self.base, "OPTIONS", "/api/v1/flows/validate",
                                  headers=dict(pre, Origin=origin))
            self.assertEqual(st, 403, origin)
            self.assertNotIn("access-control-allow-origin", h)
            st, h, _ = request(self.base, "GET", "/api/v1/stats", key=self.admin,
                               headers={"Origin": origin})
            self.assertEqual(st, 200)
            self.assertNotIn("access-control-allow-origin", h, origin)
            self.assertEqual(h["vary"], "Origin")
        # A method the path lacks.
        st, h, _ = request(self.base, "OPTIONS", "/api/v1/flows/validate",
                           headers=dict(pre, **{"Access-Control-Request-Method": "DELETE"}))
        self.assertEqual(st, 403)
        st, h, _ = request(self.base, "GET", "/api/v1/stats", key=self.admin,
                           headers={"Origin": ORIGIN})
        self.assertEqual((st, h["access-control-allow-origin"]), (200, ORIGIN))

    def client(self):
        st, _, body = request(self.base, "POST", "/api/v1/accounts", {"name": "c"},
                              key=self.admin)
        self.assertEqual(st, 201)
        doc = json.loads(body)
        request(self.base, "POST", "/api/v1/accounts/%s/test-credits" % doc["id"],
                {"amount_micros": 1000}, key=self.admin)
        return doc["api_key"]

    def state(self, key):
        acct = json.loads(self.get("/api/v1/accounts/me", key=key)[2])
        flows = json.loads(self.get("/api/v1/flows", key=key)[2])["flows"]
        jobs = json.loads(self.get("/api/v1/jobs", key=key)[2])["jobs"]
        return acct["balance_micros"], acct["pending_micros"], flows, jobs

    def test_validate_and_estimate_deploy_nothing(self):
        key = self.client()
        before = self.state(key)
        st, _, body = request(self.base, "POST", "/api/v1/flows/validate",
                              {"flow": BAD_FLOW}, key=key)
        doc = json.loads(body)
        self.assertEqual((st, doc["valid"], doc["errors"]), (200, False, 1), doc)
        self.assertEqual(doc["diagnostics"][0]["pointer"], "/steps/s/module")
        self.assertEqual(doc["diagnostics"][0]["severity"], "error")
        # A config value of the wrong type points at that field.
        bad_cfg = {"flux": 1, "name": "m", "steps": {"s": {"module": "echo@1",
                                                             "config": {"nope": 1}}}}
        st, _, body = request(self.base, "POST", "/api/v1/flows/validate",
                              {"flow": bad_cfg}, key=key)
        doc = json.loads(body)
        self.assertFalse(doc["valid"], doc)
        self.assertTrue(any(d.get("pointer", "").startswith("/steps/s/config")
                            for d in doc["diagnostics"]), doc)
        st, _, body = request(self.base, "POST", "/api/v1/flows/validate",
                              {"flow": FLOW}, key=self.admin)
        self.assertEqual(json.loads(body), {"valid": True, "errors": 0, "warnings": 0,
                                            "diagnostics": []})
        st, _, body = request(self.base, "POST", "/api/v1/flows/estimate",
                              {"flow": FLOW}, key=key)
        est = json.loads(body)
        self.assertEqual(st, 200, est)
        self.assertEqual([s["step"] for s in est["steps"]], ["s"])
        self.assertEqual(est["total_micros"], sum(s["cost_micros"] for s in est["steps"]))
        self.assertIn(est["steps"][0]["recommendation"], ("rent", "api", "none"))
        st, _, body = request(self.base, "POST", "/api/v1/flows/estimate",
                              {"flow": BAD_FLOW}, key=key)
        doc = json.loads(body)
        self.assertEqual((st, doc["error"]["code"]), (422, "RZ_EINVALID"))
        self.assertEqual(doc["diagnostics"][0]["pointer"], "/steps/s/module")
        self.assertEqual(self.state(key), before)

    def test_validate_hostile_bodies(self):
        key = self.client()
        before = self.state(key)
        nk = NodeKey("11" * 32)
        st, _, body = request(self.base, "POST", "/api/v1/nodes/register",
                              nk.register_body(NODE_CAPS))
        token = json.loads(body)["token"]
        for route in ("/api/v1/flows/validate", "/api/v1/flows/estimate"):
            for raw, code in ((b"{", 400), (b"[]", 400), (b'{"flow": 5}', 400),
                              (b'{"flow": null}', 400), (b"{}", 400),
                              (b'{"flow": "x", "extra": 1}', 400),
                              (b'{"flow": "\\u0000"}', None),
                              (b'{"flow": "' + b"a" * (2 << 20) + b'"}', 413),
                              (b'{"flow": "flux: 1\\nsteps: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"}', None),
                              (b'{"flow": "a: &a [*a, *a]\\nb: *a"}', None),
                              (b'\xff\xfe', 400)):
                st, h, body = request(self.base, "POST", route, raw, key=key)
                if code:
                    self.assertEqual(st, code, (route, raw[:40], body))
                else:
                    self.assertIn(st, (200, 400, 422), (route, raw[:40], body))
                self.assertIn(b"error" if st >= 400 else b"valid", body)
            for k, code in ((None, 401), ("rzk_" + "0" * 64, 401), (token, 403)):
                st, _, _ = request(self.base, "POST", route, {"flow": FLOW}, key=k)
                self.assertEqual(st, code, (route, k))
        self.assertEqual(self.state(key), before)
        self.assertTrue(self.p.alive())

    def test_module_search(self):
        key = self.client()
        st, _, body = request(self.base, "GET", "/api/v1/modules", key=key)
        doc = json.loads(body)
        self.assertEqual(st, 200)
        ids = [m["id"] for m in doc["modules"]]
        self.assertIn("echo", ids)
        self.assertEqual(doc["total"], len(ids))
        echo = next(m for m in doc["modules"] if m["id"] == "echo")
        self.assertRegex(echo["digest"], "^[0-9a-f]{64}$")
        self.assertEqual(echo["manifest"]["id"], "echo")
        st, _, body = request(self.base, "GET", "/api/v1/modules?q=ECH", key=key)
        found = json.loads(body)
        self.assertIn("echo", [m["id"] for m in found["modules"]])
        self.assertTrue(all("ech" in (m["id"] + m["name"] + m["description"]).lower()
                            for m in found["modules"]))
        st, _, body = request(self.base, "GET", "/api/v1/modules?q=zz%20no%20such", key=key)
        self.assertEqual(json.loads(body), {"modules": [], "total": 0})
        st, _, body = request(self.base, "GET", "/api/v1/modules?limit=1", key=key)
        one = json.loads(body)
        self.assertEqual((len(one["modules"]), one["total"]), (1, doc["total"]))
        for bad in ("?limit=-1", "?limit=1001", "?limit=x", "?q=" + "a" * 201):
            st, _, body = request(self.base, "GET", "/api/v1/modules" + bad, key=key)
            self.assertEqual(st, 400, (bad, body))
        self.assertEqual(request(self.base, "GET", "/api/v1/modules")[0], 401)


class Startup(unittest.TestCase):
    def test_bad_options_refused_before_anything(self):
        with tempfile.TemporaryDirectory() as t:
            data = os.path.join(t, "data")
            base = [EXE, "--listen", "127.0.0.1:%d" % free_port(), "--data", data]
            for origin in ("*", "http://x/path", "ftp://x", "", "http://", "HTTP://X",
                           "http://x y", "http://x\n"):
                p = run(base + ["--cors-origin", origin], timeout=30)
                self.assertEqual(p.returncode, 2, origin)
                self.assertIn("--cors-origin", p.stderr)
            p = run(base + ["--ui-dir", os.path.join(t, "none")], timeout=30)
            self.assertEqual(p.returncode, 1)
            self.assertIn("--ui-dir", p.stderr)
            self.assertFalse(os.path.exists(data))

    def test_without_a_console(self):
        """The default folder: the build's console/dist when -Dui built
        it (then served), else a JSON 404 naming -Dui=enabled."""
        built = os.path.join(BUILD, "console", "dist", "index.html")
        with tempfile.TemporaryDirectory() as t:
            p = start_orchestrator(EXE, os.path.join(t, "data"), ["--quiet"],
                                   admin_key="rza_console_" + os.urandom(16).hex())
            try:
                st, h, body = request(p.base, "GET", "/")
                if os.path.exists(built):
                    self.assertEqual(st, 200)
                    with open(built, "rb") as f:
                        self.assertEqual(body, f.read())
                else:
                    self.assertEqual(st, 404)
                    err = json.loads(body)["error"]
                    self.assertEqual(err["code"], "RZ_ENOENT")
                    self.assertIn("-Dui=enabled", err["message"])
                self.assertEqual(h["x-frame-options"], "DENY")
                # No --cors-origin: every preflight is refused.
                st, h, _ = request(p.base, "OPTIONS", "/api/v1/jobs",
                                   headers={"Origin": ORIGIN,
                                            "Access-Control-Request-Method": "GET"})
                self.assertEqual(st, 403)
                self.assertNotIn("access-control-allow-origin", h)
            finally:
                p.stop_clean()


class ZRepliesMatchOpenapi(unittest.TestCase):
    """Last (by name): the replies above match docs/openapi.yaml."""

    def test_replies_match_schemas(self):
        import openapi_check
        if openapi_check.available():
            self.skipTest(openapi_check.available())
        api = [r for r in REPLIES if r[1].startswith("/api/")]
        self.assertGreater(len(api), 50)
        problems = openapi_check.problems(ROOT, api)
        self.assertEqual(problems, [], "\n".join(problems[:40]))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
