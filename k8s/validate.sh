#!/usr/bin/env bash
# Validates every manifest in k8s/ and the Jobs rendered for k8s/samples/*.json against the real Kubernetes
# schemas (kubernetes-validate --strict, offline) for each version 1.29 through 1.34. Fails on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
dispatch="${DISPATCH_BIN:-.build/debug/dispatch}"
command -v kubernetes-validate >/dev/null || { echo "validate.sh: kubernetes-validate is not installed (pip install kubernetes-validate)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for request in k8s/samples/*.json; do
  out="$work/list-$(basename "$request")"
  DISPATCH_K8S_NAMESPACE=agents DISPATCH_K8S_IMAGE=registry.example.invalid/agent-dispatch:1 DISPATCH_K8S_GIT_SECRET=agent-dispatch-git \
    "$dispatch" k8s render-job --request "$request" > "$out"
  # render-job prints a List (Job + its Secret); each item is validated against its own schema.
  python3 - "$out" "$work/job-$(basename "$request" .json)" <<'PY'
import json, sys
document = json.load(open(sys.argv[1]))
assert document["kind"] == "List", "render-job must print a List"
for index, item in enumerate(document["items"]):
    json.dump(item, open(f"{sys.argv[2]}-{index}-{item['kind'].lower()}.json", "w"))
PY
done
# Kustomization is not a Kubernetes API kind (no schema); its resources are validated one by one.
manifests=$(ls k8s/*.yaml | grep -v kustomization.yaml)
# Multi-document files are validated document by document.
for file in $manifests; do
  python3 - "$file" "$work/doc-$(basename "$file" .yaml)" <<'PY'
import sys
parts = [p for p in open(sys.argv[1]).read().split("\n---\n") if p.strip()]
for index, part in enumerate(parts):
    open(f"{sys.argv[2]}-{index}.yaml", "w").write(part)
PY
done
manifests=$(ls "$work"/doc-*.yaml)
passed=0 failed=0
for version in 1.29 1.30 1.31 1.32 1.33 1.34; do
  for file in $manifests "$work"/job-*.json; do
    if kubernetes-validate --strict --quiet -k "$version.0" "$file" >"$work/out" 2>&1; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1)); echo "FAILED $file against $version:"; cat "$work/out"
    fi
  done
done
echo "k8s manifests: $passed passed, $failed failed"
[ "$failed" = 0 ]
