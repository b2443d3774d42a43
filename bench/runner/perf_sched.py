"""The scheduler's tracepoints under `perf record -a`, read back through
`perf script`: what gap_trace.py and sandbox_gap.py both trace a run with.
Needs perf with the sched tracepoints (root, or perf_event_paranoid <= -1).
"""
import re
import subprocess

# "comm pid [cpu] t: sys:event: fields"; fields are key=value (some
# formats print key: value).
LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\w+):(\w+):\s*(.*)$")
KV = re.compile(r"(\w+)[=:] ?(\S+)")


def record(data, events, argv, cwd):
    """Runs `argv` in `cwd` under `perf record -a` of `events` into `data`."""
    subprocess.run(["perf", "record", "-q", "-a", "-o", data] +
                   sum((["-e", e] for e in events), []) + ["--"] + argv,
                   cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)


def fields(ev, rest):
    """An event's fields; a sched_switch's task switched to as next_*."""
    if ev != "sched_switch":
        return dict(KV.findall(rest))
    prev, _, nxt = rest.partition("==>")
    f = dict(KV.findall(prev))
    f.update({"next_" + k if not k.startswith("next_") else k: v
              for k, v in KV.findall(nxt)})
    return f


def parse(path):
    """perf script's lines of `path` as (t s, event, fields, pid, cpu)."""
    out = subprocess.run(["perf", "script", "-i", path], capture_output=True,
                         text=True, check=True).stdout
    for ln in out.splitlines():
        m = LINE.match(ln)
        if not m:
            continue
        _, pid, cpu, t, _, ev, rest = m.groups()
        yield float(t), ev, fields(ev, rest), int(pid), int(cpu)
