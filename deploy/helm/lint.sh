#!/usr/bin/env bash
# Lint, render and validate the chart for every ci/*-values.yaml scenario, offline:
#   helm lint --strict; helm template (Kubernetes K8S_VERSION, with the CRD-backed APIs);
#   kubeconform -strict of every rendered object against the Kubernetes JSON schemas and
#   the CRDs (made offline by tools/install.sh; no -ignore-missing-schemas: a kind without
#   a schema is an error).
# Usage: deploy/helm/lint.sh            (`make helm-lint`; tools from `make chart-tools`)
# Environment: STOCKPIPE_CACHE (tool cache, as tools/install.sh), K8S_VERSION (1.34.4).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
CHART="$HERE/stockpipe"
K8S_VERSION="${K8S_VERSION:-1.34.4}"
if [[ -n "${STOCKPIPE_CACHE:-}" ]]; then CACHE="$STOCKPIPE_CACHE"
elif [[ -d /var/cache/stockpipe/bin ]]; then CACHE=/var/cache/stockpipe
else CACHE="${HOME:-/tmp}/.cache/stockpipe"; fi
export PATH="$CACHE/bin:$PATH"

die() { printf 'helm-lint: error: %s\n' "$*" >&2; exit 1; }
for t in helm kubeconform; do command -v "$t" >/dev/null || die "$t not found: make chart-tools"; done
SCHEMAS="$(cat "$CACHE/kubeconform/current" 2>/dev/null || true)"
[[ -f "$SCHEMAS/.complete" ]] || die "no kubeconform schemas: make chart-tools"

out="$(mktemp -d)"
trap 'rm -rf -- "$out"' EXIT
n=0
for values in "$CHART"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  helm lint --strict "$CHART" -f "$values" --kube-version "$K8S_VERSION" >"$out/lint.log" 2>&1 \
    || { cat "$out/lint.log" >&2; die "$name: helm lint --strict failed"; }
  helm template stockpipe "$CHART" -f "$values" --namespace stockpipe --kube-version "$K8S_VERSION" \
    --api-versions monitoring.coreos.com/v1 --api-versions gateway.networking.k8s.io/v1 >"$out/$name.yaml" \
    || die "$name: helm template failed"
  summary="$(kubeconform -strict -summary -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$out/$name.yaml")" \
    || { printf '%s\n' "$summary" >&2; die "$name: kubeconform found invalid objects"; }
  printf 'helm-lint: %-10s lint ok, %s\n' "$name" "$(tail -n 1 <<<"$summary" | sed 's/^Summary: //')"
  n=$((n + 1))
done
(( n > 0 )) || die "no ci/*-values.yaml scenarios"
