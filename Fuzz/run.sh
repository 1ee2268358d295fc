#!/usr/bin/env bash
# Builds the libFuzzer target (request validator + callback decoder, with ASan) and runs it.
#   Fuzz/run.sh SECONDS     (make fuzz: 600; CI: 60)
# Prints "fuzz: N crashes in S s"; exits non-zero on a crash (the input is kept in Fuzz/crashes/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
out=.build-fuzz
mkdir -p "$out" Fuzz/crashes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# DispatchCore has no dependencies: its sources and the entry point compile into one fuzzable binary.
if ! swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name DispatchFuzz -package-name agent_dispatch \
  Fuzz/FuzzEntry.swift $(find Sources/DispatchCore -name '*.swift' | sort) -o "$out/dispatch-fuzz" >"$out/build.log" 2>&1; then
  grep -v "Cannot export local symbol" "$out/build.log" >&2; exit 1
fi
cp Fuzz/corpus/* "$work/"
set +e
"$out/dispatch-fuzz" "$work" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix=Fuzz/crashes/ -print_final_stats=1 >"$out/fuzz.log" 2>&1
status=$?
set -e
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/fuzz.log" | grep -o '[0-9]*$' || echo 0)
crashes=$(ls Fuzz/crashes 2>/dev/null | grep -c '^crash-\|^leak-\|^timeout-\|^oom-' || true)
echo "fuzz: $crashes crashes in ${seconds} s ($runs inputs)"
if [ "$status" != 0 ]; then tail -40 "$out/fuzz.log"; exit 1; fi
