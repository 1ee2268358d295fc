#!/usr/bin/env bash
# Build and push the runner image, apply the manifests, wait for the rollout, probe health.
#   k8s/publish.sh --image REGISTRY/agent-dispatch:TAG [--namespace NS] [--dry-run]
# --dry-run prints every step instead of running it.
set -euo pipefail
cd "$(dirname "$0")/.."
image="" namespace="${DISPATCH_K8S_NAMESPACE:-default}" dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) echo "publish.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$image" ] || { echo "publish.sh: --image is required" >&2; exit 2; }
step() { if [ "$dry" = 1 ]; then printf 'would run: %s\n' "$*"; else printf '+ %s\n' "$*"; "$@"; fi; }
step docker build -f k8s/Dockerfile -t "$image" .
step docker push "$image"
step kubectl -n "$namespace" apply -k k8s/
step kubectl -n "$namespace" set image deployment/agent-dispatch dispatch="$image"
step kubectl -n "$namespace" set env deployment/agent-dispatch DISPATCH_K8S_IMAGE="$image"
step kubectl -n "$namespace" rollout status deployment/agent-dispatch --timeout=180s
step kubectl -n "$namespace" run agent-dispatch-probe --rm -i --restart=Never --image=curlimages/curl:8.10.1 -- \
  curl -fsS "http://agent-dispatch.$namespace.svc:3111/healthz"
