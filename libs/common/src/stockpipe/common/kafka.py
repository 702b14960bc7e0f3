"""Kafka clients with stockpipe's delivery guarantees (confluent-kafka / librdkafka).

- :class:`Publisher`: an idempotent producer (acks=all, no duplicates on retry). ``flush()``
  returns only when every message is acknowledged, and raises :class:`TransientError` if
  any was not, so a caller commits its input offsets only after its output is durable.
- :class:`BatchConsumer`: at-least-once. Auto-commit is off; the caller commits a batch's
  offsets with :meth:`BatchConsumer.commit` after what it made of the batch is durable.
  Rebalances call the caller's ``on_assign`` / ``on_revoke`` hooks (cooperative-sticky, so
  only the partitions that move are passed). Consumer lag per partition is exported from
  librdkafka's statistics.
- :func:`dead_letter`: the rejected message's bytes, unchanged, to the ``dlq`` topic with
  headers ``error``, ``source_topic``, ``source_partition``, ``source_offset``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter as _Tally
from collections import deque
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from stockpipe.common.errors import InvalidMessage, StockpipeError, TransientError
from stockpipe.common.metrics import CONSUMER_LAG, DLQ_MESSAGES, ERRORS, MESSAGES_CONSUMED, MESSAGES_PRODUCED
from stockpipe.common.settings import TOPIC_KINDS, CommonSettings

__all__ = [
    "Publisher",
    "BatchConsumer",
    "dead_letter",
    "ensure_topics",
    "kafka_check",
    "Message",
    "TopicPartition",
]

logger = logging.getLogger(__name__)

PartitionHook = Callable[[list[TopicPartition]], None]


class Publisher:
    """Idempotent producer; :meth:`flush` confirms that everything sent is durable."""

    def __init__(
        self,
        settings: CommonSettings,
        *,
        stop: threading.Event | None = None,
        beat: Callable[[], None] | None = None,
        **overrides: Any,
    ) -> None:
        """``overrides``: librdkafka settings (e.g. ``message.timeout.ms=0``: retry forever).

        ``stop``/``beat``: while :meth:`publish` waits for room in a full local queue (Kafka
        away), it beats liveness and gives up when ``stop`` is set.
        """
        self._stop = stop
        self._beat = beat
        conf = settings.kafka_config() | {
            "enable.idempotence": True,  # implies acks=all and ordered, de-duplicated retries
            "linger.ms": 5,  # a few ms of batching buys an order of magnitude in throughput
            "compression.type": settings.kafka_compression,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 256 * 1024,
            # Successes are counted in bulk once nothing is outstanding (_drain_acks): a Python
            # callback per acknowledged message cost ~1 us each at analytics' rates.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
        }
        conf.update(overrides)
        self._producer = Producer(conf)
        self._queued: _Tally[str] = _Tally()  # queued since nothing was last outstanding
        self._failed_by: _Tally[str] = _Tally()
        self._failed: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # only failures are reported (delivery.report.only.error)
            self._failed.append(f"{msg.topic()}: {err.str()}")
            self._failed_by[msg.topic()] += 1

    def publish(self, topic: str, value: bytes | None, key: bytes | str | None = None,
                headers: list[tuple[str, bytes]] | None = None) -> bool:
        """Queue one message; True once queued.

        When the local queue is full (Kafka slow or away) it waits for room, serving
        delivery reports, beating liveness once a second, and returns False without
        queueing when the publisher's ``stop`` is set first.
        """
        try:
            self._producer.produce(topic, value, key, headers=headers)
            self._queued[topic] += 1
            return True
        except BufferError:
            pass
        if not self._publish_waiting(topic, value, key, headers):
            return False
        self._queued[topic] += 1
        return True

    def publish_many(self, topic: str, values: list[bytes], keys: list[bytes | str]) -> bool:
        """Queue ``values[i]`` with ``keys[i]``, in order; True once all are queued.

        The same as :meth:`publish` in a loop, without its per-message Python overhead.
        Returns False (the rest not queued) when the publisher's ``stop`` is set while it
        waits for room.
        """
        produce = self._producer.produce
        queued = 0
        try:
            for value, key in zip(values, keys):
                try:
                    produce(topic, value, key)
                except BufferError:
                    if not self._publish_waiting(topic, value, key, None):
                        return False
                queued += 1
            return True
        finally:
            self._queued[topic] += queued

    def _publish_waiting(self, topic: str, value: bytes | None, key: bytes | str | None,
                         headers: list[tuple[str, bytes]] | None) -> bool:
        next_beat = 0.0
        while True:
            # The local queue is full: serve delivery reports until there is room.
            self._producer.poll(0.1)
            self._drain_acks()
            now = time.monotonic()
            if self._beat is not None and now >= next_beat:
                self._beat()
                next_beat = now + 1.0
            if self._stop is not None and self._stop.is_set():
                return False
            try:
                self._producer.produce(topic, value, key, headers=headers)
                return True
            except BufferError:
                continue

    def poll(self, timeout: float = 0) -> None:
        """Serve delivery reports (call regularly when publishing without flushing)."""
        self._producer.poll(timeout)
        self._drain_acks()

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every queued message is acknowledged; raise if any was not."""
        remaining = self._producer.flush(timeout)
        self._drain_acks()
        if remaining or self._failed:
            failed, self._failed = self._failed, []
            ERRORS.labels("kafka_delivery").inc()
            raise TransientError(
                f"{remaining} messages not acknowledged after {timeout}s, {len(failed)} failed"
                + (f" (first: {failed[0]})" if failed else "")
            )

    def flush_patiently(self, stop: threading.Event, beat: Callable[[], None] = lambda: None,
                        deadline: float | None = None) -> bool:
        """Wait until every queued message is acknowledged, however long Kafka is away.

        For a publisher made with ``message.timeout.ms=0`` (retry forever), which cannot
        lose a message to a timeout: an outage is waited out, beating liveness. Once ``stop``
        is set it goes on waiting until ``deadline`` (a ``time.monotonic()`` value; none:
        stop at once) and then returns False: the caller exits without committing its input.
        A permanent delivery failure (unknown topic, oversized message) is a bug and raises.
        """
        waited = False
        while True:
            remaining = self._producer.flush(1.0)
            self._drain_acks()
            if self._failed:
                failed, self._failed = self._failed, []
                raise StockpipeError(f"{len(failed)} messages rejected by Kafka (first: {failed[0]})")
            if remaining == 0:
                if waited:
                    logger.info("Kafka acknowledged everything again")
                return True
            if not waited:
                ERRORS.labels("kafka_delivery").inc()
                logger.warning("Kafka has not acknowledged %d messages yet: waiting", remaining)
                waited = True
            beat()
            if stop.is_set() and (deadline is None or time.monotonic() >= deadline):
                return False

    def _drain_acks(self) -> None:
        """Count as produced what was queued and did not fail, once nothing is outstanding."""
        if self._queued and len(self._producer) == 0:
            for topic, n in self._queued.items():
                MESSAGES_PRODUCED.labels(topic).inc(max(0, n - self._failed_by.get(topic, 0)))
            self._queued.clear()
            self._failed_by.clear()

    def pending(self) -> int:
        """Messages queued or in flight, not yet acknowledged."""
        return len(self._producer)

    def abandon(self, timeout: float) -> int:
        """Flush for at most ``timeout`` seconds, then drop what Kafka has not acknowledged.

        For a shutdown while Kafka is away: the process must end in time, and whoever
        comes next re-sends what was dropped (e.g. the producer resumes from the last bar
        on the topic). Returns the number of messages dropped; never raises.
        """
        remaining = self._producer.flush(max(0.0, timeout))
        if remaining:
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.poll(0)  # serve the purged messages' (failed) reports
        self._drain_acks()
        self._failed.clear()
        return remaining

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued (best effort) before the process exits."""
        try:
            self.flush(timeout)
        except TransientError as exc:
            logger.error("closing producer: %s", exc)


# Message's own methods, unbound: map(Message.topic, batch) costs ~25 ns a message, where
# methodcaller("topic") looks the name up on each call (~125 ns). The consume loop, the
# ingestor and every handler read a field or two of each message through these.
_ERROR = Message.error
_TOPIC = Message.topic
_PARTITION = Message.partition
_OFFSET = Message.offset


class BatchConsumer:
    """A consumer group member that hands out batches and commits only when told."""

    def __init__(
        self,
        settings: CommonSettings,
        group_id: str,
        topics: Sequence[str],
        *,
        on_assign: PartitionHook | None = None,
        on_revoke: PartitionHook | None = None,
        **overrides: Any,
    ) -> None:
        conf = settings.kafka_config() | {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a new group reads everything kept, losing nothing
            "partition.assignment.strategy": "cooperative-sticky",
            "statistics.interval.ms": 5000,  # consumer lag per partition, for the metric
            "stats_cb": self._on_stats,
            "on_commit": self._on_commit,
            # Fetch in large chunks: fewer wake-ups per message at high rates.
            "fetch.min.bytes": 1,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": 200_000,
            # Once the local queue is full (queued.max.messages.kbytes, 64 MB), librdkafka
            # waits this long before fetching again; its default, 1 s, left a consumer that
            # drains 64 MB in under a second idle for ~0.4 s of every 1.3 (ingest benchmark).
            "fetch.queue.backoff.ms": 20,
        }
        conf.update(overrides)
        self.topics = list(topics)
        self._on_assign_hook = on_assign
        self._on_revoke_hook = on_revoke
        self._consumer = Consumer(conf)
        self._consumer.subscribe(
            self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    # -- rebalance callbacks (run inside poll/consume on the main thread)
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", _fmt(partitions))
        if self._on_assign_hook and partitions:
            self._on_assign_hook(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("partitions revoked: %s", _fmt(partitions))
        for tp in partitions:
            try:
                CONSUMER_LAG.remove(tp.topic, str(tp.partition))
            except KeyError:  # no statistics came for it yet
                pass
        if self._on_revoke_hook and partitions:
            self._on_revoke_hook(partitions)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.warning("partitions lost (session timed out): %s", _fmt(partitions))
        self._revoked(consumer, partitions)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            ERRORS.labels("kafka_commit").inc()
            logger.warning("offset commit failed (the next one supersedes it): %s", err.str())

    def _on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
            for topic, t in stats.get("topics", {}).items():
                for pid, p in t.get("partitions", {}).items():
                    lag = p.get("consumer_lag", -1)
                    if pid != "-1" and lag >= 0:
                        CONSUMER_LAG.labels(topic, pid).set(lag)
        except (ValueError, AttributeError):  # statistics are advisory; never break consuming
            ERRORS.labels("kafka_stats").inc()

    # -- consuming
    def poll_batch(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first."""
        try:
            batch = self._consumer.consume(max_messages, timeout)
        except KafkaException as exc:
            raise TransientError(f"consume failed: {exc}") from exc
        good = batch
        if any(map(_ERROR, batch)):  # rare: a C-level pass instead of a Python one per message
            good = [msg for msg in batch if msg.error() is None]
            for msg in batch:
                err = msg.error()
                if err is None or err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                ERRORS.labels("kafka_consume").inc()
                logger.warning("consumer error: %s", err.str())
        if len(self.topics) == 1:
            if good:
                MESSAGES_CONSUMED.labels(self.topics[0]).inc(len(good))
        else:
            for topic, n in _Tally(map(_TOPIC, good)).items():
                MESSAGES_CONSUMED.labels(topic).inc(n)
        return good

    def commit(self, messages: Sequence[Message], asynchronous: bool = False) -> None:
        """Commit the offsets after ``messages`` (call once their output is durable).

        ``asynchronous=True`` sends the commit without waiting for the broker's answer
        (a failure is logged by ``on_commit``; the next commit supersedes it).
        """
        offsets = next_offsets(messages)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code in (KafkaError._NO_OFFSET,):
                return
            if code in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                        KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST):
                # The partitions moved on; their new owner re-reads from the last commit, and
                # idempotent writes make the repeat harmless.
                logger.warning("commit skipped after a rebalance: %s", exc)
                ERRORS.labels("kafka_commit_rebalance").inc()
                return
            raise TransientError(f"commit failed: {exc}") from exc

    def committed(self, partitions: list[TopicPartition], timeout: float = 10.0) -> list[TopicPartition]:
        return self._consumer.committed(partitions, timeout=timeout)

    def assignment(self) -> list[TopicPartition]:
        return self._consumer.assignment()

    def pause(self, partitions: list[TopicPartition] | None = None) -> None:
        self._consumer.pause(partitions if partitions is not None else self._consumer.assignment())

    def resume(self, partitions: list[TopicPartition] | None = None) -> None:
        self._consumer.resume(partitions if partitions is not None else self._consumer.assignment())

    def close(self, timeout: float = 5.0) -> None:
        """Leave the group at once (its partitions move without waiting for a timeout).

        librdkafka's close waits for the group coordinator, which may be unreachable: it runs
        on a helper thread given ``timeout`` seconds, after which the process goes on exiting.
        """
        closer = threading.Thread(target=self._consumer.close, name="consumer-close", daemon=True)
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            logger.warning("the consumer did not close within %.1fs (Kafka unreachable?): leaving anyway", timeout)


def next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """The offset to commit per partition: one past its last message in ``messages``.

    ``messages`` in the order consumed: Kafka delivers a partition's messages in offset
    order, so its last one is its highest. (Were one ever out of order, the commit would
    fall short of the highest, which re-reads a few messages and loses none.) A batch is a
    few long runs of one partition: grouping consecutive messages by topic, then partition
    (C-level comparisons), and keeping each run's last message (a later run of the same
    partition overrides an earlier one) hashes one key per run instead of one per message
    (0.03 against 0.11 µs a message).
    """
    last = {}
    for topic, run in groupby(messages, _TOPIC):
        for partition, part in groupby(run, _PARTITION):
            last[topic, partition] = _OFFSET(deque(part, maxlen=1)[0])
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def _fmt(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "none"


# A dead-lettered copy must fit in one Kafka message with its headers: the producer's
# message.max.bytes (1,000,000 by default) less room for the key and headers.
DLQ_MAX_VALUE = 900_000
_DLQ_ERROR_MAX = 2_000  # bytes of the reason kept in the ``error`` header


def dead_letter(publisher: Publisher, dlq_topic: str, msg: Message, error: InvalidMessage) -> None:
    """Send ``msg``'s bytes, unchanged, to the dead-letter topic with the reason in headers.

    Never raises for the message's sake: a value too large to go on with headers is cut to
    its first :data:`DLQ_MAX_VALUE` bytes and the header ``truncated`` gives the original
    size; an oversized key is dropped the same way (``key_truncated``).
    """
    value, key = msg.value(), msg.key()
    headers = [
        ("error", str(error).encode("utf-8", "replace")[:_DLQ_ERROR_MAX]),
        ("source_topic", msg.topic().encode()),
        ("source_partition", str(msg.partition()).encode()),
        ("source_offset", str(msg.offset()).encode()),
    ]
    if value is not None and len(value) > DLQ_MAX_VALUE:
        headers.append(("truncated", str(len(value)).encode()))
        value = value[:DLQ_MAX_VALUE]
    if key is not None and len(key) > 10_000:
        headers.append(("key_truncated", str(len(key)).encode()))
        key = key[:10_000]
    publisher.publish(dlq_topic, value, key, headers=headers)
    DLQ_MESSAGES.labels(error.reason).inc()
    logger.warning(
        "message rejected to %s: %s", dlq_topic, str(error)[:500],
        extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()},
    )


def ensure_topics(
    settings: CommonSettings,
    partitions: int,
    replication: int,
    configs: dict[str, dict[str, str]] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create every topic of DESIGN.md that does not exist yet; return the ones created.

    Existing topics are left alone (idempotent): partitions are never reduced and data is
    never touched. ``configs`` maps a topic kind to topic-level settings (retention...).
    """
    admin = AdminClient(settings.kafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = {settings.topic(kind): kind for kind in TOPIC_KINDS}
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication,
                 config=(configs or {}).get(kind, {}))
        for name, kind in wanted.items() if name not in existing
    ]
    created = []
    if new:
        for name, future in admin.create_topics(new, request_timeout=timeout).items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a racing creator won
                    raise
    return created


def kafka_check(settings: CommonSettings, timeout: float = 3.0) -> Callable[[], None]:
    """A readiness check: Kafka answers a metadata request for the raw topic."""
    admin = AdminClient(settings.kafka_config())
    topic = settings.topic("raw")

    def check() -> None:
        start = time.monotonic()
        meta = admin.list_topics(topic=topic, timeout=timeout)
        if not meta.brokers:
            raise TransientError(f"no Kafka broker answered in {time.monotonic() - start:.1f}s")
        t = meta.topics.get(topic)
        if t is None or t.error is not None:
            raise TransientError(f"topic {topic} is not available: {t.error if t else 'missing'}")

    return check
