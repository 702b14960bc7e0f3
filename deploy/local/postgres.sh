#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A private PostgreSQL cluster for local development and the integration tests: its own
# data directory in the state dir, listening on 127.0.0.1 only, on a free port, with
# role and database `stockpipe` (password `stockpipe`). It never touches a system-wide
# cluster the distribution may have started.
#
# Sourced by infra.sh for pg_start / pg_stop / pg_status_line. Run directly:
#   postgres.sh psql [ARGS...]   psql as `stockpipe` on the running cluster of this state dir
#
# State (under $STATE/postgres): data/ (PGDATA), run/ (unix socket), postgres.log,
# initdb.log, port. initdb and postgres refuse to run as root, so as root everything
# runs as the `postgres` system user (runuser) and $STATE/postgres belongs to it;
# otherwise as the current user. As root in a directory the `postgres` user cannot
# reach (a 0700 one on the way, e.g. a clone in /root/stockpipe), the cluster lives in
# /var/tmp/stockpipe-postgres/<hash of the state dir> instead, owned by `postgres`, and
# $STATE/postgres is a symlink to it (for people: the server itself uses the real path).
# `infra.sh destroy` deletes both.
#
# Environment: STOCKPIPE_LOCAL_DIR (state dir), STOCKPIPE_PG_BINDIR (server binaries;
# default: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin, else PATH).
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

# The cluster's user when we are root (initdb and postgres refuse to run as root).
PG_OS_USER=postgres
# Where relocated clusters live (see the header): outside any home, kept across reboots.
PG_RELOCATED_BASE=/var/tmp/stockpipe-postgres

# _pg_dir -> the cluster's directory (header): $STATE/postgres, or its relocated twin
# when we are root and the `postgres` user cannot reach $STATE/postgres.
_pg_dir() {
  local link="$STATE/postgres" probe
  if (( EUID != 0 )) || ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    printf '%s\n' "$link"
    return 0
  fi
  if [[ -L "$link" ]]; then  # relocated before
    readlink -- "$link"
    return 0
  fi
  # The nearest existing directory on the way: can the server's user search it?
  probe="$link"
  while [[ ! -d "$probe" ]]; do
    probe="$(dirname -- "$probe")"
  done
  if runuser -u "$PG_OS_USER" -- test -x "$probe" 2>/dev/null; then
    printf '%s\n' "$link"
  else
    printf '%s/%s\n' "$PG_RELOCATED_BASE" "$(printf '%s' "$STATE" | sha256sum | cut -c1-16)"
  fi
}

PG_DIR="$(_pg_dir)"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$PG_DIR/postgres.log"
PG_PORTFILE="$PG_DIR/port"
# What the services use; a throwaway local cluster, so a fixed, documented password.
PG_APP_USER=stockpipe
PG_APP_PASSWORD=stockpipe
PG_APP_DB=stockpipe
# The cluster's superuser, reachable only through the unix socket in $PG_SOCK (trust).
PG_SUPERUSER=postgres

pg_bindir() {
  local d
  if [[ -n "${STOCKPIPE_PG_BINDIR:-}" ]]; then
    printf '%s\n' "$STOCKPIPE_PG_BINDIR"
    return 0
  fi
  # pg_config may belong to a client-only package (libpq-dev) of another version, so
  # take its answer only when the server binaries are really there.
  if have pg_config; then
    d="$(pg_config --bindir 2>/dev/null || true)"
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
      printf '%s\n' "$d"
      return 0
    fi
  fi
  # Debian/Ubuntu keep the server binaries off PATH, one directory per major version.
  d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)"
  if [[ -n "$d" && -x "$d/initdb" ]]; then
    printf '%s\n' "$d"
    return 0
  fi
  if have initdb && have pg_ctl; then
    dirname -- "$(command -v initdb)"
    return 0
  fi
  return 1
}

_pg_init_vars() {
  [[ -n "${PG_BIN:-}" ]] && return 0
  PG_BIN="$(pg_bindir)" ||
    die "PostgreSQL server binaries (initdb, pg_ctl) not found; run deploy/local/install-deps.sh or set STOCKPIPE_PG_BINDIR"
}

# run_pg CMD...: run a PostgreSQL program as the user that owns the cluster, from
# inside $PG_DIR (a root-only working directory such as /root would make the postgres
# user's programs fail with "could not identify current directory"). 9>&-: the
# postmaster must not inherit the state-dir lock (see lock_state).
run_pg() {
  if (( EUID == 0 )); then
    (cd "$PG_DIR" && runuser -u "$PG_OS_USER" -- "$@" 9>&-)
  else
    (cd "$PG_DIR" && "$@" 9>&-)
  fi
}

# pg_preflight: make $PG_DIR exist, belong to the cluster's user, and be reachable by
# it; find the binaries. Cheap, so `up` checks it before starting anything else.
pg_preflight() {
  _pg_init_vars
  if (( EUID == 0 )); then
    id -u "$PG_OS_USER" >/dev/null 2>&1 ||
      die "running as root needs the '$PG_OS_USER' system user (installed with the postgresql package) to run the server"
  fi
  if [[ "$PG_DIR" != "$STATE/postgres" ]]; then
    _pg_relocate
  fi
  mkdir -p -- "$PG_DIR"
  if (( EUID == 0 )); then
    chown "$PG_OS_USER:" "$PG_DIR"
    if ! runuser -u "$PG_OS_USER" -- test -w "$PG_DIR" -a -x "$PG_DIR"; then
      die "the '$PG_OS_USER' user cannot reach $PG_DIR; set STOCKPIPE_LOCAL_DIR to a directory it can reach, e.g. /var/tmp/stockpipe"
    fi
  fi
}

# _pg_relocate: make $PG_DIR under $PG_RELOCATED_BASE safely (a world-writable /var/tmp:
# the base must be root's own real directory, never a planted symlink), and point
# $STATE/postgres at it.
_pg_relocate() {
  if [[ ! -e "$PG_RELOCATED_BASE" ]]; then
    mkdir -m 0755 -- "$PG_RELOCATED_BASE"
  fi
  if [[ -L "$PG_RELOCATED_BASE" || ! -d "$PG_RELOCATED_BASE" || "$(stat -c %u -- "$PG_RELOCATED_BASE")" != 0 ]]; then
    die "$PG_RELOCATED_BASE is not a directory owned by root; remove it and try again"
  fi
  [[ -d "$PG_DIR" ]] || mkdir -m 0700 -- "$PG_DIR"
  mkdir -p -- "$STATE"
  if [[ ! -L "$STATE/postgres" ]]; then
    ln -s -- "$PG_DIR" "$STATE/postgres"
    log "postgres: the '$PG_OS_USER' user cannot reach $STATE, so the cluster lives in $PG_DIR ($STATE/postgres points there)"
  fi
}

pg_running() {
  [[ -s "$PG_DATA/postmaster.pid" ]] || return 1
  _pg_init_vars
  run_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

# Port of the running cluster: line 4 of postmaster.pid.
_pg_running_port() {
  sed -n '4p' "$PG_DATA/postmaster.pid"
}

_pg_initdb() {
  [[ -s "$PG_DATA/PG_VERSION" ]] && return 0
  log "postgres: creating a new cluster in $PG_DATA"
  # --no-locale: C collation, the same on every machine (no dependency on the
  #   generated locales), with UTF8 encoding.
  # trust on the unix socket (only the cluster's owner and root can enter $PG_SOCK),
  #   scram-sha-256 with a password over TCP, as the services connect.
  # --no-sync: skips a few seconds of fsync on slow disks; a local cluster lost in a
  #   power cut right after creation is recreated by `infra.sh destroy && up`.
  if ! run_pg "$PG_BIN/initdb" -D "$PG_DATA" --username="$PG_SUPERUSER" --encoding=UTF8 \
      --no-locale --auth-local=trust --auth-host=scram-sha-256 --no-sync \
      >"$PG_DIR/initdb.log" 2>&1; then
    show_log_tail "$PG_DIR/initdb.log"
    die "postgres: initdb failed (see above)"
  fi
  # Our settings live in one file, rewritten on every start (the port may change).
  printf "\n# Added by deploy/local/postgres.sh\ninclude_if_exists = 'stockpipe.conf'\n" |
    run_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

_pg_choose_port() {
  if [[ -s "$PG_PORTFILE" ]] && port_is_free "$(<"$PG_PORTFILE")"; then
    PG_PORT="$(<"$PG_PORTFILE")"
  else
    PG_PORT="$(free_ports 1)"
    [[ -n "$PG_PORT" ]] || die "could not find a free TCP port on 127.0.0.1"
  fi
  printf '%s\n' "$PG_PORT" | run_pg tee "$PG_PORTFILE" >/dev/null
}

_pg_write_config() {
  run_pg mkdir -p -m 0700 "$PG_SOCK"
  run_pg tee "$PG_DATA/stockpipe.conf" >/dev/null <<EOF
# Written by deploy/local/postgres.sh on every start: edit the script, not this file.
# 127.0.0.1 only: nothing outside this machine may reach a developer's database.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
# Durability as in production (synchronous_commit and fsync on): the pipeline's
# "a commit means durable" promise, and the benchmarks, are measured against it.
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
}

# Role and database `stockpipe`, idempotent; the password is (re)set every time.
_pg_ensure_app_db() {
  run_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" \
    -U "$PG_SUPERUSER" -d postgres \
    -v app_user="$PG_APP_USER" -v app_password="$PG_APP_PASSWORD" -v app_db="$PG_APP_DB" \
    >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
ALTER ROLE :"app_user" WITH LOGIN CREATEDB PASSWORD :'app_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
-- The dashboard's read-only role (SELECT granted by migration 0002); the app user may SET ROLE to it.
SELECT 'CREATE ROLE stockpipe_reader NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stockpipe_reader') \gexec
GRANT stockpipe_reader TO :"app_user";
SQL
}

# The check that matters to the services: a password login over TCP.
_pg_tcp_login_works() {
  PGPASSWORD="$PG_APP_PASSWORD" PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -tA \
    -h 127.0.0.1 -p "$PG_PORT" -U "$PG_APP_USER" -d "$PG_APP_DB" -c 'SELECT 1' >/dev/null 2>&1
}

# pg_start: start the cluster unless it already runs from this state dir, wait until it
# accepts a password login over TCP (at most READY_TIMEOUT s), make sure the app role
# and database exist. Sets PG_PORT. Exit 1 with the log's last lines on failure.
pg_start() {
  pg_preflight
  # shellcheck disable=SC2034  # read by infra.sh
  PG_STARTED_NOW=0
  if pg_running; then
    PG_PORT="$(_pg_running_port)"
  else
    # shellcheck disable=SC2034  # read by infra.sh
    PG_STARTED_NOW=1
    _pg_initdb
    _pg_choose_port
    # A unix socket path is limited to 107 bytes (sun_path); say so instead of letting
    # the server fail with a cryptic message.
    local sock_path="$PG_SOCK/.s.PGSQL.$PG_PORT"
    (( ${#sock_path} <= 107 )) ||
      die "postgres: socket path $sock_path is longer than 107 bytes; use a shorter STOCKPIPE_LOCAL_DIR"
    _pg_write_config
    run_pg touch "$PG_LOG"
    printf '\n=== %s start ===\n' "$(date -Is)" | run_pg tee -a "$PG_LOG" >/dev/null
    # setsid: the postmaster gets its own session, so a Ctrl-C in the terminal of
    # `make run` does not reach it (postgres treats SIGINT as "fast shutdown").
    if ! run_pg setsid -w "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w \
        -t "$READY_TIMEOUT" >"$PG_DIR/pg_ctl.out" 2>&1; then
      pg_stop >/dev/null 2>&1 || true
      show_log_tail "$PG_DIR/pg_ctl.out" "$PG_LOG"
      die "postgres did not start within ${READY_TIMEOUT}s (logs above; full log $PG_LOG)"
    fi
  fi
  if ! _pg_ensure_app_db; then
    show_log_tail "$PG_LOG"
    die "postgres: could not create role/database $PG_APP_USER (log above)"
  fi
  local start
  start="$(now)"
  until _pg_tcp_login_works; do
    if awk -v e="$(elapsed "$start")" -v t="$READY_TIMEOUT" 'BEGIN { exit !(e >= t) }'; then
      show_log_tail "$PG_LOG"
      die "postgres: no password login as $PG_APP_USER on 127.0.0.1:$PG_PORT within ${READY_TIMEOUT}s (log above)"
    fi
    sleep 0.3
  done
}

# pg_stop: fast shutdown (rolls back open transactions, no waiting for clients) of the
# cluster of this state dir, if it runs. Idempotent.
pg_stop() {
  pg_running || return 0
  run_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
  log "postgres stopped"
}

pg_dsn() {
  printf 'postgresql://%s:%s@127.0.0.1:%s/%s\n' \
    "$PG_APP_USER" "$PG_APP_PASSWORD" "$PG_PORT" "$PG_APP_DB"
}

pg_status_line() {
  if pg_running; then
    printf '%-9s %-8s 127.0.0.1:%s (pid %s, %s)\n' postgres running \
      "$(_pg_running_port)" "$(head -n 1 "$PG_DATA/postmaster.pid")" "$PG_DIR"
  else
    printf '%-9s %-8s (%s)\n' postgres stopped "$PG_DIR"
  fi
}

pg_main() {
  LOG_TAG=postgres
  case "${1:-}" in
    psql)
      shift
      _pg_init_vars
      pg_running || die "not running; start it with deploy/local/infra.sh up"
      PG_PORT="$(_pg_running_port)"
      PGPASSWORD="$PG_APP_PASSWORD" exec "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" \
        -U "$PG_APP_USER" -d "$PG_APP_DB" "$@"
      ;;
    *)
      printf 'usage: %s psql [ARGS...]\n' "$0" >&2
      exit 2
      ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  pg_main "$@"
fi
