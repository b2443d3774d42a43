"""Writes config.mb MiB to $RZ_OUTPUT_DIR/config.name in 64 KiB pieces (never
held whole) and returns that name; other modes return a hostile one."""
import json
import os
import sys
import time

req = json.load(sys.stdin)
cfg = req.get("config", {})
mode, name = cfg.get("mode", "ok"), cfg.get("name", "sub/data.bin")
out = os.environ["RZ_OUTPUT_DIR"]
path = os.path.join(out, name)
if mode == "ok":
    os.makedirs(os.path.dirname(path), exist_ok=True)
    piece = bytes(range(256)) * 256
    with open(path, "wb") as f:
        for i in range(int(cfg.get("mb", 1)) * 16):
            f.write(piece[i % 256:] + piece[:i % 256])
elif mode == "fill":
    # 1 MiB files until the folder refuses one (or 64), then all but the
    # first removed: how many fitted is the note.
    piece, n = b"x" * (1 << 20), 0
    try:
        while n < 64:
            with open(os.path.join(out, "f%d" % n), "wb") as f:
                f.write(piece)
            n += 1
    except OSError:
        pass
    for i in range(1, 65):
        if os.path.exists(os.path.join(out, "f%d" % i)):
            os.unlink(os.path.join(out, "f%d" % i))
    name = "f0"
    json.dump({"data": name, "note": str(n)}, sys.stdout)
    sys.exit(0)
elif mode == "symlink":
    os.symlink("/etc/shadow", path)
elif mode == "fifo":
    os.mkfifo(path)
elif mode == "dotdot":
    name = "../../in/request.json"
elif mode == "absolute":
    name = "/etc/shadow"
elif mode == "linkdir":
    os.symlink("/etc", os.path.join(out, "etc"))
    name = "etc/shadow"
time.sleep(float(cfg.get("sleep", 0)))
json.dump({"data": name, "note": mode}, sys.stdout)
