"""Rows in PostgreSQL's binary COPY format, built column by column with numpy.

PostgreSQL reads binary COPY about a third faster than text (no float or timestamp parsing:
``bench/results/ingest.json`` has both beside each other), and the ingestor's writer is
bound by the server's side of the COPY. Binary COPY is a header, then per row a 16-bit field
count and, per field, a 32-bit length (-1 for NULL) and the value's bytes (big-endian), then
a 16-bit -1. Formatting it row by row in Python would cost more than it saves; here each
column becomes one numpy array, the rows become one packed record array (text fields padded
to the column's widest value), and one boolean mask drops the padding and NULLs' bytes, which
leaves exactly the rows, in their order, back to back.

With ``cluster``, the rows go out grouped by that text column (a table's leading key column,
the symbol), its values in sorted order, each group's rows in their arrival order: the server
then inserts each symbol's rows into the same index pages one after the other instead of
visiting 500 leaf pages for every minute's bars (a binary COPY of 1,000,000 bars ran 1-15 %
faster so, 8 % in the median, bench/results/ingest.json). The order within a key is kept, so
of two rows with one key the first still wins.

Rows are tuples, or objects read by attribute (the ingestor's decoded messages).
:class:`BinaryRows` returns ``None`` for rows it cannot represent exactly (a string that is
not ASCII, an integer beyond 64 bits, a time outside 1900-04-15..2039-09-18, where the float
conversion below is proven exact); the writer then sends that batch as text, which is never
wrong, only slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter, ne
from typing import Any

import numpy as np

__all__ = ["KINDS", "BinaryRows"]

# Column kinds, with "?" for a nullable one (text columns are never NULL here). A float that
# is not finite is stored as NULL, as copy_text's plain path does (JSON has no NaN).
KINDS = ("text", "timestamptz", "float8", "float8?", "int8")

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
# |t| <= 2.2e9 s: rint(fl(fl(U / 1e6) * 1e6)) == U for an integer U of microseconds, because
# the two roundings are off by at most |U| * 2**-52 <= 0.489 us. Bars start after 1900.
_EXACT_SECONDS = 2.2e9
_U1 = np.uint8
_timestamp = datetime.timestamp


def _distinct(column: Sequence[Any]) -> tuple[Sequence[Any], np.ndarray | None]:
    """``column`` as its distinct values and each row's index into them, when values repeat.

    A batch's symbols, intervals and sources repeat: encoding each distinct string once,
    then indexing, is cheaper than encoding every row. ``(column, None)`` when most values
    are distinct.
    """
    if column.count(column[0]) == len(column):  # one value (a batch's interval, source): no hashing at all
        return column[:1], np.zeros(len(column), np.intp)
    first = dict.fromkeys(column)  # C-level; keeps first-seen order
    if len(first) * 4 > len(column):
        return column, None
    index = dict(zip(first, range(len(first))))
    return list(first), np.fromiter(map(index.__getitem__, column), np.intp, len(column))


def _seconds(column: Sequence[datetime]) -> np.ndarray:
    """Each time's POSIX seconds, computed once per run of equal neighbours.

    A feed's bars come a minute at a time, every symbol's bar of one minute after another:
    comparing neighbours and converting the first of each run took 0.04 µs a row against
    0.15 for converting every row (20,000 bars of 500 symbols). Hashing to find the distinct
    times would cost more than converting them. Equal aware datetimes are one instant, so
    one timestamp (tests/unit/ingestor/test_binary.py spells one instant in two zones).
    """
    n = len(column)
    if n < 2:
        return np.fromiter(map(_timestamp, column), np.float64, n)
    starts = np.flatnonzero(np.fromiter(map(ne, column[1:], column[:-1]), bool, n - 1)) + 1
    if len(starts) * 2 > n:  # mostly distinct: convert every row
        return np.fromiter(map(_timestamp, column), np.float64, n)
    firsts = [0, *starts.tolist()]
    seconds = np.fromiter(map(_timestamp, map(column.__getitem__, firsts)), np.float64, len(firsts))
    return np.repeat(seconds, np.diff(firsts, append=n))


def _grouped(distinct: Sequence[str], codes: np.ndarray) -> np.ndarray:
    """The rows' order grouped by value, values sorted, each group in arrival order (stable)."""
    rank = np.empty(len(distinct), np.intp)
    rank[sorted(range(len(distinct)), key=distinct.__getitem__)] = np.arange(len(distinct))
    return np.argsort(rank[codes], kind="stable")


class BinaryRows:
    """Formats rows (tuples in column order) of one table as binary COPY data."""

    def __init__(self, kinds: Sequence[str], *, versioned: bool = False, fields: Sequence[str] | None = None,
                 cluster: int | None = None) -> None:
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown column kind {kind!r}: one of {KINDS}")
        if fields is not None and len(fields) != len(kinds):
            raise ValueError(f"{len(fields)} fields for {len(kinds)} columns")
        if cluster is not None and kinds[cluster] != "text":
            raise ValueError(f"cluster column {cluster} is {kinds[cluster]!r}, not text")
        self.kinds = tuple(kinds)
        self.cluster = cluster
        self.skip = 1 if versioned else 0  # a versioned row starts with the message's v
        # Rows as objects: each column read with one attrgetter pass (about half the cost of
        # making tuples and transposing them).
        self._getters = None if fields is None else [attrgetter(f) for f in fields]

    def __call__(self, rows: Sequence[Any]) -> bytes | None:
        """``rows``: tuples in column order, or objects with the ``fields`` given."""
        n = len(rows)
        if n == 0:
            return _HEADER + _TRAILER
        if self._getters is not None:
            columns = [list(map(g, rows)) for g in self._getters]
        else:
            columns = list(zip(*rows))[self.skip:]
        if len(columns) != len(self.kinds):
            raise ValueError(f"rows have {len(columns)} columns, not {len(self.kinds)}")
        spec: list[tuple[str, str]] = [("n", ">i2")]
        fields: list[tuple[np.ndarray, np.ndarray | None, bool]] = []  # values, lengths (None: fixed), text
        order = None  # the rows' order on the wire, when clustered
        for j, (column, kind) in enumerate(zip(columns, self.kinds)):
            lengths = None
            try:
                if kind == "text":
                    distinct, codes = _distinct(column)
                    values = np.array(distinct, dtype="S")  # raises on a character beyond ASCII
                    # Python's lengths, not numpy's (which drops trailing NULs): the server
                    # refuses a NUL in text either way, as it does in a text COPY.
                    lengths = np.fromiter(map(len, distinct), np.int32, len(distinct))
                    if codes is not None:
                        if j == self.cluster and len(distinct) > 1:
                            order = _grouped(distinct, codes)
                        values, lengths = values[codes], lengths[codes]
                elif kind == "timestamptz":
                    seconds = _seconds(column)
                    if not (np.abs(seconds) <= _EXACT_SECONDS).all():
                        return None
                    values = (np.rint(seconds * 1e6).astype(np.int64) - _PG_EPOCH_US).astype(">i8")
                elif kind == "int8":
                    values = np.array(column, dtype=">i8")
                else:  # float8, float8?: NaN and ±inf become NULL, as in the text path (JSON's null)
                    values = np.array(column, dtype=">f8")  # None -> NaN
                    finite = np.isfinite(values)
                    if not finite.all():
                        if kind == "float8":
                            return None  # the text path sends NULL, which the column refuses
                        lengths = np.where(finite, np.int32(8), np.int32(-1))
            except (UnicodeEncodeError, OverflowError, TypeError, ValueError):
                return None  # not representable here: the text path says what is wrong with it
            spec += [(f"l{j}", ">i4"), (f"v{j}", values.dtype.str)]
            fields.append((values, lengths, kind == "text"))
        record = np.dtype(spec)
        table = np.empty(n, record)
        table["n"] = len(fields)
        keep = None  # which bytes of each padded record are the row's
        for j, (values, lengths, _) in enumerate(fields):
            width = values.dtype.itemsize
            table[f"l{j}"] = width if lengths is None else lengths
            table[f"v{j}"] = values
            if lengths is not None and not (lengths == width).all():
                if keep is None:
                    keep = np.ones((n, record.itemsize), bool)
                offset = record.fields[f"v{j}"][1]
                keep[:, offset:offset + width] = np.arange(width) < lengths[:, None]
        raw = table.view(_U1).reshape(n, record.itemsize)
        if order is not None:  # rows moved as raw bytes: 30x faster than as records of fields
            raw = np.take(raw, order, axis=0)
            if keep is not None:
                keep = np.take(keep, order, axis=0)
        body = raw[keep] if keep is not None else raw.reshape(-1)
        return b"".join((_HEADER, body.tobytes(), _TRAILER))
