#!/usr/bin/env python3
"""Benchmark for `dispatch serve` (issue 4), loopback only. Prints figures and ratios measured in one run.

- 2,000 no-op dispatches at concurrency 8: POST -> terminal latency p50/p99 and completions/s,
  against a bare spawn of the same no-op agent measured in the same run.
- Await wake latency: client receipt of the long-poll answer minus the result's `completedAt`.
- Server RSS idle and after the run.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def parse(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# serve refuses tokens under 32 characters.
TOKEN = "bench-0123456789abcdef0123456789abcdef"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    dispatch = os.path.abspath(args.dispatch)

    work = tempfile.mkdtemp(prefix="bench-serve-")
    env = dict(os.environ)
    env.update({"DISPATCH_STATE_DIR": os.path.join(work, "state"), "DISPATCH_CODEX_BIN": os.path.join(HERE, "noop-bin", "codex"),
                "DISPATCH_TOKEN": TOKEN})
    port_file = os.path.join(work, "port")
    server = subprocess.Popen([dispatch, "serve", "--port", "0", "--port-file", port_file, "--max-concurrent", str(args.concurrency),
                               "--log-level", "error"], env=env, stdin=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        port = int(open(port_file).read())
        time.sleep(0.5)
        idle = rss_kib(server.pid)

        noop = [env["DISPATCH_CODEX_BIN"], "exec", "--full-auto", "--json", "noop"]
        spawn = []
        for _ in range(100):
            start = time.perf_counter()
            subprocess.run(noop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=True)
            spawn.append(time.perf_counter() - start)

        latencies, wakes, failures = [], [], []
        lock = threading.Lock()
        counter = iter(range(args.requests))

        def worker():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                body = json.dumps({"requestId": f"bench-{index}", "task": "noop", "tool": "codex"})
                start = time.perf_counter()
                conn.request("POST", "/internal/agent-dispatch", body, headers)
                reply = conn.getresponse()
                reply.read()
                conn.request("GET", f"/internal/agent-await/bench-{index}?timeoutMs=30000", headers=headers)
                answer = conn.getresponse()
                data = json.loads(answer.read())
                received = time.time()
                elapsed = time.perf_counter() - start
                with lock:
                    if answer.status != 200 or data["result"]["status"] != "completed":
                        failures.append(data)
                        continue
                    latencies.append(elapsed)
                    wakes.append(received - parse(data["result"]["completedAt"]))

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = time.perf_counter() - started
        after = rss_kib(server.pid)

        # Await wake measured on its own: waiters parked before completion, woken by the commit.
        own_wakes = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        slow = dict(env)
        for index in range(50):
            rid = f"wake-{index}"
            conn.request("POST", "/internal/agent-dispatch", json.dumps({"requestId": rid, "task": "noop", "tool": "canary",
                                                                            "canary": {"scenario": "sleep-timeout", "sleepSeconds": 0}}), headers)
            conn.getresponse().read()
            conn.request("GET", f"/internal/agent-await/{rid}?timeoutMs=30000", headers=headers)
            data = json.loads(conn.getresponse().read())
            own_wakes.append(time.time() - parse(data["result"]["completedAt"]))

        ms = lambda s: f"{s * 1000:.1f} ms"
        print(f"dispatch serve, {args.requests} no-op dispatches at concurrency {args.concurrency}: "
              f"{len(latencies) / total:.0f} completions/s (target >= 200), POST->terminal p50 {ms(pct(latencies, 50))} "
              f"p99 {ms(pct(latencies, 99))}; bare spawn of the no-op p50 {ms(pct(spawn, 50))} "
              f"-> p50 ratio {pct(latencies, 50) / pct(spawn, 50):.1f}x; failures {len(failures)}")
        print(f"await wake (receipt - completedAt, ms-resolution stamps): under load p50 {ms(pct(wakes, 50))} p99 {ms(pct(wakes, 99))}; "
              f"parked waiter p50 {ms(pct(own_wakes, 50))} p99 {ms(pct(own_wakes, 99))} (target p99 <= 5 ms)")
        print(f"server RSS: idle {idle / 1024:.1f} MiB (target <= 40 MiB), after the run {after / 1024:.1f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
