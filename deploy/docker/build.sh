#!/usr/bin/env bash
# Build the service images: stockpipe-<service>:<version> and :latest for each SERVICE
# (default: every service whose package is in this checkout, i.e. has
# services/<name>/src/stockpipe/<name>/__main__.py), from deploy/docker/Dockerfile with the
# repo root as context. Makes the base image first when it is missing (base-image.sh).
#
# Usage: deploy/docker/build.sh [SERVICE...]
#
# Environment:
#   BASE_IMAGE     base image tag (default stockpipe-base:bookworm)
#   IMAGE_PREFIX   image name prefix (default stockpipe-; e.g. registry/stockpipe-)
#   CA_BUNDLE      CA bundle pip trusts inside the build, passed as a BuildKit secret
#                  (default /etc/ssl/certs/ca-certificates.crt when it exists)
#   DOCKER         docker client to use (default: the first one on PATH that can build
#                  with BuildKit: one with buildx, or a client older than 23.0)
#   BUILD_ARGS     extra `docker build` arguments, e.g. "--no-cache"
#
# Version: libs/common/pyproject.toml's. Builds run with --network host (no bridge here).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-stockpipe-base:bookworm}"
IMAGE_PREFIX="${IMAGE_PREFIX:-stockpipe-}"
KNOWN="producer ingestor analytics forecaster dashboard notifier"

log() { printf 'build: %s\n' "$*" >&2; }
die() { printf 'build: error: %s\n' "$*" >&2; exit 1; }

if (( $# == 0 )); then
  for s in $KNOWN; do
    [[ -f "$ROOT/services/$s/src/stockpipe/$s/__main__.py" ]] && set -- "$@" "$s"
  done
  (( $# )) || die "no service with a __main__.py under services/"
  log "services in this checkout: $*"
fi
for s in "$@"; do
  [[ " $KNOWN " == *" $s "* ]] || die "unknown service '$s' (one of: $KNOWN)"
  [[ -f "$ROOT/services/$s/pyproject.toml" ]] || die "no services/$s/pyproject.toml"
  [[ -f "$ROOT/services/$s/src/stockpipe/$s/__main__.py" ]] || die "services/$s has no __main__.py yet: nothing to run in an image"
done

# A docker client that builds with BuildKit (secrets, cache mounts): `docker buildx`, or
# a pre-23.0 client (its `docker build` has BuildKit built in). Newer clients without the
# buildx plugin only have the legacy builder.
pick_docker() {
  local c major
  for c in ${DOCKER:-$(type -ap docker | awk '!seen[$0]++')}; do
    if "$c" buildx version >/dev/null 2>&1; then
      printf '%s buildx build --load\n' "$c"; return 0
    fi
    major="$("$c" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)"
    if [[ "$major" =~ ^[0-9]+$ ]] && (( major < 23 )); then
      printf '%s build\n' "$c"; return 0
    fi
  done
  return 1
}

command -v docker >/dev/null || die "docker not found (Debian: apt-get install -y docker.io)"
if ! docker info >/dev/null 2>&1; then
  # As root on a machine with no running daemon: start one for the build, on no bridge
  # network (it creates no private-range network; builds and containers use the host's).
  if [[ "$(id -u)" == 0 && -z "${DOCKER_HOST:-}" ]] && command -v dockerd >/dev/null; then
    log "starting dockerd (log: /tmp/dockerd.log)"
    nohup dockerd --bridge=none --iptables=false >/tmp/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon (${DOCKER_HOST:-unix:///var/run/docker.sock}); start it, e.g.:
  dockerd --bridge=none --iptables=false > /tmp/dockerd.log 2>&1 &"
fi
read -r -a BUILD <<<"$(pick_docker)" || true
(( ${#BUILD[@]} )) || die "no docker client here can build with BuildKit: install the buildx plugin, or use a docker client older than 23.0 (Debian's docker.io has one: DOCKER=/usr/bin/docker)"

BASE_IMAGE="$BASE_IMAGE" "$HERE/base-image.sh"

VERSION="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$ROOT/libs/common/pyproject.toml")"
REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "$REVISION" != unknown ]] && [[ -n "$(git -C "$ROOT" status --porcelain -- libs services db/migrations 2>/dev/null)" ]]; then
  REVISION="$REVISION-dirty"
fi
# The commit's time, not the build's: rebuilding the same commit gives the same labels.
CREATED="$(git -C "$ROOT" log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)"

SECRET=()
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -s "$CA_BUNDLE" ]] && SECRET=(--secret "id=ca-bundle,src=$CA_BUNDLE")

read -r -a EXTRA <<<"${BUILD_ARGS:-}"
for s in "$@"; do
  image="$IMAGE_PREFIX$s"
  log "$image:$VERSION (and :latest)"
  t0="$(date +%s)"
  DOCKER_BUILDKIT=1 "${BUILD[@]}" --network host --progress "${PROGRESS:-plain}" \
    -f "$HERE/Dockerfile" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "SERVICE=$s" \
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED" \
    "${SECRET[@]}" "${EXTRA[@]}" \
    -t "$image:$VERSION" -t "$image:latest" "$ROOT"
  log "$image:$VERSION built in $(( $(date +%s) - t0 )) s, $(docker image inspect -f '{{.Size}}' "$image:$VERSION" | awk '{printf "%.0f MB", $1/1e6}')"
done
