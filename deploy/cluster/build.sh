#!/usr/bin/env bash
# Builds (or reuses) the single-node cluster's binaries under $STOCKPIPE_K8S_CACHE
# (default /var/cache/stockpipe/k8s): etcd, the Kubernetes components, kubectl, CoreDNS,
# helm and the static pause program, all from Go modules, with the Go module and build
# caches kept there too. A binary whose stamp (version + build recipe) matches is reused,
# so a warm run takes seconds and a cold one ~10 minutes on 2 cores.
# Usage: deploy/cluster/build.sh
set -euo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/versions.sh"

export GOMODCACHE="$K8S_CACHE/gomod" GOCACHE="$K8S_CACHE/gocache" GOWORK=off GOFLAGS=-buildvcs=false
export GOTOOLCHAIN=local
mkdir -p "$K8S_BIN" "$K8S_CACHE/src" "$GOMODCACHE" "$GOCACHE"

log() { printf '[build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# fresh NAME RECIPE: true when bin/NAME exists and was built with RECIPE.
fresh() { [[ -x "$K8S_BIN/$1" && -f "$K8S_BIN/.$1.stamp" && "$(cat "$K8S_BIN/.$1.stamp")" == "$2" ]]; }
stamp() { printf '%s' "$2" >"$K8S_BIN/.$1.stamp"; }
timed() { local t0=$SECONDS; "$@"; log "$1 ${*: -1}: $((SECONDS - t0))s"; }

build_etcd() {
  local recipe="etcd $ETCD_VERSION"
  fresh etcd "$recipe" && return
  log "etcd $ETCD_VERSION"
  # `go install go.etcd.io/etcd/server/v3@...` is refused (its go.mod has replace
  # directives), so a wrapper module calls etcdmain.Main.
  local d="$K8S_CACHE/src/etcd"
  rm -rf "$d" && mkdir -p "$d"
  cat >"$d/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$d" && go mod init stockpipe/etcd >/dev/null 2>&1 &&
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy &&
    CGO_ENABLED=0 go build -trimpath -o "$K8S_BIN/etcd" .)
  stamp etcd "$recipe"
}

k8s_src() {
  local d="$K8S_CACHE/src/kubernetes-$K8S_VERSION"
  if [[ ! -f "$d/.ready" ]]; then
    log "kubernetes $K8S_VERSION source"
    local mod
    mod="$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$mod" ]] || { log "no source dir for k8s.io/kubernetes@$K8S_VERSION"; return 1; }
    rm -rf "$d" && cp -r "$mod" "$d" && chmod -R u+w "$d"
    rm -rf "$d/vendor" "$d/go.work" "$d/go.work.sum"
    # staging replaces -> the published modules of the same release
    sed -i -E "s#^(\s*k8s\.io/[A-Za-z0-9._-]+) => \./staging/src/k8s\.io/[A-Za-z0-9._-]+\$#\1 => \1 $K8S_STAGING_VERSION#" "$d/go.mod"
    if grep -q '=> ./staging' "$d/go.mod"; then log "unrewritten staging replace in go.mod"; return 1; fi
    touch "$d/.ready"
  fi
  echo "$d"
}

build_k8s() {
  local name="$1" src recipe="kubernetes $K8S_VERSION $1"
  fresh "$name" "$recipe" && return
  src="$(k8s_src)"
  log "$name $K8S_VERSION"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$src" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ld" -o "$K8S_BIN/$name" "./cmd/$name")
  stamp "$name" "$recipe"
}

build_install() {
  local name="$1" pkg="$2" recipe="$2"
  fresh "$name" "$recipe" && return
  log "$name ($pkg)"
  local tmp="$K8S_CACHE/src/gobin-$name"
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd /tmp && CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "$pkg")
  mv "$tmp/$(basename "${pkg%@*}")" "$K8S_BIN/$name" && rm -rf "$tmp"
  stamp "$name" "$recipe"
}

build_pause() {
  local recipe
  recipe="pause $(sha256sum "$HERE/pause/main.go" | cut -c1-16)"
  fresh pause "$recipe" && return
  (cd "$HERE/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$K8S_BIN/pause" .)
  stamp pause "$recipe"
}

T0=$SECONDS
timed build_pause pause
timed build_etcd etcd
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  timed build_k8s "$b"
done
timed build_install coredns "github.com/coredns/coredns@$COREDNS_VERSION"
build_helm() {
  # The chart's tools (deploy/helm/tools/install.sh, run before this in CI) build the same
  # helm into $STOCKPIPE_CACHE/bin: reuse it rather than build it twice.
  local pkg="helm.sh/helm/v3/cmd/helm@$HELM_VERSION" other="${STOCKPIPE_CACHE:-/var/cache/stockpipe}/bin"
  fresh helm "$pkg" && return
  if [[ -x "$other/helm" && "$(cat "$other/.helm.version" 2>/dev/null)" == "$pkg" ]]; then
    cp "$other/helm" "$K8S_BIN/helm"
  else
    log "helm $HELM_VERSION"
    (cd /tmp && CGO_ENABLED=0 GOBIN="$K8S_BIN" go install -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "$pkg")
  fi
  stamp helm "$pkg"
}
timed build_helm helm
# crictl: the CRI client cluster.py uses to stop and remove pod sandboxes at teardown.
timed build_install crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
log "all binaries ready in $K8S_BIN ($((SECONDS - T0))s)"
