"""Real replies checked against docs/openapi.yaml's schemas.

The e2e scripts record each reply (method, path, status, decoded body,
and optionally the JSON body sent); problems() finds each one's operation
(a path without {params} wins, as in the server), requires its status to
be documented, validates a JSON reply against the documented schema, and
the body of a request the server took (2xx) against the request schema. OpenAPI 3.0 schemas become JSON
Schema here: $refs inlined, `nullable` as a null type.

Needs PyYAML and jsonschema (Debian: python3-yaml, python3-jsonschema);
available() says whether they are there, and why not."""
import json
import os
import re

try:
    import jsonschema
    import yaml
    MISSING = None
except ImportError as e:   # the caller skips, saying so
    MISSING = "%s (Debian: python3-yaml, python3-jsonschema)" % e


def available():
    return MISSING


class Spec:
    def __init__(self, root):
        with open(os.path.join(root, "docs", "openapi.yaml")) as f:
            self.doc = yaml.safe_load(f)
        self.templates = []
        for path in self.doc["paths"]:
            rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(path).replace(r"\{", "{")
                              .replace(r"\}", "}")) + "$"
            self.templates.append((path.count("{"), path, re.compile(rx)))
        self.templates.sort()

    def template(self, path):
        for _, t, rx in self.templates:
            if rx.match(path):
                return t
        return None

    def resolve(self, node):
        """A schema with its $refs inlined and nullable made a null type."""
        if isinstance(node, list):
            return [self.resolve(x) for x in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = self.doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return self.resolve(target)
        out = {k: self.resolve(v) for k, v in node.items()
               if k not in ("nullable", "format", "example")}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False   # a field the document lacks is a problem
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out

    def request(self, method, template):
        """The JSON request body's schema of an operation, or None."""
        op = self.doc["paths"][template].get(method.lower()) or {}
        body = self.resolve(op.get("requestBody") or {})
        return body.get("content", {}).get("application/json", {}).get("schema")

    def response(self, method, template, status):
        op = self.doc["paths"][template].get(method.lower())
        if op is None:
            return None, "no %s operation" % method
        resp = op["responses"].get(str(status))
        if resp is None:
            return None, "status %d is not documented" % status
        resp = self.resolve(resp)
        content = resp.get("content", {})
        schema = content.get("application/json", {}).get("schema")
        return schema, None


def problems(root, replies):
    """[text] for every recorded reply that does not match its operation."""
    spec = Spec(root)
    out, seen = [], set()
    for method, path, status, body, *sent in replies:
        if method in ("HEAD", "OPTIONS") or status == 405:
            continue   # not operations of the document (docs/api.md)
        t = spec.template(path)
        if t is None:
            if path.startswith("/api/") and status != 404:
                out.append("%s %s -> %d: no such path in openapi.yaml" % (method, path, status))
            continue
        schema, why = spec.response(method, t, status)
        if why:
            key = (method, t, status)
            if key not in seen:
                seen.add(key)
                out.append("%s %s -> %d: %s" % (method, t, status, why))
            continue
        request = spec.request(method, t)
        if sent and sent[0] is not None and request and 200 <= status < 300:
            for err in jsonschema.Draft7Validator(request).iter_errors(sent[0]):
                out.append("%s %s -> %d: the request body at /%s: %s (sent %s)" % (
                    method, t, status, "/".join(str(p) for p in err.absolute_path),
                    err.message[:200], json.dumps(sent[0])[:300]))
                break
        if schema is None or not isinstance(body, (dict, list)):
            continue
        v = jsonschema.Draft7Validator(schema)
        for err in v.iter_errors(body):
            out.append("%s %s -> %d at /%s: %s (reply %s)" % (
                method, t, status, "/".join(str(p) for p in err.absolute_path),
                err.message[:200], json.dumps(body)[:300]))
            break
    return out


def _reply_schema_name(doc, method, template, status):
    """The components/schemas name a reply is documented as, or None."""
    op = doc["paths"][template].get(method.lower()) or {}
    resp = op.get("responses", {}).get(str(status)) or {}
    ref = (resp.get("content", {}).get("application/json", {}).get("schema") or {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/components/schemas/") else None


def _keys(node, at=""):
    """The set of key paths in a JSON value (lists looked through): the
    reply's shape, whatever its values."""
    out = frozenset()
    if isinstance(node, dict):
        for k, v in node.items():
            out |= {at + "/" + k} | _keys(v, at + "/" + k)
    elif isinstance(node, list):
        for v in node:
            out |= _keys(v, at + "[]")
    return out


def typescript_problems(root, replies, workdir):
    """The client types openapi-typescript generates from the document
    (pinned in tools/openapi), type-checked by its tsc --strict against the
    real replies: each reply an object literal of its documented type, so
    a field the document lacks, a wrong type or a missing required field is
    an error. None when the tools are not installed (npm ci in
    tools/openapi), else the compiler's complaints ([] when clean)."""
    import subprocess
    root = os.path.abspath(root)
    bins = os.path.join(root, "tools", "openapi", "node_modules", ".bin")
    gen, tsc = os.path.join(bins, "openapi-typescript"), os.path.join(bins, "tsc")
    if not (os.path.exists(gen) and os.path.exists(tsc)):
        return None
    spec = Spec(root)
    p = subprocess.run([gen, os.path.join(root, "docs", "openapi.yaml"), "-o",
                        os.path.join(workdir, "api.d.ts")], capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0:
        return ["openapi-typescript failed: " + (p.stdout + p.stderr)[-2000:]]
    lines = ['import type { components } from "./api";',
             'type S = components["schemas"];']
    per = {}
    for method, path, status, body, *_ in replies:
        t = spec.template(path)
        name = t and _reply_schema_name(spec.doc, method, t, status)
        if not name or not isinstance(body, dict):
            continue
        shape = (name, _keys(body))
        if per.get(shape, 0) >= 2:
            continue   # every shape of reply seen, not just the first few
        per[shape] = per.get(shape, 0) + 1
        lines.append("// %s %s -> %d" % (method, t, status))
        lines.append("export const r%d: S[%s] = %s;" % (len(lines), json.dumps(name),
                                                       json.dumps(body)))
    with open(os.path.join(workdir, "check.ts"), "w") as f:
        f.write("\n".join(lines) + "\n")
    p = subprocess.run([tsc, "--strict", "--noEmit", "--skipLibCheck", "--target", "es2020",
                        "--moduleResolution", "node", os.path.join(workdir, "check.ts")],
                       capture_output=True, text=True, timeout=300, cwd=workdir)
    if p.returncode == 0:
        return []
    return [l for l in (p.stdout + p.stderr).splitlines() if "error" in l][:40] or \
        ["tsc exit %d" % p.returncode]
