"""flaky: fails attempts 1..fail_times on purpose (by $RZ_ATTEMPT), then
succeeds with {attempt, value}."""
import json
import os
import sys

job = json.load(sys.stdin)
fail_times = int(job.get("config", {}).get("fail_times", 2))
attempt = int(os.environ.get("RZ_ATTEMPT", "1"))
if attempt <= fail_times:
    sys.exit("flaky: attempt %d fails on purpose (%d planned failures)"
             % (attempt, fail_times))
json.dump({"attempt": attempt, "value": job.get("inputs", {}).get("value")},
          sys.stdout)
