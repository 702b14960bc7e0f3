"""Create stockpipe's Kafka topics (``python -m stockpipe.common.topics``), idempotently.

Partitions and replication come from ``TOPIC_PARTITIONS`` / ``TOPIC_REPLICATION``; ``raw``
keeps ``RAW_RETENTION_HOURS`` (7 days by default: stateful consumers rebuild from it).
Existing topics are left as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stockpipe.common.kafka import ensure_topics
from stockpipe.common.lifecycle import run_main
from stockpipe.common.logs import configure
from stockpipe.common.settings import CommonSettings, load, setting

__all__ = ["TopicSettings", "main"]

logger = logging.getLogger("stockpipe.common.topics")  # not __main__ under python -m


@dataclass(frozen=True, kw_only=True)
class TopicSettings(CommonSettings):
    topic_partitions: int = setting(6, ge=1, le=10_000, help="partitions per topic (consumers scale up to this)")
    topic_replication: int = setting(1, ge=1, le=7, help="replication factor of every topic")
    raw_retention_hours: int = setting(168, ge=1, help="how long raw bars stay in Kafka (stateful consumers rebuild from them)")
    dlq_retention_hours: int = setting(720, ge=1, help="how long rejected messages stay in the dead-letter topic")


def main() -> int:
    settings = load(TopicSettings)
    configure(settings.log_level, settings.log_format, "topics")
    hours = lambda h: str(h * 3_600_000)  # noqa: E731 - retention.ms from hours
    created = ensure_topics(
        settings,
        settings.topic_partitions,
        settings.topic_replication,
        configs={"raw": {"retention.ms": hours(settings.raw_retention_hours)},
                 "dlq": {"retention.ms": hours(settings.dlq_retention_hours)}},
    )
    logger.info("topics created: %s", ", ".join(created) if created else "none (all exist)")
    return 0


if __name__ == "__main__":
    run_main(main)
