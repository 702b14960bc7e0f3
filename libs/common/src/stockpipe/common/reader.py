"""The one partition reader: read ranges of Kafka partitions outside any consumer group.

Used wherever a service reads history back instead of consuming live: the state rebuild of
analytics and the forecaster (a partition from its start up to the group's committed
offset), the producer's resume scan (each partition's tail), tests and benchmarks.

    stats = read_partitions(settings, "raw", {0: (OFFSET_BEGINNING, 1200), 3: (TAIL(500), END)},
                            on_message, stop=shutdown.event, beat=health.beat)

Each range is ``[start, end)``: ``start`` an offset, :data:`BEGINNING` or ``tail(n)`` (the
last ``n`` messages); ``end`` an offset or :data:`END` (the partition's end when reading
starts). The reader never skips silently: if retention deleted part of a range, reading
starts at the first retained offset and :attr:`ReadStats.truncated` names the partitions
whose first requested offset was gone (``auto.offset.reset`` cannot jump to the end here:
every range starts at an explicit, retained offset).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from stockpipe.common.errors import TransientError
from stockpipe.common.settings import CommonSettings

__all__ = ["BEGINNING", "END", "tail", "ReadStats", "read_partitions", "ReadStopped"]

logger = logging.getLogger(__name__)

BEGINNING = -2  # librdkafka's OFFSET_BEGINNING
END = -1  # the partition's high watermark when reading starts


def tail(n: int) -> int:
    """A start meaning "the last ``n`` messages" (encoded as an offset below BEGINNING)."""
    if n < 1:
        raise ValueError("tail(n) needs n >= 1")
    return -1000 - n


class ReadStopped(Exception):
    """The stop flag was set while reading; what was read so far is incomplete."""


@dataclass
class ReadStats:
    """What a read did, per partition."""

    messages: int = 0
    # partition -> (first requested offset, first retained offset) where retention had
    # already deleted the start of the range: history before it is gone.
    truncated: dict[int, tuple[int, int]] = field(default_factory=dict)
    # partition -> [start, end) actually read
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)


def read_partitions(
    settings: CommonSettings,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    on_message: Callable[[Message], None],
    *,
    stop: threading.Event | None = None,
    beat: Callable[[], None] = lambda: None,
    timeout: float = 600.0,
    group_id: str | None = None,
) -> ReadStats:
    """Feed ``on_message`` every message of each ``partition: (start, end)`` range, in order.

    Messages of one partition arrive in offset order; partitions interleave. Blocks until
    every range is read. Raises :class:`ReadStopped` when ``stop`` is set first (checked at
    least once a second), :class:`TransientError` when Kafka does not answer or the read
    takes longer than ``timeout`` seconds. ``beat`` is called at least once a second: a
    long read is work, not a hang.
    """
    stats = ReadStats()
    if not ranges:
        return stats
    consumer = Consumer(settings.kafka_config() | {
        # assign() only: the group never joins and never commits, it only names the client.
        "group.id": group_id or f"{settings.service_name}-reader",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Every range starts at an explicit, retained offset; should one vanish mid-read,
        # restart from the earliest retained one rather than jump to the end.
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,  # a range ending at the high watermark ends here
        "queued.min.messages": 200_000,
    })
    deadline = time.monotonic() + timeout
    try:
        assignments: list[TopicPartition] = []
        ends: dict[int, int] = {}
        for p, (start, end) in ranges.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=min(30.0, timeout),
                                                       cached=False)
            if start == BEGINNING:
                first = low
            elif start <= -1000:
                first = max(low, high - (-1000 - start))
            else:
                first = start
                if start < low:
                    stats.truncated[p] = (start, low)
                    first = low
            last = high if end == END else min(end, high)
            if start == BEGINNING and low > 0:
                stats.truncated[p] = (0, low)
            if first >= last:
                stats.ranges[p] = (first, first)
                continue
            stats.ranges[p] = (first, last)
            ends[p] = last
            assignments.append(TopicPartition(topic, p, first))
        if not assignments:
            return stats
        consumer.assign(assignments)
        next_beat = 0.0
        while ends:
            now = time.monotonic()
            if now >= next_beat:
                beat()
                next_beat = now + 1.0
            if stop is not None and stop.is_set():
                raise ReadStopped(f"stopped while reading {topic}")
            if now > deadline:
                raise TransientError(f"reading {topic} partitions {sorted(ends)} took over {timeout:.0f}s")
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        # At the partition's end, which is at or past the range's end
                        # (ends are capped at the high watermark read before starting).
                        ends.pop(msg.partition(), None)
                        continue
                    if err.fatal():
                        raise TransientError(f"reading {topic}: {err.str()}")
                    logger.warning("reading %s: %s", topic, err.str())
                    continue
                p = msg.partition()
                end = ends.get(p)
                if end is None:
                    continue
                off = msg.offset()
                if off >= end:
                    del ends[p]
                    continue
                on_message(msg)
                stats.messages += 1
                if off + 1 >= end:
                    del ends[p]
    except KafkaException as exc:
        raise TransientError(f"reading {topic}: {exc}") from exc
    finally:
        consumer.close()
    return stats
