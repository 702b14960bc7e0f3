#!/usr/bin/env bash
# Install the chart's test tools, from package registries only, into a cache directory kept
# outside the clone (so a second run on the same machine takes seconds, and a cold machine
# still installs everything):
#
#   helm         go install helm.sh/helm/v3/cmd/helm@HELM_VERSION
#   kubeconform  go install github.com/yannh/kubeconform/cmd/kubeconform@KUBECONFORM_VERSION
#   promtool     from Debian's `prometheus` package (downloaded and unpacked: only the
#                promtool binary is kept; nothing is installed or started)
#   schemas      kubeconform's JSON schemas, made offline by k8s_schemas.py from Kubernetes'
#                OpenAPI spec (api/openapi-spec/swagger.json of the k8s.io/kubernetes Go
#                module, K8S_VERSION) and the CRDs in CRD_DIR
#
# Usage: deploy/helm/tools/install.sh [helm|kubeconform|promtool|schemas ...]   (default: all)
#   Prints nothing on stdout; the tools land in $STOCKPIPE_CACHE/bin, the schemas in
#   $STOCKPIPE_CACHE/kubeconform/<K8S_VERSION>-<hash of the CRDs>/ (the path is also written
#   to $STOCKPIPE_CACHE/kubeconform/current).
#
# Environment:
#   STOCKPIPE_CACHE  cache directory (default /var/cache/stockpipe when writable, else
#                    ~/.cache/stockpipe)
#   PYTHON           Python with PyYAML for the CRDs (default .venv/bin/python, else python3)
#   CRD_DIR          CRDs to validate against (default ../shared/crds beside the clone,
#                    else /work/shared/crds)
#   HELM_VERSION (v3.22.0), KUBECONFORM_VERSION (v0.8.0), K8S_VERSION (1.34.4)
# Needs: go (1.24+), apt-get (for promtool).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../../.." && pwd)"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
K8S_VERSION="${K8S_VERSION:-1.34.4}"

log() { printf 'tools: %s\n' "$*" >&2; }
die() { printf 'tools: error: %s\n' "$*" >&2; exit 1; }

default_cache() {
  if mkdir -p /var/cache/stockpipe 2>/dev/null && [[ -w /var/cache/stockpipe ]]; then
    echo /var/cache/stockpipe
  else
    echo "${HOME:-/tmp}/.cache/stockpipe"
  fi
}
CACHE="${STOCKPIPE_CACHE:-$(default_cache)}"
BIN="$CACHE/bin"
mkdir -p "$BIN"
# Go's module and build caches live in the cache too: a rebuild after a wipe of ~/go is fast.
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-modcacherw" GOTOOLCHAIN=local

need_go() { command -v go >/dev/null || die "go not found (Debian: apt-get install golang, or a Go 1.24+ toolchain)"; }

# go_tool NAME MODULE@VERSION: installs $BIN/NAME unless that version is there already.
go_tool() {
  local name="$1" pkg="$2" stamp="$BIN/.$1.version"
  if [[ -x "$BIN/$name" && "$(cat "$stamp" 2>/dev/null)" == "$pkg" ]]; then
    return 0
  fi
  need_go
  log "go install $pkg (a few minutes cold)"
  local t0; t0="$(date +%s)"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "$pkg"
  echo "$pkg" >"$stamp"
  log "$name ready in $(( $(date +%s) - t0 )) s"
}

install_helm() {
  # -ldflags sets the version helm reports (go install leaves it unset otherwise).
  local pkg="helm.sh/helm/v3/cmd/helm@$HELM_VERSION" stamp="$BIN/.helm.version"
  if [[ -x "$BIN/helm" && "$(cat "$stamp" 2>/dev/null)" == "$pkg" ]]; then return 0; fi
  need_go
  log "go install $pkg (a few minutes cold)"
  local t0; t0="$(date +%s)"
  GOBIN="$BIN" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "$pkg"
  echo "$pkg" >"$stamp"
  log "helm ready in $(( $(date +%s) - t0 )) s"
}

install_promtool() {
  [[ -x "$BIN/promtool" ]] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: install promtool (Prometheus) yourself into $BIN"
  local tmp; tmp="$(mktemp -d)"
  log "promtool from Debian's prometheus package"
  # apt-get download runs as _apt where it can: give it a directory it may write.
  chmod 0777 "$tmp"
  if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || { rm -rf "$tmp"; die "apt-get download prometheus failed"; }
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/promtool" "$BIN/promtool"
  rm -rf "$tmp"
  "$BIN/promtool" --version 2>&1 | sed -n 1p >&2
}

install_schemas() {
  local crd_dir="${CRD_DIR:-}"
  if [[ -z "$crd_dir" ]]; then
    for d in "$ROOT/../shared/crds" /work/shared/crds; do [[ -d "$d" ]] && { crd_dir="$d"; break; }; done
  fi
  [[ -d "$crd_dir" ]] || die "no CRD directory (CRD_DIR, ../shared/crds)"
  local crds=("$crd_dir"/*.yaml)
  local hash; hash="$(cat "${crds[@]}" "$HERE/k8s_schemas.py" | sha256sum | cut -c1-12)"
  local out="$CACHE/kubeconform/$K8S_VERSION-$hash"
  if [[ ! -f "$out/.complete" ]]; then
    need_go
    log "Kubernetes $K8S_VERSION OpenAPI spec (go mod download k8s.io/kubernetes@v$K8S_VERSION)"
    local dir
    dir="$(cd /tmp && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -f "$dir/api/openapi-spec/swagger.json" ]] || die "no api/openapi-spec/swagger.json in k8s.io/kubernetes@v$K8S_VERSION"
    local py="${PYTHON:-}"
    [[ -n "$py" ]] || { [[ -x "$ROOT/.venv/bin/python" ]] && py="$ROOT/.venv/bin/python" || py=python3; }
    local args=()
    for f in "${crds[@]}"; do args+=(--crd "$f"); done
    rm -rf "$out"
    "$py" "$HERE/k8s_schemas.py" "$out" --openapi "$dir/api/openapi-spec/swagger.json" "${args[@]}"
    touch "$out/.complete"
  fi
  echo "$out" >"$CACHE/kubeconform/current"
}

(( $# )) || set -- helm kubeconform promtool schemas
for tool in "$@"; do
  case "$tool" in
    helm) install_helm ;;
    kubeconform) go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" ;;
    promtool) install_promtool ;;
    schemas) install_schemas ;;
    *) die "unknown tool '$tool' (helm, kubeconform, promtool, schemas)" ;;
  esac
done
