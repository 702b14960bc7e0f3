"""The analytics loop: ``raw`` → indicators and alerts, committed only once acknowledged.

Per batch: decode each bar (invalid → dead-letter topic), update its series, publish its
indicator message and alerts keyed by symbol; after the next poll, wait until Kafka
acknowledged all of them, then commit the batch's offsets. The publisher retries forever (``message.timeout.ms=0``)
so a Kafka outage is waited out without losing an output.

State rebuild. When partitions are assigned (start, restart, rebalance), the series of
those partitions are rebuilt by replaying each partition of ``raw`` from its first retained
message up to the group's committed offset, through the same code, without publishing. The
state is then exactly what an uninterrupted replica would hold at that offset, so the values
emitted from there on are identical (DESIGN.md: "never from a table that may lag"). The
limit is Kafka's retention of ``raw`` (7 days by default): a series older than that is
rebuilt from its retained part, and EMA-based values converge within a few hundred bars.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from prometheus_client import Counter

from stockpipe.analytics.processor import Processor
from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.errors import InvalidMessage, StockpipeError, TransientError
from stockpipe.common.http import Health
from stockpipe.common.kafka import BatchConsumer, Publisher, dead_letter
from stockpipe.common.lifecycle import Backoff, Shutdown
from stockpipe.common.messages import Alert, Bar, Codec, Indicators
from stockpipe.common.metrics import PROCESSING_SECONDS
from stockpipe.common.progress import Progress

__all__ = ["AnalyticsApp", "StateRebuildFailed", "replay_partitions"]

logger = logging.getLogger(__name__)

LATE_BARS = Counter("stockpipe_analytics_late_bars", "Bars older than their series' last bar, skipped")
DUPLICATE_BARS = Counter("stockpipe_analytics_duplicate_bars", "Bars repeating their series' last ts, ignored")
ALERTS = Counter("stockpipe_alerts", "Alerts raised, by rule", ["rule"])
REBUILT_BARS = Counter("stockpipe_analytics_rebuilt_bars", "Bars replayed to rebuild state on assignment")
_BATCH_SECONDS = PROCESSING_SECONDS.labels("analytics_batch")
_REBUILD_SECONDS = PROCESSING_SECONDS.labels("analytics_rebuild")

_BARS = Codec(Bar)


def replay_partitions(settings: AnalyticsSettings, processor: Processor, targets: dict[int, int],
                      timeout: float = 600.0, beat: Callable[[], None] = lambda: None) -> int:
    """Feed ``processor`` the bars of raw partition p from the start up to offset targets[p] (exclusive)."""
    targets = {p: off for p, off in targets.items() if off > 0}
    if not targets:
        return 0
    topic = settings.topic("raw")
    consumer = Consumer(settings.kafka_config() | {
        "group.id": f"{settings.analytics_group_id}-rebuild",  # assign() only: never joins or commits
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "queued.min.messages": 200_000,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in targets])
    pending = set(targets)
    fed = 0
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"rebuilding state from {topic} took over {timeout}s")
            beat()  # a long replay is work, not a hang: keep /healthz green
            for msg in consumer.consume(10_000, 1.0):
                p = msg.partition()
                if p not in pending:
                    continue
                if msg.error():
                    if msg.error().code() == -191:  # partition EOF before the target: nothing more
                        pending.discard(p)
                    continue
                if msg.offset() >= targets[p]:
                    pending.discard(p)
                    continue
                try:
                    bar = _BARS.decode(msg.value())
                except InvalidMessage:
                    continue  # it went to the dead-letter topic the first time
                processor.process(bar, p)
                fed += 1
                if msg.offset() + 1 >= targets[p]:
                    pending.discard(p)
    finally:
        consumer.close()
    return fed


class StateRebuildFailed(StockpipeError):
    """The state of assigned partitions could not be rebuilt: consuming them would be wrong."""


_REBUILD_ATTEMPTS = 5


def _parts(partitions: list[TopicPartition]) -> str:
    return ", ".join(str(tp.partition) for tp in partitions)


class AnalyticsApp:
    """Consumes raw bars, publishes indicators and alerts."""

    def __init__(self, settings: AnalyticsSettings, publisher: Publisher, health: Health,
                 shutdown: Shutdown) -> None:
        self.settings = settings
        self.publisher = publisher
        self.health = health
        self.shutdown = shutdown
        self.processor = Processor(settings.indicator_config(), settings.alert_config())
        self.raw = settings.topic("raw")
        self.out_indicators = settings.topic("indicators")
        self.out_alerts = settings.topic("alerts")
        self.dlq = settings.topic("dlq")
        self.rebuilding = False
        self._pending: list = []  # the last batch: outputs published, offsets not committed yet
        self.progress = Progress("processed", settings.progress_interval)
        self.consumer = BatchConsumer(settings, settings.analytics_group_id, [self.raw],
                                      on_assign=self._rebuild, on_revoke=self._forget)

    def _rebuild(self, partitions: list[TopicPartition]) -> None:
        """Rebuild the series of newly assigned partitions, or stop the process trying.

        Consuming a partition without its state would emit wrong values, so a rebuild that
        keeps failing is not a transient error to step over: after a few attempts it raises
        :class:`StateRebuildFailed` (not a KafkaException, which the loop would retry past),
        the process exits non-zero and its partitions move to a healthy replica. While it
        runs, ``/readyz`` says so and ``/healthz`` stays green.
        """
        start = time.perf_counter()
        self.rebuilding = True
        try:
            fed = self._replay_with_retries(partitions)
        finally:
            self.rebuilding = False
        REBUILT_BARS.inc(fed)
        _REBUILD_SECONDS.observe(time.perf_counter() - start)
        if fed:
            logger.info("state rebuilt from %d bars of partitions %s in %.2fs", fed, _parts(partitions),
                        time.perf_counter() - start)

    def _replay_with_retries(self, partitions: list[TopicPartition]) -> int:
        backoff = Backoff(initial=1.0, cap=10.0)
        for attempt in range(1, _REBUILD_ATTEMPTS + 1):
            try:
                committed = self.consumer.committed(partitions, timeout=30)
                targets = {tp.partition: tp.offset for tp in committed}
                return replay_partitions(self.settings, self.processor, targets, beat=self.health.beat)
            except (KafkaException, TimeoutError) as exc:
                # Drop what a half-done replay built: the next attempt starts clean.
                self.processor.drop_partitions({tp.partition for tp in partitions})
                if attempt == _REBUILD_ATTEMPTS:
                    raise StateRebuildFailed(f"rebuilding partitions {_parts(partitions)}: {exc}") from exc
                delay = backoff.next_delay()
                logger.warning("state rebuild failed (attempt %d), retrying in %.1fs: %s", attempt, delay, exc)
                self.health.beat()
                time.sleep(delay)
        raise AssertionError("unreachable")

    def check_ready(self) -> None:
        """Readiness: not while a state rebuild is under way (its partitions emit nothing yet)."""
        if self.rebuilding:
            raise TransientError("rebuilding indicator state from raw")

    def _forget(self, partitions: list[TopicPartition]) -> None:
        self._commit_pending()  # the batch in hand is acknowledged and committed before the partitions go
        dropped = self.processor.drop_partitions({tp.partition for tp in partitions})
        logger.info("dropped the state of %d series", dropped)

    def _commit_pending(self) -> bool:
        """Wait for the acknowledgement of the last batch's outputs, then commit its offsets.

        Called after the next poll rather than right after producing: the acknowledgements
        arrive while the loop waits for new bars, so the wait costs nothing. Returns False if
        shutdown came first (the batch is then processed again on restart).
        """
        if not self._pending:
            return True
        if not self.publisher.flush_patiently(self.shutdown.event, self.health.beat):
            logger.warning("stopping before Kafka acknowledged the last batch: it will be processed again")
            self._pending = []
            return False
        self.consumer.commit(self._pending, asynchronous=True)
        self._pending = []
        return True

    def run(self) -> None:
        s = self.settings
        encode_ind = Codec(Indicators).encode
        encode_alert = Codec(Alert).encode
        publish = self.publisher.publish
        process = self.processor.process
        decode = _BARS.decode
        try:
            while not self.shutdown.requested:
                self.health.beat()
                self.progress.tick()
                try:
                    messages = self.consumer.poll_batch(s.analytics_batch_size, s.analytics_batch_timeout)
                except TransientError as exc:
                    logger.warning("Kafka: %s", exc)
                    self.shutdown.wait(1.0)
                    continue
                if not self._commit_pending():
                    return
                if not messages:
                    continue
                start = time.perf_counter()
                late, dups = self.processor.late, self.processor.duplicates
                alert_count = 0
                for msg in messages:
                    try:
                        bar = decode(msg.value())
                    except InvalidMessage as exc:
                        dead_letter(self.publisher, self.dlq, msg, exc)
                        continue
                    indicators, alerts = process(bar, msg.partition())
                    if indicators is not None:
                        publish(self.out_indicators, encode_ind(indicators), bar.symbol)
                        for alert in alerts:
                            publish(self.out_alerts, encode_alert(alert), bar.symbol)
                            ALERTS.labels(alert.rule).inc()
                            alert_count += 1
                self.publisher.poll(0)  # serve delivery reports: the queue never fills up
                self._pending = messages
                self.progress.add(bars=len(messages), alerts=alert_count)
                LATE_BARS.inc(self.processor.late - late)
                DUPLICATE_BARS.inc(self.processor.duplicates - dups)
                _BATCH_SECONDS.observe(time.perf_counter() - start)
        finally:
            self._commit_pending()

    def close(self) -> None:
        self.consumer.close()
        self.publisher.close()
