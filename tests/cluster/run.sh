#!/usr/bin/env bash
# `make cluster-test`: the Helm chart on a real single-node Kubernetes, built and torn down here.
#
#  1. deploy/cluster/install-deps.sh   Debian's containerd, runc, CNI plugins, iptables, docker.io
#  2. deploy/cluster/build.sh          Kubernetes v1.34, etcd, CoreDNS, helm, crictl from Go modules
#                                      (cached under $STOCKPIPE_K8S_CACHE: warm runs take seconds)
#  3. deploy/docker/build.sh           the service images (each service that has code)
#     deploy/images/build.sh           the Kafka and PostgreSQL images
#  4. deploy/cluster/cluster.py up     the cluster, from state under $STOCKPIPE_CLUSTER_DIR
#     docker save | cluster.py import  every image the chart needs, into the node's containerd
#  5. pytest tests/cluster             install, bars flowing, upgrade, pod deletions, 0 lost
#  6. cluster.py down                  always (trap): stops everything, checks nothing is left
#
# Exit 0 only when the tests passed and the teardown left nothing behind. Needs root.
# Environment: PY (python with pytest and the stockpipe packages, default .venv/bin/python),
# STOCKPIPE_K8S_CACHE, STOCKPIPE_CLUSTER_DIR (see deploy/cluster/cluster.py).
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
source deploy/cluster/versions.sh
CLUSTER=(python3 deploy/cluster/cluster.py)
T0=$SECONDS
declare -A took=()

phase() { printf '\n=== cluster-test %s (+%ss) %s ===\n' "$(date -u +%H:%M:%SZ)" "$((SECONDS - T0))" "$*"; }
die() { printf 'cluster-test: FAILED: %s\n' "$*" >&2; exit 1; }
step() {  # step NAME CMD...: run, time it
  local name="$1" t=$SECONDS
  shift
  phase "$name"
  "$@"
  took[$name]=$((SECONDS - t))
}

[[ "$(id -u)" == 0 ]] || die "needs root (containerd, network interfaces, iptables)"
[[ -x "$PY" ]] || die "no $PY (make deps)"

step deps deploy/cluster/install-deps.sh
step build deploy/cluster/build.sh

# Docker: started for the builds when not running, and stopped again afterwards.
DOCKER=/usr/bin/docker
[[ -x "$DOCKER" ]] || DOCKER=docker
DOCKERD_STARTED=0
if ! "$DOCKER" info >/dev/null 2>&1; then
  DOCKERD_STARTED=1
fi
stop_dockerd() {
  ((DOCKERD_STARTED)) || return 0
  local pid
  pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  echo "cluster-test: dockerd ($pid) still running 30 s after SIGTERM" >&2
}

# CLUSTER_SERVICES: which services to build, import and enable (default: each that has code;
# the chart's value <service>.enabled=false for the optional ones left out).
SERVICES=()
for s in ${CLUSTER_SERVICES:-producer ingestor analytics forecaster dashboard notifier}; do
  [[ -f "services/$s/src/stockpipe/$s/__main__.py" ]] && SERVICES+=("$s")
done
VERSION="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  libs/common/pyproject.toml)"
images() {
  DOCKER="$DOCKER" deploy/docker/build.sh "${SERVICES[@]}"
  mapfile -t INFRA_IMAGES < <(DOCKER="$DOCKER" deploy/images/build.sh)
}
step images images

rc=0
down() {
  phase "teardown"
  local t=$SECONDS
  if "${CLUSTER[@]}" down; then
    echo "cluster teardown: PASS (no process, mount, netns, link, cgroup, iptables rule or sysctl left behind)"
  else
    echo "cluster teardown: FAIL (see LEFT BEHIND above)"
    rc=1
  fi
  took[down]=$((SECONDS - t))
  stop_dockerd
  phase "summary"
  local k
  for k in deps build images up import tests down; do
    printf '  %-7s %5ss\n' "$k" "${took[$k]:-?}"
  done
  printf '  %-7s %5ss\n' total "$((SECONDS - T0))"
  ((rc == 0)) && echo "cluster-test: OK" || echo "cluster-test: FAILED"
  exit "$rc"
}
trap down EXIT
trap 'exit 130' INT TERM

step up "${CLUSTER[@]}" up
import_all() {
  local refs=() s
  for s in "${SERVICES[@]}"; do refs+=("stockpipe-$s:latest" "stockpipe-$s:$VERSION"); done
  refs+=("${INFRA_IMAGES[@]}")
  "$DOCKER" save "${refs[@]}" | "${CLUSTER[@]}" import -
}
step import import_all

export STOCKPIPE_CLUSTER_KUBECONFIG="${STOCKPIPE_CLUSTER_DIR:-/var/tmp/stockpipe-cluster}/pki/admin.kubeconfig"
export STOCKPIPE_K8S_BIN="$K8S_BIN"
export STOCKPIPE_CLUSTER_SERVICES="${SERVICES[*]}"
tests() { "$PY" -m pytest tests/cluster -v -p no:cacheprovider -o cache_dir=/tmp "$@"; }
t=$SECONDS
phase "tests (services: ${SERVICES[*]})"
tests "$@" || rc=$?
took[tests]=$((SECONDS - t))
