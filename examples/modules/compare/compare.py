"""compare: {value} with config threshold -> {above, value, threshold}."""
import json
import sys

job = json.load(sys.stdin)
value = job["inputs"]["value"]
threshold = job.get("config", {}).get("threshold", 0)
if isinstance(value, bool) or not isinstance(value, (int, float)):
    sys.exit("compare: value must be a number")
json.dump({"above": value > threshold, "value": value, "threshold": threshold},
          sys.stdout)
