"""The one consume loop every consuming service plugs into.

A service writes a :class:`Handler` (what a batch of messages becomes) and hands it to a
:class:`ConsumeLoop`, which does everything else the same way in every service:

1. poll a batch (a Kafka outage is waited out with backoff, beating ``/healthz``);
2. decode each message with the codec of its topic (``Handler.decode``); an invalid one
   is set aside with its reason;
3. ``Handler.handle(batch)``: the service's work. It returns ``None`` when the batch's
   output is durable once the publisher has acknowledged what ``handle`` published
   (analytics), or a :class:`~concurrent.futures.Future` that completes when its output is
   durable (the ingestor's database write on its writer thread, the forecaster's fits, the
   notifier's deliveries). Up to ``max_inflight`` batches may be in flight at once;
4. when a batch is durable, in batch order: its rejects go to the dead-letter topic (once:
   a retried or re-read batch never dead-letters a message twice), the publisher's
   acknowledgements are awaited (retried forever, beating), and the batch's offsets are
   committed.

A crash anywhere before 4 re-reads the batch (at-least-once), and idempotent outputs make
that exactly-once in effect.

Transient failures. A Future that raises :class:`TransientError` (the database is away)
puts the loop on hold: every partition is paused (the group membership is kept by polling),
``/readyz`` says why, and after a backoff delay ``handle`` runs again on the held batches in
order. A handler whose Futures can fail this way must make ``handle`` repeatable for the
same batch (the ingestor's writes are idempotent). Messages that were already on their way
when the partitions paused wait in a backlog and are handled after the held batches.

Rebalances. ``Handler.on_assign`` runs when partitions arrive (a stateful handler rebuilds
their state there, e.g. with :func:`replay_to_committed`). Before partitions go, the batches
in flight are settled and committed; if they cannot be (the loop is on hold), the held
messages of the partitions that go are dropped (their next owner reads them again from the
last commit) and the rest stay held; with nothing left to hold, consuming resumes. Then
``Handler.on_revoke`` lets the handler drop the state of the partitions that went.

Shutdown. ``SIGTERM`` stops polling; the batches in flight are settled until the shutdown
deadline (``SHUTDOWN_TIMEOUT``), what is durable by then is committed, and the rest is read
again on the next start. :class:`~stockpipe.common.lifecycle.Shutdown` ends the process at
the deadline whatever a dependency is doing.

Liveness. The loop beats ``/healthz`` on every turn and while it waits (for a Future, for
Kafka's acknowledgements, out an outage); a single Future that stays pending longer than
``stall_timeout`` seconds stops the beating, so a handler that is really stuck turns
``/healthz`` red and the orchestrator restarts the process.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any

from confluent_kafka import KafkaException
from prometheus_client import Counter

from stockpipe.common.errors import InvalidMessage, StockpipeError, TransientError
from stockpipe.common.http import Health
from stockpipe.common.kafka import BatchConsumer, Message, Publisher, TopicPartition, dead_letter
from stockpipe.common.lifecycle import Backoff, Shutdown, ShutdownRequested, tune_gc
from stockpipe.common.messages import Codec
from stockpipe.common.metrics import ERRORS
from stockpipe.common.progress import Progress
from stockpipe.common.reader import BEGINNING, ReadStats, ReadStopped, read_partitions
from stockpipe.common.settings import CommonSettings

__all__ = ["Batch", "Handler", "ConsumeLoop", "replay_to_committed", "rebuild_state", "StateRebuildFailed",
           "received_at", "REBUILD_INCOMPLETE"]

logger = logging.getLogger(__name__)

REBUILD_INCOMPLETE = Counter(
    "stockpipe_state_rebuild_incomplete",
    "Partitions whose state was rebuilt from history that no longer reaches their first message "
    "(retention dropped the start): values converge but are not those of an uninterrupted run",
    ["topic"],
)


@dataclass(slots=True)
class Batch:
    """One poll's messages after decoding.

    ``items`` holds ``(message, decoded value)`` of the valid messages in poll order;
    ``rejected`` the invalid ones with their reasons. A handler may reject more (a value
    its state cannot take, a row the database refuses) by appending to ``rejected``.
    Handlers that decode into something else (the ingestor's rows) subclass it.
    """

    messages: list[Message]
    items: list[tuple[Message, Any]] = field(default_factory=list)
    rejected: list[tuple[Message, InvalidMessage]] = field(default_factory=list)


_TOPIC = Message.topic  # unbound: no name lookup per message (see stockpipe.common.kafka)
_VALUE = Message.value
_TIMESTAMP = Message.timestamp
_MS = itemgetter(1)


class Handler:
    """What a consuming service plugs into :class:`ConsumeLoop` (override what you need)."""

    #: topic name -> codec of its messages (used by the default :meth:`decode`)
    codecs: Mapping[str, Codec] = {}

    def decode(self, messages: list[Message]) -> Batch:
        """Decode ``messages`` (pure, no I/O); invalid ones become rejections.

        A poll holds long runs of one topic (Kafka fetches per partition). Each run is decoded
        in C-level passes (``codec.decoder.decode_all``: no Python
        frame per message but the model's own checks); a run with an invalid message, or one
        that might be, is decoded message by message, so each invalid one gets its reason.
        """
        batch = Batch(messages)
        items, rejected, codecs = batch.items, batch.rejected, self.codecs
        for topic, run in groupby(messages, _TOPIC):
            run = list(run)
            codec = codecs[topic]
            # The earliest Kafka time of the run bounds every message's own (see decode_all).
            models = codec.decoder.decode_all(list(map(_VALUE, run)), min(map(_TIMESTAMP, run), key=_MS)[1] / 1000.0)
            if models is not None:
                items.extend(zip(run, models))
                continue
            for msg in run:
                kind, ms = msg.timestamp()  # received_at(msg), inline
                try:
                    items.append((msg, codec.decode(msg.value(), ms / 1000.0 if kind else None)))
                except InvalidMessage as exc:
                    rejected.append((msg, exc))
        return batch

    def handle(self, batch: Batch) -> Future | None:
        """Process ``batch``; return a Future completing when its output is durable, or None."""
        raise NotImplementedError

    def on_assign(self, partitions: list[TopicPartition], consumer: BatchConsumer) -> None:
        """Partitions arrived (state to rebuild?). Runs on the loop's thread, inside poll."""

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Partitions went: drop their state. Their uncommitted messages are not owed any more."""

    def check_ready(self) -> None:
        """Raise (with a reason) while the handler cannot do its work: ``/readyz`` says 503."""

    def close(self) -> None:
        """Release what the handler holds (threads, pools); called once, after the loop."""


@dataclass(slots=True)
class _InFlight:
    batch: Batch
    future: Future | None


def received_at(msg: Message) -> float | None:
    """The message's Kafka timestamp in seconds, for the decoder's "future" check.

    Judging a bar's time against when it was produced, not only against now, gives the same
    verdict on every read: a bar refused as "future" live is refused again when a replay
    rebuilds state days later, so the rebuilt state is the live one.
    """
    kind, ms = msg.timestamp()
    return ms / 1000.0 if kind else None


class ConsumeLoop:
    """Poll → decode → handle → (durable) → dead-letter rejects → commit, in batch order."""

    def __init__(
        self,
        settings: CommonSettings,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        publisher: Publisher,
        health: Health,
        shutdown: Shutdown,
        batch_size: int,
        batch_timeout: float,
        progress: Progress | None = None,
        max_inflight: int = 2,
        stall_timeout: float | None = None,
        consumer_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.publisher = publisher
        self.health = health
        self.shutdown = shutdown
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.progress = progress or Progress("consumed", settings.progress_interval)
        self.max_inflight = max_inflight
        self.stall_timeout = stall_timeout if stall_timeout is not None else settings.liveness_timeout
        self.dlq = settings.topic("dlq")
        self._inflight: deque[_InFlight] = deque()
        self._held: list[Batch] = []  # durability failed: handled again, in order, after a delay
        self._backlog: list[Message] = []  # polled while on hold: handled after the held batches
        self._hold_reason = ""
        self._paused = False
        # (topic, partition, offset) of rejects already dead-lettered and not yet committed:
        # a batch handled again after a hold or a rewind does not dead-letter them twice.
        self._dead_lettered: set[tuple[str, int, int]] = set()
        self.consumer = BatchConsumer(settings, group_id, list(topics), on_assign=self._assigned,
                                      on_revoke=self._revoked, **dict(consumer_overrides or {}))
        health.add_check("consumer", self.check_ready)

    # -- readiness
    def check_ready(self) -> None:
        if self._held:
            raise TransientError(f"holding {sum(len(b.messages) for b in self._held)} messages: {self._hold_reason}")
        self.handler.check_ready()

    # -- the loop
    def run(self) -> None:
        """Consume until shutdown; then settle what is in flight within the shutdown deadline."""
        tune_gc()  # the service is set up: freeze it out of the GC's scans (lifecycle.GC_THRESHOLDS)
        backoff = Backoff(initial=0.5, cap=15.0)
        try:
            while not self.shutdown.requested:
                self.health.beat()
                self.progress.tick()
                if self._held:
                    self._retry_held()
                    continue
                if self._backlog:
                    messages, self._backlog = self._backlog, []
                else:
                    try:
                        messages = self.consumer.poll_batch(self.batch_size, self.batch_timeout)
                    except TransientError as exc:
                        self._wait(backoff.next_delay(), f"Kafka: {exc}")
                        continue
                    backoff.reset()
                self._settle(block=False)  # the previous batches' acknowledgements came meanwhile
                if not messages:
                    continue
                self._submit(messages)
                while len(self._inflight) > self.max_inflight and not self._held:
                    self._settle_oldest()
        except (ShutdownRequested, ReadStopped):
            logger.info("stopping while partitions were being assigned")
        finally:
            self._drain()

    def _submit(self, messages: list[Message]) -> None:
        batch = self.handler.decode(messages)
        self.progress.add(messages=len(messages), rejected=len(batch.rejected))
        self._inflight.append(_InFlight(batch, self.handler.handle(batch)))

    def _settle(self, block: bool) -> None:
        """Commit, in order, every batch in flight whose output is durable."""
        while self._inflight and not self._held:
            head = self._inflight[0]
            if not block and head.future is not None and not head.future.done():
                return
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        head = self._inflight[0]
        try:
            if head.future is not None:
                self._await(head.future)
        except TransientError as exc:
            self._hold(exc)
            return
        self._inflight.popleft()
        self._finish(head.batch)

    def _await(self, future: Future) -> None:
        """The future's result, beating while it runs (up to ``stall_timeout``) and honouring shutdown."""
        started = time.monotonic()
        stalled = False
        while True:
            try:
                future.result(timeout=0.5)
                return
            except FutureTimeout:
                pass
            if time.monotonic() - started < self.stall_timeout:
                self.health.beat()
            elif not stalled:
                logger.error("a batch has not become durable in %.0fs: /healthz turns red", self.stall_timeout)
                stalled = True
            if self.shutdown.requested and self.shutdown.remaining() <= 0:
                raise ShutdownRequested("waiting for a batch to become durable")

    def _finish(self, batch: Batch) -> None:
        """The batch's output is durable: dead-letter its rejects, await acknowledgements, commit."""
        for msg, error in batch.rejected:
            key = (msg.topic(), msg.partition(), msg.offset())
            if key not in self._dead_lettered:
                dead_letter(self.publisher, self.dlq, msg, error)
                self._dead_lettered.add(key)
        if not self.publisher.flush_patiently(self.shutdown.event, self.health.beat,
                                              deadline=self.shutdown.deadline):
            raise ShutdownRequested("waiting for Kafka to acknowledge")
        try:
            self.consumer.commit(batch.messages, asynchronous=True)
        except TransientError as exc:  # the next commit supersedes it; the batch may be re-read
            ERRORS.labels("kafka_commit").inc()
            logger.warning("%s", exc)
        if self._dead_lettered:
            for msg in batch.messages:
                self._dead_lettered.discard((msg.topic(), msg.partition(), msg.offset()))

    # -- holding through an outage
    def _hold(self, exc: TransientError) -> None:
        """The oldest batch in flight failed transiently: hold it and everything after it."""
        self._hold_reason = str(exc)
        held = []
        for item in self._inflight:
            if item.future is not None:
                try:
                    item.future.exception()  # wait: later writes settle before they are retried
                except Exception:  # noqa: BLE001 - a cancelled future
                    pass
            held.append(item.batch)
        self._inflight.clear()
        self._held = held + self._held
        ERRORS.labels("transient").inc()
        if not self._paused:
            self.consumer.pause()
            self._paused = True
        logger.warning("output not durable, holding %d messages: %s",
                       sum(len(b.messages) for b in self._held), exc)

    def _retry_held(self) -> None:
        backoff = Backoff(initial=0.5, cap=15.0)
        while self._held and not self.shutdown.requested:
            self._wait(backoff.next_delay(), self._hold_reason, serve_group=True)
            if not self._held or self.shutdown.requested:
                return  # a revoke dropped them, or we stop
            try:
                while self._held:
                    batch = self._held[0]
                    future = self.handler.handle(batch)
                    if future is not None:
                        self._await(future)
                    self._held.pop(0)
                    self._finish(batch)
            except TransientError as exc:
                self._hold_reason = str(exc)
                logger.warning("still holding %d messages: %s", sum(len(b.messages) for b in self._held), exc)
                continue
        if not self._held and self._paused:
            self.consumer.resume()
            self._paused = False
            logger.info("output durable again: consuming")

    def _wait(self, delay: float, reason: str, serve_group: bool = False) -> None:
        """Sleep ``delay`` seconds, beating; on hold, poll the paused consumer to keep the group."""
        logger.warning("waiting %.1fs: %s", delay, reason)
        deadline = time.monotonic() + delay
        while not self.shutdown.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.health.beat()
            if not serve_group:
                self.shutdown.wait(min(1.0, left))
                continue
            # Polling while paused keeps the membership (max.poll.interval.ms) and runs the
            # rebalance callbacks; what was already on its way waits in the backlog.
            try:
                late = self.consumer.poll_batch(self.batch_size, min(1.0, left))
            except TransientError as exc:
                logger.warning("Kafka: %s", exc)
                self.shutdown.wait(min(1.0, left))
                continue
            self._backlog.extend(late)

    # -- rebalances
    def _assigned(self, partitions: list[TopicPartition]) -> None:
        if self._paused:
            self.consumer.pause(partitions)
        self.handler.on_assign(partitions, self.consumer)

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        if not self._held:
            try:
                self._settle(block=True)  # committed now, the next owner does not redo them
            except ShutdownRequested:
                pass
        if self._held or self._backlog:
            self._forget(partitions)
        self.handler.on_revoke(partitions)

    def _forget(self, revoked: list[TopicPartition]) -> None:
        """Drop the held messages of revoked partitions: their next owner reads them again."""
        gone = {(tp.topic, tp.partition) for tp in revoked}

        def kept(messages: list[Message]) -> list[Message]:
            return [m for m in messages if (m.topic(), m.partition()) not in gone]

        before = sum(len(b.messages) for b in self._held) + len(self._backlog)
        held = [kept(b.messages) for b in self._held]
        self._held = [self.handler.decode(m) for m in held if m]
        self._backlog = kept(self._backlog)
        after = sum(len(b.messages) for b in self._held) + len(self._backlog)
        if before != after:
            logger.info("dropped %d held messages of revoked partitions", before - after)
        if not self._held and self._paused:
            self.consumer.resume()  # nothing left to hold for: consume again
            self._paused = False

    # -- stopping
    def _drain(self) -> None:
        """Settle what is in flight until the shutdown deadline; commit what became durable."""
        try:
            while self._inflight and not self._held:
                head = self._inflight[0]
                if head.future is not None:
                    left = self.shutdown.remaining()
                    try:
                        head.future.result(timeout=max(0.0, left))
                    except FutureTimeout:
                        break
                    except TransientError:
                        break
                self._inflight.popleft()
                self._finish(head.batch)
        except ShutdownRequested:
            pass
        left = sum(len(i.batch.messages) for i in self._inflight) + sum(len(b.messages) for b in self._held)
        if left:
            logger.warning("stopping with %d messages not durable: they stay uncommitted and are read again", left)

    def close(self) -> None:
        """Close the handler, then leave the group (partitions move at once)."""
        try:
            self.handler.close()
        finally:
            self.consumer.close(timeout=max(0.5, min(5.0, self.shutdown.remaining())))


def replay_to_committed(
    settings: CommonSettings,
    consumer: BatchConsumer,
    partitions: list[TopicPartition],
    on_message: Callable[[Message], None],
    *,
    shutdown: Shutdown,
    beat: Callable[[], None],
    timeout: float = 600.0,
) -> ReadStats:
    """Feed ``on_message`` each assigned partition from its first retained message up to the
    group's committed offset: the history a stateful consumer rebuilds its state from.

    Where retention has already dropped a partition's first messages, the state is rebuilt
    from what is left: said in a log line and counted in ``stockpipe_state_rebuild_incomplete``.
    """
    stats = ReadStats()
    committed = consumer.committed(partitions, timeout=30)
    by_topic: dict[str, dict[int, tuple[int, int]]] = {}
    for tp in committed:
        if tp.offset > 0:
            by_topic.setdefault(tp.topic, {})[tp.partition] = (BEGINNING, tp.offset)
    for topic, ranges in by_topic.items():
        s = read_partitions(settings, topic, ranges, on_message, stop=shutdown.event, beat=beat, timeout=timeout,
                            group_id=f"{settings.service_name}-rebuild")
        stats.messages += s.messages
        stats.ranges.update(s.ranges)
        stats.truncated.update(s.truncated)
        for p, (_, low) in s.truncated.items():
            REBUILD_INCOMPLETE.labels(topic).inc()
            logger.warning("%s[%d]: retention dropped offsets before %d, so the state is rebuilt from the "
                           "retained part only; values converge but are not those of an uninterrupted run",
                           topic, p, low)
    return stats


class StateRebuildFailed(StockpipeError):
    """The state of assigned partitions could not be rebuilt: consuming them would be wrong."""


REBUILD_ATTEMPTS = 5


def rebuild_state(
    settings: CommonSettings,
    consumer: BatchConsumer,
    partitions: list[TopicPartition],
    feed: Callable[[Message], None],
    *,
    drop: Callable[[set[int]], object],
    shutdown: Shutdown,
    beat: Callable[[], None],
    attempts: int = REBUILD_ATTEMPTS,
) -> int:
    """:func:`replay_to_committed` with retries, for a stateful handler's ``on_assign``.

    Consuming a partition without its state would emit wrong values, so a rebuild that keeps
    failing is not a transient error to step over: after ``attempts`` tries it raises
    :class:`StateRebuildFailed` (the process exits non-zero and its partitions move to a
    healthy replica). ``drop(partition numbers)`` forgets what a failed or stopped attempt
    half built. SIGTERM ends it with :class:`ReadStopped`. Returns the messages fed.
    """
    parts = {tp.partition for tp in partitions}
    backoff = Backoff(initial=1.0, cap=10.0)
    for attempt in range(1, attempts + 1):
        try:
            return replay_to_committed(settings, consumer, partitions, feed, shutdown=shutdown, beat=beat).messages
        except ReadStopped:
            drop(parts)
            raise
        except (TransientError, KafkaException) as exc:
            drop(parts)  # the next attempt starts clean
            if attempt == attempts:
                raise StateRebuildFailed(f"rebuilding partitions {', '.join(map(str, sorted(parts)))}: {exc}") from exc
            delay = backoff.next_delay()
            logger.warning("state rebuild failed (attempt %d), retrying in %.1fs: %s", attempt, delay, exc)
            beat()
            if shutdown.wait(delay):
                raise ReadStopped("stopped while rebuilding state") from exc
    raise AssertionError("unreachable")
