#!/usr/bin/env bash
# `make run`: the local pipeline in the foreground, and everything it started stops with it.
#
#   1. Kafka and PostgreSQL up (infra.sh up; servers named by KAFKA_BOOTSTRAP_SERVERS /
#      POSTGRES_DSN are used instead), topics created, migrations applied;
#   2. the services, logs prefixed by name (run_services.py), each on its own HTTP port;
#   3. on Ctrl-C the services stop cleanly, then the servers this run started are stopped
#      too. Servers that were already running before (`make infra-up`, an earlier run still
#      up) are left running, as are external ones.
#
# Usage: deploy/local/run.sh PYTHON NAME=PORT...   (the Makefile passes the services)
set -euo pipefail

LOCAL_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
STATE="${STOCKPIPE_LOCAL_DIR:-$(cd -- "$LOCAL_DIR/../.." && pwd)/.local}"
PY="$1"
shift

# Every service's port must be free before anything starts: a second `make run` (another
# clone, or this one still running) would otherwise start Kafka and half the services, then
# stop on the first busy port. One line names the port and how to choose another.
for spec in "$@"; do
  name="${spec%%=*}"
  port="${spec#*=}"
  if ! "$PY" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
    echo "run: port $port for $name is in use (another make run?): stop that, or choose another with make run PORT_$name=N" >&2
    exit 2
  fi
done

started_here=false
if ! "$LOCAL_DIR/infra.sh" status >/dev/null 2>&1; then
  started_here=true
fi

stop_started() {
  if [[ "$started_here" == true ]]; then
    echo "run: stopping the Kafka and PostgreSQL this run started (make infra-up keeps them up)"
    "$LOCAL_DIR/infra.sh" down || true
  fi
}
trap stop_started EXIT

"$LOCAL_DIR/infra.sh" up
set -a
# shellcheck disable=SC1091
source "$STATE/env"
set +a
"$PY" -m stockpipe.common.topics
"$PY" -m stockpipe.common.migrate

commands=()
for spec in "$@"; do
  name="${spec%%=*}"
  port="${spec#*=}"
  echo "run: $name on http://127.0.0.1:$port/metrics /healthz /readyz"
  commands+=("$name=HTTP_HOST=127.0.0.1 HTTP_PORT=$port $PY -m stockpipe.$name")
done
# Not exec: the EXIT trap above must run after the services have stopped.
"$PY" "$LOCAL_DIR/run_services.py" "${commands[@]}"
