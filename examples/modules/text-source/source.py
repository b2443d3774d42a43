"""text-source: outputs {text, length} from the `text` input or config."""
import json
import sys

job = json.load(sys.stdin)
text = job.get("inputs", {}).get("text")
if text is None:
    text = job.get("config", {}).get("text", "")
if not isinstance(text, str):
    sys.exit("text-source: text must be a string, got %s" % type(text).__name__)
json.dump({"text": text, "length": len(text)}, sys.stdout)
