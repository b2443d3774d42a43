"""ev-consumer: the time from the event's emit to this process reading it
(the hand-over plus a process start), and when it finished."""
import json
import sys
import time

now = time.time_ns()
t = int(json.load(sys.stdin)["inputs"]["t"])
print(json.dumps({"latency_us": (now - t) // 1000, "done_ns": time.time_ns()}))
