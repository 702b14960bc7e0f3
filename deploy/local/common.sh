# shellcheck shell=bash
# Helpers shared by the local platform scripts (infra.sh, kafka.sh, postgres.sh,
# install-deps.sh). Sourced, never run: it only defines variables and functions.
#
# STOCKPIPE_LOCAL_DIR chooses the state directory, so the test suite can keep its own
# (e.g. .local/test) next to the one a developer's `make run` uses (.local).

# Guard against double sourcing (infra.sh sources kafka.sh and postgres.sh, which both
# source this file).
if [[ -n "${_STOCKPIPE_COMMON_SH:-}" ]]; then
  return 0
fi
_STOCKPIPE_COMMON_SH=1

LOCAL_SCRIPTS_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$LOCAL_SCRIPTS_DIR/../.." && pwd)"
STATE="${STOCKPIPE_LOCAL_DIR:-$REPO_ROOT/.local}"
# Absolute, because the path ends up in config files read by processes whose working
# directory is not ours.
if [[ "$STATE" != /* ]]; then
  STATE="$PWD/$STATE"
fi
# How long to wait for a server to accept connections. 60 s is generous: on a 2-core
# laptop Kafka answers in ~3-5 s and PostgreSQL in ~1 s; only a broken setup takes longer.
# shellcheck disable=SC2034  # read by the scripts that source this file
READY_TIMEOUT="${STOCKPIPE_READY_TIMEOUT:-60}"

log() {
  printf '%s: %s\n' "${LOG_TAG:-local}" "$*" >&2
}

die() {
  printf '%s: error: %s\n' "${LOG_TAG:-local}" "$*" >&2
  exit 1
}

have() {
  command -v "$1" >/dev/null 2>&1
}

# Seconds since the epoch with milliseconds, for the "ready in N s" messages.
now() {
  date +%s.%3N
}

# elapsed START -> "1.2" (seconds since START, one decimal).
elapsed() {
  awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}

# Print the last lines of each existing log file, framed, on stderr: what a person needs
# to see when a server did not come up.
show_log_tail() {
  local f
  for f in "$@"; do
    [[ -s "$f" ]] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 25 -- "$f" >&2
  done
  printf -- '-----\n' >&2
}

# free_ports N -> N distinct TCP ports free on 127.0.0.1, one per line. The kernel picks
# them (bind to port 0); all sockets stay open until all are chosen so the N differ.
# A port may still be taken by someone else before our server binds it; the readiness
# wait then fails with the server's own "address already in use" in its log.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
    s.close()
EOF
}

# port_is_free PORT -> exit 0 when a server could bind 127.0.0.1:PORT now. SO_REUSEADDR
# as servers use it, so a port in TIME_WAIT after our own restart still counts as free.
port_is_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# tcp_open HOST PORT -> exit 0 when something accepts a TCP connection there.
tcp_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# pid_matches PIDFILE ARG -> exit 0 when the pid in PIDFILE is alive and one of its
# command-line arguments is exactly ARG (a path inside this state dir). The second
# check keeps a stale pid file, whose pid the kernel has since given to an unrelated
# process (or to another state dir's server), from making us think the server runs, or
# from making `down` kill that process.
pid_matches() {
  local pidfile="$1" want="$2" pid arg
  [[ -s "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  local -a args=()
  # Braces, so that 2>/dev/null also covers the redirection of a vanished process.
  { mapfile -d '' -t args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
  for arg in "${args[@]}"; do
    [[ "$arg" == "$want" ]] && return 0
  done
  return 1
}

# State-dir lock: `up`, `down` and `destroy` of one state dir run one at a time, so two
# test workers calling `up` together do not both start a broker. Held until exit, on
# file descriptor 9: every server we start must get `9>&-`, or it would inherit the
# descriptor and hold the lock for as long as it runs.
lock_state() {
  mkdir -p -- "$STATE"
  exec 9>"$STATE/.infra.lock"
  if have flock; then
    flock -w 300 9 || die "another infra.sh holds $STATE/.infra.lock for over 300 s"
  fi
}

# java_major JAVA -> the Java feature version (8, 11, 17, 21...) of that java binary.
java_major() {
  local v
  v="$("$1" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  [[ -n "$v" ]] || return 1
  if [[ "$v" == 1.* ]]; then
    v="${v#1.}"  # "1.8.0_292" -> Java 8
  fi
  printf '%s\n' "${v%%[.+-]*}"
}

# find_java -> path of a java >= 17 (Kafka 4 needs 17): $JAVA_HOME first, then PATH,
# then the newest JVM under /usr/lib/jvm (Debian keeps older defaults on PATH when a
# newer JRE is installed next to them). Exit 1 when there is none.
find_java() {
  local c m
  local -a candidates=()
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
  have java && candidates+=("$(command -v java)")
  if [[ -d /usr/lib/jvm ]]; then
    while IFS= read -r c; do
      candidates+=("$c")
    done < <(find /usr/lib/jvm -mindepth 3 -maxdepth 3 -path '*/bin/java' 2>/dev/null | sort -rV)
  fi
  for c in "${candidates[@]}"; do
    [[ -x "$c" ]] || continue
    m="$(java_major "$c")" || continue
    if (( m >= 17 )); then
      printf '%s\n' "$c"
      return 0
    fi
  done
  return 1
}
