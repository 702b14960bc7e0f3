"""The ingestor: batches of messages → rows → one transaction → offsets committed.

It is a :class:`~stockpipe.common.consume.Handler` of the shared consume loop, which polls,
commits and waits out outages. Delivery is at-least-once with idempotent writes, so
exactly-once in the tables:

1. the loop polls up to ``batch_size`` messages from the persisted topics;
2. :meth:`IngestHandler.decode` turns each into rows with its topic's sink (an invalid one
   is set aside with its reason) and formats them for COPY: binary for bars and indicators
   (:mod:`stockpipe.ingestor.binary`), text for the rest;
3. :meth:`IngestHandler.handle` queues the batch on the writer thread, which writes every
   sink's rows in ONE PostgreSQL transaction (COPY; on
   overlap the transaction is written again with ``INSERT ... ON CONFLICT DO NOTHING``:
   the first row of a key wins);
4. once the write committed, the loop dead-letters the rejects and waits for their
   acknowledgement;
5. the loop commits the batch's offsets.

The writer thread overlaps the database with the next batch's decoding (psycopg2 releases
the GIL while PostgreSQL works); the loop keeps up to two writes queued and commits in
batch order, each after its own write. A crash anywhere before 5 re-reads the batch, and
re-writing it changes nothing.

A row the database refuses for a data reason (a value out of a column's range, a character
PostgreSQL text cannot hold: anything decoding let through) never stops the ingestor: the
batch is split in halves until the refused messages stand alone; those go to the dead-letter
topic with the database's reason and the rest is stored. While PostgreSQL is down, the
write raises :class:`TransientError` and the loop holds the batch (partitions paused,
``/readyz`` 503) and writes it again when the database is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter

from stockpipe.common.consume import Batch, Handler
from stockpipe.common.db import CopyData, Database, is_data_error, write_tables
from stockpipe.common.errors import InvalidMessage
from stockpipe.common.kafka import Message
from stockpipe.common.messages import DECODE_ERRORS
from stockpipe.common.metrics import ERRORS, PROCESSING_SECONDS
from stockpipe.common.progress import Progress
from stockpipe.ingestor.settings import IngestorSettings
from stockpipe.ingestor.sinks import SINKS, Rows, Sink

__all__ = ["IngestBatch", "IngestHandler", "decode_batch"]

logger = logging.getLogger(__name__)

_WRITE_SECONDS = PROCESSING_SECONDS.labels("ingest_write")
_DECODE_SECONDS = PROCESSING_SECONDS.labels("ingest_decode")


@dataclass(slots=True)
class IngestBatch(Batch):
    """A batch decoded straight into rows per sink (no per-message value kept)."""

    rows: dict[str, Rows] = field(default_factory=dict)
    copies: dict[str, CopyData] = field(default_factory=dict)  # rows already formatted for COPY, ahead

    def row_count(self) -> int:
        return sum(map(len, self.rows.values()))


_TOPIC = Message.topic  # unbound: no name lookup per message (see stockpipe.common.kafka)
_VALUE = Message.value
_TIMESTAMP = Message.timestamp
_MS = itemgetter(1)


def decode_batch(messages: Sequence[Message], sinks_by_topic: dict[str, Sink]) -> IngestBatch:
    """Decode ``messages`` into rows (pure: no I/O). Invalid ones become rejections.

    A poll holds long runs of one topic (Kafka fetches per partition). Each run is decoded
    in C-level passes (``decode_all``: no Python frame per message but the model's own
    checks); a run with any invalid message, or one that might be, is decoded message by
    message instead, so that each invalid one is set aside with its reason.
    """
    batch = IngestBatch(list(messages))
    for topic, run in groupby(batch.messages, _TOPIC):
        run = list(run)
        sink = sinks_by_topic[topic]
        rows = batch.rows.setdefault(sink.kind, [])
        # The earliest Kafka time of the run bounds every message's own (see decode_all).
        earliest = min(map(_TIMESTAMP, run), key=_MS)[1] / 1000.0
        models = sink.codec.decoder.decode_all(list(map(_VALUE, run)), earliest)
        if models is not None:
            sink.add_all(models, rows)
        else:
            _decode_each(run, sink, rows, batch.rejected)
    return batch


def _decode_each(messages: list[Message], sink: Sink, rows: Rows,
                 rejected: list[tuple[Message, InvalidMessage]]) -> None:
    """Decode one topic's messages one by one: the rows of the valid ones, the reason of each invalid one."""
    decode, add, invalid = sink.codec.decoder.decode, sink.add_rows, sink.codec.invalid
    for msg in messages:
        value = msg.value()
        if value is None:
            rejected.append((msg, InvalidMessage("empty", "message has no value")))
            continue
        kind, ms = msg.timestamp()
        try:
            add(decode(value, ms / 1000.0 if kind else None), rows)
        except DECODE_ERRORS as exc:
            rejected.append((msg, invalid(exc)))


class IngestHandler(Handler):
    """Writes the persisted topics' messages into their tables."""

    def __init__(self, settings: IngestorSettings, db: Database, progress: Progress) -> None:
        self.db = db
        self.progress = progress
        self.sinks = {settings.topic(kind): SINKS[kind] for kind in settings.ingestor_topics}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="writer")  # one: writes stay in order

    def decode(self, messages: list[Message]) -> IngestBatch:
        start = time.perf_counter()
        batch = decode_batch(messages, self.sinks)
        batch.copies = {kind: SINKS[kind].writer.prepare(rows) for kind, rows in batch.rows.items()}
        _DECODE_SECONDS.observe(time.perf_counter() - start)
        return batch

    def handle(self, batch: IngestBatch) -> Future:  # type: ignore[override]
        return self._writer.submit(self._write, batch)

    def _write(self, batch: IngestBatch) -> None:
        """Write the batch in one transaction; isolate rows the database refuses."""
        start = time.perf_counter()
        try:
            self._write_rows(batch.rows, batch.copies)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            logger.warning("the database refused a batch of %d messages (%s): isolating the refused rows",
                           len(batch.messages), str(exc).strip().splitlines()[0])
            rejected = {id(m) for m, _ in batch.rejected}
            valid = [m for m in batch.messages if id(m) not in rejected]
            refused = self._isolate(valid)
            batch.rejected.extend(refused)
            ERRORS.labels("db_refused").inc(len(refused))
        self.progress.add(rows=batch.row_count())
        _WRITE_SECONDS.observe(time.perf_counter() - start)

    def _write_rows(self, rows: dict[str, Rows], copies: dict[str, CopyData] | None = None) -> None:
        write_tables(self.db, [(SINKS[kind].writer, kind_rows, (copies or {}).get(kind))
                               for kind, kind_rows in rows.items()])

    def _isolate(self, messages: list[Message]) -> list[tuple[Message, InvalidMessage]]:
        """Store what the database takes, halving until each refused message stands alone."""
        try:
            self._write_rows(decode_batch(messages, self.sinks).rows)
            return []
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(messages) == 1:
                reason = str(exc).strip().splitlines()[0][:500]
                return [(messages[0], InvalidMessage("db_refused", f"the database refused the row: {reason}"))]
        mid = len(messages) // 2
        return self._isolate(messages[:mid]) + self._isolate(messages[mid:])

    def close(self) -> None:
        # A write still running (the database away at shutdown) is abandoned: it was never committed.
        self._writer.shutdown(wait=False, cancel_futures=True)
