#!/usr/bin/env python3
"""Makes a git repository with many small files in one commit, fast (git fast-import, objects in one pack).

  make_tree.py DIR FILES [BYTES]
"""
import os
import subprocess
import sys

path, count = sys.argv[1], int(sys.argv[2])
size = int(sys.argv[3]) if len(sys.argv) > 3 else 64
subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
stream = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=path, stdin=subprocess.PIPE)
out = stream.stdin
for index in range(count):
    data = (f"file {index}\n" * (size // 10 + 1))[:size].encode()
    out.write(b"blob\nmark :%d\ndata %d\n" % (index + 1, len(data)) + data + b"\n")
out.write(b"commit refs/heads/main\ncommitter t <t@example.invalid> 0 +0000\ndata 5\ntree\n")
for index in range(count):
    out.write(b"M 100644 :%d d%03d/f%05d.txt\n" % (index + 1, index % 500, index))
out.write(b"\n")
out.close()
if stream.wait() != 0:
    sys.exit("git fast-import failed")
subprocess.run(["git", "reset", "-q", "--hard"], cwd=path, check=True)
