#!/usr/bin/env python3
"""What the egress proxy costs an agent, and what an agent's traffic costs `dispatch serve` (CONTRACT §10, issue:
network egress). One `serve` with bubblewrap isolation runs one host-mode agent (canaries/egress_load.py standing in
for claude) that, through the bridge and the proxy, downloads --bytes from a loopback server, makes --latency-count
sequential requests each on a new connection, and opens --connections CONNECT tunnels (--width at once). The same
download and requests are made directly, outside any sandbox, in the same run: the baseline. Serve's RSS is sampled
throughout. Prints the throughput ratio (goal >= 0.7 for 1 GB), the added latency per connection at p50 (goal
<= 2 ms), and serve's RSS idle, at its peak during the load and after (the bound)."""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench_serve import TOKEN, rss_kib
from bench_scale import request, start_serve

HERE = os.path.dirname(os.path.realpath(__file__))
CHUNK = b"\0" * (1 << 20)


class Bulk(BaseHTTPRequestHandler):
    """GET /bytes/N: N zero bytes as fast as the socket takes them; anything else: "ok"."""

    def do_GET(self):  # noqa: N802 - the base class's name
        size = int(self.path.split("/")[2]) if self.path.startswith("/bytes/") else 2
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        if not self.path.startswith("/bytes/"):
            self.wfile.write(b"ok")
            return
        left = size
        while left > 0:
            part = CHUNK if left >= len(CHUNK) else CHUNK[:left]
            self.connection.sendall(part)
            left -= len(part)

    def log_message(self, *args):
        pass


def measured(stderr):
    for line in stderr.splitlines():
        if line.startswith("bench "):
            return json.loads(line[6:])
    raise SystemExit(f"no measurement in: {stderr[-2000:]}")


def p50(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def baseline(task):
    run = subprocess.run([sys.executable, os.path.join(HERE, "egress_load.py")] + task.split(), capture_output=True, text=True,
                         env=dict(os.environ, EGRESS_LOAD_BASELINE="1", HTTP_PROXY="", http_proxy=""))
    return measured(run.stderr)


def through_serve(dispatch, task, port_allowed):
    work = tempfile.mkdtemp(prefix="bench-egress-", dir="/var/tmp")
    env = dict(os.environ, DISPATCH_STATE_DIR=os.path.join(work, "state"), DISPATCH_TOKEN=TOKEN, DISPATCH_ISOLATION="bwrap",
               DISPATCH_EGRESS_ALLOW_PRIVATE=f"127.0.0.1:{port_allowed}", DISPATCH_CLAUDE_BIN=os.path.join(HERE, "egress_load.py"),
               IS_SANDBOX="1", DISPATCH_AGENT_ENV="IS_SANDBOX")
    env.setdefault("DISPATCH_AGENT_USER", "root")
    server, port = start_serve(dispatch, env, work)
    samples = []
    try:
        time.sleep(1)
        idle = rss_kib(server.pid)
        running = threading.Event()

        def sample():
            while not running.is_set():
                samples.append(rss_kib(server.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        request(port, "POST", "/internal/agent-dispatch", {"requestId": "egress-bench", "task": task + " fake:answer=done",
                                                           "tool": "claude", "timeout": 1800, "cwd": work})
        status, data = request(port, "GET", "/internal/agent-await/egress-bench?timeoutMs=1800000")
        running.set()
        sampler.join()
        time.sleep(1)
        after = rss_kib(server.pid)
        result = data["result"]
        if result["status"] != "completed":
            raise SystemExit(f"the agent's run ended {result['status']}: {result.get('error')}")
        conn_logs = request_text(port, "/internal/agent-logs/egress-bench?stream=stderr")
        return measured(conn_logs), idle, max(samples or [idle]), after, result.get("network", {})
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


def request_text(port, path):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    text = conn.getresponse().read().decode(errors="replace")
    conn.close()
    return text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--bytes", type=int, default=1 << 30)
    parser.add_argument("--latency-count", type=int, default=300)
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--width", type=int, default=200)
    args = parser.parse_args()
    bulk = ThreadingHTTPServer(("127.0.0.1", 0), Bulk)
    bulk.daemon_threads = True
    bulk.handle_error = lambda request, address: None  # the tunnels' connections end abruptly: expected
    threading.Thread(target=bulk.serve_forever, daemon=True).start()
    port = bulk.server_address[1]
    url = f"http://127.0.0.1:{port}"
    transfer = f"bench:download={url}/bytes/{args.bytes} bench:latency={args.latency_count}:{url}/ok"
    direct = baseline(transfer)
    proxied, idle, peak, after, network = through_serve(
        os.path.abspath(args.dispatch), transfer + f" bench:connections={args.connections}:{args.width}:127.0.0.1:{port}", port)
    rate = lambda d: d["bytes"] / d["seconds"] / 1e9  # noqa: E731
    ratio = rate(proxied["download"]) / rate(direct["download"])
    added = (p50(proxied["latency"]["seconds"]) - p50(direct["latency"]["seconds"])) * 1000
    print(f"download {args.bytes / 1e9:.2f} GB: {rate(proxied['download']):.2f} GB/s through the proxy vs {rate(direct['download']):.2f} GB/s "
          f"direct = {ratio:.2f}x (goal >= 0.7)")
    print(f"per connection: p50 {p50(proxied['latency']['seconds']) * 1000:.2f} ms through the proxy vs "
          f"{p50(direct['latency']['seconds']) * 1000:.2f} ms direct = +{added:.2f} ms (goal <= 2 ms)")
    print(f"{args.connections} CONNECTs ({args.width} open at once): {proxied['connections']}; serve RSS idle {idle // 1024} MiB, "
          f"peak during the load {peak // 1024} MiB (+{(peak - idle) // 1024} MiB), after {after // 1024} MiB")
    reached = sum(entry.get("connections", 0) for entry in network.get("allowed", []))
    print(f"result network: {reached} connections reached, {sum(e.get('count', 0) for e in network.get('denied', []))} refused")


if __name__ == "__main__":
    main()
