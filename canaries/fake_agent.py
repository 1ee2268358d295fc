#!/usr/bin/env python3
"""Deterministic, model-free stand-ins for the codex, claude and pi CLIs.

Each checks the argument shape the real CLI is called with, reads the task (argv or stdin),
then follows `fake:` directives found in the task text (one per line or space-separated):

  fake:answer=TEXT          final answer text (default: "fake <tool> done (task N bytes)")
  fake:empty                produce no final answer
  fake:sleep=SECONDS        sleep before answering
  fake:wait-for=PATH        wait (at most 120 s) until PATH exists, then go on with the next directive
  fake:hang                 never exit (after printing a start event)
  fake:ignore-term          ignore SIGTERM
  fake:final-then-hang      print the final result event, then never exit
  fake:exit=CODE            exit with CODE after answering
  fake:crash                die from SIGSEGV
  fake:stderr=TEXT          write TEXT to stderr
  fake:orphan-stderr=SEC    leave a child holding stderr open for SEC seconds, then exit
  fake:setsid-child=SEC     leave a child that calls setsid() (escaping the group) and sleeps SEC seconds
  fake:setsid-stubborn=SEC  the same, but the child ignores SIGTERM
  fake:escape=SEC           leave a grandchild that double-forks, calls setsid(), empties its environment (no marker)
                            and sleeps SEC seconds as `sleep SEC` (SEC may carry a unique fraction to find it by)
  fake:escape-stubborn=SEC  the same, but the grandchild ignores SIGTERM
  fake:forkbomb=N           fork up to N children sleeping 30 s until a fork fails; stderr says how many
  fake:hog=BYTES            write BYTES of memory (exit 3 when the allocation is refused)
  fake:big-output=BYTES     print BYTES of filler to stdout before the answer (100-byte lines)
  fake:big-lines=N:BYTES    print N lines of BYTES filler each to stdout before the answer
  fake:count=FILE           append one line to FILE (counts side effects)
  fake:write=PATH:TEXT      write TEXT to PATH (relative to cwd)
  fake:rm=PATH              delete PATH
  fake:mv=FROM:TO           rename FROM to TO
  fake:chmod-x=PATH         make PATH executable
  fake:binary=PATH          write a small binary file
  fake:sparse=PATH:BYTES    create PATH as a sparse file of BYTES (a huge file without the disk writes)
  fake:commit=MESSAGE       git add -A && git commit -m MESSAGE (in cwd)
  fake:git-config=KEY:VAL   git config KEY VAL in cwd's repository (an agent rewriting its own .git/config)
  fake:symlink=PATH:TARGET  create PATH as a symlink to TARGET
  fake:many=DIR:N           write N one-line files into DIR
  fake:fill-after=PATH      after the final event, write PATH until the filesystem is full (a full disk)
  fake:home-write=REL:TEXT  write TEXT to $HOME/REL (a CLI refreshing its login)
  fake:home-link=REL:TARGET replace $HOME/REL with a symlink to TARGET
  fake:home-read=REL        write "home REL: <content>" to stderr
  fake:unlinked=BYTES:SEC  write BYTES to a file in cwd, unlink it, hold it open for SEC seconds
  fake:tmp-write=NAME:TEXT write TEXT to NAME in the temp dir ($TMPDIR)
  fake:whoami              write "uid U gid G" to stderr
  fake:try-write=PATH       open PATH for appending (writing nothing); stderr: "write PATH ok" or "... refused (why)"
  fake:sysctl               write kernel.pid_max's current value back; stderr: "sysctl writable" or "... refused"
  fake:glob=PATTERN         write "glob <number of matches>" to stderr
  fake:mkfifo=PATH          replace PATH with a FIFO (a reader that opens it blocks)
  fake:recovered-error      codex: print a recovered {"type":"error"} ("Reconnecting... 1/5") before completing
  fake:nested-sandbox      codex: print a command its own sandbox refused (bwrap inside bwrap), then complete anyway
  fake:turn-failed=MSG      codex: print turn.failed with MSG (stderr says nothing useful) and exit 1
  fake:usage=IN,CACHED,OUT,REASON[,COST]  report these token counts (and, claude and pi, this cost in USD) in the
                            final event, in the CLI's own shape (codex: cumulative for the thread; claude: input
                            without the cached part)
  fake:fetch=URL            GET URL with urllib (which honours HTTP(S)_PROXY); stderr: "fetch URL: STATUS BYTES" or
                            "fetch URL: failed (why)"
  fake:curl=URL             the same with curl; stderr: "curl URL: CODE" ("000" when nothing answered)
  fake:curl-tunnel=URL      the same through a CONNECT tunnel (curl --proxytunnel); stderr: "curl-tunnel URL: CODE"
  fake:connect=HOST:PORT    a TCP connection of its own, no proxy; stderr: "connect HOST:PORT ok" or "... failed (why)"
  fake:clone=URL            git clone URL ./cloned; stderr: "clone URL ok" or "clone URL failed (why)"
  fake:probe=FILE           write to FILE (absolute) everything an attacker could read: this process's and its
                            parent's environment, every readable /proc/*/environ, and the files named by (or inside
                            the small directories named by) any absolute path in those two environments

Like the real CLIs, fake codex refuses a work dir outside a git repository without --skip-git-repo-check,
and fake claude refuses --dangerously-skip-permissions as root unless IS_SANDBOX=1.

Environment: FAKE_AGENT_FAIL_MODELS / FAKE_AGENT_HANG_MODELS (comma lists) fail or hang
attempts with those models; FAKE_AGENT_ARGV_LOG appends argv and DISPATCH_REQUEST_ID as JSON.
"""
import json
import os
import signal
import subprocess
import sys
import time


def fail_usage(tool, message):
    sys.stderr.write(f"fake {tool}: bad invocation: {message}\n")
    sys.exit(64)


def inside_git_repo(path):
    path = os.path.abspath(path)
    while True:
        if os.path.exists(os.path.join(path, ".git")):
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def parse_codex(argv):
    """codex exec as 0.147 takes it: `--full-auto` is gone (exit 2, as the real one says), and exactly one of
    `--sandbox PROFILE` and `--dangerously-bypass-approvals-and-sandbox` may be given."""
    if "--full-auto" in argv:
        sys.stderr.write("error: unexpected argument '--full-auto' found\n\n  tip: to pass '--full-auto' as a value, use '-- --full-auto'\n")
        sys.exit(2)
    if len(argv) < 2 or argv[0] != "exec":
        fail_usage("codex", "expected: codex exec [--json] [--sandbox PROFILE | --dangerously-bypass-approvals-and-sandbox] [-m MODEL] TASK")
    if "--dangerously-bypass-approvals-and-sandbox" in argv and ("--sandbox" in argv or "-s" in argv):
        sys.stderr.write("error: the argument '--dangerously-bypass-approvals-and-sandbox' cannot be used with '--sandbox <SANDBOX_MODE>'\n")
        sys.exit(2)
    args, model, profile, task, structured = argv[1:], None, None, None, False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--dangerously-bypass-approvals-and-sandbox":
            pass
        elif a == "--json":
            structured = True
        elif a == "--skip-git-repo-check":
            pass
        elif a in ("-m", "--model"):
            i += 1
            model = args[i]
        elif a in ("-s", "--sandbox"):
            i += 1
            profile = args[i]
            if profile not in ("read-only", "workspace-write", "danger-full-access"):
                fail_usage("codex", f"unknown sandbox profile {profile}")
        elif a.startswith("-") and a != "-":
            fail_usage("codex", f"unknown option {a}")
        else:
            if task is not None:
                fail_usage("codex", "more than one prompt argument")
            task = a
        i += 1
    if task is None:
        fail_usage("codex", "missing prompt")
    # The real `codex exec` refuses a work dir outside a git repository unless told otherwise.
    if "--skip-git-repo-check" not in argv and not inside_git_repo(os.getcwd()):
        sys.stderr.write("Not inside a trusted directory and --skip-git-repo-check was not specified.\n")
        sys.exit(1)
    if task == "-":
        task = sys.stdin.read()
    return task, model, structured


def parse_claude(argv):
    if "-p" not in argv or "--dangerously-skip-permissions" not in argv:
        fail_usage("claude", "expected: claude -p TASK --dangerously-skip-permissions [--model M]")
    # The real Claude Code refuses to skip permissions as root unless it is told it runs in a sandbox.
    if os.geteuid() == 0 and os.environ.get("IS_SANDBOX") != "1":
        sys.stderr.write("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n")
        sys.exit(1)
    task, model, structured, i = None, None, False, 0
    while i < len(argv):
        a = argv[i]
        if a in ("-p", "--dangerously-skip-permissions", "--verbose"):
            pass
        elif a == "--output-format":
            i += 1
            structured = argv[i] == "stream-json"
        elif a == "--model":
            i += 1
            model = argv[i]
        elif a.startswith("-"):
            fail_usage("claude", f"unknown option {a}")
        else:
            if task is not None:
                fail_usage("claude", "more than one prompt argument")
            task = a
        i += 1
    if task is None:
        task = sys.stdin.read()
    return task, model, structured


def parse_pi(argv):
    for required in ("-p", "--no-session", "--no-extensions"):
        if required not in argv:
            fail_usage("pi", f"missing {required}")
    if "--mode" not in argv or argv[argv.index("--mode") + 1] != "json":
        fail_usage("pi", "missing --mode json")
    model = None
    if "--models" in argv:
        model = argv[argv.index("--models") + 1]
    for a in argv:
        if a.startswith("-") and a not in ("-p", "--no-session", "--mode", "--no-extensions", "--no-tools", "--models"):
            fail_usage("pi", f"unknown option {a}")
    return sys.stdin.read(), model, True


def fetch(url):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            body = response.read()
            sys.stderr.write(f"fetch {url}: {response.status} {len(body)}\n")
    except Exception as error:  # noqa: BLE001 - every way of failing is the answer
        sys.stderr.write(f"fetch {url}: failed ({error})\n")


def curl(url, tunnel=False):
    run = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"]
                         + (["--proxytunnel"] if tunnel else []) + [url], capture_output=True, text=True)
    sys.stderr.write(f"{'curl-tunnel' if tunnel else 'curl'} {url}: {run.stdout.strip() or '000'}\n")


def connect(target):
    import socket
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            sys.stderr.write(f"connect {target} ok\n")
    except OSError as error:
        sys.stderr.write(f"connect {target} failed ({error})\n")


def clone(url):
    run = subprocess.run(["git", "clone", "-q", url, "cloned"], capture_output=True, text=True, timeout=60)
    why = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"
    sys.stderr.write(f"clone {url} ok\n" if run.returncode == 0 else f"clone {url} failed ({why})\n")


def directives(task):
    found = []
    for token in task.replace("\n", " ").split(" "):
        if token.startswith("fake:"):
            body = token[5:]
            key, _, value = body.partition("=")
            found.append((key, value.replace("%20", " ")))
    return found


def emit(tool, structured, answer, model, usage=None):
    out = sys.stdout
    if tool == "codex":
        if structured:
            out.write(json.dumps({"type": "thread.started", "thread_id": "fake"}) + "\n")
            if answer is not None:
                out.write(json.dumps({"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": answer}}) + "\n")
            counts = {"input_tokens": 1, "output_tokens": 1}
            if usage:
                counts = {"input_tokens": usage[0], "cached_input_tokens": usage[1], "output_tokens": usage[2],
                          "reasoning_output_tokens": usage[3]}
            out.write(json.dumps({"type": "turn.completed", "usage": counts}) + "\n")
        elif answer is not None:
            out.write(answer + "\n")
    elif tool == "claude":
        if structured:
            out.write(json.dumps({"type": "system", "subtype": "init", "model": model or "fake"}) + "\n")
            if answer is not None:
                out.write(json.dumps({"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": answer}]}}) + "\n")
            result = {"type": "result", "subtype": "success", "is_error": False, "result": answer or ""}
            if usage:
                result["usage"] = {"input_tokens": usage[0] - usage[1], "cache_read_input_tokens": usage[1],
                                   "cache_creation_input_tokens": 0, "output_tokens": usage[2],
                                   "output_tokens_details": {"thinking_tokens": usage[3]}}
                result["total_cost_usd"] = usage[4] if len(usage) > 4 else 0
            out.write(json.dumps(result) + "\n")
        elif answer is not None:
            out.write(answer + "\n")
    else:
        out.write(json.dumps({"type": "session", "id": "fake", "version": 3}) + "\n")
        out.write(json.dumps({"type": "agent_start"}) + "\n")
        out.write(json.dumps({"type": "turn_start"}) + "\n")
        content = [] if answer is None else [{"type": "text", "text": answer}]
        message = {"role": "assistant", "content": content, "stopReason": "stop", "model": model or "fake"}
        if usage:
            message["usage"] = {"input": usage[0] - usage[1], "cacheRead": usage[1], "cacheWrite": 0, "output": usage[2],
                                "totalTokens": usage[0] + usage[2], "cost": {"total": usage[4] if len(usage) > 4 else 0}}
        out.write(json.dumps({"type": "message_end", "message": message}) + "\n")
        out.write(json.dumps({"type": "turn_end", "message": message, "toolResults": []}) + "\n")
    out.flush()


def spawn_child(seconds, escape, stubborn):
    pid = os.fork()
    if pid == 0:
        if escape:
            os.setsid()
        if stubborn:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.execvp("sleep", ["sleep", str(seconds)])
    return pid


def escape(seconds, stubborn):
    """The hardest leftover to find: double fork, new session, no environment, optionally deaf to SIGTERM."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        if stubborn:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.execve("/bin/sleep", ["sleep", str(seconds)], {})
    os.waitpid(pid, 0)


def probe(out_path):
    """What a hostile agent would collect: environments and the files they point at."""
    chunks = []
    own = dict(os.environ)
    parent = {}
    try:
        raw = open(f"/proc/{os.getppid()}/environ", "rb").read()
        parent = dict(e.split("=", 1) for e in raw.decode("utf-8", "replace").split("\0") if "=" in e)
    except OSError:
        pass
    chunks.append("own env: " + json.dumps(own))
    chunks.append("parent env: " + json.dumps(parent))
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                chunks.append(f"/proc/{pid}/environ: " + open(f"/proc/{pid}/environ", "rb").read().decode("utf-8", "replace"))
            except OSError:
                pass
    paths = {v for env in (own, parent) for v in env.values() if v.startswith("/")}
    for path in sorted(paths):
        files = [path]
        if os.path.isdir(path):
            try:
                names = os.listdir(path)
            except OSError:
                names = []
            files = [os.path.join(path, n) for n in names] if len(names) <= 20 else []
        for name in files:
            try:
                if os.path.isfile(name) and os.path.getsize(name) <= (1 << 20):
                    chunks.append(f"file {name}: " + open(name, "rb").read().decode("utf-8", "replace"))
            except OSError:
                pass
    with open(out_path, "w") as f:
        f.write("\n".join(chunks))


def forkbomb(limit):
    """Forks up to `limit` children that sleep 30 s, until a fork fails; says on stderr how many it made."""
    made = 0
    while made < limit:
        try:
            pid = os.fork()
        except OSError as error:
            sys.stderr.write(f"forkbomb: fork {made + 1} failed: {error}\n")
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        made += 1
    sys.stderr.write(f"forkbomb: forked {made} of {limit}\n")
    sys.stderr.flush()


def hog(size):
    """Writes `size` bytes of memory (every page touched); a refused allocation exits 3."""
    try:
        block = b"h" * size
    except MemoryError:
        sys.stderr.write(f"hog: cannot allocate {size} bytes\n")
        sys.stderr.flush()
        os._exit(3)
    sys.stderr.write(f"hog: holding {len(block)} bytes\n")
    sys.stderr.flush()


def fill(path):
    """Writes PATH in 1 MiB chunks until the filesystem is full (ENOSPC), then keeps what it wrote."""
    sys.stdout.flush()
    chunk = b"f" * (1 << 20)
    try:
        with open(path, "wb") as f:
            while True:
                f.write(chunk)
                f.flush()
    except OSError:
        pass


def sleep_forever():
    while True:
        time.sleep(3600)


# What each fake says it is and accepts (`--version`, `--help`, `codex exec --help`), as the real CLIs do: the runner
# learns its command lines from these (CONTRACT §1). codex follows 0.147.0, Claude Code 2.1.332; pi follows the argv
# and JSON events of pi-coding-agent as CONTRACT §1 gives them (pi is not on PyPI: only this fake is tested).
VERSIONS = {"codex": "codex-cli 0.147.0", "claude": "2.1.332 (Claude Code)", "pi": "0.57.0 (fake pi)"}
HELP = {
    "codex": "Usage: codex [OPTIONS] [PROMPT]\n\nCommands:\n  exec  Run Codex non-interactively\n\nOptions:\n  -m, --model <MODEL>\n  -h, --help\n  -V, --version\n",
    "codex exec": (
        "Run Codex non-interactively\n\nUsage: codex exec [OPTIONS] [PROMPT]\n\nOptions:\n"
        "  -m, --model <MODEL>  Model the agent should use\n"
        "  -s, --sandbox <SANDBOX_MODE>  [possible values: read-only, workspace-write, danger-full-access]\n"
        "      --dangerously-bypass-approvals-and-sandbox  Skip all confirmation prompts and execute commands without sandboxing\n"
        "      --skip-git-repo-check  Allow running Codex outside a Git repository\n"
        "      --json  Print events to stdout as JSONL\n  -h, --help  Print help\n"
    ),
    "claude": (
        "Usage: claude [options] [command] [prompt]\n\nOptions:\n  -p, --print  Print response and exit\n"
        "  --output-format <format>  \"text\", \"json\" or \"stream-json\"\n  --verbose\n"
        "  --dangerously-skip-permissions  Bypass all permission checks\n  --model <model>\n  -h, --help\n  -v, --version\n"
    ),
    "pi": (
        "Usage: pi [options] [messages...]\n\nOptions:\n  -p, --print\n  --mode <mode>  text, json or rpc\n  --no-session\n"
        "  --no-extensions\n  --no-tools\n  --models <patterns>\n  -h, --help\n  -v, --version\n"
    ),
}


def self_description(tool, argv):
    """`--version` and help, as the real CLIs print them."""
    if argv == ["--version"]:
        print(VERSIONS[tool])
        sys.exit(0)
    if tool == "codex" and argv[:2] == ["exec", "--help"]:
        sys.stdout.write(HELP["codex exec"])
        sys.exit(0)
    if argv == ["--help"]:
        sys.stdout.write(HELP[tool])
        sys.exit(0)


def main():
    tool = os.environ.get("FAKE_AGENT_TOOL") or os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    if tool in VERSIONS:
        self_description(tool, argv)
    parser = {"codex": parse_codex, "claude": parse_claude, "pi": parse_pi}.get(tool)
    if parser is None:
        fail_usage(tool, "unknown fake tool")
    task, model, structured = parser(argv)

    log = os.environ.get("FAKE_AGENT_ARGV_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"tool": tool, "argv": argv, "requestId": os.environ.get("DISPATCH_REQUEST_ID"),
                                "taskBytes": len(task.encode()), "cwd": os.getcwd()}) + "\n")

    answer = f"fake {tool} done (task {len(task.encode())} bytes)"
    usage = None
    exit_code = 0
    hang = final_then_hang = crash = False
    fill_after = None
    recovered_error = False
    nested_sandbox = False
    turn_failed = None
    for key, value in directives(task):
        if key == "answer":
            answer = value
        elif key == "empty":
            answer = None
        elif key == "usage":
            usage = [float(part) if "." in part else int(part) for part in value.split(",")]
        elif key == "sleep":
            time.sleep(float(value))
        elif key == "wait-for":
            deadline = time.monotonic() + 120
            while not os.path.exists(value) and time.monotonic() < deadline:
                time.sleep(0.05)
        elif key == "hang":
            hang = True
        elif key == "ignore-term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        elif key == "final-then-hang":
            final_then_hang = True
        elif key == "exit":
            exit_code = int(value)
        elif key == "crash":
            crash = True
        elif key == "stderr":
            sys.stderr.write(value + "\n")
            sys.stderr.flush()
        elif key == "orphan-stderr":
            spawn_child(value, escape=False, stubborn=False)
        elif key == "setsid-child":
            spawn_child(value, escape=True, stubborn=False)
        elif key == "setsid-stubborn":
            spawn_child(value, escape=True, stubborn=True)
        elif key == "escape":
            escape(value, stubborn=False)
        elif key == "escape-stubborn":
            escape(value, stubborn=True)
        elif key == "forkbomb":
            forkbomb(int(value))
        elif key == "hog":
            hog(int(value))
        elif key == "big-output":
            remaining = int(value)
            line = ("x" * 99) + "\n"
            block = line * 10000
            while remaining >= len(block):
                sys.stdout.write(block)
                remaining -= len(block)
            while remaining > 0:
                chunk = line[: min(remaining, len(line))]
                sys.stdout.write(chunk)
                remaining -= len(chunk)
            sys.stdout.write("\n")
        elif key == "big-lines":
            count, _, size = value.partition(":")
            chunk = "y" * (1 << 20)
            for _ in range(int(count)):
                left = int(size) - 1
                while left > 0:
                    sys.stdout.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))
                sys.stdout.write("\n")
            sys.stdout.flush()
        elif key == "count":
            with open(value, "a") as f:
                f.write(f"{os.getpid()}\n")
        elif key == "write":
            path, _, text = value.partition(":")
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                f.write(text + "\n")
        elif key == "rm":
            os.remove(value)
        elif key == "mv":
            src, _, dst = value.partition(":")
            os.rename(src, dst)
        elif key == "chmod-x":
            os.chmod(value, os.stat(value).st_mode | 0o111)
        elif key == "sparse":
            path, _, size = value.partition(":")
            with open(path, "wb") as f:
                f.truncate(int(size))
        elif key == "binary":
            with open(value, "wb") as f:
                f.write(bytes(range(256)) * 4)
        elif key == "probe":
            probe(value)
        elif key == "git-config":
            name, _, setting = value.partition(":")
            subprocess.run(["git", "config", name, setting], check=True)
        elif key == "many":
            directory, _, count = value.partition(":")
            os.makedirs(directory, exist_ok=True)
            for i in range(int(count)):
                with open(os.path.join(directory, f"f{i:06d}"), "w") as f:
                    f.write("x\n")
        elif key == "home-write":
            rel, _, text = value.partition(":")
            path = os.path.join(os.environ["HOME"], rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        elif key == "home-link":
            rel, _, target = value.partition(":")
            path = os.path.join(os.environ["HOME"], rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                os.remove(path)
            os.symlink(target, path)
        elif key == "home-read":
            try:
                with open(os.path.join(os.environ["HOME"], value)) as f:
                    content = f.read()
            except OSError:
                content = "<missing>"
            sys.stderr.write(f"home {value}: {content}\n")
            sys.stderr.flush()
        elif key == "unlinked":
            # Disk taken by a file unlinked but held open: no walk of the run's places finds it.
            size, _, seconds = value.partition(":")
            held = open("unlinked-%d.bin" % os.getpid(), "wb")
            os.unlink(held.name)
            chunk = b"u" * (1 << 20)
            for _ in range(int(size) // len(chunk)):
                held.write(chunk)
            held.flush()
            time.sleep(float(seconds or "0"))
        elif key == "tmp-write":
            import tempfile
            name, _, text = value.partition(":")
            with open(os.path.join(tempfile.gettempdir(), name), "w") as f:
                f.write(text)
        elif key == "whoami":
            sys.stderr.write(f"uid {os.getuid()} gid {os.getgid()}\n")
            sys.stderr.flush()
        elif key == "try-write":
            try:
                with open(value, "a") as f:
                    f.write("")
                result = "ok"
            except OSError as error:
                result = f"refused ({error.strerror})"
            sys.stderr.write(f"write {value} {result}\n")
            sys.stderr.flush()
        elif key == "sysctl":
            try:
                with open("/proc/sys/kernel/pid_max") as f:
                    current = f.read()
                with open("/proc/sys/kernel/pid_max", "w") as f:
                    f.write(current)
                result = "writable"
            except OSError as error:
                result = f"refused ({error.strerror})"
            sys.stderr.write(f"sysctl {result}\n")
            sys.stderr.flush()
        elif key == "glob":
            import glob as globbing
            sys.stderr.write(f"glob {len(globbing.glob(value))}\n")
            sys.stderr.flush()
        elif key == "recovered-error":
            recovered_error = True
        elif key == "nested-sandbox":
            nested_sandbox = True
        elif key == "turn-failed":
            turn_failed = value
        elif key == "mkfifo":
            if os.path.lexists(value):
                os.remove(value)
            os.mkfifo(value)
        elif key == "fill-after":
            fill_after = value
        elif key == "symlink":
            path, _, target = value.partition(":")
            os.symlink(target, path)
        elif key == "fetch":
            fetch(value)
        elif key == "curl":
            curl(value)
        elif key == "curl-tunnel":
            curl(value, tunnel=True)
        elif key == "connect":
            connect(value)
        elif key == "clone":
            clone(value)
        elif key == "commit":
            subprocess.run(["git", "add", "-A"], check=True)
            subprocess.run(["git", "-c", "user.name=fake", "-c", "user.email=fake@example.invalid", "commit", "-q", "-m", value], check=True)

    if model and model in os.environ.get("FAKE_AGENT_HANG_MODELS", "").split(","):
        hang = True
    if model and model in os.environ.get("FAKE_AGENT_FAIL_MODELS", "").split(","):
        sys.stderr.write(f"fake {tool}: model {model} is unavailable\n")
        sys.exit(3)
    if hang:
        sys.stdout.write(json.dumps({"type": "agent_start"}) + "\n")
        sys.stdout.flush()
        sleep_forever()
    if crash:
        os.kill(os.getpid(), signal.SIGSEGV)
    if turn_failed is not None and tool == "codex":
        # As codex 0.147 fails a turn: the reason on stdout, nothing useful on stderr, exit 1.
        sys.stderr.write("Reading additional input from stdin...\n")
        sys.stdout.write(json.dumps({"type": "thread.started", "thread_id": "fake"}) + "\n")
        sys.stdout.write(json.dumps({"type": "turn.failed", "error": {"message": turn_failed}}) + "\n")
        sys.stdout.flush()
        sys.exit(1)
    if nested_sandbox and tool == "codex":
        # As codex 0.147 with `--sandbox workspace-write` inside another bubblewrap: its own sandbox cannot set up, the
        # command fails, nothing is changed, and the turn still completes.
        sys.stdout.write(json.dumps({"type": "item.completed", "item": {
            "id": "item_1", "type": "command_execution", "command": "bash -lc 'echo edit > file.txt'", "exit_code": 1,
            "status": "failed", "aggregated_output": "bwrap: setting up uid map: Operation not permitted\n"}}) + "\n")
    if recovered_error and tool == "codex":
        sys.stdout.write(json.dumps({"type": "error", "message": "Reconnecting... 1/5 (stream disconnected before completion)"}) + "\n")
    emit(tool, structured, answer, model, usage)
    if fill_after:
        fill(fill_after)
    if final_then_hang:
        sleep_forever()
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
