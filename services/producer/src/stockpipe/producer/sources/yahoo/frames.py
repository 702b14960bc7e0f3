"""From a ``yf.download`` DataFrame to final, validated bars (pure: no I/O, no clock).

Which rows become bars (DESIGN.md: every bar on ``raw`` is final):

- **closed, plus a grace period**: a row starting at ``ts`` is final once
  ``ts + interval + grace <= now``. Yahoo keeps adding late trades to a minute for some
  seconds after it closed, so a bar fetched right at the boundary may still change.
- **on the interval grid**: Yahoo sometimes returns the live tick as its own row (say
  13:37:20 after the 13:37:00 bar); such a row is not a bar and is never published. The
  grid: intervals that divide an hour (1m, 2m, 5m, 15m, 30m) sit on whole multiples of
  the interval since the epoch; daily and longer ones at 00:00 UTC; other intraday ones
  (60m, 90m, 1h: Yahoo starts them at the session open, 13:30 UTC for New York) on whole
  minutes spaced by the interval from the series' first such row in the frame.
- **complete**: a row with a missing value (NaN) is a minute without trades (or a hole
  another ticker made in a multi-ticker frame): dropped silently.
- **valid**: a complete row that fails :class:`Bar` validation (high < low from bad data)
  is dropped, logged and counted; nothing is repaired.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pandas as pd
from prometheus_client import Counter

from stockpipe.common.messages import Bar, interval_length
from stockpipe.producer.sources.yahoo.client import SOURCE

__all__ = ["INVALID_ROWS", "frame_to_bars", "on_grid", "tickers_with_data"]

logger = logging.getLogger(__name__)

INVALID_ROWS = Counter("stockpipe_producer_invalid_rows", "Rows from the source dropped as invalid bars")

# yfinance's column names for what a bar needs (auto_adjust=False: Close is the traded price).
_FIELDS = ("Open", "High", "Low", "Close", "Volume")
_NS_PER_MINUTE = 60 * 10**9
_NS_PER_DAY = 24 * 60 * _NS_PER_MINUTE


def _per_ticker(frame: pd.DataFrame, tickers: Sequence[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """(symbol, its OHLCV sub-frame) for each wanted ticker present in ``frame``."""
    wanted = list(dict.fromkeys(t.upper() for t in tickers))
    columns = frame.columns
    if isinstance(columns, pd.MultiIndex):
        if columns.nlevels != 2:
            raise ValueError(f"expected two column levels (ticker, field), got {columns.nlevels}")
        # group_by="ticker" puts tickers on level 0, group_by="column" on level 1.
        field_level = 1 if "Close" in columns.get_level_values(1) else 0
        ticker_level = 1 - field_level
        present = set(columns.get_level_values(ticker_level))
        for symbol in wanted:
            if symbol in present:
                yield symbol, frame.xs(symbol, axis=1, level=ticker_level)
    else:
        # One ticker without a ticker level (multi_level_index=False, or yfinance < 0.2.48).
        if len(wanted) != 1:
            raise ValueError(f"a frame with flat columns holds one ticker, not {wanted}")
        yield wanted[0], frame


def _utc_index(index: pd.Index) -> pd.DatetimeIndex:
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"expected a DatetimeIndex, got {type(index).__name__}")
    # Intraday frames carry the exchange's zone; daily ones are naive dates, taken as 00:00Z.
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def _volume(value: float) -> int | float:
    # An integral float becomes the int a Bar wants; anything else stays a float, which Bar
    # validation rejects (and we count) instead of being rounded here.
    return int(value) if value.is_integer() else value


def on_grid(index: pd.DatetimeIndex, interval: str) -> np.ndarray:
    """Which rows of a UTC index start a bar of ``interval`` (the rules in the module docstring)."""
    ns = index.as_unit("ns").asi8
    step = interval_length(interval)
    step_ns = int(step.total_seconds()) * 10**9
    if step >= timedelta(days=1):
        return ns % _NS_PER_DAY == 0
    if step < timedelta(hours=1) and timedelta(hours=1) % step == timedelta(0):
        return ns % step_ns == 0
    minute = ns % _NS_PER_MINUTE == 0
    if not minute.any():
        return minute
    anchor = ns[minute][0]
    return minute & ((ns - anchor) % step_ns == 0)


def frame_to_bars(
    frame: pd.DataFrame | None,
    tickers: Sequence[str],
    interval: str,
    now: datetime,
    *,
    grace: timedelta = timedelta(0),
    after: Mapping[str, datetime] | None = None,
) -> tuple[list[Bar], int]:
    """Final bars from a ``yf.download`` frame, sorted by (ts, symbol), and the invalid-row count.

    ``frame``: as ``yf.download(tickers, ..., group_by="ticker")`` returns it (columns
    (ticker, field); group_by="column" and single-ticker flat columns are accepted too).
    ``now``: an aware time; a row whose ``start + interval + grace > now`` is not final yet
    and is left out. ``after``: per symbol, bars at or before this ts are left out (already
    sent). Off-grid and incomplete rows are dropped (module docstring); invalid ones are
    dropped, logged and counted in the second return value. Bar ``ts`` is the bar start in
    UTC; ``volume`` in shares (0 is normal for currencies).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if frame is None or frame.empty:
        return [], 0
    step = interval_length(interval)
    cutoff = pd.Timestamp(now - grace)
    after = after or {}
    bars: list[Bar] = []
    invalid = missing = off_grid = 0
    for symbol, sub in _per_ticker(frame, tickers):
        index = _utc_index(sub.index)
        try:
            values = sub.loc[:, list(_FIELDS)].to_numpy(dtype="float64", na_value=math.nan)
        except KeyError as exc:
            raise ValueError(f"{symbol}: frame lacks OHLCV columns: {exc}") from None
        complete = ~np.isnan(values).any(axis=1)
        grid = on_grid(index, interval)
        wanted = np.asarray((index + step) <= cutoff)
        last_sent = after.get(symbol)
        if last_sent is not None:
            wanted &= np.asarray(index > pd.Timestamp(last_sent))
        off_grid += int((wanted & complete & ~grid).sum())
        wanted &= grid
        missing += int((wanted & ~complete).sum())
        keep = wanted & complete
        for ts, (o, h, lo, c, v) in zip(index[keep], values[keep].tolist()):
            fields = {"symbol": symbol, "ts": ts.to_pydatetime().astimezone(UTC), "interval": interval,
                      "open": o, "high": h, "low": lo, "close": c, "volume": _volume(v), "source": SOURCE}
            try:
                bars.append(msgspec.convert(fields, Bar))
            except msgspec.ValidationError as exc:
                invalid += 1
                logger.warning("dropping invalid Yahoo row %s %s %s: %s (o=%r h=%r l=%r c=%r v=%r)",
                               symbol, interval, fields["ts"].isoformat(), exc, o, h, lo, c, v)
    if missing:
        logger.debug("skipped %d closed rows with missing values", missing)
    if off_grid:
        logger.debug("skipped %d rows off the %s grid (live ticks)", off_grid, interval)
    INVALID_ROWS.inc(invalid)
    bars.sort(key=lambda b: (b.ts, b.symbol))
    return bars, invalid


def tickers_with_data(frame: pd.DataFrame | None, tickers: Sequence[str]) -> set[str]:
    """The tickers with at least one close in ``frame``."""
    if frame is None or frame.empty:
        return set()
    return {s for s, sub in _per_ticker(frame, tickers) if "Close" in sub and sub["Close"].notna().any()}
