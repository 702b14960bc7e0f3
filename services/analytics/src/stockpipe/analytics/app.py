"""Analytics: ``raw`` → indicators and alerts, as a handler of the shared consume loop.

Per batch: each decoded bar updates its series and publishes its indicator message and
alerts keyed by symbol; a bar the state cannot take (one that would make an indicator
non-finite) is rejected with its reason and leaves the state untouched. The loop commits
the batch's offsets once Kafka acknowledged every output (the publisher retries forever,
``message.timeout.ms=0``, so an outage is waited out without losing an output).

State rebuild. When partitions are assigned (start, restart, rebalance), the series of
those partitions are rebuilt by replaying each partition of ``raw`` from its first retained
message up to the group's committed offset (:func:`~stockpipe.common.consume.replay_to_committed`),
through the same code, without publishing. The state is then exactly what an uninterrupted
replica would hold at that offset, so the values emitted from there on are identical
(DESIGN.md: "never from a table that may lag"). The limit is Kafka's retention of ``raw``
(7 days by default): where it dropped a partition's first bars, the rebuild says so in a
log line and ``stockpipe_state_rebuild_incomplete_total``; EMA-based values converge within
a few hundred bars.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter

from stockpipe.analytics.processor import Processor
from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.consume import Batch, Handler, StateRebuildFailed, rebuild_state, received_at
from stockpipe.common.errors import InvalidMessage, TransientError
from stockpipe.common.http import Health
from stockpipe.common.kafka import BatchConsumer, Message, Publisher, TopicPartition
from stockpipe.common.lifecycle import Shutdown
from stockpipe.common.messages import Alert, Bar, Codec, Indicators
from stockpipe.common.metrics import PROCESSING_SECONDS
from stockpipe.common.progress import Progress

__all__ = ["AnalyticsHandler", "StateRebuildFailed"]

logger = logging.getLogger(__name__)

LATE_BARS = Counter("stockpipe_analytics_late_bars", "Bars older than their series' last bar, skipped")
DUPLICATE_BARS = Counter("stockpipe_analytics_duplicate_bars", "Bars repeating their series' last ts, ignored")
ALERTS = Counter("stockpipe_alerts", "Alerts raised, by rule", ["rule"])
REBUILT_BARS = Counter("stockpipe_analytics_rebuilt_bars", "Bars replayed to rebuild state on assignment")
_BATCH_SECONDS = PROCESSING_SECONDS.labels("analytics_batch")
_REBUILD_SECONDS = PROCESSING_SECONDS.labels("analytics_rebuild")

_BARS = Codec(Bar)


def _parts(partitions: list[TopicPartition]) -> str:
    return ", ".join(str(tp.partition) for tp in partitions)


class AnalyticsHandler(Handler):
    """Raw bars in; indicator and alert messages out."""

    def __init__(self, settings: AnalyticsSettings, publisher: Publisher, health: Health,
                 shutdown: Shutdown, progress: Progress) -> None:
        self.settings = settings
        self.publisher = publisher
        self.health = health
        self.shutdown = shutdown
        self.progress = progress
        self.processor = Processor(settings.indicator_config(), settings.alert_config())
        self.raw = settings.topic("raw")
        self.codecs = {self.raw: _BARS}
        self.out_indicators = settings.topic("indicators")
        self.out_alerts = settings.topic("alerts")
        self.rebuilding = False
        self._encode_ind = Codec(Indicators).encode
        self._encode_alert = Codec(Alert).encode

    def handle(self, batch: Batch) -> None:
        start = time.perf_counter()
        publish, process = self.publisher.publish, self.processor.process
        out_ind, out_alerts, encode_ind, encode_alert = (self.out_indicators, self.out_alerts,
                                                         self._encode_ind, self._encode_alert)
        late, dups = self.processor.late, self.processor.duplicates
        alert_count = 0
        for msg, bar in batch.items:
            try:
                indicators, alerts = process(bar, msg.partition())
            except InvalidMessage as exc:  # the state cannot take it; it is left untouched
                batch.rejected.append((msg, exc))
                continue
            if indicators is not None:
                publish(out_ind, encode_ind(indicators), bar.symbol)
                for alert in alerts:
                    publish(out_alerts, encode_alert(alert), bar.symbol)
                    ALERTS.labels(alert.rule).inc()
                    alert_count += 1
        self.publisher.poll(0)  # serve delivery reports: the queue never fills up
        self.progress.add(alerts=alert_count)
        LATE_BARS.inc(self.processor.late - late)
        DUPLICATE_BARS.inc(self.processor.duplicates - dups)
        _BATCH_SECONDS.observe(time.perf_counter() - start)
        return None

    # -- state
    def on_assign(self, partitions: list[TopicPartition], consumer: BatchConsumer) -> None:
        """Rebuild the series of newly assigned partitions, or stop the process trying.

        Consuming a partition without its state would emit wrong values, so a rebuild that
        keeps failing is not a transient error to step over: after a few attempts it raises
        :class:`StateRebuildFailed`, the process exits non-zero and its partitions move to a
        healthy replica. While it runs, ``/readyz`` says so and ``/healthz`` stays green;
        SIGTERM stops it (the partitions are rebuilt again by whoever gets them).
        """
        start = time.perf_counter()
        self.rebuilding = True
        try:
            fed = self._replay_with_retries(partitions, consumer)
        finally:
            self.rebuilding = False
        REBUILT_BARS.inc(fed)
        _REBUILD_SECONDS.observe(time.perf_counter() - start)
        if fed:
            logger.info("state rebuilt from %d bars of partitions %s in %.2fs", fed, _parts(partitions),
                        time.perf_counter() - start)

    def _replay_with_retries(self, partitions: list[TopicPartition], consumer: BatchConsumer) -> int:
        decode, process = _BARS.decode, self.processor.process

        def feed(msg: Message) -> None:
            try:
                process(decode(msg.value(), received_at(msg)), msg.partition())
            except InvalidMessage:
                pass  # it went to the dead-letter topic the first time

        return rebuild_state(self.settings, consumer, partitions, feed, drop=self.processor.drop_partitions,
                             shutdown=self.shutdown, beat=self.health.beat)

    def check_ready(self) -> None:
        """Readiness: not while a state rebuild is under way (its partitions emit nothing yet)."""
        if self.rebuilding:
            raise TransientError("rebuilding indicator state from raw")

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        dropped = self.processor.drop_partitions({tp.partition for tp in partitions})
        logger.info("dropped the state of %d series", dropped)
