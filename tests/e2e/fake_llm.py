#!/usr/bin/env python3
"""A stand-in model server for the tests (no real one can run here).

It speaks the documented shapes of Ollama's API (GET /api/tags, POST
/api/show, POST /api/generate and /api/chat streaming NDJSON) and of OpenAI's (GET
/v1/models, POST /v1/chat/completions with server-sent events), standard
library only. The answer is made up and deterministic: "Hello from MODEL.
You said: PROMPT", one word per token, cut at max_tokens / num_predict.
Token counts are reported the way each API does (prompt_eval_count and
eval_count on Ollama's last line; usage on OpenAI's last chunk when the
request asks with stream_options.include_usage): prompt tokens are the
prompt's words, completion tokens the pieces sent.

A model's name picks its behaviour, so a test provokes each failure:
  boom:*   the generation answers 500 {"error": ...}
  cut:*    the stream stops after three pieces, without its end
  slow:*   the first piece waits SLOW_FIRST s, then one every SLOW_EACH s
  junk:*   the second line is not JSON
Any model not listed answers 404 "model not found" in the API's shape.

POST /_models {"models": [...]} replaces the list; GET /_requests returns
the generation requests received (their JSON bodies), for checks.

Usage: fake_llm.py --port N --models a,b,...   (or import and use start())"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_FIRST = 1.5
SLOW_EACH = 0.3


def answer(model, prompt):
    words = ("Hello from %s.\nYou said: %s" % (model, prompt)).split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def prompt_of(body):
    if isinstance(body.get("prompt"), str):
        return body["prompt"]
    msgs = body.get("messages") or []
    return " ".join(m.get("content", "") for m in msgs if isinstance(m, dict))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm/1"

    def log_message(self, *a):
        pass

    # ---- plumbing ----

    def send_json(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Connection", "close")   # the end of the body is the close
        self.end_headers()
        self.close_connection = True

    def chunk(self, text):
        self.wfile.write(text.encode())
        self.wfile.flush()

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def models(self):
        return self.server.models

    # ---- routes ----

    def do_GET(self):
        if self.path == "/api/tags":
            self.send_json(200, {"models": [
                {"name": m, "model": m, "size": 1100000000 + 1000 * i,
                 "modified_at": "2026-01-01T00:00:00Z", "digest": "0" * 64,
                 "details": {"format": "gguf", "family": "llama",
                             "parameter_size": "1.1B", "quantization_level": "Q4_0"}}
                for i, m in enumerate(self.models())]})
        elif self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000,
                 "owned_by": "fake", "context_length": 8192}
                for m in self.models()]})
        elif self.path == "/_requests":
            self.send_json(200, {"requests": self.server.requests})
        else:
            self.send_json(404, {"error": "no route %s" % self.path})

    def do_POST(self):
        body = self.body()
        if self.path == "/_models":
            self.server.models = list(body.get("models", []))
            self.send_json(200, {"models": self.server.models})
            return
        if body is None:
            self.send_json(400, {"error": "the body is not JSON"})
            return
        if self.path == "/api/show":
            name = body.get("model") or body.get("name")
            if name not in self.models():
                self.send_json(404, {"error": "model '%s' not found" % name})
            else:
                self.send_json(200, {"modelfile": "FROM %s" % name,
                                     "details": {"family": "llama"},
                                     "model_info": {"general.architecture": "llama",
                                                    "general.parameter_count": 1100000000,
                                                    "llama.context_length": 131072}})
            return
        if self.path in ("/api/generate", "/api/chat", "/v1/chat/completions"):
            self.server.requests.append({"path": self.path, "body": body})
        ollama = self.path.startswith("/api/")
        if self.path not in ("/api/generate", "/api/chat", "/v1/chat/completions"):
            self.send_json(404, {"error": "no route %s" % self.path})
            return
        model = body.get("model")
        if model not in self.models():
            if ollama:
                self.send_json(404, {"error": "model '%s' not found" % model})
            else:
                self.send_json(404, {"error": {
                    "message": "The model `%s` does not exist" % model,
                    "type": "invalid_request_error", "code": "model_not_found"}})
            return
        if model.startswith("boom:"):
            self.send_json(500, {"error": "boom: the model crashed"} if ollama else
                           {"error": {"message": "boom: the model crashed",
                                      "type": "server_error"}})
            return
        if ollama:
            opts = body.get("options") or {}
            limit = opts.get("num_predict", 128)
        else:
            limit = body.get("max_tokens", 128)
        pieces = answer(model, prompt_of(body))[:max(0, int(limit))]
        n_in = len(prompt_of(body).split())
        try:
            if ollama:
                self.ollama_stream(model, pieces, n_in, self.path == "/api/chat")
            else:
                usage = (body.get("stream_options") or {}).get("include_usage")
                self.openai_stream(model, pieces, n_in, usage)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def pace(self, model, i):
        if model.startswith("slow:"):
            time.sleep(SLOW_FIRST if i == 0 else SLOW_EACH)

    def ollama_stream(self, model, pieces, n_in, chat):
        self.start_stream("application/x-ndjson")
        for i, p in enumerate(pieces):
            self.pace(model, i)
            if model.startswith("cut:") and i == 3:
                return
            if model.startswith("junk:") and i == 1:
                self.chunk("this is not json\n")
                return
            line = {"model": model, "created_at": "2026-01-01T00:00:00Z", "done": False}
            if chat:
                line["message"] = {"role": "assistant", "content": p}
            else:
                line["response"] = p
            self.chunk(json.dumps(line) + "\n")
        end = {"model": model, "created_at": "2026-01-01T00:00:01Z", "done": True,
               "done_reason": "length" if len(pieces) else "stop",
               "prompt_eval_count": n_in, "eval_count": len(pieces),
               "total_duration": 1000000}
        if chat:
            end["message"] = {"role": "assistant", "content": ""}
        else:
            end["response"] = ""
        self.chunk(json.dumps(end) + "\n")

    def openai_stream(self, model, pieces, n_in, usage):
        self.start_stream("text/event-stream")
        self.chunk(": keep-alive\n\n")
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": 1700000000, "model": model}
        for i, p in enumerate(pieces):
            self.pace(model, i)
            if model.startswith("cut:") and i == 3:
                return
            if model.startswith("junk:") and i == 1:
                self.chunk("data: {not json\n\n")
                return
            delta = {"content": p}
            if i == 0:
                delta["role"] = "assistant"
            ev = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])
            self.chunk("data: %s\n\n" % json.dumps(ev))
        ev = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "length"}])
        self.chunk("data: %s\n\n" % json.dumps(ev))
        if usage:
            ev = dict(base, choices=[], usage={"prompt_tokens": n_in,
                                               "completion_tokens": len(pieces),
                                               "total_tokens": n_in + len(pieces)})
            self.chunk("data: %s\n\n" % json.dumps(ev))
        self.chunk("data: [DONE]\n\n")


def start(models, port=0):
    """A server on 127.0.0.1 in a thread: (server, base URL). Stop it with
    server.shutdown(); server.server_close()."""
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.models = list(models)
    srv.requests = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "http://127.0.0.1:%d" % srv.server_address[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--models", default="tiny:1b")
    a = ap.parse_args()
    srv, base = start([m for m in a.models.split(",") if m], a.port)
    print(base, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
