#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A single-node Apache Kafka 4.1.1 (KRaft, broker+controller in one JVM) for local
# development and the integration tests, run from jars fetched from Maven Central
# (the binary tarball's download site is not reachable from every machine we run on).
#
# Sourced by infra.sh for kafka_start / kafka_wait_ready / kafka_stop / kafka_status_line.
# Run directly:
#   kafka.sh fetch                 fetch the broker jars into $STATE/kafka/libs (no-op when
#                                  already there for the same pom.xml)
#   kafka.sh topics ARGS...        org.apache.kafka.tools.TopicCommand (= kafka-topics.sh),
#                                  e.g. topics --bootstrap-server 127.0.0.1:PORT --list
#   kafka.sh class CLASS ARGS...   any other Kafka tool class on the same classpath
#
# State (under $STATE/kafka): libs/ (jars + .pom.sha256 stamp), data/ (log.dirs),
# logs/server.log (log4j2) and logs/kafka.out (JVM stdout/stderr), server.properties,
# ports, kafka.pid, cluster.id.
#
# Environment: STOCKPIPE_LOCAL_DIR (state dir), STOCKPIPE_MAVEN_REPO (Maven local repo,
# default ~/.m2/repository), STOCKPIPE_KAFKA_HEAP_OPTS (default -Xms256m -Xmx1g),
# JAVA_HOME (a Java >= 17; otherwise found on PATH or under /usr/lib/jvm).
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

KAFKA_POM="$LOCAL_SCRIPTS_DIR/kafka/pom.xml"
KAFKA_LOG4J="$LOCAL_SCRIPTS_DIR/kafka/log4j2.properties"
KAFKA_TOOLS_LOG4J="$LOCAL_SCRIPTS_DIR/kafka/tools-log4j2.properties"
KAFKA_DIR="$STATE/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_PORTS="$KAFKA_DIR/ports"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
# Small enough for a 2-core laptop that also runs PostgreSQL, five services and a
# browser; a single local broker with a few topics stays far below 1 GB.
KAFKA_HEAP_OPTS="${STOCKPIPE_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
# Kafka's own defaults from kafka-run-class.sh (short G1 pauses keep produce latency
# flat), plus: die on OOM instead of limping on, and no AWT.
KAFKA_JVM_OPTS="-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
# SIGTERM makes the broker flush and close its logs cleanly (no log recovery on the
# next start); it normally takes 1-5 s, 30 s allows for a loaded laptop.
KAFKA_STOP_TIMEOUT=30

# kafka_fetch: make sure $KAFKA_LIBS holds the jars for the current pom.xml.
# Maven's local repository is the user's ordinary ~/.m2/repository (unless
# STOCKPIPE_MAVEN_REPO says otherwise): it is shared by every state dir (the test suite's
# .local/test copies the jars offline in seconds instead of downloading again), survives
# `infra.sh destroy`, and honours a user's settings.xml (mirrors, proxies).
kafka_fetch() {
  local want have_sum tmp
  want="$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"
  have_sum="$(cat "$KAFKA_LIBS/.pom.sha256" 2>/dev/null || true)"
  if [[ "$want" == "$have_sum" ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  have mvn || die "mvn (Apache Maven) not found; run deploy/local/install-deps.sh"
  log "fetching the Kafka broker jars with Maven (first time only, ~10-60 s)"
  mkdir -p "$KAFKA_DIR"
  # Fetch next to the final place and swap at the end: an interrupted fetch never
  # leaves a half-filled libs/ that the stamp would later vouch for.
  tmp="$(mktemp -d "$KAFKA_DIR/libs.tmp.XXXXXX")"
  chmod 0755 "$tmp"  # mktemp makes it 0700; the jars are nothing secret
  local -a mvn_args=(-q -B -f "$KAFKA_POM" dependency:copy-dependencies
    "-DoutputDirectory=$tmp" -DincludeScope=runtime)
  if [[ -n "${STOCKPIPE_MAVEN_REPO:-}" ]]; then
    mvn_args+=("-Dmaven.repo.local=$STOCKPIPE_MAVEN_REPO")
  fi
  if ! mvn "${mvn_args[@]}" >"$tmp/.mvn.log" 2>&1; then
    show_log_tail "$tmp/.mvn.log"
    rm -rf -- "$tmp"
    die "Maven could not fetch the Kafka jars (see above)"
  fi
  rm -f -- "$tmp/.mvn.log"
  printf '%s\n' "$want" >"$tmp/.pom.sha256"
  rm -rf -- "$KAFKA_LIBS"
  mv -T -- "$tmp" "$KAFKA_LIBS"
  log "Kafka jars ready in $KAFKA_LIBS ($(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars)"
}

kafka_java() {
  find_java || die "no Java >= 17 found (Kafka 4 needs it); run deploy/local/install-deps.sh or set JAVA_HOME"
}

# kafka_tool CLASS ARGS...: run a Kafka command-line tool class in the foreground.
kafka_tool() {
  local java cls="$1"
  shift
  kafka_fetch
  java="$(kafka_java)"
  "$java" -Xmx512m "-Dlog4j2.configurationFile=$KAFKA_TOOLS_LOG4J" \
    -cp "$KAFKA_LIBS/*" "$cls" "$@"
}

kafka_running() {
  pid_matches "$KAFKA_PIDFILE" "$KAFKA_CONF"
}

# The broker's PLAINTEXT and CONTROLLER ports of the current (or last) run.
kafka_ports() {
  [[ -s "$KAFKA_PORTS" ]] || return 1
  read -r KAFKA_PORT KAFKA_CONTROLLER_PORT <"$KAFKA_PORTS"
}

kafka_bootstrap() {
  kafka_ports && printf '127.0.0.1:%s\n' "$KAFKA_PORT"
}

# Ports for a new start: the last run's when both are still free (a restart keeps the
# address in .local/env and in running services' config), otherwise two new ones.
_kafka_choose_ports() {
  if kafka_ports && port_is_free "$KAFKA_PORT" && port_is_free "$KAFKA_CONTROLLER_PORT"; then
    return 0
  fi
  local -a p
  mapfile -t p < <(free_ports 2)
  (( ${#p[@]} == 2 )) || die "could not find two free TCP ports on 127.0.0.1"
  KAFKA_PORT="${p[0]}"
  KAFKA_CONTROLLER_PORT="${p[1]}"
  printf '%s %s\n' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" >"$KAFKA_PORTS"
}

_kafka_write_config() {
  cat >"$KAFKA_CONF" <<EOF
# Written by deploy/local/kafka.sh on every start (ports may change): edit the script.
process.roles=broker,controller
node.id=1
# A static voter set rather than 'format --standalone': the dynamic quorum that
# --standalone creates records the controller's host:port in the metadata log, so the
# new port a restart may pick would no longer match it. Static voters follow this file.
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
# 127.0.0.1 only: nothing outside this machine may reach a developer's broker.
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=6
# Topics are created explicitly (with their partition counts) by the project; a typo'd
# topic name must fail, not silently create a new topic.
auto.create.topics.enable=false
# One broker: every internal topic can only have one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
# The default 50 partitions of __consumer_offsets cost a visible pause when the first
# consumer group joins a fresh broker (every test session on a new state dir); a few
# local groups need no more than this.
offsets.topic.num.partitions=6
# The 3 s default delay only helps groups whose members start one by one; tests and
# 'make run' want their consumers assigned at once.
group.initial.rebalance.delay.ms=0
log.retention.hours=168
EOF
}

# Format log.dirs once (KRaft refuses to start on an unformatted directory).
_kafka_format() {
  [[ -s "$KAFKA_DATA/meta.properties" ]] && return 0
  local java cluster_id
  java="$(kafka_java)"
  if [[ ! -s "$KAFKA_DIR/cluster.id" ]]; then
    # Same shape as Kafka's Uuid.randomUuid(): 16 random bytes, URL-safe base64 without
    # padding, never starting with '-' (a command line would take it for an option).
    # Generated here rather than by 'StorageTool random-uuid' to save a JVM start.
    python3 -c '
import base64, os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not u.startswith("-"):
        print(u)
        break' >"$KAFKA_DIR/cluster.id"
  fi
  cluster_id="$(<"$KAFKA_DIR/cluster.id")"
  mkdir -p "$KAFKA_DATA"
  if ! "$java" -Xmx256m "-Dlog4j2.configurationFile=$KAFKA_TOOLS_LOG4J" -cp "$KAFKA_LIBS/*" \
      kafka.tools.StorageTool format --config "$KAFKA_CONF" --cluster-id "$cluster_id" \
      --ignore-formatted >"$KAFKA_LOGS/format.log" 2>&1; then
    show_log_tail "$KAFKA_LOGS/format.log"
    die "kafka: formatting $KAFKA_DATA failed (see above)"
  fi
}

# kafka_start: start the broker in the background unless it already runs from this
# state dir. Returns at once; kafka_wait_ready waits. Sets KAFKA_PORT.
kafka_start() {
  if kafka_running; then
    kafka_ports || die "kafka runs (pid $(<"$KAFKA_PIDFILE")) but $KAFKA_PORTS is missing; run infra.sh down"
    # shellcheck disable=SC2034  # read by infra.sh
    KAFKA_STARTED_NOW=0
    return 0
  fi
  kafka_fetch
  local java
  java="$(kafka_java)"
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  _kafka_choose_ports
  _kafka_write_config
  _kafka_format
  # Readiness without kcat looks for the start-up line in the part of server.log that
  # this run writes, so remember where that part begins.
  KAFKA_LOG_OFFSET="$(stat -c %s "$KAFKA_LOGS/server.log" 2>/dev/null || echo 0)"
  rm -f -- "$KAFKA_PIDFILE"
  local -a cmd=("$java")
  # shellcheck disable=SC2206  # the option strings are meant to split into words
  cmd+=($KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS)
  cmd+=("-Dlog4j2.configurationFile=$KAFKA_LOG4J" "-Dkafka.logs.dir=$KAFKA_LOGS"
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF")
  printf '\n=== %s start ===\n' "$(date -Is)" >>"$KAFKA_LOGS/kafka.out"
  # shellcheck disable=SC2034  # read by infra.sh (stop it again if `up` fails)
  KAFKA_STARTED_NOW=1
  # setsid: its own session, so a Ctrl-C in the terminal of `make run` (which started
  # us) reaches the services but not the broker. The inner bash writes its own pid and
  # execs java, so the pid file holds the JVM's pid exactly. nohup: belt and braces
  # against SIGHUP. The JVM's working directory is the state dir, where any crash
  # report (hs_err_pid*.log) then lands.
  (
    cd "$KAFKA_DIR"
    # shellcheck disable=SC2016  # $$, $0 and $@ are the inner bash's, hence single quotes
    setsid nohup bash -c 'echo "$$" >"$0" && exec "$@"' "$KAFKA_PIDFILE" "${cmd[@]}" \
      </dev/null >>"$KAFKA_LOGS/kafka.out" 2>&1 9>&- &
  )
  local _
  for _ in $(seq 1 50); do
    [[ -s "$KAFKA_PIDFILE" ]] && break
    sleep 0.1
  done
}

_kafka_answers() {
  local out
  # Output captured rather than piped into `grep -q`: grep leaving early would SIGPIPE
  # the writer and, under pipefail, turn a match into a failure.
  if have kcat; then
    # A metadata round trip: the broker is registered, unfenced and serving clients.
    out="$(kcat -L -b "127.0.0.1:$KAFKA_PORT" -m 2 2>/dev/null)" || return 1
    [[ "$out" == *' 1 brokers:'* ]]
  else
    tcp_open 127.0.0.1 "$KAFKA_PORT" || return 1
    out="$(tail -c "+$((${KAFKA_LOG_OFFSET:-0} + 1))" "$KAFKA_LOGS/server.log" 2>/dev/null)" || return 1
    [[ "$out" == *'Kafka Server started'* ]]
  fi
}

# The last lines that this run wrote to kafka.out (JVM errors, e.g. a bad heap size)
# and server.log (the broker's own account), on stderr. Earlier runs' lines would only
# mislead, so kafka.out is read from its last start marker and server.log from the
# offset noted at start.
_kafka_show_run_logs() {
  local out="$KAFKA_LOGS/kafka.out" server="$KAFKA_LOGS/server.log" part
  if [[ -s "$out" ]]; then
    part="$(awk '/^=== .* start ===$/ { n = 0; delete l; next } { l[++n] = $0 }
                 END { for (i = (n > 25 ? n - 24 : 1); i <= n; i++) print l[i] }' "$out")"
    [[ -n "$part" ]] && printf -- '----- %s (this start) -----\n%s\n' "$out" "$part" >&2
  fi
  if [[ -s "$server" ]]; then
    part="$(tail -c "+$((${KAFKA_LOG_OFFSET:-0} + 1))" "$server" | tail -n 25)"
    [[ -n "$part" ]] && printf -- '----- %s (last lines of this start) -----\n%s\n' "$server" "$part" >&2
  fi
  printf -- '-----\n' >&2
}

# kafka_wait_ready: wait until the broker answers; on failure or timeout show its logs,
# stop it and exit 1.
kafka_wait_ready() {
  local start
  start="$(now)"
  while ! _kafka_answers; do
    if ! kafka_running; then
      _kafka_show_run_logs
      die "kafka exited during start-up (logs above; full logs in $KAFKA_LOGS)"
    fi
    if awk -v e="$(elapsed "$start")" -v t="$READY_TIMEOUT" 'BEGIN { exit !(e >= t) }'; then
      # Logs first: stopping appends shutdown lines that would hide the cause.
      _kafka_show_run_logs
      kafka_stop
      die "kafka did not answer on 127.0.0.1:$KAFKA_PORT within ${READY_TIMEOUT}s (logs above; full logs in $KAFKA_LOGS)"
    fi
    sleep 0.3
  done
}

# kafka_stop: stop the broker this state dir started, if it runs. Idempotent.
kafka_stop() {
  if ! kafka_running; then
    rm -f -- "$KAFKA_PIDFILE"
    return 0
  fi
  local pid waited=0
  pid="$(<"$KAFKA_PIDFILE")"
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && (( waited < KAFKA_STOP_TIMEOUT * 5 )); do
    sleep 0.2
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "kafka (pid $pid) still running after ${KAFKA_STOP_TIMEOUT}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
      sleep 0.1
    done
  fi
  rm -f -- "$KAFKA_PIDFILE"
  log "kafka stopped"
}

kafka_status_line() {
  if kafka_running; then
    kafka_ports || true
    printf '%-9s %-8s 127.0.0.1:%s (pid %s, %s)\n' kafka running \
      "${KAFKA_PORT:-?}" "$(<"$KAFKA_PIDFILE")" "$KAFKA_DIR"
  else
    printf '%-9s %-8s (%s)\n' kafka stopped "$KAFKA_DIR"
  fi
}

kafka_main() {
  LOG_TAG=kafka
  case "${1:-}" in
    fetch)
      kafka_fetch
      ;;
    topics)
      shift
      kafka_tool org.apache.kafka.tools.TopicCommand "$@"
      ;;
    class)
      shift
      (( $# >= 1 )) || die "usage: kafka.sh class CLASS [ARGS...]"
      kafka_tool "$@"
      ;;
    *)
      printf 'usage: %s fetch | topics ARGS... | class CLASS ARGS...\n' "$0" >&2
      exit 2
      ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  kafka_main "$@"
fi
