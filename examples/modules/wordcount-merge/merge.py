"""wordcount-merge: {a, b, c} counts -> {counts, total, unique, top}."""
import json
import sys

job = json.load(sys.stdin)
inputs = job.get("inputs", {})
counts = {}
for port in ("a", "b", "c"):
    part = inputs.get(port) or {}
    if not isinstance(part, dict):
        sys.exit("wordcount-merge: input %s is not an object" % port)
    for word, n in part.items():
        counts[word] = counts.get(word, 0) + int(n)
top_n = int(job.get("config", {}).get("top", 5))
ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
json.dump({
    "top": [{"word": w, "count": n} for w, n in ranked],
    "total": sum(counts.values()),
    "unique": len(counts),
    "counts": counts,
}, sys.stdout)
