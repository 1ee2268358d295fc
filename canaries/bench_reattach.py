#!/usr/bin/env python3
"""Benchmark of runs that outlive `serve` (isolation issue), loopback only. Figures and ratios from one run.

1. Monitor cost: sequential no-op dispatches through `serve` with each attempt held by `dispatch-monitor` vs the
   same with the monitor turned off (DISPATCH_MONITOR_BIN pointing nowhere), both under bubblewrap.
2. Re-attach after kill -9: N runs whose agents finished while no serve was up are collected by a new serve;
   time from its spawn to all N terminal, against the same serve's start-up on an empty state dir.
3. Adopted run's end: for runs adopted while their agents still work, completedAt minus the monitor's recorded end of
   the agent, against the same figure for runs the serve started itself.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "bench-0123456789abcdef0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def parse(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class Serve:
    def __init__(self, dispatch, state, extra_env=None, agent="noop"):
        self.env = dict(os.environ)
        # Host-mode dispatches in root-owned temp dirs: the explicit opt-out a root runner needs for them (CONTRACT §7).
        self.env.setdefault("DISPATCH_AGENT_USER", "root")
        codex = os.path.join(HERE, "noop-bin", "codex") if agent == "noop" else os.path.join(HERE, "bin", "codex")
        self.env.update({"DISPATCH_STATE_DIR": state, "DISPATCH_CODEX_BIN": codex, "DISPATCH_TOKEN": TOKEN,
                         "DISPATCH_ISOLATION": "bwrap"})
        self.env.update(extra_env or {})
        self.port_file = f"{state}.port-{time.monotonic_ns()}"
        self.spawned = time.perf_counter()
        self.process = subprocess.Popen([dispatch, "serve", "--port", "0", "--port-file", self.port_file, "--max-concurrent", "8",
                                         "--log-level", "error"], env=self.env, stdin=subprocess.DEVNULL)
        while not os.path.exists(self.port_file):
            time.sleep(0.002)
        self.listening = time.perf_counter()
        self.port = int(open(self.port_file).read())
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def call(self, method, path, body=None):
        self.conn.request(method, path, json.dumps(body) if body is not None else None, HEADERS)
        reply = self.conn.getresponse()
        return json.loads(reply.read())

    def dispatch(self, rid, task):
        return self.call("POST", "/internal/agent-dispatch", {"requestId": rid, "task": task, "tool": "codex"})

    def wait(self, rid):
        return self.call("GET", f"/internal/agent-await/{rid}?timeoutMs=60000")["result"]

    def stop(self, sig=15):
        self.process.send_signal(sig)
        self.process.wait(timeout=30)


def monitors_of(state, ids):
    return [os.path.join(state, "runs", rid, "attempt-1") for rid in ids]


def wait_for(paths, suffix, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if all(os.path.exists(p + suffix) for p in paths):
            return True
        time.sleep(0.01)
    return False


def monitor_cost(dispatch, work, runs):
    medians = {}
    for label, extra in (("with monitor", {}), ("without monitor", {"DISPATCH_MONITOR_BIN": "/nonexistent"})):
        serve = Serve(dispatch, os.path.join(work, label.replace(" ", "-")), extra)
        try:
            times = []
            for index in range(runs + 5):
                start = time.perf_counter()
                serve.dispatch(f"cost-{index}", "noop")
                result = serve.wait(f"cost-{index}")
                assert result["status"] == "completed", result
                if index >= 5:
                    times.append(time.perf_counter() - start)
            medians[label] = statistics.median(times)
        finally:
            serve.stop()
    with_, without = medians["with monitor"], medians["without monitor"]
    print(f"monitor cost, {runs} sequential no-op dispatches through serve under bubblewrap: POST->terminal median "
          f"{with_ * 1000:.1f} ms with dispatch-monitor vs {without * 1000:.1f} ms without -> +{(with_ - without) * 1000:.1f} ms "
          f"({with_ / without:.2f}x)")


def reattach(dispatch, work, count):
    state = os.path.join(work, "reattach")
    ids = [f"finished-{i}" for i in range(count)]
    first = Serve(dispatch, state, agent="fake")
    for rid in ids:
        first.dispatch(rid, "fake:sleep=0.5 fake:answer=collected")
    wait_for(monitors_of(state, ids), ".monitor")
    first.stop(9)
    assert wait_for(monitors_of(state, ids), ".status"), "the monitors recorded the agents' ends"
    second = Serve(dispatch, state, agent="fake")
    try:
        results = [second.wait(rid) for rid in ids]
        collected = time.perf_counter() - second.spawned
        assert all(r["status"] == "completed" and r["result"] == "collected" for r in results), results
    finally:
        second.stop()
    empty = Serve(dispatch, os.path.join(work, "empty"), agent="fake")
    startup = empty.listening - empty.spawned
    empty.stop()
    print(f"re-attach after kill -9: {count} runs that finished while no serve was up, all terminal {collected * 1000:.0f} ms "
          f"after the new serve was spawned; serve start-up alone (empty state dir) {startup * 1000:.0f} ms -> "
          f"{(collected - startup) * 1000:.0f} ms to adopt {count} runs ({collected / startup:.2f}x start-up)")


def adopted_end(dispatch, work, count):
    state = os.path.join(work, "adopted")
    ids = [f"adopted-{i}" for i in range(count)]
    first = Serve(dispatch, state, agent="fake")
    own = []
    for rid in [f"own-{i}" for i in range(count)]:
        first.dispatch(rid, "fake:sleep=0.2 fake:answer=own")
        result = first.wait(rid)
        ended = json.load(open(os.path.join(state, "runs", rid, "attempt-1.status")))["endedAtMs"] / 1000
        own.append(parse(result["completedAt"]) - ended)
    for rid in ids:
        first.dispatch(rid, "fake:sleep=3 fake:answer=adopted")
    wait_for(monitors_of(state, ids), ".monitor")
    first.stop(9)
    second = Serve(dispatch, state, agent="fake")
    lags = []
    try:
        for rid in ids:
            result = second.wait(rid)
            assert result["status"] == "completed" and result["result"] == "adopted", result
            ended = json.load(open(os.path.join(state, "runs", rid, "attempt-1.status")))["endedAtMs"] / 1000
            lags.append(parse(result["completedAt"]) - ended)
    finally:
        second.stop()
    print(f"adopted run's end: completedAt - the agent's recorded end, median {statistics.median(lags) * 1000:.1f} ms for "
          f"{count} adopted runs vs {statistics.median(own) * 1000:.1f} ms for {count} runs the serve started itself "
          f"(ms-resolution stamps)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()
    dispatch = os.path.abspath(args.dispatch)
    if subprocess.run(["bwrap", "--unshare-pid", "--bind", "/", "/", "true"], capture_output=True).returncode != 0:
        print("re-attach benchmark skipped: bubblewrap does not work here")
        return
    work = tempfile.mkdtemp(prefix="bench-reattach-")
    monitor_cost(dispatch, work, args.runs)
    reattach(dispatch, work, args.count)
    adopted_end(dispatch, work, args.count)


if __name__ == "__main__":
    main()
