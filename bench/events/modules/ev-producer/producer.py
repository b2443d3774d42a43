"""ev-producer: `count` events at `rate` a second, paced on the wall clock
(so a slow reader does not slow the emits), each {"n", "t"}: t is the emit
time in ns since the epoch (CLOCK_REALTIME, shared with the consumer)."""
import json
import sys
import time

config = json.load(sys.stdin).get("config", {})
count = int(config.get("count", 200))
rate = float(config.get("rate", 100))
start = time.time()
for n in range(count):
    due = start + n / rate
    wait = due - time.time()
    if wait > 0:
        time.sleep(wait)
    print(json.dumps({"event": "tick", "data": {"n": n + 1, "t": time.time_ns()}}),
          flush=True)
