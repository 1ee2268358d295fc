#!/usr/bin/env python3
"""The real CLIs' dispatch overhead (issue: the real agents): real codex and Claude Code through `dispatch run`
against the same CLI run directly, both against the same loopback model stub, interleaved, median of --runs each.
Goal: <= 1.2x or <= 60 ms added. Direct runs get a fresh home holding the same config, as each dispatch's own home
does; dispatches run in a repository of their own, host mode, under the runner's default isolation.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLIS = os.environ.get("DISPATCH_REAL_CLIS", "/var/cache/agent-dispatch/clis")


def timed(argv, env, cwd):
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]} {proc.stdout.decode()[-2000:]}")
    return elapsed


def codex_config(port):
    return (f'model = "gpt-5.4"\nmodel_provider = "stub"\ncheck_for_update_on_startup = false\n[model_providers.stub]\n'
            f'name = "stub"\nbase_url = "http://127.0.0.1:{port}/v1"\nwire_api = "responses"\nrequest_max_retries = 0\n'
            f'[analytics]\nenabled = false\n[features]\nplugins = false\n')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatch", required=True)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    dispatch = os.path.abspath(args.dispatch)
    codex = os.path.join(CLIS, "codex-0.147.0", "codex")
    claude = os.path.join(CLIS, "claude-sdk-0.2.189", "claude")
    if not (os.access(codex, os.X_OK) and os.access(claude, os.X_OK)):
        raise SystemExit(f"the real CLIs are not in {CLIS} (make test-deps installs them)")
    work = tempfile.mkdtemp(prefix="bench-real-cli-", dir="/var/tmp")
    os.chmod(work, 0o755)
    stubs = []
    try:
        ports = {}
        for kind in ("openai", "anthropic"):
            port_file = os.path.join(work, f"{kind}.port")
            stubs.append(subprocess.Popen([sys.executable, os.path.join(HERE, f"model_stub_{kind}.py"), "--port", "0",
                                           "--port-file", port_file], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for _ in range(200):
                if os.path.exists(port_file):
                    break
                time.sleep(0.05)
            ports[kind] = int(open(port_file).read().strip())
        agent_home = os.path.join(work, "agent-home")
        os.makedirs(os.path.join(agent_home, ".codex"))
        with open(os.path.join(agent_home, ".codex", "config.toml"), "w") as f:
            f.write(codex_config(ports["openai"]))
        repo = os.path.join(work, "repo")
        os.makedirs(repo)
        subprocess.run(["git", "init", "-q", repo], check=True)
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "OPENAI_API_KEY": "stub", "ANTHROPIC_API_KEY": "stub",
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{ports['anthropic']}", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "IS_SANDBOX": "1"}
        via_env = dict(base, DISPATCH_STATE_DIR=os.path.join(work, "state"), DISPATCH_AGENT_HOME=agent_home,
                       DISPATCH_CODEX_BIN=codex, DISPATCH_CLAUDE_BIN=claude, DISPATCH_AGENT_USER="root",
                       DISPATCH_AGENT_ENV="IS_SANDBOX", HOME=work)
        direct_argv = {
            "codex": [codex, "exec", "--json", "--dangerously-bypass-approvals-and-sandbox", "stub:answer=bench"],
            "claude": [claude, "-p", "stub:answer=bench", "--dangerously-skip-permissions", "--output-format", "stream-json",
                       "--verbose"],
        }
        for tool in ("codex", "claude"):
            direct, via = [], []
            for i in range(args.runs + 1):
                home = os.path.join(work, f"home-{tool}-{i}")
                shutil.copytree(agent_home, home)
                d = timed(direct_argv[tool], dict(base, HOME=home), repo)
                v = timed([dispatch, "run", "--tool", tool, "--task", "stub:answer=bench", "--json"], via_env, repo)
                if i > 0:  # the first round warms the page cache
                    direct.append(d)
                    via.append(v)
            d_ms, v_ms = statistics.median(direct) * 1000, statistics.median(via) * 1000
            print(f"real {tool}: direct median {d_ms:.0f} ms, via `dispatch run` {v_ms:.0f} ms -> added {v_ms - d_ms:.0f} ms, "
                  f"ratio {v_ms / d_ms:.2f}x over {args.runs} runs each (goal <= 1.2x or <= 60 ms added)")
    finally:
        for stub in stubs:
            stub.kill()
            stub.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
