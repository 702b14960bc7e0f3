"""The ingestor's loop: a batch of messages → rows → one transaction → offsets committed.

Delivery is at-least-once with idempotent writes, so exactly-once in the tables:

1. poll up to ``batch_size`` messages from the persisted topics;
2. decode each with its topic's sink; an invalid one goes to the dead-letter topic;
3. write every sink's rows in ONE PostgreSQL transaction (COPY, upsert on conflict);
4. wait for the dead-letter messages' acknowledgement;
5. commit the batch's offsets.

Steps 3-4 run on a writer thread, up to two batches queued, while the main thread polls,
decodes and formats the next (psycopg2 releases the GIL while PostgreSQL works), so Python
and the database work at the same time and PostgreSQL never waits for Python; offsets are
still committed in batch order, each after its own write.

A crash anywhere before 5 re-reads the batch, and re-writing it changes nothing. While
PostgreSQL is down the batch stays in hand: partitions are paused (the consumer keeps its
group membership), the write is retried with backoff, ``/readyz`` says 503, and nothing is
lost or duplicated when it comes back.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from stockpipe.common.db import Database
from stockpipe.common.errors import InvalidMessage, TransientError
from stockpipe.common.http import Health
from stockpipe.common.kafka import BatchConsumer, Message, Publisher, TopicPartition, dead_letter
from stockpipe.common.lifecycle import Backoff, Shutdown
from stockpipe.common.messages import DECODE_ERRORS
from stockpipe.common.metrics import ERRORS, PROCESSING_SECONDS
from stockpipe.common.progress import Progress
from stockpipe.ingestor.settings import IngestorSettings
from stockpipe.ingestor.sinks import SINKS, Rows, Sink

__all__ = ["Ingestor", "Batch", "decode_batch"]

logger = logging.getLogger(__name__)

_WRITE_SECONDS = PROCESSING_SECONDS.labels("ingest_write")
_DECODE_SECONDS = PROCESSING_SECONDS.labels("ingest_decode")


class Batch:
    """What one poll made: rows per sink, and the messages rejected with their reasons."""

    __slots__ = ("rows", "texts", "rejected", "messages")

    def __init__(self) -> None:
        self.rows: dict[str, Rows] = {}
        self.texts: dict[str, bytes] = {}  # rows already in COPY text, when formatted ahead
        self.rejected: list[tuple[Message, InvalidMessage]] = []
        self.messages: list[Message] = []

    def row_count(self) -> int:
        return sum(map(len, self.rows.values()))

    def absorb(self, later: Batch) -> None:
        """Append a later batch: its rows come after this one's (and win on equal keys)."""
        self.messages.extend(later.messages)
        self.rejected.extend(later.rejected)
        self.texts = {}  # the rows changed: formatted again when written
        for kind, rows in later.rows.items():
            self.rows.setdefault(kind, []).extend(rows)


def decode_batch(messages: Sequence[Message], sinks_by_topic: dict[str, Sink], batch: Batch | None = None) -> Batch:
    """Decode ``messages`` into ``batch`` (pure: no I/O). Invalid ones become rejections."""
    batch = batch or Batch()
    batch.messages.extend(messages)
    rejected = batch.rejected
    topic = None
    for msg in messages:  # the hot loop: per-topic lookups only when the topic changes
        if msg.topic() != topic:
            topic = msg.topic()
            sink = sinks_by_topic[topic]
            decode, add, invalid = sink.codec.decoder.decode, sink.add_rows, sink.codec.invalid
            rows = batch.rows.setdefault(sink.kind, [])
        try:
            add(decode(msg.value()), rows)
        except DECODE_ERRORS as exc:
            rejected.append((msg, invalid(exc)))
    return batch


class Ingestor:
    """Consumes the persisted topics and writes them into their tables."""

    # Writes queued on the writer thread at once. Two keep PostgreSQL busy without a gap:
    # while one batch is written, the next is decoded, formatted and waiting.
    _MAX_INFLIGHT = 2

    def __init__(self, settings: IngestorSettings, db: Database, publisher: Publisher,
                 health: Health, shutdown: Shutdown) -> None:
        self.settings = settings
        self.db = db
        self.publisher = publisher
        self.health = health
        self.shutdown = shutdown
        self.sinks = {settings.topic(kind): SINKS[kind] for kind in settings.ingestor_topics}
        self.dlq = settings.topic("dlq")
        self._paused = False
        self.consumer = BatchConsumer(
            settings, settings.ingestor_group_id, list(self.sinks),
            on_assign=self._on_assign, on_revoke=self._on_revoke,
        )
        self._held: Batch | None = None  # what a failed write left: retried in place
        self._inflight: deque[tuple[Batch, Future]] = deque()  # writes queued, oldest first
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="writer")  # one: writes stay in order
        self.progress = Progress("stored", settings.progress_interval)

    # -- rebalances: keep paused partitions paused; drop revoked ones from a held batch
    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        if self._paused:
            self.consumer.pause(partitions)

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        # Settle the writes in flight first: committed now, their rows are not written again
        # by the partitions' next owner (that would be harmless, just wasted work).
        self._settle(retry=False)  # no retrying inside a rebalance callback
        if self._held is None:
            return
        gone = {(tp.topic, tp.partition) for tp in partitions}
        kept = [m for m in self._held.messages if (m.topic(), m.partition()) not in gone]
        if len(kept) != len(self._held.messages):
            # Their new owner re-reads them from the last commit; the rows are rebuilt from
            # what is left so that nothing is written for partitions this replica lost.
            logger.info("dropping %d held messages of revoked partitions", len(self._held.messages) - len(kept))
            self._held = decode_batch(kept, self.sinks) if kept else None

    # -- the loop
    def run(self) -> None:
        """Process batches until shutdown; the batches in hand are finished first."""
        s = self.settings
        try:
            while not self.shutdown.requested:
                self.health.beat()
                self.progress.tick()
                if self._held is not None:  # a failed write (e.g. kept through a rebalance)
                    self._store_held()
                    continue
                try:
                    messages = self.consumer.poll_batch(s.ingestor_batch_size, s.ingestor_batch_timeout)
                except TransientError as exc:
                    ERRORS.labels("kafka").inc()
                    logger.warning("Kafka: %s", exc)
                    self.shutdown.wait(1.0)
                    continue
                if not messages:
                    self._settle()  # idle: commit what is written without waiting for more
                    continue
                start = time.perf_counter()
                batch = decode_batch(messages, self.sinks)
                batch.texts = {kind: SINKS[kind].writer.format(rows) for kind, rows in batch.rows.items()}
                _DECODE_SECONDS.observe(time.perf_counter() - start)
                while len(self._inflight) >= self._MAX_INFLIGHT and self._held is None:
                    self._settle_oldest()
                if self._held is not None:  # an earlier write failed: this batch queues behind it
                    self._held.absorb(batch)
                    continue
                self._inflight.append((batch, self._writer.submit(self._write, batch)))
        finally:
            self._settle(retry=not self.shutdown.requested)

    def _settle(self, retry: bool = True) -> None:
        """Wait for every queued write; commit each one's offsets in order."""
        while self._inflight:
            self._settle_oldest(retry)

    def _settle_oldest(self, retry: bool = True) -> None:
        batch, future = self._inflight.popleft()
        try:
            future.result()
        except TransientError as exc:
            # Everything queued behind it is held with it, in order, and rewritten together
            # (a later write that did succeed is rewritten harmlessly: writes are idempotent).
            logger.warning("write failed: %s", exc)
            for later, later_future in self._inflight:
                later_future.exception()  # wait: one writer, in order
                batch.absorb(later)
            self._inflight.clear()
            self._held = batch
            if retry:
                self._store_held()
            return
        # Asynchronous: the offsets are sent now without a round trip per batch; they are
        # only ever those of durable rows, and a lost commit only means a harmless re-read.
        self.consumer.commit(batch.messages, asynchronous=True)

    def _store_held(self) -> None:
        """Make the held batch durable, waiting out outages; then commit its offsets."""
        backoff = Backoff(initial=0.5, cap=15.0)
        while self._held is not None:
            batch = self._held
            try:
                self._write(batch)
            except TransientError as exc:
                self._wait_out(exc, backoff)
                continue
            if self._paused:
                self.consumer.resume()
                self._paused = False
                logger.info("PostgreSQL is back: consuming again")
            self.consumer.commit(batch.messages)
            self._held = None

    def _write(self, batch: Batch) -> None:
        start = time.perf_counter()
        if batch.rejected:
            # Acknowledged first, then forgotten: a retry of the database write below must not
            # send them to the dead-letter topic twice.
            for msg, error in batch.rejected:
                dead_letter(self.publisher, self.dlq, msg, error)
            self.publisher.flush()
            self.progress.add(rejected=len(batch.rejected))
            batch.rejected.clear()
        with self.db.transaction() as cur:
            for kind, rows in batch.rows.items():
                SINKS[kind].writer.write(cur, rows, batch.texts.get(kind))
        self.progress.add(rows=batch.row_count())
        _WRITE_SECONDS.observe(time.perf_counter() - start)

    def _wait_out(self, exc: TransientError, backoff: Backoff) -> None:
        """Pause consuming and wait before the next attempt, serving the group meanwhile."""
        ERRORS.labels("postgres" if "PostgreSQL" in str(exc) else "transient").inc()
        if not self._paused:
            self.consumer.pause()
            self._paused = True
        delay = backoff.next_delay()
        logger.warning("write failed, holding %d messages and retrying in %.1fs: %s",
                       len(self._held.messages) if self._held else 0, delay, exc)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self.shutdown.requested:
            self.health.beat()
            # Polling while paused keeps the group membership (max.poll.interval.ms) and
            # runs rebalance callbacks. Paused partitions return nothing; anything that was
            # already on its way joins the held batch, after the messages it follows.
            try:
                late = self.consumer.poll_batch(self.settings.ingestor_batch_size,
                                                max(0.0, min(1.0, deadline - time.monotonic())))
            except TransientError as kafka_exc:
                logger.warning("Kafka: %s", kafka_exc)
                continue
            if late:
                self._held = decode_batch(late, self.sinks, self._held)
        if self.shutdown.requested:
            logger.warning("stopping with %d messages not written: they stay uncommitted and are re-read on start",
                           len(self._held.messages) if self._held else 0)
            self._held = None

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.consumer.close()
        self.publisher.close()
        self.db.close()
