"""Prints a JSON object of about config.kib KiB, and a long log: 20,000
short lines at once, or config.lines numbered lines of 100 bytes written
one by one (a chatty step whose log streams in many pieces)."""
import json
import sys

req = json.load(sys.stdin)
cfg = req.get("config", {})
kib = int(cfg.get("kib", 600))
if "lines" in cfg:
    for i in range(int(cfg["lines"])):
        sys.stderr.write("line %07d %s\n" % (i, "x" * 87))
        sys.stderr.flush()
else:
    sys.stderr.write("log line\n" * 20000)
json.dump({"blob": "x" * (kib * 1024)}, sys.stdout)
