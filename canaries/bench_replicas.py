#!/usr/bin/env python3
"""Benchmark of `dispatch serve` on its two stores (replicas issue), loopback only, every figure from one run:

- no-op dispatch throughput and POST->terminal p50/p99 for 1 replica on SQLite, 1 on PostgreSQL and 2 on PostgreSQL
  (requests spread over both), at the same concurrency;
- cross-replica await wake: a waiter on one replica for a request run by the other, receipt minus `completedAt`.

Starts its own throwaway PostgreSQL (`.ci/postgres.sh`) unless DISPATCH_TEST_DATABASE_URL names one.
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
import urllib.parse
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOKEN = "bench-0123456789abcdef0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def parse(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def fresh_database(server_url, name):
    parts = urllib.parse.urlsplit(server_url)
    password = parts.password or ""
    bare = parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()
    subprocess.run(["psql", bare, "-qc", f"CREATE DATABASE {name}"], check=True, env={**os.environ, "PGPASSWORD": password})
    return parts._replace(path=f"/{name}").geturl()


class Serve:
    def __init__(self, dispatch, state, concurrency, extra_env=None):
        env = dict(os.environ)
        # Host-mode dispatches in root-owned temp dirs: the explicit opt-out a root runner needs for them (CONTRACT §7).
        env.setdefault("DISPATCH_AGENT_USER", "root")
        env.update({"DISPATCH_STATE_DIR": state, "DISPATCH_CODEX_BIN": os.path.join(HERE, "noop-bin", "codex"),
                    "DISPATCH_TOKEN": TOKEN})
        env.update(extra_env or {})
        port_file = f"{state}.port"
        self.process = subprocess.Popen([dispatch, "serve", "--port", "0", "--port-file", port_file, "--max-concurrent",
                                         str(concurrency), "--log-level", "error"], env=env, stdin=subprocess.DEVNULL)
        while not os.path.exists(port_file):
            time.sleep(0.01)
        self.port = int(open(port_file).read())

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def load(replicas, requests, concurrency, label):
    latencies, failures = [], []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(slot):
        conns = [replica.connection() for replica in replicas]
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            conn = conns[index % len(conns)]
            rid = f"{label}-{index}"
            start = time.perf_counter()
            conn.request("POST", "/internal/agent-dispatch", json.dumps({"requestId": rid, "task": "noop", "tool": "codex"}), HEADERS)
            conn.getresponse().read()
            conn.request("GET", f"/internal/agent-await/{rid}?timeoutMs=30000", headers=HEADERS)
            answer = conn.getresponse()
            data = json.loads(answer.read())
            elapsed = time.perf_counter() - start
            with lock:
                if answer.status != 200 or data["result"]["status"] != "completed":
                    failures.append(data)
                else:
                    latencies.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.perf_counter() - started
    return len(latencies) / total, pct(latencies, 50), pct(latencies, 99), len(failures)


def wake(owner, waiter, count):
    lags = []
    post, wait = owner.connection(), waiter.connection()
    for index in range(count):
        rid = f"wake-{index}"
        post.request("POST", "/internal/agent-dispatch", json.dumps({"requestId": rid, "task": "noop", "tool": "codex"}), HEADERS)
        post.getresponse().read()
        wait.request("GET", f"/internal/agent-await/{rid}?timeoutMs=30000", headers=HEADERS)
        data = json.loads(wait.getresponse().read())
        lags.append(time.time() - parse(data["result"]["completedAt"]))
    return pct(lags, 50), pct(lags, 99)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    dispatch = os.path.abspath(args.dispatch)
    work = tempfile.mkdtemp(prefix="bench-replicas-")
    os.chmod(work, 0o755)
    server = os.environ.get("DISPATCH_TEST_DATABASE_URL")
    cluster = None
    if not server:
        cluster = os.path.join(work, "cluster")
        server = subprocess.run(["bash", os.path.join(ROOT, ".ci", "postgres.sh"), "start", cluster], check=True,
                                capture_output=True, text=True).stdout.strip()
    try:
        figures = {}
        sqlite = Serve(dispatch, os.path.join(work, "sqlite"), args.concurrency)
        try:
            figures["1 replica, SQLite"] = load([sqlite], args.requests, args.concurrency, "sqlite")
        finally:
            sqlite.stop()
        one = fresh_database(server, "bench_one")
        pg = Serve(dispatch, os.path.join(work, "pg-1"), args.concurrency, {"DISPATCH_DATABASE_URL": one})
        try:
            figures["1 replica, PostgreSQL"] = load([pg], args.requests, args.concurrency, "pg1")
        finally:
            pg.stop()
        two = fresh_database(server, "bench_two")
        pair = [Serve(dispatch, os.path.join(work, f"pg-2{name}"), args.concurrency // 2 or 1, {"DISPATCH_DATABASE_URL": two})
                for name in "ab"]
        try:
            figures["2 replicas, PostgreSQL"] = load(pair, args.requests, args.concurrency, "pg2")
            wake_p50, wake_p99 = wake(pair[0], pair[1], 50)
        finally:
            for replica in pair:
                replica.stop()
        base = figures["1 replica, SQLite"][0]
        for label, (rate, p50, p99, failures) in figures.items():
            print(f"serve, {args.requests} no-op dispatches at concurrency {args.concurrency}, {label}: {rate:.0f} completions/s "
                  f"({rate / base:.2f}x SQLite), POST->terminal p50 {p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms; failures {failures}")
        print(f"cross-replica await wake (receipt - completedAt, ms-resolution stamps): p50 {wake_p50 * 1000:.1f} ms "
              f"p99 {wake_p99 * 1000:.1f} ms over 50 requests")
    finally:
        if cluster:
            subprocess.run(["bash", os.path.join(ROOT, ".ci", "postgres.sh"), "stop", cluster])


if __name__ == "__main__":
    main()
