"""Analytics: ``raw`` → indicators and alerts, as a handler of the shared consume loop.

Per batch: the processor takes the decoded bars at once (:meth:`Processor.process_many`:
each series' bars in order, the seeded series advanced together in numpy columns), and the
batch's indicator messages are encoded in one call and queued in one loop, keyed by symbol,
then its alerts; a bar the state cannot take (one that would make an indicator non-finite)
is rejected with its reason and leaves the state untouched. The loop commits
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
from collections import Counter as Tally
from datetime import datetime

import msgspec
from prometheus_client import Counter

from stockpipe.analytics.processor import Processor
from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.consume import Batch, Handler, StateRebuildFailed, rebuild_state, received_at
from stockpipe.common.errors import InvalidMessage, TransientError
from stockpipe.common.http import Health
from stockpipe.common.kafka import BatchConsumer, Message, Publisher, TopicPartition
from stockpipe.common.lifecycle import Shutdown
from stockpipe.common.messages import Bar, Codec, Indicators
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
_REPLAY_CHUNK = 10_000  # bars per process_many call while rebuilding state


class _IndicatorsOut(msgspec.Struct, gc=False):
    """An indicators message as analytics writes it: the fields of :class:`Indicators` in its
    order, built positionally and without its checks (the bar passed them at decode and the
    values are finite by construction). Encodes to the same bytes (tests/unit/analytics)."""

    v: int
    symbol: str
    interval: str
    ts: datetime
    close: float
    rsi: float | None
    sma_short: float | None
    sma_long: float | None
    ema_short: float | None
    ema_long: float | None
    bb_upper: float | None
    bb_middle: float | None
    bb_lower: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None
    volatility: float | None


assert _IndicatorsOut.__struct_fields__ == Indicators.__struct_fields__


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
        self._encode_lines = msgspec.json.Encoder().encode_lines  # JSON never holds a raw newline

    def handle(self, batch: Batch) -> None:
        start = time.perf_counter()
        items = batch.items
        late, dups = self.processor.late, self.processor.duplicates
        results = self.processor.process_many([bar for _, bar in items], [msg.partition() for msg, _ in items])
        out, keys, alerts = [], [], []
        for (msg, bar), result in zip(items, results):
            if type(result) is tuple:
                values, raised = result
                out.append(_IndicatorsOut(1, bar.symbol, bar.interval, bar.ts, bar.close, *values))
                keys.append(bar.symbol)
                if raised:
                    alerts += raised
            elif result is not None:  # the state cannot take it; it is left untouched
                batch.rejected.append((msg, result))
        if out:
            self.publisher.publish_many(self.out_indicators, self._encode_lines(out).split(b"\n")[:-1], keys)
        if alerts:
            self.publisher.publish_many(self.out_alerts, self._encode_lines(alerts).split(b"\n")[:-1],
                                        [alert.symbol for alert in alerts])
            for rule, n in Tally(alert.rule for alert in alerts).items():
                ALERTS.labels(rule).inc(n)
        self.publisher.poll(0)  # serve delivery reports: the queue never fills up
        self.progress.add(alerts=len(alerts))
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
        """Replay through :meth:`Processor.process_many` in chunks, publishing nothing."""
        decode, processor = _BARS.decode, self.processor
        bars: list[Bar] = []
        parts: list[int] = []

        def run() -> None:
            processor.process_many(bars, parts)  # what it rejected went to the dead-letter topic the first time
            bars.clear()
            parts.clear()

        def feed(msg: Message) -> None:
            try:
                bars.append(decode(msg.value(), received_at(msg)))
                parts.append(msg.partition())
            except InvalidMessage:
                return
            if len(bars) >= _REPLAY_CHUNK:
                run()

        def drop(partitions: set[int]) -> object:
            bars.clear()  # a failed attempt's tail: the next one starts clean
            parts.clear()
            return processor.drop_partitions(partitions)

        fed = rebuild_state(self.settings, consumer, partitions, feed, drop=drop,
                            shutdown=self.shutdown, beat=self.health.beat)
        run()
        return fed

    def check_ready(self) -> None:
        """Readiness: not while a state rebuild is under way (its partitions emit nothing yet)."""
        if self.rebuilding:
            raise TransientError("rebuilding indicator state from raw")

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        dropped = self.processor.drop_partitions({tp.partition for tp in partitions})
        logger.info("dropped the state of %d series", dropped)
