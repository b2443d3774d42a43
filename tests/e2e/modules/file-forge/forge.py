"""Returns {"ref": {"$file": {...}}} naming config.sha256 (or a list of
one), as a step's untrusted JSON output could."""
import json
import sys

cfg = json.load(sys.stdin).get("config", {})
ref = {"$file": {"sha256": cfg["sha256"], "size": 1, "name": "stolen.bin"}}
json.dump({"ref": [ref] if cfg.get("list") else ref}, sys.stdout)
