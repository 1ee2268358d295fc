#!/usr/bin/env python3
"""Benchmarks for `dispatch run` (issue 2). Prints figures and ratios measured in one run.

1. Overhead: `dispatch run` of a no-op agent vs running the no-op directly (median wall time, peak RSS).
2. Exit-to-terminal latency with an orphan holding stderr for 30 s (the fake codex's `fake:orphan-stderr=30`).
"""
import argparse
import sys
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(argv, env=None, cwd=None):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    return elapsed, out.decode(), err.decode(), proc.returncode


def peak_rss_kib(argv, env, cwd):
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_maxrss


def parse(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--latency-runs", type=int, default=5)
    args = parser.parse_args()
    args.dispatch = os.path.abspath(args.dispatch)

    work = tempfile.mkdtemp(prefix="bench-run-")
    env = dict(os.environ)
    env["DISPATCH_STATE_DIR"] = os.path.join(work, "state")
    # Host-mode dispatches in root-owned temp dirs: the explicit opt-out a root runner needs for them (CONTRACT §7).
    env.setdefault("DISPATCH_AGENT_USER", "root")
    env["DISPATCH_CODEX_BIN"] = os.path.join(HERE, "noop-bin", "codex")
    noop = [env["DISPATCH_CODEX_BIN"], "exec", "--json", "--sandbox", "workspace-write", "noop"]

    # Warm up both paths (page cache, database creation).
    timed(noop, env, work)
    timed([args.dispatch, "run", "--tool", "codex", "--task", "noop", "--json"], env, work)

    direct, via = [], []
    for i in range(args.runs):
        direct.append(timed(noop, env, work)[0])
        elapsed, out, err, code = timed([args.dispatch, "run", "--tool", "codex", "--task", "noop", "--json"], env, work)
        if code != 0:
            raise SystemExit(f"dispatch run failed: {err}")
        via.append(elapsed)
    direct_ms = statistics.median(direct) * 1000
    via_ms = statistics.median(via) * 1000
    rss_direct = peak_rss_kib(noop, env, work)
    rss_via = peak_rss_kib([args.dispatch, "run", "--tool", "codex", "--task", "noop", "--json"], env, work)

    print(f"overhead: no-op agent direct median {direct_ms:.1f} ms, via `dispatch run` {via_ms:.1f} ms "
          f"-> added {via_ms - direct_ms:.1f} ms (target <= 15 ms added), ratio {via_ms / direct_ms:.1f}x over {args.runs} runs")
    print(f"peak RSS: no-op direct {rss_direct} KiB, `dispatch run` {rss_via} KiB")

    # Start-up alone: `dispatch --version` against the smallest process start, `/bin/true`, interleaved.
    version, true = [], []
    for i in range(args.runs):
        true.append(timed(["/bin/true"], env, work)[0])
        version.append(timed([args.dispatch, "--version"], env, work)[0])
    version_ms, true_ms = statistics.median(version) * 1000, statistics.median(true) * 1000
    print(f"start-up: `dispatch --version` median {version_ms:.1f} ms (target <= 10 ms), `/bin/true` {true_ms:.1f} ms "
          f"-> ratio {version_ms / true_ms:.1f}x over {args.runs} runs")

    # The cost of traces (CONTRACT §11): the same no-op dispatch with an OTLP endpoint (a receiver of our own on
    # loopback; the spans are sent before `dispatch run` exits) and without one, interleaved.
    receiver_dir = tempfile.mkdtemp(prefix="bench-otlp-")
    port_file = os.path.join(receiver_dir, "port")
    receiver = subprocess.Popen([sys.executable, os.path.join(HERE, "otlp_receiver.py"), "--log", os.path.join(receiver_dir, "spans"),
                                 "--port-file", port_file], stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        traced_env = dict(env, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{open(port_file).read().strip()}",
                          OTEL_EXPORTER_OTLP_PROTOCOL="http/json")
        by_tracing = {"off": [], "on": []}
        for i in range(args.runs):
            for mode, mode_env in (("off", env), ("on", traced_env)):
                elapsed, out, err, code = timed([args.dispatch, "run", "--tool", "codex", "--task", "noop", "--json"], mode_env, work)
                if code != 0:
                    raise SystemExit(f"dispatch run (tracing {mode}) failed: {err}")
                by_tracing[mode].append(elapsed)
        off_ms, on_ms = (statistics.median(by_tracing[m]) * 1000 for m in ("off", "on"))
        spans = sum(1 for _ in open(os.path.join(receiver_dir, "spans")))
        print(f"traces: no-op `dispatch run` median {off_ms:.1f} ms without an OTLP endpoint, {on_ms:.1f} ms with one "
              f"-> added {on_ms - off_ms:.1f} ms, ratio {on_ms / off_ms:.2f}x over {args.runs} runs each ({spans} spans received)")
    finally:
        receiver.kill()
        receiver.wait()
        shutil.rmtree(receiver_dir, ignore_errors=True)

    # The cost of the namespaces: the same no-op dispatch with and without bubblewrap, interleaved.
    if shutil.which("bwrap"):
        by_mode = {"none": [], "bwrap": []}
        for i in range(args.runs):
            for mode in by_mode:
                elapsed, out, err, code = timed(
                    [args.dispatch, "run", "--tool", "codex", "--task", "noop", "--json"], dict(env, DISPATCH_ISOLATION=mode), work)
                if code != 0:
                    raise SystemExit(f"dispatch run ({mode}) failed: {err}")
                by_mode[mode].append(elapsed)
        none_ms, bwrap_ms = (statistics.median(by_mode[m]) * 1000 for m in ("none", "bwrap"))
        print(f"isolation: no-op `dispatch run` median {none_ms:.1f} ms without bubblewrap, {bwrap_ms:.1f} ms with "
              f"-> added {bwrap_ms - none_ms:.1f} ms (target <= 10 ms), ratio {bwrap_ms / none_ms:.2f}x over {args.runs} runs each")

    # The cost of agent users (a root runner): a host-mode no-op dispatch as the work dir's owner (a uid switch by
    # setpriv, the run's home given to it) against the same as root (DISPATCH_AGENT_USER=root, no switch), interleaved.
    # The sandbox's uid lease and checkout chown are measured beside the checkout by `DispatchBench`.
    if shutil.which("bwrap") and os.geteuid() == 0:
        owned = os.path.join(work, "owned")
        os.makedirs(owned, exist_ok=True)
        os.chmod(work, 0o755)
        os.chown(owned, 60999, 60999)
        by_user = {"root": [], "owner": []}
        argv = [args.dispatch, "run", "--tool", "codex", "--task", "noop", "--json"]
        for i in range(args.runs):
            for user, cwd in (("root", work), ("owner", owned)):
                elapsed, out, err, code = timed(argv, dict(env, DISPATCH_ISOLATION="bwrap", DISPATCH_AGENT_USER="root"), cwd)
                if code != 0:
                    raise SystemExit(f"dispatch run as {user} failed: {err} {out}")
                by_user[user].append(elapsed)
        root_ms, owner_ms = (statistics.median(by_user[u]) * 1000 for u in ("root", "owner"))
        print(f"agent users: no-op host-mode `dispatch run` median {root_ms:.1f} ms as root (DISPATCH_AGENT_USER=root), "
              f"{owner_ms:.1f} ms as the work dir's owner -> added {owner_ms - root_ms:.1f} ms, ratio {owner_ms / root_ms:.2f}x "
              f"over {args.runs} runs each")

    fake_env = dict(env)
    fake_env["DISPATCH_CODEX_BIN"] = os.path.join(HERE, "bin", "codex")
    latencies, walls = [], []
    for i in range(args.latency_runs):
        elapsed, out, err, code = timed(
            [args.dispatch, "run", "--tool", "codex", "--task", "fake:orphan-stderr=30 fake:stderr=parent fake:exit=7", "--json"],
            fake_env, work)
        result = json.loads(out)
        attempt = result["attempts"][-1]
        exit_at = parse(attempt["startedAt"]) + attempt["durationMs"] / 1000
        latencies.append((parse(result["completedAt"]) - exit_at) * 1000)
        walls.append(elapsed * 1000)
    print(f"exit-to-terminal with an orphan holding stderr 30 s: median {statistics.median(latencies):.1f} ms, "
          f"max {max(latencies):.1f} ms (target <= 100 ms); whole `dispatch run` median {statistics.median(walls):.0f} ms")


if __name__ == "__main__":
    main()
