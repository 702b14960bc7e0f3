"""Where ``raw`` left off: the last bar of each series already on the topic.

Kafka holds what was really sent (the database may lag behind it), so a restarted
producer, or a backfill, reads it back from ``raw`` and continues each series after its
last bar: no gap, no duplicate. The scan:

1. reads the last ``RESUME_SCAN`` messages of every partition (one
   :func:`~stockpipe.common.reader.read_partitions` call);
2. while a series the producer is about to publish was not found, reads further back, in
   chunks four times larger each round, every partition that still has older messages,
   until every such series is found or every partition was read from its start. So a long
   backfill (or a busy load test) that pushed a live series' last bar far from the tail
   never makes the producer start that series over. The price: a series never sent before
   costs one full read of the topic at start (``raw`` keeps 7 days).

The result also names each series' source: a series never changes source (DESIGN.md),
see :func:`foreign_series`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping

from confluent_kafka import Consumer, KafkaException, Message

from stockpipe.common.errors import InvalidMessage, TransientError
from stockpipe.common.messages import Bar, Codec
from stockpipe.common.reader import BEGINNING, END, ReadStats, read_partitions, tail
from stockpipe.common.settings import CommonSettings

__all__ = ["Series", "scan_last_bars", "read_last_bars", "foreign_series"]

logger = logging.getLogger(__name__)

Series = tuple[str, str]
"""(symbol, interval)."""

_CODEC = Codec(Bar)
# Each further round reads this many times more than the last: a series pushed far back
# is found in a few rounds, and a near one costs little more than the first read.
_GROWTH = 4

Read = Callable[[dict[int, tuple[int, int]], Callable[[Message], None]], ReadStats]
"""``read(ranges, on_message) -> ReadStats``: :func:`read_partitions` bound to a topic."""


def scan_last_bars(read: Read, partitions: Collection[int], scan: int,
                   wanted: Collection[Series] | None = None) -> dict[Series, Bar]:
    """The last bar (greatest ts) per series, by the scan in the module docstring.

    ``read``: reads ranges of the topic. ``scan``: messages per partition in the first
    round (0: no scan at all, every series starts over). ``wanted``: the series to look
    further back for (None: the first round only). Messages that are not valid bars are
    skipped: they were never sent by a producer.
    """
    last: dict[Series, Bar] = {}
    if scan <= 0 or not partitions:
        return last

    def on_message(msg: Message) -> None:
        try:
            bar = _CODEC.decode(msg.value())
        except InvalidMessage:
            return
        key = (bar.symbol, bar.interval)
        prev = last.get(key)
        if prev is None or bar.ts > prev.ts:
            last[key] = bar

    stats = read({p: (tail(scan), END) for p in partitions}, on_message)
    # Per partition, the first offset read so far (the next round reads just before it).
    frontier = {p: first for p, (first, _) in stats.ranges.items() if first > 0 and p not in stats.truncated}
    size = scan
    missing = set(wanted or ()) - last.keys()
    while missing and frontier:
        size *= _GROWTH
        ranges = {p: (first - size if first > size else BEGINNING, first) for p, first in frontier.items()}
        stats = read(ranges, on_message)
        frontier = {p: first for p, (first, _) in stats.ranges.items()
                    if 0 < first < frontier[p] and p not in stats.truncated}
        missing -= last.keys()
    if missing:
        logger.info("%d series have no bar on the topic yet (e.g. %s): they start fresh",
                    len(missing), "/".join(sorted(missing)[0]))
    return last


def read_last_bars(settings: CommonSettings, scan: int, wanted: Collection[Series] | None = None, *,
                   stop: threading.Event | None = None, beat: Callable[[], None] = lambda: None,
                   timeout: float = 30.0) -> dict[Series, Bar]:
    """:func:`scan_last_bars` on ``raw`` through the shared partition reader.

    Raises :class:`TransientError` while Kafka or the topic is not there (callers retry),
    :class:`~stockpipe.common.reader.ReadStopped` when ``stop`` is set.
    """
    topic = settings.topic("raw")
    consumer = Consumer(settings.kafka_config() | {"group.id": f"{settings.service_name}-resume"})
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise TransientError(f"reading where {topic} left off: {exc}") from exc
    finally:
        consumer.close()
    if topic not in meta.topics or meta.topics[topic].error is not None:
        raise TransientError(f"topic {topic} is not available; run the topic set-up first")

    def read(ranges: dict[int, tuple[int, int]], on_message: Callable[[Message], None]) -> ReadStats:
        return read_partitions(settings, topic, ranges, on_message, stop=stop, beat=beat,
                               group_id=f"{settings.service_name}-resume")

    last = scan_last_bars(read, list(meta.topics[topic].partitions), scan, wanted)
    logger.info("resuming after %d series already on %s", len(last), topic)
    return last


def foreign_series(last: Mapping[Series, Bar], source: str) -> dict[Series, str]:
    """The series whose last bar came from another source than ``source``: {series: its source}.

    A series never mixes sources (DESIGN.md): real and synthetic bars never continue one
    another's series, so the producer leaves these series alone (see the README).
    """
    return {key: bar.source for key, bar in last.items() if bar.source != source}
