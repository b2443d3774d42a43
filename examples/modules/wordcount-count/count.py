"""wordcount-count: text -> {counts: {word: n}, words: n}."""
import json
import re
import sys

job = json.load(sys.stdin)
text = job["inputs"]["text"]
if job.get("config", {}).get("lowercase", True):
    text = text.lower()
counts = {}
for word in re.findall(r"[^\W_]+(?:'[^\W_]+)*", text):
    counts[word] = counts.get(word, 0) + 1
json.dump({"counts": counts, "words": sum(counts.values())}, sys.stdout)
