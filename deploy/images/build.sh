#!/usr/bin/env bash
# Build the local stand-ins for the official Kafka and PostgreSQL images, from package
# registries only (no image registry is reachable here):
#   stockpipe-kafka:<kafka version>    the Kafka jars deploy/local fetches with Maven
#                                      (deploy/local/kafka/pom.xml) + Debian's JRE 17
#   stockpipe-postgres:15              Debian 12's PostgreSQL 15
# Both FROM the debootstrap base the service images use (deploy/docker/base-image.sh).
# Same paths, ports and settings interface as apache/kafka and postgres: see the comments
# at the top of kafka/Dockerfile, kafka/run, postgres/Dockerfile and docker-entrypoint.sh.
#
# Usage: deploy/images/build.sh [kafka] [postgres]      (default: both)
# Environment: BASE_IMAGE (default stockpipe-base:bookworm), IMAGE_PREFIX (default
# stockpipe-), DOCKER (client, default /usr/bin/docker when present, else docker).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-stockpipe-base:bookworm}"
IMAGE_PREFIX="${IMAGE_PREFIX:-stockpipe-}"
if [[ -z "${DOCKER:-}" ]]; then
  DOCKER=docker
  [[ -x /usr/bin/docker ]] && DOCKER=/usr/bin/docker
fi

log() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }

(( $# )) || set -- kafka postgres
"$DOCKER" info >/dev/null 2>&1 || die "cannot reach the Docker daemon (deploy/docker/build.sh starts one as root)"
BASE_IMAGE="$BASE_IMAGE" "$ROOT/deploy/docker/base-image.sh"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/local/kafka/pom.xml")"
[[ -n "$KAFKA_VERSION" ]] || die "no kafka.version in deploy/local/kafka/pom.xml"

CTX="$(mktemp -d /tmp/stockpipe-images.XXXXXX)"
trap 'rm -rf -- "$CTX"' EXIT

for what in "$@"; do
  t0=$SECONDS
  case "$what" in
    kafka)
      # The jars, exactly as `make run` uses them (Maven's local repository is shared, so
      # this is a copy when deploy/local already fetched them).
      STOCKPIPE_LOCAL_DIR="$CTX/local" "$ROOT/deploy/local/kafka.sh" fetch >&2
      cp -r "$HERE/kafka" "$CTX/kafka"
      cp -r "$CTX/local/kafka/libs" "$CTX/kafka/libs"
      cp "$ROOT/deploy/local/kafka/tools-log4j2.properties" "$CTX/kafka/"
      tag="${IMAGE_PREFIX}kafka:$KAFKA_VERSION"
      "$DOCKER" build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "KAFKA_VERSION=$KAFKA_VERSION" -t "$tag" "$CTX/kafka" >&2
      ;;
    postgres)
      tag="${IMAGE_PREFIX}postgres:15"
      "$DOCKER" build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg PG_MAJOR=15 \
        -t "$tag" "$HERE/postgres" >&2
      ;;
    *) die "unknown image '$what' (kafka, postgres)" ;;
  esac
  log "$tag built in $((SECONDS - t0))s"
  echo "$tag"
done
