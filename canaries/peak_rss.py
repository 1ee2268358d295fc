#!/usr/bin/env python3
"""Runs a command and prints its peak RSS (KiB, children included) on the last line of stderr.

  peak_rss.py COMMAND [ARGS...]      exit code: the command's
"""
import resource
import subprocess
import sys

completed = subprocess.run(sys.argv[1:])
sys.stderr.write(f"\npeak-rss-kib {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
sys.exit(completed.returncode)
