#!/usr/bin/env python3
"""Benchmark of huge agent output (issue 10): `dispatch run` of an agent printing 2 GB, in 100-byte lines and in
one line, against `cat FILE > /dev/null` of the same 2 GB in the same run. Prints wall time and peak RSS, and
the ratio to the baseline. The log limit is raised above 2 GB so the whole output is taken in.
"""
import argparse
import os
import subprocess
import tempfile
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_run import peak_rss_kib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 2_000_000_000


def measured(argv, env, cwd):
    """Wall time (s) and peak RSS (MiB) of one command, through bench_run's fork/wait4 helper."""
    start = time.perf_counter()
    rss = peak_rss_kib(argv, env, cwd)
    return time.perf_counter() - start, rss / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-output-")
    # Host-mode dispatches in root-owned temp dirs: the explicit opt-out a root runner needs for them (CONTRACT §7).
    env = dict(os.environ, DISPATCH_AGENT_USER=os.environ.get("DISPATCH_AGENT_USER", "root"), DISPATCH_STATE_DIR=f"{work}/state", DISPATCH_CODEX_BIN=f"{HERE}/bin/codex",
               DISPATCH_MAX_LOG_BYTES=str(SIZE * 2))
    rows = []
    for name, task in [("2 GB in 100-byte lines", f"fake:big-output={SIZE} fake:answer=ok"),
                       ("2 GB in one line", f"fake:big-lines=1:{SIZE} fake:answer=ok")]:
        request = name.split()[-2]
        seconds, rss = measured([args.dispatch, "run", "--tool", "codex", "--task", task, "--request-id", request, "--json"], env, work)
        log = f"{work}/state/runs/{request}/attempt-1.stdout.log"
        base_seconds, base_rss = measured(["/bin/sh", "-c", f"cat '{log}' > /dev/null"], env, work)
        os.remove(log)
        # The agent alone, writing the same output to a file: what dispatch adds is the difference.
        alone, alone_rss = measured(
            ["/bin/sh", "-c", f"'{HERE}/bin/codex' exec --json --skip-git-repo-check --sandbox workspace-write \"$0\" > '{work}/alone.log'", task], env, work)
        os.remove(f"{work}/alone.log")
        rows.append((name, seconds, rss, base_seconds, base_rss, alone, alone_rss))
    for name, seconds, rss, base_seconds, base_rss, alone, alone_rss in rows:
        print(f"output {name}: dispatch run {seconds:.2f} s, peak RSS {rss:.0f} MiB; "
              f"the agent alone {alone:.2f} s, {alone_rss:.0f} MiB; cat of the same file {base_seconds:.2f} s, {base_rss:.0f} MiB; "
              f"dispatch/agent-alone {seconds / alone:.2f}x, dispatch/cat {seconds / base_seconds:.1f}x "
              f"(peak RSS is the largest process of the tree)")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
