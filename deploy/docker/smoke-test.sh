#!/usr/bin/env bash
# Smoke test of the service images against a real Kafka and PostgreSQL: what every image
# holds (uid 10001, no compiler, no pip, no test suites, no package caches), the set-up
# jobs, then ingestor + analytics + producer in containers locked down as in Kubernetes
# (--read-only root filesystem, writable /tmp only, --cap-drop ALL, uid 10001,
# no-new-privileges), 2000 synthetic bars end to end, health endpoints; every other service
# of the checkout (forecaster, dashboard under gunicorn, notifier) ready and healthy beside
# them; clean SIGTERM for all.
#
# Usage: deploy/docker/smoke-test.sh        (build the images first: deploy/docker/build.sh)
#
# Kafka and PostgreSQL come from deploy/local/infra.sh under their own state dir
# (SMOKE_LOCAL_DIR, default <repo>/.local/docker; deliberately not STOCKPIPE_LOCAL_DIR,
# which the Makefile exports for `make run`'s servers), wiped at the start so the counts
# are exact, stopped at the end (the data stays there for a look until the next run).
# Containers use --network host; services listen on 127.0.0.1:18001-18003.
#
# Environment: TAG (image tag, default latest), IMAGE_PREFIX (default stockpipe-),
#   SMOKE_LOCAL_DIR (infra state dir, default <repo>/.local/docker),
#   SMOKE_BARS (default 2000), SMOKE_TIMEOUT (seconds for the bars to land, default 180).
# Exit 0 when everything passed; else 1 with the reason and every container's log.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
TAG="${TAG:-latest}"
IMAGE_PREFIX="${IMAGE_PREFIX:-stockpipe-}"
BARS="${SMOKE_BARS:-2000}"
TIMEOUT="${SMOKE_TIMEOUT:-180}"
# Never the state dir of `make run` or the tests: this script wipes it.
export STOCKPIPE_LOCAL_DIR="${SMOKE_LOCAL_DIR:-$ROOT/.local/docker}"
INFRA="$ROOT/deploy/local/infra.sh"
RUN_ID="$$"
declare -A PORT=([producer]=18001 [ingestor]=18002 [analytics]=18003 [forecaster]=18004 [dashboard]=18005 [notifier]=18006)
# The services beyond the core three whose package is in this checkout (their images too).
EXTRA=()
for s in forecaster dashboard notifier; do
  [[ -f "$ROOT/services/$s/src/stockpipe/$s/__main__.py" ]] && EXTRA+=("$s")
done
CONTAINERS=()
T0="$(date +%s)"

log() { printf 'smoke [%3ss]: %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }

dump_logs() {
  local c
  for c in "${CONTAINERS[@]}"; do
    docker inspect "$c" >/dev/null 2>&1 || continue
    printf -- '----- %s (%s) -----\n' "$c" "$(docker inspect -f 'status={{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}' "$c")" >&2
    docker logs --tail 200 "$c" >&2 2>&1 || true
  done
  printf -- '-----\n' >&2
}

fail() {
  log "FAILED: $*"
  dump_logs
  exit 1
}

INFRA_UP=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if (( ${#CONTAINERS[@]} )); then
    docker rm -f "${CONTAINERS[@]}" >/dev/null 2>&1 || true
  fi
  if [[ "$INFRA_UP" == 1 ]]; then
    "$INFRA" down >/dev/null 2>&1 || log "warning: '$INFRA down' failed (STOCKPIPE_LOCAL_DIR=$STOCKPIPE_LOCAL_DIR)"
  fi
  if (( rc == 0 )); then log "PASSED in $(( $(date +%s) - T0 )) s"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- preflight
command -v docker >/dev/null || fail "docker not found"
docker info >/dev/null 2>&1 || fail "cannot reach the Docker daemon; start it: dockerd --bridge=none --iptables=false > /tmp/dockerd.log 2>&1 &"
command -v curl >/dev/null || fail "curl not found"
for s in producer ingestor analytics "${EXTRA[@]}"; do
  docker image inspect "$IMAGE_PREFIX$s:$TAG" >/dev/null 2>&1 \
    || fail "image $IMAGE_PREFIX$s:$TAG missing: run deploy/docker/build.sh first"
done

# ---- what each image holds: non-root, no build tools, no test suites, no caches
for s in producer ingestor analytics "${EXTRA[@]}"; do
  image="$IMAGE_PREFIX$s:$TAG"
  user="$(docker image inspect -f '{{.Config.User}}' "$image")"
  [[ "$user" == 10001:10001 ]] || fail "$image runs as '$user' (expected 10001:10001)"
  problems="$(docker run --rm --network none --read-only --entrypoint python "$image" -c '
import glob, os, shutil, site
bad = [t for t in ("gcc", "cc", "c++", "make", "pip", "pip3") if shutil.which(t)]
bad += [d for p in site.getsitepackages() for d in glob.glob(p + "/*/tests") + glob.glob(p + "/*/*/tests")]
bad += [d for d in ("/root/.cache", "/opt/build", "/src") if os.path.exists(d)]
bad += ["/var/lib/apt/lists/" + f for f in os.listdir("/var/lib/apt/lists") if f not in ("lock", "partial", "auxfiles")]
print(" ".join(bad))')" || fail "$image: cannot run python -c"
  [[ -z "$problems" ]] || fail "$image holds what it should not: $problems"
  log "$image: uid 10001, no compiler/pip/tests/caches, $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
done

# SQL count through psql, else through the project's venv.
count_rows() {
  if command -v psql >/dev/null; then
    psql "$POSTGRES_DSN" -XtAq -c "SELECT count(*) FROM $1" 2>/dev/null
  else
    "$ROOT/.venv/bin/python" - "$1" 2>/dev/null <<'EOF'
import os, sys, psycopg2
with psycopg2.connect(os.environ["POSTGRES_DSN"]) as c, c.cursor() as cur:
    cur.execute(f"SELECT count(*) FROM {sys.argv[1]}")
    print(cur.fetchone()[0])
EOF
  fi
}

# http_code PORT PATH -> the HTTP status (000 when nothing answers).
http_code() {
  curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$1$2" || true
}

for s in producer ingestor analytics "${EXTRA[@]}"; do
  [[ "$(http_code "${PORT[$s]}" /)" == 000 ]] || fail "port ${PORT[$s]} (for $s) is already in use on 127.0.0.1"
done

# ---- Kafka + PostgreSQL, fresh: a previous run's rows and offsets would skew the counts.
log "infra: fresh Kafka + PostgreSQL in $STOCKPIPE_LOCAL_DIR"
# Always our own servers, even when the caller's shell points at others.
unset KAFKA_BOOTSTRAP_SERVERS POSTGRES_DSN
"$INFRA" destroy >/dev/null 2>&1 || true
INFRA_UP=1
"$INFRA" up || fail "infra.sh up failed"
# shellcheck disable=SC1091
source "$STOCKPIPE_LOCAL_DIR/env"
[[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" && -n "${POSTGRES_DSN:-}" ]] || fail "no KAFKA_BOOTSTRAP_SERVERS / POSTGRES_DSN in $STOCKPIPE_LOCAL_DIR/env"

# Every container: the Kubernetes security context, by docker flags.
LOCKED=(--network host --read-only --tmpfs "/tmp:rw,nosuid,nodev,size=64m" --cap-drop ALL
  --security-opt no-new-privileges --user 10001:10001
  --label "io.stockpipe.smoke=$RUN_ID"
  -e KAFKA_BOOTSTRAP_SERVERS -e POSTGRES_DSN -e PROGRESS_INTERVAL=5)

# start NAME IMAGE [docker run args...] -> detached container, remembered for cleanup.
start() {
  local name="stockpipe-smoke-$1-$RUN_ID" image="$IMAGE_PREFIX$2:$TAG"
  shift 2
  CONTAINERS+=("$name")
  docker run -d --name "$name" "${LOCKED[@]}" "$@" "$image" >/dev/null || fail "docker run $name"
}

# exit_code NAME TIMEOUT -> waits (bounded) for the container to exit, prints its code.
exit_code() {
  local name="stockpipe-smoke-$1-$RUN_ID" code
  code="$(timeout "$2" docker wait "$name")" || fail "$1 still running after $2 s"
  printf '%s' "$code"
}

# job_run NAME IMAGE MODULE: a set-up job (python -m MODULE from IMAGE's venv) that must
# exit 0 within 120 s.
job_run() {
  local name="$1" image="$2" module="$3"
  local cname="stockpipe-smoke-$name-$RUN_ID" code
  CONTAINERS+=("$cname")
  docker run -d --name "$cname" "${LOCKED[@]}" --entrypoint python "$IMAGE_PREFIX$image:$TAG" -m "$module" >/dev/null \
    || fail "docker run $cname"
  code="$(exit_code "$name" 120)"
  [[ "$code" == 0 ]] || fail "job $name (python -m $module, $image image) exited $code"
  log "job $name (python -m $module, $image image): $(docker logs "$cname" 2>&1 | tail -n 1)"
}

# ---- set-up jobs, each from a different service image (any image can run them)
job_run topics producer stockpipe.common.topics
job_run migrate ingestor stockpipe.common.migrate
job_run migrate-again analytics stockpipe.common.migrate   # idempotent: nothing left to do

# ---- consumers first, then the producer
start ingestor ingestor -e "HTTP_PORT=${PORT[ingestor]}"
start analytics analytics -e "HTTP_PORT=${PORT[analytics]}"
for s in ingestor analytics; do
  deadline=$(( $(date +%s) + 60 ))
  until [[ "$(http_code "${PORT[$s]}" /readyz)" == 200 ]]; do
    (( $(date +%s) < deadline )) || fail "$s: /readyz not 200 within 60 s (last: $(http_code "${PORT[$s]}" /readyz))"
    [[ "$(docker inspect -f '{{.State.Running}}' "stockpipe-smoke-$s-$RUN_ID")" == true ]] || fail "$s exited"
    sleep 1
  done
  log "$s ready (/readyz 200 on :${PORT[$s]})"
done
start producer producer -e "HTTP_PORT=${PORT[producer]}" -e PRODUCER_SOURCE=synthetic \
  -e SYNTHETIC_RATE=0 -e SYNTHETIC_START=2024-01-02T00:00:00Z -e "MAX_MESSAGES=$BARS" -e COMPANIES=false
log "producer started: $BARS synthetic bars"

# ---- every bar stored, every indicator stored
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  bars="$(count_rows price_bars || echo '?')"
  inds="$(count_rows indicators || echo '?')"
  [[ "$bars" == "$BARS" && "$inds" == "$BARS" ]] && break
  if [[ "$bars" =~ ^[0-9]+$ && "$inds" =~ ^[0-9]+$ ]] && (( bars > BARS || inds > BARS )); then
    fail "too many rows: price_bars=$bars indicators=$inds (expected $BARS)"
  fi
  (( $(date +%s) < deadline )) || fail "after $TIMEOUT s: price_bars=$bars indicators=$inds (expected $BARS each)"
  for s in ingestor analytics; do
    [[ "$(docker inspect -f '{{.State.Running}}' "stockpipe-smoke-$s-$RUN_ID")" == true ]] || fail "$s exited"
  done
  sleep 1
done
log "price_bars = $bars, indicators = $inds"

code="$(exit_code producer 60)"
[[ "$code" == 0 ]] || fail "producer exited $code after MAX_MESSAGES=$BARS (expected 0)"
log "producer exited 0 after $BARS bars"

# ---- health and metrics of the running consumers
for s in ingestor analytics; do
  for path in /readyz /healthz; do
    c="$(http_code "${PORT[$s]}" "$path")"
    [[ "$c" == 200 ]] || fail "$s: GET $path -> $c (expected 200)"
  done
  metrics="$(curl -fsS -m 5 "http://127.0.0.1:${PORT[$s]}/metrics")" || fail "$s: GET /metrics failed"
  grep -q '^stockpipe_messages_consumed_total{' <<<"$metrics" || fail "$s: /metrics has no stockpipe_messages_consumed_total"
  log "$s: /readyz 200, /healthz 200, /metrics $(wc -l <<<"$metrics") lines"
done

# ---- the other services of this checkout: ready, healthy, metrics (the dashboard under gunicorn)
for s in "${EXTRA[@]}"; do
  start "$s" "$s" -e "HTTP_PORT=${PORT[$s]}"
done
for s in "${EXTRA[@]}"; do
  deadline=$(( $(date +%s) + 90 ))
  until [[ "$(http_code "${PORT[$s]}" /readyz)" == 200 ]]; do
    (( $(date +%s) < deadline )) || fail "$s: /readyz not 200 within 90 s (last: $(http_code "${PORT[$s]}" /readyz))"
    [[ "$(docker inspect -f '{{.State.Running}}' "stockpipe-smoke-$s-$RUN_ID")" == true ]] || fail "$s exited"
    sleep 1
  done
  [[ "$(http_code "${PORT[$s]}" /healthz)" == 200 ]] || fail "$s: GET /healthz not 200"
  metrics="$(curl -fsS -m 5 "http://127.0.0.1:${PORT[$s]}/metrics")" || fail "$s: GET /metrics failed"
  grep -q "^stockpipe_" <<<"$metrics" || fail "$s: /metrics has no stockpipe_ metric"
  if [[ "$s" == dashboard ]]; then
    # gunicorn runs inside `python -m stockpipe.dashboard` (no process of that name): its
    # Server header and its worker lines say it serves.
    # (Captured first: `grep -q` on a pipe may end the writer early, and pipefail would count it.)
    headers="$(curl -fsS -m 5 -o /dev/null -D - "http://127.0.0.1:${PORT[$s]}/healthz")"
    grep -qi '^server: gunicorn' <<<"$headers" || fail "dashboard: not served by gunicorn (no 'Server: gunicorn' header)"
    logs="$(docker logs "stockpipe-smoke-$s-$RUN_ID" 2>&1)"
    grep -q 'Booting worker' <<<"$logs" || fail "dashboard: no gunicorn worker booted"
  fi
  log "$s: /readyz 200, /healthz 200, /metrics ok"
done

# ---- SIGTERM: each stops cleanly (exit 0) well before docker's 15 s SIGKILL. The first
# producer stopped by itself, so a second one, publishing (paced), gets the signal.
start producer-live producer -e "HTTP_PORT=${PORT[producer]}" -e PRODUCER_SOURCE=synthetic \
  -e SYNTHETIC_RATE=100 -e COMPANIES=false
deadline=$(( $(date +%s) + 60 ))
until [[ "$(http_code "${PORT[producer]}" /readyz)" == 200 ]]; do
  (( $(date +%s) < deadline )) || fail "producer-live: /readyz not 200 within 60 s"
  [[ "$(docker inspect -f '{{.State.Running}}' "stockpipe-smoke-producer-live-$RUN_ID")" == true ]] || fail "producer-live exited"
  sleep 1
done
sleep 2  # let it publish for a moment
for s in producer-live ingestor analytics "${EXTRA[@]}"; do
  t="$(date +%s.%N)"
  docker stop -t 15 "stockpipe-smoke-$s-$RUN_ID" >/dev/null || fail "docker stop $s"
  took="$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  code="$(docker inspect -f '{{.State.ExitCode}}' "stockpipe-smoke-$s-$RUN_ID")"
  [[ "$code" == 0 ]] || fail "$s exited $code on SIGTERM (expected 0; 137 = killed after 15 s)"
  log "$s: SIGTERM -> exit 0 in $took s"
done
