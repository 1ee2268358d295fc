#!/usr/bin/env python3
"""A stand-in for POST /internal/agent-result, for job-runner tests: records each request body and its
Authorization header as one JSON line; answers 503 to the first --fail-first requests (to exercise retries)."""
import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port-file", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--fail-first", type=int, default=0)
args = parser.parse_args()
lock = threading.Lock()
seen = {"count": 0}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            seen["count"] += 1
            failing = seen["count"] <= args.fail_first
            with open(args.out, "a") as f:
                f.write(json.dumps({"auth": self.headers.get("Authorization"), "status": 503 if failing else 200,
                                    "body": json.loads(body or b"null")}) + "\n")
        self.send_response(503 if failing else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(args.port_file + ".tmp", args.port_file)
server.serve_forever()
