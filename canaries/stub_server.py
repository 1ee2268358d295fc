"""What the model stubs share: their command line, the threaded server with its port file, and holding a stream
open until the client leaves. Python stdlib only."""
import argparse
import os
import select
import threading
import urllib.parse
from http.server import ThreadingHTTPServer


def markers(text):
    """[(key, value)] for each `stub:key[=value]` token of text, values percent-decoded (`%20` a space)."""
    found = []
    for token in text.split():
        if token.startswith("stub:"):
            key, _, value = token[5:].partition("=")
            found.append((key, urllib.parse.unquote(value)))
    return found


def arguments(description):
    """`--host`, `--port` (0: any free port), `--port-file` (written atomically once listening), `--log`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on stdout)")
    parser.add_argument("--port-file", help="write the chosen port here (atomically) once listening")
    parser.add_argument("--log", help="append one JSON line per request to this file")
    return parser.parse_args()


def serve(args, handler):
    """Serves `handler` on a threaded server until interrupted; `server.stopping` is set when it stops."""
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    server.stopping = threading.Event()
    port = server.server_address[1]
    if args.port_file:
        partial = args.port_file + ".tmp"
        with open(partial, "w") as f:
            f.write(f"{port}\n")
        os.replace(partial, args.port_file)
    print(port, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()


def wait_for_client_to_leave(connection, stopping=None):
    """Sends nothing; returns once the client closes its side (or the server stops), so no thread is left behind."""
    while stopping is None or not stopping.is_set():
        readable, _, _ = select.select([connection], [], [], 1.0)
        if readable:
            try:
                if not connection.recv(4096):
                    return
            except OSError:
                return
