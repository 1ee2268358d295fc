#!/usr/bin/env python3
"""Warm pool benchmark (issue 15): sandbox no-op dispatches at one baseSha through `serve`, without a pool and with
`DISPATCH_WARM_SANDBOXES=2`, same run, same repository (FILES files of BYTES bytes, objects in one pack).

For each request: the time from the result's `startedAt` to its first attempt's start (plan + checkout or claim +
spawn: what the pool takes off the critical path), and POST → terminal. With the pool each request waits until the
pool is full again, so every one is a claim. Prints medians, p90 and the ratios.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_reattach import Serve, parse  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def ready(state):
    root = os.path.join(state, "sandboxes", ".warm")
    try:
        return [e for e in os.listdir(root) if not e.endswith(".partial")]
    except FileNotFoundError:
        return []


def run(dispatch, work, repo, base, warm, count):
    state = os.path.join(work, f"state-{warm}")
    serve = Serve(dispatch, state, {"DISPATCH_WARM_SANDBOXES": str(warm)} if warm else {})
    to_agent, total = [], []
    try:
        for index in range(count + 1):
            if warm:
                end = time.time() + 120
                while len(ready(state)) < warm and time.time() < end:
                    time.sleep(0.01)
            rid = f"warm{warm}-{index}"
            start = time.perf_counter()
            serve.call("POST", "/internal/agent-dispatch",
                       {"requestId": rid, "task": "noop", "tool": "codex", "executionMode": "sandbox", "cwd": repo, "baseSha": base})
            result = serve.wait(rid)
            elapsed = (time.perf_counter() - start) * 1000
            if result["status"] != "completed":
                sys.exit(f"{rid}: {result['status']}: {result.get('error')}")
            if index == 0:
                continue  # the first at a commit checks out afresh in both: the pool starts filling after it
            to_agent.append((parse(result["attempts"][0]["startedAt"]) - parse(result["startedAt"])) * 1000)
            total.append(elapsed)
    finally:
        serve.stop()
    return to_agent, total


def quantiles(values):
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.9))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--bytes", type=int, default=1024)
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-warm-")
    try:
        repo = os.path.join(work, "repo")
        subprocess.run([sys.executable, os.path.join(HERE, "make_tree.py"), repo, str(args.files), str(args.bytes)], check=True)
        base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
        cold_agent, cold_total = run(args.dispatch, work, repo, base, 0, args.count)
        warm_agent, warm_total = run(args.dispatch, work, repo, base, 2, args.count)
        (ca50, ca90), (wa50, wa90) = quantiles(cold_agent), quantiles(warm_agent)
        (ct50, ct90), (wt50, wt90) = quantiles(cold_total), quantiles(warm_total)
        print(f"warm pool, {args.files} files x {args.bytes} B, {args.count} sandbox no-op dispatches each:")
        print(f"  start -> agent start: no pool p50 {ca50:.1f} ms p90 {ca90:.1f} ms; pool of 2 p50 {wa50:.1f} ms p90 {wa90:.1f} ms "
              f"({wa50 / ca50:.3f}x)")
        print(f"  POST -> terminal:     no pool p50 {ct50:.1f} ms p90 {ct90:.1f} ms; pool of 2 p50 {wt50:.1f} ms p90 {wt90:.1f} ms "
              f"({wt50 / ct50:.3f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
