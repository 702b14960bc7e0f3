"""The producer's loop: bars from a source → ``raw``, keyed by symbol, idempotently.

On start it reads the tail of every ``raw`` partition to learn the last bar already sent per
(symbol, interval), so a restarted producer continues where it left off instead of sending
the day again (Kafka holds what was really sent; the database may lag behind it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from stockpipe.common.errors import TransientError
from stockpipe.common.kafka import Publisher
from stockpipe.common.messages import Bar, Codec
from stockpipe.common.metrics import PROCESSING_SECONDS
from stockpipe.common.progress import Progress
from stockpipe.common.settings import CommonSettings

__all__ = ["read_last_bars", "publish_bars", "COMPANIES_UPSERT", "COMPANIES_LABEL"]

logger = logging.getLogger(__name__)

_CODEC = Codec(Bar)

COMPANIES_UPSERT = """
INSERT INTO companies (symbol, name, sector, industry, exchange, currency, updated_at)
VALUES (%(symbol)s, %(name)s, %(sector)s, %(industry)s, %(exchange)s, %(currency)s, now())
ON CONFLICT (symbol) DO UPDATE SET
    name = COALESCE(EXCLUDED.name, companies.name),
    sector = COALESCE(EXCLUDED.sector, companies.sector),
    industry = COALESCE(EXCLUDED.industry, companies.industry),
    exchange = COALESCE(EXCLUDED.exchange, companies.exchange),
    currency = COALESCE(EXCLUDED.currency, companies.currency),
    updated_at = now()
"""

COMPANIES_LABEL = """
INSERT INTO companies (symbol, name, sector, industry, exchange, currency, updated_at)
VALUES (%(symbol)s, %(name)s, %(sector)s, %(industry)s, %(exchange)s, %(currency)s, now())
ON CONFLICT (symbol) DO NOTHING
"""


def read_last_bars(settings: CommonSettings, scan: int, timeout: float = 30.0) -> dict[tuple[str, str], Bar]:
    """The last bar on ``raw`` per (symbol, interval), from the last ``scan`` messages of each partition."""
    if scan <= 0:
        return {}
    topic = settings.topic("raw")
    consumer = Consumer(settings.kafka_config() | {
        "group.id": f"{settings.service_name}-resume",  # never committed: only assign() is used
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    last: dict[tuple[str, str], Bar] = {}
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            raise TransientError(f"topic {topic} is not available; run the topic set-up first")
        assignments, pending = [], set()
        for p in meta.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                assignments.append(TopicPartition(topic, p, max(low, high - scan)))
                pending.add(p)
        if not assignments:
            return last
        consumer.assign(assignments)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error():
                    if msg.error().code() == -191:  # _PARTITION_EOF: this partition is read
                        pending.discard(msg.partition())
                    continue
                try:
                    bar = _CODEC.decode(msg.value())
                except Exception:  # noqa: BLE001 - invalid bars were never "sent" for resuming
                    continue
                key = (bar.symbol, bar.interval)
                prev = last.get(key)
                if prev is None or bar.ts > prev.ts:
                    last[key] = bar
        if pending:
            logger.warning("resume scan timed out on partitions %s", sorted(pending))
    except KafkaException as exc:
        raise TransientError(f"reading where raw left off: {exc}") from exc
    finally:
        consumer.close()
    logger.info("resuming after %d series already on %s", len(last), topic)
    return last


_PUBLISH_SECONDS = PROCESSING_SECONDS.labels("produce")


def publish_bars(
    bars: Iterable[Bar],
    publisher: Publisher,
    topic: str,
    *,
    max_messages: int = 0,
    stop: threading.Event | None = None,
    on_beat: Callable[[], None] = lambda: None,
    progress: Progress | None = None,
) -> int:
    """Publish ``bars`` keyed by symbol until exhausted, ``max_messages`` or ``stop``; flush; return the count."""
    sent = reported = 0
    encode = _CODEC.encode
    next_poll = time.monotonic()
    for bar in bars:
        publisher.publish(topic, encode(bar), bar.symbol)
        sent += 1
        if sent % 512 == 0 or time.monotonic() >= next_poll:
            # Serve delivery reports and prove liveness, not once per message.
            publisher.poll(0)
            on_beat()
            if progress is not None:
                progress.add(bars=sent - reported)
                reported = sent
                progress.tick()
            next_poll = time.monotonic() + 0.5
        if max_messages and sent >= max_messages:
            break
        if stop is not None and stop.is_set():
            break
    start = time.perf_counter()
    publisher.flush()
    _PUBLISH_SECONDS.observe(time.perf_counter() - start)
    return sent
