#!/usr/bin/env python3
"""What holding many long-running agents costs `dispatch serve` (issue: scale). For each N: a `serve` with
--max-concurrent N holds N agents that only sleep (the canary's sleep scenario, host mode), and over --settle
seconds it prints serve's CPU, the machine's CPU against the same N bare `sleep`s (same run), serve's threads and
RSS (per run: what it grew by over the same serve idle, divided by N); then every run is cancelled and it prints
how many ended terminal. The goals (issue 23): at N = 200 serve <= 2 % of one core and <= 64 threads (not growing with N), all N terminal after the cancel, <= 64 KiB RSS per run.
"""
import argparse
import http.client
import json
import os
import subprocess
import tempfile
import time

from bench_serve import TOKEN, machine_busy_seconds, process_cpu_seconds, rss_kib, status_field


def threads_of(pid):
    return status_field(pid, "Threads")


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    reply = conn.getresponse()
    data = reply.read()
    conn.close()
    return reply.status, (json.loads(data) if data else None)


def start_serve(dispatch, env, work, arguments=()):
    """`dispatch serve` on a free port with its files in `work`, once it answers: the process and its port."""
    port_file = os.path.join(work, "port")
    server = subprocess.Popen([dispatch, "serve", "--port", "0", "--port-file", port_file, "--log-level", "error", *arguments],
                              env=env, stdin=subprocess.DEVNULL, cwd=work)
    for _ in range(600):
        if os.path.exists(port_file):
            break
        time.sleep(0.05)
    port = int(open(port_file).read())
    request(port, "GET", "/")
    return server, port


def bare_sleeps(count, settle):
    """The machine's CPU share (of one core) over `settle` seconds with `count` bare sleeps."""
    sleeps = [subprocess.Popen(["sleep", "3600"]) for _ in range(count)]
    try:
        time.sleep(1)
        busy = machine_busy_seconds()
        time.sleep(settle)
        return (machine_busy_seconds() - busy) / settle * 100
    finally:
        for s in sleeps:
            s.kill()
            s.wait()


def held(dispatch, count, settle):
    work = tempfile.mkdtemp(prefix="bench-scale-", dir="/var/tmp")
    env = dict(os.environ, DISPATCH_STATE_DIR=os.path.join(work, "state"), DISPATCH_TOKEN=TOKEN)
    # Host-mode canaries in a root-owned temp dir: a root runner leases them uids of their own.
    env.setdefault("DISPATCH_AGENT_USER", "root")
    server, port = start_serve(dispatch, env, work, ["--max-concurrent", str(count)])
    try:
        time.sleep(1)
        idle_rss = rss_kib(server.pid)
        ids = [f"scale-{count}-{i}" for i in range(count)]
        for rid in ids:
            request(port, "POST", "/internal/agent-dispatch", {"requestId": rid, "task": "hold", "tool": "canary", "timeout": 3600,
                                                               "cwd": work, "canary": {"scenario": "sleep-timeout", "sleepSeconds": 3000}})
        deadline = time.time() + 300
        while time.time() < deadline and request(port, "GET", "/")[1]["running"] < count:
            time.sleep(0.5)
        running = request(port, "GET", "/")[1]["running"]
        time.sleep(2)
        busy, own = machine_busy_seconds(), process_cpu_seconds(server.pid)
        time.sleep(settle)
        machine = (machine_busy_seconds() - busy) / settle * 100
        serve = (process_cpu_seconds(server.pid) - own) / settle * 100
        threads, rss = threads_of(server.pid), rss_kib(server.pid)
        for rid in ids:
            request(port, "POST", f"/internal/agent-cancel/{rid}")
        terminal = 0
        for rid in ids:
            status, data = request(port, "GET", f"/internal/agent-await/{rid}?timeoutMs=60000")
            terminal += status == 200 and data["result"]["status"] in ("completed", "failed", "cancelled")
        return running, serve, machine, threads, rss, idle_rss, terminal
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", work])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--counts", default="50,200,1000")
    parser.add_argument("--settle", type=float, default=10)
    args = parser.parse_args()
    dispatch = os.path.abspath(args.dispatch)
    for count in (int(c) for c in args.counts.split(",")):
        running, serve, machine, threads, rss, idle_rss, terminal = held(dispatch, count, args.settle)
        bare = bare_sleeps(count, args.settle)
        print(f"held {running}/{count}: serve {serve:.1f} % of a core, machine {machine:.1f} % vs {bare:.1f} % for {count} bare "
              f"sleeps, serve {threads} threads, RSS {rss // 1024} MiB ({(rss - idle_rss) // max(running, 1)} KiB per run over the "
              f"idle {idle_rss // 1024} MiB); "
              f"{terminal}/{count} terminal after cancel (goals at 200: <= 2 %, <= 64 threads; <= 64 KiB per run)")


if __name__ == "__main__":
    main()
