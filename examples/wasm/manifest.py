#!/usr/bin/env python3
"""module.json from its template with @SHA256@ set to the wasm file's
digest: manifest.py TEMPLATE WASM OUT (examples/wasm/meson.build)."""
import hashlib
import sys

tmpl, wasm, out = sys.argv[1:4]
with open(wasm, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
with open(tmpl, encoding="utf-8") as f:
    text = f.read().replace("@SHA256@", digest)
with open(out, "w", encoding="utf-8") as f:
    f.write(text)
