#!/usr/bin/env python3
"""HTTP server for test_registry: serves files of ROOT on 127.0.0.1 at a
random port (printed as the first line of stdout), with strong ETags
(sha256 of the body) and 304 on a matching If-None-Match. Every response is
logged to ROOT/../log as "STATUS PATH" lines so tests can tell a 304
revalidation from a fresh 200. /redirect?to=URL answers 302 to URL.
Usage: server.py ROOT"""
import hashlib
import http.server
import os
import sys
import urllib.parse

ROOT = os.path.abspath(sys.argv[1])
LOG = os.path.join(os.path.dirname(ROOT), "log")


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        with open(LOG, "a") as f:
            f.write(f"{status} {self.path}\n")
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/redirect":
            to = urllib.parse.parse_qs(url.query).get("to", [""])[0]
            return self.answer(302, b"", [("Location", to)])
        path = os.path.normpath(os.path.join(ROOT, url.path.lstrip("/")))
        if not path.startswith(ROOT + os.sep) or not os.path.isfile(path):
            return self.answer(404, b"not found")
        with open(path, "rb") as f:
            body = f.read()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if self.headers.get("If-None-Match") == etag:
            return self.answer(304, b"", [("ETag", etag)])
        self.answer(200, body, [("ETag", etag),
                                ("Content-Type", "application/json")])


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
