"""trader: a service (docs/services.md). Prints {"ready": true}, then one
{"event": "trade", "id": "fill-N", "data": {...}} line per fill, `trades`
of them, with a log line and a malformed line between (kept as log lines,
never events), then exits 0. With `listen_port` it listens there instead of
printing the ready line (its readiness is then a `ready: {tcp: PORT}` check).
`burst` quote events written at once and an `oversize` one test the event
caps (docs/services.md). Restarted, it emits its fills again from the
first: their ids make each one event."""
import json
import socket
import sys
import time

job = json.load(sys.stdin)
config = job.get("config", {})
trades = int(config.get("trades", 3))
pause = int(config.get("interval_ms", 20)) / 1000.0
symbol = config.get("symbol", "BTC-USDT")


def say(obj):
    print(json.dumps(obj), flush=True)


port = int(config.get("listen_port", 0))
if port:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
else:
    say({"ready": True})
print("connected to the paper exchange", flush=True)
if config.get("oversize"):
    say({"event": "quote", "data": {"pad": "x" * 70000}})
burst = int(config.get("burst", 0))
if burst:   # in one write: the caps refuse what is past 1,000 a second
    sys.stdout.write("".join(json.dumps({"event": "quote", "data": {"q": q}}) + "\n"
                             for q in range(burst)))
    sys.stdout.flush()
    time.sleep(2.5)   # a later second's window: the trades go through
print('{"event": "trade", "data": ', flush=True)   # malformed: a log line
for i in range(trades):
    side = "buy" if i % 2 == 0 else "sell"
    say({"event": "trade", "id": "fill-%d" % (i + 1),
         "data": {"n": i + 1, "side": side, "symbol": symbol,
                  "qty": 0.01 * (i + 1), "price": 42000 + i}})
    print("filled %d" % (i + 1), file=sys.stderr, flush=True)
    time.sleep(pause)
