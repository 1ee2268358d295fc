#!/usr/bin/env python3
"""Opens COUNT TCP connections to 127.0.0.1:PORT that never send a byte, holds them for SECONDS, and prints a JSON
report: how many connected and how many the server closed. The attack of an agent that starves a runner of file
descriptors with idle connections (used by the connection-limit tests; loopback only)."""
import argparse
import errno
import json
import resource
import selectors
import socket
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--count", type=int, default=2000)
parser.add_argument("--seconds", type=float, default=30)
args = parser.parse_args()

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = args.count + 64
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
except (ValueError, OSError):
    pass

sockets = []
for _ in range(args.count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", args.port))
    except BlockingIOError:
        pass
    except OSError as error:
        if error.errno != errno.EINPROGRESS:
            s.close()
            continue
    sockets.append(s)
print(json.dumps({"event": "opened", "count": len(sockets)}), flush=True)

selector = selectors.DefaultSelector()
for s in sockets:
    selector.register(s, selectors.EVENT_READ)
closed = 0
end = time.monotonic() + args.seconds
while time.monotonic() < end and selector.get_map():
    for key, _ in selector.select(timeout=max(0.0, min(1.0, end - time.monotonic()))):
        s = key.fileobj
        try:
            data = s.recv(1024)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            closed += 1
            selector.unregister(s)
            s.close()
print(json.dumps({"event": "done", "opened": len(sockets), "closedByServer": closed}), flush=True)
