#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The local platform for `make run` and the integration tests: a single-node Apache
# Kafka (KRaft) and a PostgreSQL cluster on 127.0.0.1, from project-local state, no
# containers.
#
# Usage: deploy/local/infra.sh up|down|status|env|destroy
#   up       start what is not running yet (reuses what runs from this state dir), wait
#            until both accept connections (at most STOCKPIPE_READY_TIMEOUT=60 s each),
#            write $STATE/env. Exit 1 with the server's last log lines on failure.
#   down     stop the servers this state dir started (PostgreSQL fast shutdown; Kafka
#            SIGTERM, SIGKILL after 30 s) and remove $STATE/env. Idempotent.
#   status   one line per component; exit 0 when all are running (or external), 3 if not.
#   env      print $STATE/env (exit 1 when there is none: run `up` first).
#   destroy  down, then delete all data and logs of this state dir; keeps the Kafka jars.
#
# State dir: STOCKPIPE_LOCAL_DIR, default <repo>/.local. The test suite uses its own
# (e.g. .local/test), so it runs beside a developer's `make run`; each state dir gets its
# own free ports.
#
# $STATE/env holds `export K=V` lines for the services and tests:
#   KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT
#   POSTGRES_DSN=postgresql://stockpipe:stockpipe@127.0.0.1:PORT/stockpipe
#   POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD
#   STOCKPIPE_LOCAL_KAFKA / STOCKPIPE_LOCAL_POSTGRES: the addresses infra.sh manages
# If KAFKA_BOOTSTRAP_SERVERS (resp. POSTGRES_DSN) is already set in the environment, that
# server is used as is: nothing is started for it and the value goes to $STATE/env. A
# value that equals STOCKPIPE_LOCAL_KAFKA (resp. _POSTGRES) came from sourcing some
# state dir's env file, not from a choice of the user, and is ignored.
set -euo pipefail

LOCAL_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=kafka.sh
source "$LOCAL_DIR/kafka.sh"
# shellcheck source=postgres.sh
source "$LOCAL_DIR/postgres.sh"
LOG_TAG=infra

ENV_FILE="$STATE/env"

# env_quote VALUE -> VALUE as a shell word: bare when it has only safe characters (so
# the file also reads well and works with `make`'s include), single-quoted otherwise.
env_quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:@%+,=-]*$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# The parts of an external POSTGRES_DSN URL, as "HOST PORT DB USER PASSWORD" lines
# (percent-decoded); nothing for a DSN that is not a postgresql:// URL.
dsn_parts() {
  python3 - "$1" <<'EOF'
import sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
if u.scheme in ("postgresql", "postgres"):
    try:
        port = u.port or 5432
    except ValueError:
        sys.exit(0)
    for v in (u.hostname or "localhost", port, unquote(u.path.lstrip("/")),
              unquote(u.username or ""), unquote(u.password or "")):
        print(v)
EOF
}

# Is VALUE of VAR (KAFKA_BOOTSTRAP_SERVERS / POSTGRES_DSN) the user's choice of an
# external server? See the header: not when it is a managed address from an env file.
user_chose() {
  local value="$1" marker="$2"
  [[ -n "$value" && "$value" != "${!marker:-}" ]]
}

write_env_file() {
  local kafka_addr="$1" kafka_managed="$2" dsn="$3" pg_managed="$4"
  local tmp
  tmp="$(mktemp "$STATE/env.tmp.XXXXXX")"
  {
    printf '# Written by deploy/local/infra.sh up, %s. Load it with: . %s\n' "$(date -Is)" "$ENV_FILE"
    printf '# (rewritten on every up: ports may change after a down)\n'
    printf 'export KAFKA_BOOTSTRAP_SERVERS=%s\n' "$(env_quote "$kafka_addr")"
    if [[ "$kafka_managed" == 1 ]]; then
      printf 'export STOCKPIPE_LOCAL_KAFKA=%s\n' "$(env_quote "$kafka_addr")"
    fi
    printf 'export POSTGRES_DSN=%s\n' "$(env_quote "$dsn")"
    local -a parts=()
    mapfile -t parts < <(dsn_parts "$dsn")
    if (( ${#parts[@]} == 5 )); then
      printf 'export POSTGRES_HOST=%s\n' "$(env_quote "${parts[0]}")"
      printf 'export POSTGRES_PORT=%s\n' "$(env_quote "${parts[1]}")"
      printf 'export POSTGRES_DB=%s\n' "$(env_quote "${parts[2]}")"
      printf 'export POSTGRES_USER=%s\n' "$(env_quote "${parts[3]}")"
      printf 'export POSTGRES_PASSWORD=%s\n' "$(env_quote "${parts[4]}")"
    else
      log "POSTGRES_DSN is not a postgresql:// URL; POSTGRES_HOST/PORT/DB/USER/PASSWORD left out of $ENV_FILE"
    fi
    if [[ "$pg_managed" == 1 ]]; then
      printf 'export STOCKPIPE_LOCAL_POSTGRES=%s\n' "$(env_quote "$dsn")"
    fi
  } >"$tmp"
  # Atomic replace: a reader never sees a half-written file.
  mv -f -- "$tmp" "$ENV_FILE"
}

# On a failed `up`, stop what this `up` started (not what already ran before it), so a
# failure leaves the state dir as it found it.
_up_cleanup() {
  local rc=$?
  if (( rc != 0 )); then
    [[ "${KAFKA_STARTED_NOW:-0}" == 1 ]] && kafka_stop
    [[ "${PG_STARTED_NOW:-0}" == 1 ]] && pg_stop
  fi
  return "$rc"
}

cmd_up() {
  lock_state
  local t0 kafka_addr dsn kafka_managed=0 pg_managed=0
  t0="$(now)"
  trap _up_cleanup EXIT

  if user_chose "${POSTGRES_DSN:-}" STOCKPIPE_LOCAL_POSTGRES; then
    dsn="$POSTGRES_DSN"
    log "postgres: using POSTGRES_DSN from the environment (nothing started)"
  else
    pg_managed=1
    # Fail on an unusable state dir before a JVM is started for nothing.
    pg_preflight
  fi

  if user_chose "${KAFKA_BOOTSTRAP_SERVERS:-}" STOCKPIPE_LOCAL_KAFKA; then
    kafka_addr="$KAFKA_BOOTSTRAP_SERVERS"
    log "kafka: using KAFKA_BOOTSTRAP_SERVERS=$kafka_addr from the environment (nothing started)"
  else
    kafka_managed=1
    # Started first and waited for last: the JVM boots while PostgreSQL starts.
    kafka_start
  fi

  if [[ "$pg_managed" == 1 ]]; then
    local tp
    tp="$(now)"
    pg_start
    dsn="$(pg_dsn)"
    log "postgres ready on 127.0.0.1:$PG_PORT ($(elapsed "$tp") s)"
  fi

  if [[ "$kafka_managed" == 1 ]]; then
    kafka_wait_ready
    kafka_addr="$(kafka_bootstrap)"
    local how=reused
    [[ "${KAFKA_STARTED_NOW:-0}" == 1 ]] && how=started
    log "kafka ready on $kafka_addr ($how; $(elapsed "$t0") s since up began)"
  fi

  write_env_file "$kafka_addr" "$kafka_managed" "$dsn" "$pg_managed"
  log "up in $(elapsed "$t0") s; environment in $ENV_FILE (. $ENV_FILE)"
}

cmd_down() {
  lock_state
  kafka_stop
  pg_stop
  rm -f -- "$ENV_FILE"
}

cmd_status() {
  local ok=0 line
  if [[ -s "$ENV_FILE" ]] && ! grep -q '^export STOCKPIPE_LOCAL_KAFKA=' "$ENV_FILE" && ! kafka_running; then
    line="$(grep '^export KAFKA_BOOTSTRAP_SERVERS=' "$ENV_FILE" | cut -d= -f2-)"
    printf '%-9s %-8s %s\n' kafka external "$line"
  else
    kafka_status_line
    kafka_running || ok=3
  fi
  if [[ -s "$ENV_FILE" ]] && ! grep -q '^export STOCKPIPE_LOCAL_POSTGRES=' "$ENV_FILE" && ! pg_running; then
    # The DSN may hold a password: show where, not who.
    line="$(grep '^export POSTGRES_HOST=' "$ENV_FILE" | cut -d= -f2-):$(grep '^export POSTGRES_PORT=' "$ENV_FILE" | cut -d= -f2-)"
    printf '%-9s %-8s %s\n' postgres external "$line"
  else
    pg_status_line
    pg_running || ok=3
  fi
  return "$ok"
}

cmd_env() {
  [[ -s "$ENV_FILE" ]] || die "no $ENV_FILE: run deploy/local/infra.sh up first"
  cat -- "$ENV_FILE"
}

cmd_destroy() {
  cmd_down
  # Everything but the jars (libs/): those only depend on pom.xml and take a Maven run
  # to get back.
  rm -rf -- "$KAFKA_DATA" "$KAFKA_LOGS" "$KAFKA_CONF" "$KAFKA_PORTS" "$KAFKA_DIR/cluster.id" \
    "$KAFKA_DIR"/libs.tmp.* "$KAFKA_DIR"/hs_err_pid*.log "$PG_DIR" "$STATE"/env.tmp.*
  # A relocated cluster (postgres.sh): its link in the state dir goes too.
  if [[ -L "$STATE/postgres" ]]; then
    rm -f -- "$STATE/postgres"
  fi
  log "destroyed the data of $STATE (kept $KAFKA_LIBS)"
}

usage() {
  printf 'usage: %s up|down|status|env|destroy\n' "$0" >&2
  printf '  state dir: %s (STOCKPIPE_LOCAL_DIR)\n' "$STATE" >&2
}

main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    destroy) cmd_destroy ;;
    -h | --help | help) usage ;;
    *)
      usage
      exit 2
      ;;
  esac
}

main "$@"
