"""Replay bars from a CSV file.

Columns (header row required, any order, extra columns ignored): ``symbol``, ``ts``
(RFC 3339, or ISO 8601 without offset meaning UTC), ``open``, ``high``, ``low``, ``close``,
``volume``, and optionally ``interval`` (else the configured one). Rows are published in
file order. ``speed`` paces them by their timestamps: 0 = as fast as possible, 1 = real time,
60 = sixty times faster. A row that is not a valid bar is logged with its line number and
skipped: the replay never publishes a bar that consumers would reject.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from stockpipe.common.messages import Bar
from stockpipe.common.metrics import ERRORS

__all__ = ["ReplaySource", "REQUIRED_COLUMNS", "parse_row"]

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")


def _ts(text: str) -> datetime:
    ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_row(row: dict[str, str], default_interval: str) -> Bar:
    """One CSV row as a validated :class:`Bar`; raises ValueError with the reason."""
    try:
        fields = {
            "symbol": row["symbol"].strip().upper(),
            "ts": _ts(row["ts"]),
            "interval": (row.get("interval") or default_interval).strip(),
            "open": float(row["open"]),
            "high": float(row["high"]),
            "low": float(row["low"]),
            "close": float(row["close"]),
            "volume": int(float(row["volume"])),
            "source": "replay",
        }
        # convert() runs the same validation as decoding a message from the topic.
        return msgspec.convert(fields, Bar)
    except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
        raise ValueError(str(exc)) from None


class ReplaySource:
    """Bars from a CSV file, in file order."""

    name = "replay"

    def __init__(self, path: str | Path, *, interval: str = "1m", speed: float = 0.0) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"replay file {self.path} does not exist")
        self.interval = interval
        self.speed = speed

    def bars(self, resume: dict[tuple[str, str], Bar], stop: threading.Event) -> Iterator[Bar]:
        """The file's bars, skipping those at or before ``resume``'s last sent bar per series."""
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(f"{self.path}: missing columns {', '.join(missing)}")
            first: tuple[float, datetime] | None = None
            for line, row in enumerate(reader, start=2):
                if stop.is_set():
                    return
                try:
                    bar = parse_row(row, self.interval)
                except ValueError as exc:
                    ERRORS.labels("replay_row").inc()
                    logger.warning("%s:%d skipped: %s", self.path, line, exc)
                    continue
                last = resume.get((bar.symbol, bar.interval))
                if last is not None and bar.ts <= last.ts:
                    continue
                if self.speed > 0:
                    if first is None:
                        first = (time.monotonic(), bar.ts)
                    due = first[0] + (bar.ts - first[1]).total_seconds() / self.speed
                    delay = due - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                yield bar
