"""The metrics every service exposes under the same names (DESIGN.md).

Services add their own ``stockpipe_<service>_*`` metrics next to these, in their own modules.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "MESSAGES_CONSUMED",
    "MESSAGES_PRODUCED",
    "PROCESSING_SECONDS",
    "CONSUMER_LAG",
    "DLQ_MESSAGES",
    "ERRORS",
    "DEPENDENCY_UP",
]

MESSAGES_CONSUMED = Counter(
    "stockpipe_messages_consumed", "Messages read from Kafka", ["topic"]
)
MESSAGES_PRODUCED = Counter(
    "stockpipe_messages_produced", "Messages acknowledged by Kafka", ["topic"]
)
PROCESSING_SECONDS = Histogram(
    "stockpipe_processing_seconds",
    "Time spent per unit of work, by stage (a batch for batched stages)",
    ["stage"],
    # From 100 µs (one message) to 10 s (a database write waiting out a stall).
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "stockpipe_consumer_lag", "Messages behind the partition's end, per partition", ["topic", "partition"]
)
DLQ_MESSAGES = Counter(
    "stockpipe_dlq_messages", "Messages sent to the dead-letter topic, by reason", ["reason"]
)
ERRORS = Counter("stockpipe_errors", "Errors handled without crashing, by kind", ["kind"])
DEPENDENCY_UP = Gauge(
    "stockpipe_dependency_up", "1 when the dependency answered its last readiness check", ["dependency"]
)
