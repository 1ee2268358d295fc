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


def status_field(pid, name):
    """A number from /proc/PID/status (`VmRSS` in KiB, `Threads`), 0 when absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    return status_field(pid, "VmRSS")


def machine_busy_seconds():
    """Busy CPU time of the whole machine (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """utime + stime of `pid` itself (its threads, not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# serve refuses tokens under 32 characters.
TOKEN = "bench-0123456789abcdef0123456789abcdef"


def measure(dispatch, isolation, requests, concurrency):
    """One `serve` with DISPATCH_ISOLATION=`isolation`: its figures (seconds, KiB)."""
    work = tempfile.mkdtemp(prefix="bench-serve-")
    env = dict(os.environ)
    # Host-mode dispatches in root-owned temp dirs: the explicit opt-out a root runner needs for them (CONTRACT §7).
    env.setdefault("DISPATCH_AGENT_USER", "root")
    env.update({"DISPATCH_STATE_DIR": os.path.join(work, "state"), "DISPATCH_CODEX_BIN": os.path.join(HERE, "noop-bin", "codex"),
                "DISPATCH_TOKEN": TOKEN, "DISPATCH_ISOLATION": isolation})
    port_file = os.path.join(work, "port")
    server = subprocess.Popen([dispatch, "serve", "--port", "0", "--port-file", port_file, "--max-concurrent", str(concurrency),
                               "--log-level", "error"], env=env, stdin=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        port = int(open(port_file).read())
        time.sleep(0.5)
        idle = rss_kib(server.pid)

        noop = [env["DISPATCH_CODEX_BIN"], "exec", "--json", "--sandbox", "workspace-write", "noop"]
        spawn = []
        for _ in range(100):
            start = time.perf_counter()
            subprocess.run(noop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=True)
            spawn.append(time.perf_counter() - start)

        latencies, wakes, failures = [], [], []
        lock = threading.Lock()
        counter = iter(range(requests))

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
        busy, own = machine_busy_seconds(), process_cpu_seconds(server.pid)
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = time.perf_counter() - started
        busy, own = machine_busy_seconds() - busy, process_cpu_seconds(server.pid) - own
        after = rss_kib(server.pid)

        # Await wake on its own: a waiter parked before the result (asked right after the POST's answer, while the
        # canary's process is still being started), woken by the commit.
        own_wakes = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for index in range(50):
            rid = f"wake-{index}"
            conn.request("POST", "/internal/agent-dispatch", json.dumps({"requestId": rid, "task": "noop", "tool": "canary",
                                                                            "canary": {"scenario": "sleep-timeout", "sleepSeconds": 0}}), headers)
            conn.getresponse().read()
            conn.request("GET", f"/internal/agent-await/{rid}?timeoutMs=30000", headers=headers)
            data = json.loads(conn.getresponse().read())
            own_wakes.append(time.time() - parse(data["result"]["completedAt"]))
        return {"rate": len(latencies) / total, "p50": pct(latencies, 50), "p99": pct(latencies, 99), "spawn": pct(spawn, 50),
                "failures": len(failures), "failed": failures, "wake50": pct(wakes, 50), "wake99": pct(wakes, 99), "parked50": pct(own_wakes, 50),
                "parked99": pct(own_wakes, 99), "idle": idle, "after": after,
                "cpu": busy / max(1, len(latencies)), "serve_cpu": own / max(1, len(latencies))}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    dispatch = os.path.abspath(args.dispatch)
    ms = lambda s: f"{s * 1000:.1f} ms"
    figures = {}
    for isolation in ("auto", "none"):
        f = measure(dispatch, isolation, args.requests, args.concurrency)
        figures[isolation] = f
        label = "isolation auto (bwrap where it works)" if isolation == "auto" else "isolation none"
        print(f"dispatch serve, {label}, {args.requests} no-op dispatches at concurrency {args.concurrency}: "
              f"{f['rate']:.0f} completions/s (target >= 500), POST->terminal p50 {ms(f['p50'])} p99 {ms(f['p99'])} (target <= 25 ms); "
              f"bare spawn of the no-op p50 {ms(f['spawn'])} -> p50 ratio {f['p50'] / f['spawn']:.1f}x; failures {f['failures']}")
        for failure in f["failed"][:3]:
            print(f"  failed: {json.dumps(failure)[:600]}")
        print(f"  await wake (receipt - completedAt, ms-resolution stamps): under load p50 {ms(f['wake50'])} p99 {ms(f['wake99'])}; "
              f"parked waiter p50 {ms(f['parked50'])} p99 {ms(f['parked99'])} (target p99 <= 2 ms)")
        print(f"  server RSS: idle {f['idle'] / 1024:.1f} MiB (target <= 30 MiB), after the run {f['after'] / 1024:.1f} MiB")
        cores = os.cpu_count() or 1
        print(f"  CPU per dispatch (the whole machine, load generator included): {ms(f['cpu'])}, of which serve's own threads "
              f"{ms(f['serve_cpu'])} and its agents' processes (monitor, bubblewrap, agent) the rest -> at most "
              f"{cores / f['cpu']:.0f}/s on {cores} cores")
    on, off = figures["auto"], figures["none"]
    print(f"isolation cost in serve (same run): completions/s {on['rate']:.0f} vs {off['rate']:.0f} without ({on['rate'] / off['rate']:.2f}x), "
          f"p50 {ms(on['p50'])} vs {ms(off['p50'])} ({on['p50'] / off['p50']:.2f}x)")


if __name__ == "__main__":
    main()
