#!/usr/bin/env bash
# After the tests: fails, naming them, when processes the test run started are still running — a process whose
# environment carries the run's marker (DISPATCH_TEST_RUN=<marker>, set for `swift test` only), or one started after
# the run began (START, in clock ticks since boot as /proc/PID/stat counts them) whose command line points into the
# checkout (agents get a curated environment, without the marker) — other than this script and its ancestors (make,
# .ci/run). A developer's `make run` or editor, started before, is never named or touched. Waits up to GRACE seconds
# for processes on their way out, then kills what is left so nothing outlives the run either way.
#   usage: leftovers.sh MARKER CHECKOUT START [GRACE]
set -u
marker=$1
root=$2
since=${3:-0}
grace=${4:-10}

ancestors=" "
pid=$$
while [ -n "$pid" ] && [ "$pid" != 0 ]; do
  ancestors="$ancestors$pid "
  pid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
done

left() {
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    case "$ancestors" in *" $pid "*) continue ;; esac
    # This script's own subshells.
    [ "$(awk '/^PPid:/ {print $2}' "$dir/status" 2>/dev/null)" = $$ ] && continue
    # A zombie has ended; only its parent's wait is missing.
    state=$(awk '/^State:/ {print $2}' "$dir/status" 2>/dev/null) || continue
    [ -n "$state" ] && [ "$state" != Z ] || continue
    cmdline=$(tr '\0' ' ' 2>/dev/null <"$dir/cmdline") || continue
    started=$(sed 's/.*) //' "$dir/stat" 2>/dev/null | cut -d' ' -f20)
    if tr '\0' '\n' 2>/dev/null <"$dir/environ" | grep -qx "DISPATCH_TEST_RUN=$marker" \
      || { [[ "$cmdline" == *"$root/"* ]] && [ "${started:-0}" -ge "$since" ]; }; then
      echo "$pid $cmdline"
    fi
  done
}

deadline=$((SECONDS + grace))
while :; do
  found=$(left)
  [ -z "$found" ] && exit 0
  [ "$SECONDS" -ge "$deadline" ] && break
  sleep 1
done
echo "leftovers: the test run left these processes running (pid, command line):" >&2
printf '%s\n' "$found" | cut -c1-300 >&2
printf '%s\n' "$found" | while read -r pid _; do kill -KILL "$pid" 2>/dev/null; done
exit 1
