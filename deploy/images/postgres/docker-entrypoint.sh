#!/bin/bash
# Entry point of stockpipe-postgres, the official postgres image's contract in short:
#  - `postgres ...` (or only options): as root, make PGDATA postgres's and re-exec as
#    postgres (999); on an empty PGDATA run initdb with POSTGRES_USER (default postgres)
#    and POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), listen on
#    all addresses with scram-sha-256 for network clients, create POSTGRES_DB, run
#    /docker-entrypoint-initdb.d/*.sh|*.sql once; then exec postgres.
#  - any other command runs as given.
set -Eeuo pipefail

file_env() {  # VAR [DEFAULT]: VAR or the contents of the file VAR_FILE names
  local var="$1" fvar="${1}_FILE" def="${2:-}" val
  if [[ -n "${!var:-}" && -n "${!fvar:-}" ]]; then
    echo "error: both $var and $fvar are set (but are exclusive)" >&2
    exit 1
  fi
  val="$def"
  if [[ -n "${!var:-}" ]]; then val="${!var}"; elif [[ -n "${!fvar:-}" ]]; then val="$(<"${!fvar}")"; fi
  export "$var"="$val"
  unset "$fvar"
}

if [[ "${1:0:1}" == '-' ]]; then
  set -- postgres "$@"
fi
[[ "$1" == postgres ]] || exec "$@"

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA" || true
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
: "${POSTGRES_HOST_AUTH_METHOD:=}"

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
MSG
    exit 1
  fi
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list, as upstream
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" $POSTGRES_INITDB_ARGS
  rm -f "$pwfile"
  method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  printf '\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

  # A server on the unix socket only, for the set-up below.
  PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start
  export PGPASSWORD="$POSTGRES_PASSWORD"
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; if [[ -x "$f" ]]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
      *) [[ -e "$f" ]] && echo "ignoring $f" ;;
    esac
  done
  PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGPASSWORD
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
