"""sleep: waits config.seconds; outputs {started, finished} (epoch seconds)."""
import json
import sys
import time

job = json.load(sys.stdin)
seconds = float(job.get("config", {}).get("seconds", 0.2))
started = time.time()
time.sleep(max(0.0, seconds))
json.dump({"started": started, "finished": time.time()}, sys.stdout)
