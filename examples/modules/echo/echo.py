"""echo: message (input, else config) -> {message}, also logged to stderr."""
import json
import sys

job = json.load(sys.stdin)
config = job.get("config", {})
message = job.get("inputs", {}).get("message")
if message is None:
    message = config.get("message", "")
if not isinstance(message, str):
    message = json.dumps(message, sort_keys=True)
message = config.get("prefix", "") + message
print(message, file=sys.stderr)
json.dump({"message": message}, sys.stdout)
