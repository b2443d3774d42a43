"""wordcount-split: text -> `parts` chunks of consecutive whole words."""
import json
import sys

job = json.load(sys.stdin)
words = job["inputs"]["text"].split()
parts = int(job.get("config", {}).get("parts", 3))
if parts < 1:
    sys.exit("wordcount-split: parts must be at least 1")
size, extra = divmod(len(words), parts)
chunks, at = [], 0
for i in range(parts):
    n = size + (1 if i < extra else 0)
    chunks.append(" ".join(words[at:at + n]))
    at += n
out = {"chunks": chunks}
for i in range(3):
    out["part%d" % (i + 1)] = chunks[i] if i < len(chunks) else ""
print("split %d words into %d chunks" % (len(words), parts), file=sys.stderr)
json.dump(out, sys.stdout)
