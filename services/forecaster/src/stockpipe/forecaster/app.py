"""The forecaster as a handler of the shared consume loop: ``indicators`` → ``forecasts``.

Delivery, in the loop's steps:

1. a batch of indicator messages (each carries its bar's close and every indicator)
   updates the series (:class:`~stockpipe.forecaster.engine.Engine`), scores earlier
   forecasts on the closes that arrived, and makes the jobs the schedule owes;
2. ``handle`` hands the jobs to the :class:`~stockpipe.forecaster.dispatch.Dispatcher` and
   returns at once: fits run in worker processes while the loop keeps polling (up to
   ``FORECASTER_MAX_INFLIGHT`` batches ahead);
3. the batch's Future completes when every forecast owed for its bars (and for the bars
   before) is handed to the publisher, or skipped; the loop then waits for Kafka's
   acknowledgement and commits the offsets. A crash before that reads the bars again and
   makes the same forecasts: ``made_at`` is the ts of the bar a forecast was made at, never
   the wall clock, and the ingestor's upserts make a repeat change nothing.

State rebuild. On assignment the series of the new partitions are rebuilt by replaying the
partition of ``indicators`` from its start up to the group's committed offset
(:func:`~stockpipe.common.consume.replay_to_committed`), through the same code, making no
jobs; then the registry's latest models of those series are loaded (the track records too)
and the latest scheduled regression training is owed again (found in the registry, so not
redone). Bars after the committed offset then make the very jobs an uninterrupted replica
would have made.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from prometheus_client import Counter

from stockpipe.common.consume import Batch, Handler, StateRebuildFailed, rebuild_state, received_at
from stockpipe.common.errors import InvalidMessage, TransientError
from stockpipe.common.http import Health
from stockpipe.common.kafka import BatchConsumer, Message, TopicPartition
from stockpipe.common.lifecycle import Shutdown
from stockpipe.common.messages import Codec, Indicators
from stockpipe.common.metrics import PROCESSING_SECONDS
from stockpipe.common.progress import Progress
from stockpipe.forecaster.dispatch import Dispatcher
from stockpipe.forecaster.engine import Engine
from stockpipe.forecaster.settings import ForecasterSettings

__all__ = ["ForecasterHandler", "StateRebuildFailed"]

logger = logging.getLogger(__name__)

REBUILT_BARS = Counter("stockpipe_forecaster_rebuilt_bars", "Bars replayed to rebuild state on assignment")
LATE_BARS = Counter("stockpipe_forecaster_late_bars", "Bars older than their series' last bar, skipped")
DUPLICATE_BARS = Counter("stockpipe_forecaster_duplicate_bars", "Bars repeating their series' last ts, ignored")
_BATCH_SECONDS = PROCESSING_SECONDS.labels("forecaster_batch")
_REBUILD_SECONDS = PROCESSING_SECONDS.labels("forecaster_rebuild")
_INDICATORS = Codec(Indicators)


class ForecasterHandler(Handler):
    def __init__(self, settings: ForecasterSettings, dispatcher: Dispatcher, health: Health, shutdown: Shutdown,
                 progress: Progress) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.health = health
        self.shutdown = shutdown
        self.progress = progress
        self.engine = Engine(settings)
        self.topic = settings.topic("indicators")
        self.codecs = {self.topic: _INDICATORS}
        self.rebuilding = False

    def handle(self, batch: Batch) -> Future:
        start = time.perf_counter()
        engine, observe = self.engine, self.dispatcher.observe
        late, dups = engine.late, engine.duplicates
        jobs = []
        for msg, ind in batch.items:
            skipped = engine.late + engine.duplicates
            made = engine.add(ind, msg.partition())
            if engine.late + engine.duplicates == skipped:  # a new bar: score the forecasts aimed at it
                observe((ind.symbol, ind.interval), ind.ts, ind.close)
            jobs.extend(made)
        LATE_BARS.inc(self.engine.late - late)
        DUPLICATE_BARS.inc(self.engine.duplicates - dups)
        self.progress.add(jobs=len(jobs))
        _BATCH_SECONDS.observe(time.perf_counter() - start)
        return self.dispatcher.submit(jobs)

    # -- state
    def on_assign(self, partitions: list[TopicPartition], consumer: BatchConsumer) -> None:
        start = time.perf_counter()
        parts = {tp.partition for tp in partitions}
        self.rebuilding = True
        try:
            fed = self._replay_with_retries(partitions, consumer)
        finally:
            self.rebuilding = False
        REBUILT_BARS.inc(fed)
        _REBUILD_SECONDS.observe(time.perf_counter() - start)
        self.dispatcher.restore(self.engine.last_bars(parts))
        resumed = self.engine.resume_jobs(parts)
        if resumed:
            self.dispatcher.submit(resumed)
        if fed:
            logger.info("state rebuilt from %d bars of partitions %s in %.2fs", fed,
                        ", ".join(map(str, sorted(parts))), time.perf_counter() - start)

    def _replay_with_retries(self, partitions: list[TopicPartition], consumer: BatchConsumer) -> int:
        decode, add = _INDICATORS.decode, self.engine.add

        def feed(msg: Message) -> None:
            try:
                # Judged against the message's own timestamp, exactly as when it was consumed live.
                add(decode(msg.value(), received_at(msg)), msg.partition(), replay=True)
            except InvalidMessage:
                pass  # it went to the dead-letter topic the first time

        return rebuild_state(self.settings, consumer, partitions, feed, drop=self.engine.drop_partitions,
                             shutdown=self.shutdown, beat=self.health.beat)

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        parts = {tp.partition for tp in partitions}
        dropped = self.engine.drop_partitions(parts)
        self.dispatcher.drop(parts)
        logger.info("dropped the state of %d series", dropped)

    def check_ready(self) -> None:
        if self.rebuilding:
            raise TransientError("rebuilding series from indicators")
        self.dispatcher.check_ready()

    def close(self) -> None:
        self.dispatcher.close()
