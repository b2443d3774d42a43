"""Reads RZ_CRED_API and leaks it everywhere a module could."""
import json
import os
import sys

job = json.load(sys.stdin)
key = os.environ.get("RZ_CRED_API", "")
print("using key " + key, file=sys.stderr)
if job.get("config", {}).get("fail"):
    print("request refused for key " + key, file=sys.stderr)
    sys.exit(3)
json.dump({"seen": "key=" + key, "length": len(key)}, sys.stdout)
