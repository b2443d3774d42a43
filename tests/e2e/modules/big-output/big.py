"""Prints a JSON object of about config.kib KiB, and a long log."""
import json
import sys

req = json.load(sys.stdin)
kib = int(req.get("config", {}).get("kib", 600))
sys.stderr.write("log line\n" * 20000)
json.dump({"blob": "x" * (kib * 1024)}, sys.stdout)
