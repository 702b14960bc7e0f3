#!/bin/bash
# kafka-server-start.sh [server.properties]: the broker in the foreground.
exec java ${KAFKA_HEAP_OPTS:--Xmx1g} ${KAFKA_OPTS:-} -Dlog4j2.configurationFile=/etc/kafka/docker/log4j2.properties -Dkafka.logs.dir=${TMPDIR:-/tmp}/kafka-logs -cp "/opt/kafka/libs/*" kafka.Kafka "${1:-/opt/kafka/config/server.properties}"
