#!/usr/bin/env bash
# Remove what `make kind-up` made: the kind cluster and the cloud-provider-kind it started.
# Usage: deploy/kind/kind-down.sh   (`make kind-down`; DRY_RUN=1 prints the commands)
# Environment: KIND_CLUSTER (stockpipe), KIND_STATE_DIR (<repo>/.local/kind).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
KIND_CLUSTER="${KIND_CLUSTER:-stockpipe}"
STATE="${KIND_STATE_DIR:-$ROOT/.local/kind}"
# shellcheck source=common.sh
source "$HERE/common.sh"

if [[ -f "$STATE/cloud-provider-kind.pid" ]]; then
  pid="$(cat "$STATE/cloud-provider-kind.pid")"
  if kill -0 "$pid" 2>/dev/null; then run kill "$pid"; fi
  [[ "${DRY_RUN:-0}" == 1 ]] || rm -f -- "$STATE/cloud-provider-kind.pid"
fi
if have kind; then
  run kind delete cluster --name "$KIND_CLUSTER"
else
  log "kind not installed: no cluster to delete"
fi
