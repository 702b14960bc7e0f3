#!/bin/bash
# kafka-run-class.sh CLASS ARGS...: what the official image's bin/ scripts build on.
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} ${KAFKA_OPTS:-} \
  -Dlog4j2.configurationFile=/etc/kafka/docker/tools-log4j2.properties -cp '/opt/kafka/libs/*' "$@"
