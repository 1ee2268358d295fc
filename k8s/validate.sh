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
manifests=$(ls k8s/base/*.yaml k8s/*.yaml | grep -v kustomization.yaml)
# Multi-document files are validated document by document.
for file in $manifests; do
  python3 - "$file" "$work/doc-$(basename "$file" .yaml)" <<'PY'
import sys
parts = [p for p in open(sys.argv[1]).read().split("\n---\n") if p.strip()]
for index, part in enumerate(parts):
    open(f"{sys.argv[2]}-{index}.yaml", "w").write(part)
PY
done
# The postgres overlay, rendered by k8s/render_overlay.py (and, where kubectl is here, checked to be exactly what
# `kubectl kustomize` renders), validated like the base, and checked for what it is for: replicas on PostgreSQL.
python3 k8s/render_overlay.py k8s/overlays/postgres "$work/doc-overlay-postgres"
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize k8s/overlays/postgres > "$work/kustomized.yaml"
  python3 - "$work" <<'PY'
import glob, sys, yaml
key = lambda d: (d["kind"], d["metadata"]["name"])
mine = {key(d): d for d in (yaml.safe_load(open(f)) for f in glob.glob(f"{sys.argv[1]}/doc-overlay-postgres-*.yaml"))}
theirs = {key(d): d for d in yaml.safe_load_all(open(f"{sys.argv[1]}/kustomized.yaml")) if d}
if mine != theirs: sys.exit("postgres overlay: render_overlay.py and kubectl kustomize disagree")
PY
fi
python3 - "$work" <<'PY'
import glob, sys, yaml
docs = [yaml.safe_load(open(f)) for f in sorted(glob.glob(f"{sys.argv[1]}/doc-overlay-postgres-*.yaml"))]
by_kind = {}
for d in docs: by_kind.setdefault(d["kind"], []).append(d)
deployment = by_kind["Deployment"][0]["spec"]
container = deployment["template"]["spec"]["containers"][0]
url = [e for e in container["env"] if e["name"] == "DISPATCH_DATABASE_URL"]
checks = {
    "3 replicas": deployment["replicas"] == 3,
    "RollingUpdate": deployment["strategy"]["type"] == "RollingUpdate",
    "DISPATCH_DATABASE_URL from a Secret": bool(url) and "secretKeyRef" in url[0].get("valueFrom", {}),
    "no shared PVC": "PersistentVolumeClaim" not in by_kind
        and all("persistentVolumeClaim" not in v for v in deployment["template"]["spec"]["volumes"]),
    "a PodDisruptionBudget": by_kind.get("PodDisruptionBudget", [{}])[0].get("spec", {}).get("minAvailable") == 2,
    "PostgreSQL egress": any(p.get("port") == 5432 for n in by_kind["NetworkPolicy"] for r in n["spec"].get("egress", [])
        for p in r.get("ports", [])),
    "readiness includes the database (/readyz)": container["readinessProbe"]["httpGet"]["path"] == "/readyz",
    "each replica is named and reachable by its peers": [e["name"] for e in container["env"]].index("POD_IP")
        < [e["name"] for e in container["env"]].index("DISPATCH_REPLICA_URL")
        and {e["name"]: e.get("value") for e in container["env"]}["DISPATCH_REPLICA_URL"] == "http://$(POD_IP):3111",
}
failed = [name for name, ok in checks.items() if not ok]
if failed: sys.exit(f"postgres overlay: {failed}")
print(f"postgres overlay: {len(docs)} documents, {len(checks)} checks hold")
PY
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
