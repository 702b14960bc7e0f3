#!/usr/bin/env bash
# A local Kubernetes with the whole pipeline: `make kind-up`.
#
# Usage: deploy/kind/kind-up.sh [STEP...]        (default: every step, in this order)
#   tools       kind, cloud-provider-kind (go install), helm (deploy/helm/tools/install.sh)
#   cluster     kind create cluster --config deploy/kind/cluster.yaml (skipped when it exists)
#   lb          cloud-provider-kind in the background: LoadBalancer, Ingress, Gateway addresses
#   images      deploy/docker/build.sh, then `kind load docker-image` of each service image
#   monitoring  kube-prometheus-stack (namespace monitoring, values kube-prometheus-stack.yaml)
#   chart       helm upgrade --install stockpipe deploy/helm/stockpipe -f deploy/kind/values.yaml
#   wait        every Deployment and StatefulSet of the release rolled out
#   urls        the dashboard's, Grafana's and Prometheus's URLs
# Each step can run alone (e.g. `deploy/kind/kind-up.sh images chart` after a code change).
# DRY_RUN=1 prints the commands instead of running them.
#
# Environment: KIND_CLUSTER (stockpipe), KIND_NODE_IMAGE (kind's default), NAMESPACE
#   (stockpipe), RELEASE (stockpipe), KIND_INGRESS_CLASS (cloud-provider-kind),
#   KIND_VERSION (v0.30.0), CPK_VERSION (v0.10.0), KPS_CHART
#   (prometheus-community/kube-prometheus-stack: add that chart repository to helm first),
#   HELM_ARGS (extra `helm upgrade` arguments, e.g. "--set producer.config.TICKERS=AAPL").
# Needs: docker, go, and for the images: debootstrap (see deploy/docker/README.md).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
KIND_CLUSTER="${KIND_CLUSTER:-stockpipe}"
NAMESPACE="${NAMESPACE:-stockpipe}"
RELEASE="${RELEASE:-stockpipe}"
KIND_VERSION="${KIND_VERSION:-v0.30.0}"
CPK_VERSION="${CPK_VERSION:-v0.10.0}"
KPS_CHART="${KPS_CHART:-prometheus-community/kube-prometheus-stack}"
KIND_INGRESS_CLASS="${KIND_INGRESS_CLASS:-cloud-provider-kind}"
DRY_RUN="${DRY_RUN:-0}"
STATE="${KIND_STATE_DIR:-$ROOT/.local/kind}"

# shellcheck source=common.sh
source "$HERE/common.sh"

step_tools() {
  run "$ROOT/deploy/helm/tools/install.sh" helm
  if ! have kind; then
    run env GOBIN="$BIN" go install "sigs.k8s.io/kind@$KIND_VERSION"
  fi
  if ! have cloud-provider-kind; then
    run env GOBIN="$BIN" go install "sigs.k8s.io/cloud-provider-kind@$CPK_VERSION" \
      || die "cannot install cloud-provider-kind $CPK_VERSION; install it as kind's documentation says and put it on PATH"
  fi
}

step_cluster() {
  if [[ "$DRY_RUN" != 1 ]] && kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    log "cluster $KIND_CLUSTER exists"
    return 0
  fi
  run kind create cluster --name "$KIND_CLUSTER" --config "$HERE/cluster.yaml" \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
}

step_lb() {
  mkdir -p "$STATE"
  if [[ "$DRY_RUN" != 1 && -f "$STATE/cloud-provider-kind.pid" ]] && kill -0 "$(cat "$STATE/cloud-provider-kind.pid")" 2>/dev/null; then
    log "cloud-provider-kind runs (pid $(cat "$STATE/cloud-provider-kind.pid"))"
    return 0
  fi
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ cloud-provider-kind > %s/cloud-provider-kind.log &\n' "$STATE"
    return 0
  fi
  nohup cloud-provider-kind >"$STATE/cloud-provider-kind.log" 2>&1 &
  echo $! >"$STATE/cloud-provider-kind.pid"
  log "cloud-provider-kind started (pid $!, log $STATE/cloud-provider-kind.log)"
}

step_images() {
  run "$ROOT/deploy/docker/build.sh"
  local s
  for s in $(services); do
    run kind load docker-image --name "$KIND_CLUSTER" "stockpipe-$s:$(version)"
  done
}

step_monitoring() {
  if [[ "$DRY_RUN" != 1 ]] && ! helm show chart "$KPS_CHART" >/dev/null 2>&1; then
    die "helm does not know $KPS_CHART: add the prometheus-community chart repository (helm repo add prometheus-community <its URL, in the kube-prometheus-stack README>), then rerun: $0 monitoring chart wait urls"
  fi
  run helm upgrade --install kube-prometheus-stack "$KPS_CHART" --namespace monitoring --create-namespace \
    -f "$HERE/kube-prometheus-stack.yaml" --wait --timeout 10m
}

step_chart() {
  local disable=() s present
  present=" $(services | tr '\n' ' ') "
  # Services not in this checkout yet are switched off rather than left without an image.
  for s in producer ingestor analytics forecaster dashboard notifier; do
    [[ "$present" == *" $s "* ]] || disable+=(--set "$s.enabled=false")
  done
  [[ "$present" == *" dashboard "* ]] || disable+=(--set ingress.enabled=false)
  # --wait: every pod ready and the topics Job done before helm returns.
  # shellcheck disable=SC2086  # HELM_ARGS is a list of arguments
  run helm upgrade --install "$RELEASE" "$ROOT/deploy/helm/stockpipe" --namespace "$NAMESPACE" --create-namespace \
    -f "$HERE/values.yaml" --set "ingress.className=$KIND_INGRESS_CLASS" --set "image.tag=$(version)" \
    "${disable[@]}" ${HELM_ARGS:-} --wait --wait-for-jobs --timeout 10m
}

step_wait() {
  have kubectl || { log "no kubectl: helm --wait (step chart) already waited for the rollout"; return 0; }
  run kubectl --context "kind-$KIND_CLUSTER" -n "$NAMESPACE" rollout status statefulset -l "app.kubernetes.io/instance=$RELEASE" --timeout 10m
  run kubectl --context "kind-$KIND_CLUSTER" -n "$NAMESPACE" rollout status deployment -l "app.kubernetes.io/instance=$RELEASE" --timeout 10m
}

step_urls() {
  [[ "$DRY_RUN" == 1 ]] && { printf '+ (print the dashboard, Grafana and Prometheus URLs)\n'; return 0; }
  have kubectl || die "kubectl is needed to read the addresses (Debian: apt-get install kubernetes-client)"
  local k=(kubectl --context "kind-$KIND_CLUSTER")
  local ing grafana prom
  ing="$("${k[@]}" -n "$NAMESPACE" get ingress -l "app.kubernetes.io/instance=$RELEASE" -o jsonpath='{.items[0].status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)"
  grafana="$("${k[@]}" -n monitoring get svc kube-prometheus-stack-grafana -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)"
  prom="$("${k[@]}" -n monitoring get svc kube-prometheus-stack-prometheus -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)"
  printf '\nstockpipe on kind (cluster %s, namespace %s):\n' "$KIND_CLUSTER" "$NAMESPACE"
  printf '  dashboard   %s\n' "${ing:+http://$ing/}${ing:-<pending: kubectl -n $NAMESPACE get ingress>}"
  printf '  Grafana     %s   (admin / kubectl -n monitoring get secret kube-prometheus-stack-grafana -o jsonpath={.data.admin-password} | base64 -d)\n' \
    "${grafana:+http://$grafana/}${grafana:-<pending>}"
  printf '  Prometheus  %s\n' "${prom:+http://$prom:9090/}${prom:-<pending>}"
}

(( $# )) || set -- tools cluster lb images monitoring chart wait urls
for step in "$@"; do
  declare -F "step_$step" >/dev/null || die "unknown step '$step' (tools cluster lb images monitoring chart wait urls)"
  log "== $step"
  "step_$step"
done
