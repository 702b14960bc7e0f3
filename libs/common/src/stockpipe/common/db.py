"""PostgreSQL access: a small connection pool and fast idempotent batch upserts.

- :class:`Database` hands out pooled psycopg2 connections in :meth:`Database.transaction`;
  a lost connection is discarded and surfaces as :class:`TransientError`, so the caller's
  retry loop (see :mod:`stockpipe.common.lifecycle`) waits the outage out.
- :class:`TableWriter` writes a batch of rows idempotently (the DESIGN's "all writes are
  idempotent upserts"). It COPYs straight into the table, which is the fastest way in, and
  falls back to COPY into a temporary staging table plus ``INSERT ... ON CONFLICT DO NOTHING``
  when the batch conflicts with rows already there (a replay). The first row of a key wins,
  in the table as within a batch: messages on stockpipe's topics are final, so a re-sent
  one with other values changes nothing (DESIGN.md), as in analytics. After a conflict it stays on
  the upsert path for a while, so a long replay does not pay for a failed COPY each batch.
- :func:`write_tables` writes several tables' batches in one transaction and writes them
  again, in a new one, when a direct COPY met a stored key (:class:`CopyConflict`).
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

import msgspec
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool

from stockpipe.common.errors import StockpipeError, TransientError
from stockpipe.common.settings import CommonSettings

__all__ = ["CopyConflict", "CopyData", "Database", "TableWriter", "copy_field", "copy_line", "copy_text", "is_transient",
           "is_data_error", "write_tables"]

logger = logging.getLogger(__name__)


# SQLSTATE classes that blame the data, not the server: 22 data exception (a value out of
# range, a character the encoding refuses), 23 integrity constraint violation, 54 program
# limit exceeded (a row too large for an index).
_DATA_CLASSES = ("22", "23", "54")


def is_data_error(exc: BaseException) -> bool:
    """Whether PostgreSQL refused the rows themselves: retrying the same rows cannot help."""
    code = getattr(exc, "pgcode", None)
    return isinstance(exc, psycopg2.Error) and code is not None and code[:2] in _DATA_CLASSES


def is_transient(exc: BaseException) -> bool:
    """Whether a database error means "the server or network is gone", not "bad SQL" or "bad data"."""
    if is_data_error(exc):
        return False
    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return True
    # Raised while the server restarts or fails over.
    return isinstance(exc, (psycopg2.errors.AdminShutdown, psycopg2.errors.CannotConnectNow,
                            psycopg2.errors.CrashShutdown, psycopg2.errors.ReadOnlySqlTransaction))


class Database:
    """A thread-safe pool of connections to one PostgreSQL database."""

    def __init__(self, settings: CommonSettings, *, max_connections: int = 4) -> None:
        self._dsn = settings.dsn()
        self._connect_args = {
            "connect_timeout": settings.postgres_connect_timeout,
            "application_name": settings.service_name,
            # Fail fast on a dead peer instead of hanging in a kernel timeout.
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
        }
        self._max = max_connections
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                try:
                    # psycopg2 keeps at most ``minconn`` idle connections and closes every
                    # other one it gets back: with 0, each transaction connected anew.
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        1, self._max, self._dsn, **self._connect_args)
                except psycopg2.Error as exc:
                    raise TransientError(f"PostgreSQL unreachable: {exc}".strip()) from exc
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """A pooled connection; a broken one is closed instead of returned to the pool."""
        pool = self._get_pool()
        try:
            conn = pool.getconn()
        except psycopg2.pool.PoolError as exc:
            raise TransientError(f"no free PostgreSQL connection: {exc}") from exc
        except psycopg2.Error as exc:
            raise TransientError(f"PostgreSQL unreachable: {exc}".strip()) from exc
        broken = False
        try:
            yield conn
        except psycopg2.Error as exc:
            broken = is_transient(exc) or conn.closed != 0
            raise
        finally:
            pool.putconn(conn, close=broken or conn.closed != 0)

    @contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor in one transaction: committed on success, rolled back on error.

        Connection-level failures are re-raised as :class:`TransientError`.
        """
        try:
            with self.connection() as conn:
                try:
                    with conn.cursor() as cur:
                        yield cur
                    conn.commit()
                except BaseException:
                    if not conn.closed:
                        try:
                            conn.rollback()
                        except psycopg2.Error:
                            pass
                    raise
        except psycopg2.Error as exc:
            if is_transient(exc):
                raise TransientError(f"PostgreSQL: {str(exc).strip()}") from exc
            raise

    def check(self) -> None:
        """A readiness check: a fresh connection answers ``SELECT 1``.

        A fresh connection each time, so a probe never waits behind a long write and never
        reports "ready" from a pooled connection whose server has gone.
        """
        try:
            conn = psycopg2.connect(self._dsn, **self._connect_args)
        except psycopg2.Error as exc:
            raise TransientError(f"PostgreSQL unreachable: {str(exc).strip()}") from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_field(value: Any) -> str:
    """One value in COPY's text format (``\\N`` for NULL)."""
    if value is None:
        return "\\N"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).translate(_ESCAPES)


def copy_line(values: Iterable[Any]) -> str:
    """One row in COPY's text format, newline included."""
    return "\t".join(map(copy_field, values)) + "\n"


_JSON = msgspec.json.Encoder()
_COMMA_TO_TAB = bytes.maketrans(b",", b"\t")


def copy_text(rows: Sequence[Sequence[Any]], *, plain: bool = False, versioned: bool = False) -> bytes:
    """Rows in COPY's text format.

    ``plain=True`` is the fast path for rows whose strings can hold none of ``,"[]\\``,
    tab or newline, nor the word ``null`` (validated symbols, intervals, sources): the batch
    is encoded as one JSON array by msgspec's C encoder (shortest round-trip floats, RFC 3339
    times) and turned into COPY text with a few C-level byte operations, about 4x faster
    than formatting each row in Python. ``versioned=True``: each row starts with a message's
    schema version ``v`` = 1 (``msgspec.structs.astuple`` of a v1 message), which is dropped.
    Any other rows take :func:`copy_line`.
    """
    if not rows:
        return b""
    if not plain:
        return "".join(copy_line(r[1:] if versioned else r) for r in rows).encode()
    data = _JSON.encode(rows)[2:-2]  # [[a,"b",null],[...]] -> a,"b",null],[...
    if versioned:
        if not data.startswith(b"1,"):
            raise ValueError("versioned rows must start with v = 1")
        data = data[2:].replace(b"],[1,", b"\n")
    else:
        data = data.replace(b"],[", b"\n")
    return data.translate(_COMMA_TO_TAB, b'"').replace(b"null", b"\\N") + b"\n"


class CopyData(NamedTuple):
    """A batch's rows formatted for COPY: text, or PostgreSQL's binary format."""

    data: bytes
    binary: bool = False


class TableWriter:
    """Idempotent batch writes of rows into one table with a primary or unique key.

    Rows are tuples in ``columns`` order (with a leading schema version when
    ``versioned``), or objects that ``as_tuple`` turns into such tuples; see
    :func:`copy_text` for ``plain``. ``binary``, if given, formats rows as binary COPY data,
    or returns ``None`` for rows it cannot represent (they go as text).
    """

    # After a conflicting batch, this many batches go straight to the upsert path before a
    # direct COPY is tried again: long replays conflict on every batch.
    _UPSERT_STREAK = 100

    def __init__(self, table: str, columns: Sequence[str], key: Sequence[str], *,
                 plain: bool = False, versioned: bool = False,
                 binary: Callable[[Sequence[Any]], bytes | None] | None = None,
                 as_tuple: Callable[[Any], tuple] | None = None) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.key = tuple(key)
        self.plain = plain
        self.versioned = versioned
        self.binary = binary
        self.as_tuple = as_tuple
        q = {c: f'"{c}"' for c in self.columns}  # "interval" is an SQL keyword
        cols = ", ".join(q.values())
        self._stage = f"_stage_{table}"
        # _seq numbers the staged rows in arrival order: the merge inserts them in that order,
        # so of two rows with one key in a batch the first wins, without deduplicating in Python.
        self._create_stage = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self._stage} "
            f"(LIKE {table} INCLUDING DEFAULTS, _seq bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DELETE ROWS"
        )
        self._copy_direct = f"COPY {table} ({cols}) FROM STDIN"
        self._copy_stage = f"COPY {self._stage} ({cols}) FROM STDIN"
        # The first row of a key wins (messages are final): a re-sent row changes nothing.
        self._merge = (
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {self._stage} ORDER BY _seq "
            f"ON CONFLICT ({', '.join(q[c] for c in self.key)}) DO NOTHING"
        )
        self._upsert_batches_left = 0

    def format(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """``rows`` in COPY's text format."""
        if self.as_tuple is not None:
            rows = list(map(self.as_tuple, rows))
        return copy_text(rows, plain=self.plain, versioned=self.versioned)

    def prepare(self, rows: Sequence[Sequence[Any]]) -> CopyData:
        """``rows`` ready for :meth:`write`: binary where the writer has a binary format and
        it can hold them, else text."""
        if self.binary is not None and rows:
            data = self.binary(rows)
            if data is not None:
                return CopyData(data, True)
        return CopyData(self.format(rows))

    def write(self, cur: psycopg2.extensions.cursor, rows: Sequence[Sequence[Any]],
              copy: CopyData | None = None) -> None:
        """Write ``rows`` idempotently; the first row of a key wins (stored, then in ``rows``).

        ``copy``: the rows already formatted by :meth:`prepare` (done ahead, off this thread).
        Call it at most once per table per transaction: the staging table empties on commit.

        Raises :class:`CopyConflict` when the direct COPY met a key already stored (a replay)
        or a key twice in ``rows``: that aborts the caller's transaction, and this writer takes
        the upsert path from then on, so the caller writes the batch again in a new
        transaction (:func:`write_tables` does). No savepoint around the COPY, which would
        cost two round trips per batch on the happy path (~6 % of the ingestor's rate: each
        waits for the writer thread to get the GIL back from the decoding thread).
        """
        if not rows:
            return
        data, binary = copy if copy is not None else self.prepare(rows)
        options = _BINARY if binary else ""
        if self._upsert_batches_left == 0:
            try:
                cur.copy_expert(self._copy_direct + options, io.BytesIO(data), size=_COPY_CHUNK)
                return
            except psycopg2.errors.UniqueViolation as exc:
                self._upsert_batches_left = self._UPSERT_STREAK
                logger.debug("%s: batch overlaps stored rows, upserting", self.table)
                raise CopyConflict(f"{self.table}: a direct COPY met a stored key") from exc
        self._upsert_batches_left -= 1
        cur.execute(self._create_stage)
        cur.copy_expert(self._copy_stage + options, io.BytesIO(data), size=_COPY_CHUNK)
        cur.execute(self._merge)


class CopyConflict(StockpipeError):
    """A direct COPY met a stored key: the transaction is aborted; write the batch again in a new one."""


def write_tables(db: Database, writes: Sequence[tuple[TableWriter, Sequence[Sequence[Any]], CopyData | None]]) -> None:
    """``(writer, rows, copy)`` of each table written in ONE transaction, committed.

    After a :class:`CopyConflict` the whole transaction is written again: that table's writer
    now upserts, so this ends after at most one retry per writer.
    """
    while True:
        try:
            with db.transaction() as cur:
                for writer, rows, copy in writes:
                    writer.write(cur, rows, copy)
            return
        except CopyConflict:
            continue


_BINARY = " (FORMAT binary)"
_COPY_CHUNK = 1 << 20  # bytes per COPY round trip; psycopg2's 8 KiB default costs many calls
