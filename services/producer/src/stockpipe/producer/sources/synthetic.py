"""Seeded synthetic bars: geometric Brownian motion with consistent OHLC and realistic volume.

Every symbol has its own generator seeded from (seed, symbol), so the same settings give
the same bars on every machine. Each bar walks ``_STEPS`` sub-steps of a GBM; open is the
previous close, high/low are the extremes of the walk, so OHLC is consistent by
construction. Volume is log-normal around a per-symbol base and grows with the size of the
move (volume and volatility are correlated in real markets).

Bars are paced at ``rate`` bars per second over all symbols, and never run ahead of the wall
clock: a bar is only emitted once its interval has closed, so after catching up on history
the source becomes a live 1-bar-per-interval feed.
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from stockpipe.common.messages import Bar, interval_length

__all__ = ["SyntheticSource", "synthetic_symbols"]

_STEPS = 8  # sub-steps per bar: enough for high/low to look like a real intrabar range
_MINUTES_PER_YEAR = 252 * 390  # trading minutes: annual volatility → per-minute


def synthetic_symbols(n: int) -> list[str]:
    """``SYN0001`` ... for the load generator."""
    return [f"SYN{i:04d}" for i in range(1, n + 1)]


class _Walk:
    """One symbol's GBM state."""

    __slots__ = ("symbol", "rng", "price", "mu", "sigma", "base_volume")

    def __init__(self, symbol: str, seed: int, interval_minutes: float) -> None:
        self.symbol = symbol
        self.rng = random.Random(zlib.crc32(f"{seed}:{symbol}".encode()))
        rng = self.rng
        self.price = round(rng.uniform(20, 500), 2)
        annual_vol = rng.uniform(0.15, 0.6)
        step_years = interval_minutes / _MINUTES_PER_YEAR / _STEPS
        self.sigma = annual_vol * math.sqrt(step_years)
        self.mu = (rng.uniform(-0.05, 0.15) - annual_vol**2 / 2) * step_years
        self.base_volume = rng.uniform(2_000, 50_000) * interval_minutes

    def bar(self, ts: datetime, interval: str) -> Bar:
        gauss, price = self.rng.gauss, self.price
        open_ = price
        high = low = price
        for _ in range(_STEPS):
            price *= math.exp(self.mu + self.sigma * gauss(0.0, 1.0))
            if price > high:
                high = price
            elif price < low:
                low = price
        # Cents, as quoted; the rounding keeps low <= open, close <= high.
        o, c = round(open_, 2), round(price, 2)
        h, lo = max(round(high, 2), o, c), min(round(low, 2), o, c)
        if lo < 0.01:  # a walk down to sub-cent prices: keep every price quotable (> 0)
            o, c, lo = max(o, 0.01), max(c, 0.01), 0.01
            h = max(h, o, c)
        self.price = c
        move = abs(math.log(c / o)) / (self.sigma * math.sqrt(_STEPS)) if o > 0 else 0.0
        volume = int(self.base_volume * (1.0 + move) * math.exp(0.5 * gauss(0.0, 1.0)))
        return Bar(symbol=self.symbol, ts=ts, interval=interval, open=o, high=h, low=lo, close=c,
                   volume=volume, source="synthetic")


class SyntheticSource:
    """Synthetic bars for ``symbols`` from ``start``, paced at ``rate`` bars/s overall."""

    name = "synthetic"

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        interval: str = "1m",
        seed: int = 42,
        rate: float = 5.0,
        start: datetime | None = None,
        history: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.symbols = list(symbols)
        self.interval = interval
        self.step = interval_length(interval)
        self.rate = rate
        self.clock = clock
        self.seed = seed
        if start is None:
            now = clock()
            floor = now - (now - datetime(2000, 1, 3, tzinfo=UTC)) % self.step
            start = floor - history * self.step
        self.start = start.astimezone(UTC)
        minutes = self.step.total_seconds() / 60
        self._walks = {s: _Walk(s, seed, minutes) for s in self.symbols}

    def bars(self, resume: dict[tuple[str, str], Bar], stop: threading.Event) -> Iterator[Bar]:
        """Bars in time order, round-robin over symbols, until ``stop`` is set.

        ``resume`` holds the last bar sent per (symbol, interval) before a restart: each
        symbol continues from that bar's close and time.
        """
        next_ts: dict[str, datetime] = {}
        for s, walk in self._walks.items():
            last = resume.get((s, self.interval))
            if last is not None:
                walk.price = last.close
                # Re-seed from the resume point: a restart continues deterministically.
                walk.rng.seed(zlib.crc32(f"{self.seed}:{s}:{last.ts.isoformat()}".encode()))
                next_ts[s] = last.ts + self.step
            else:
                next_ts[s] = self.start
        ts = min(next_ts.values()) if next_ts else self.start
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        due = time.monotonic()
        while not stop.is_set():
            # Never emit a bar whose interval has not closed yet.
            wait = (ts + self.step - self.clock()).total_seconds()
            if wait > 0 and stop.wait(wait):
                return
            for symbol, walk in self._walks.items():
                if next_ts[symbol] > ts:
                    continue
                if period:
                    due += period
                    delay = due - time.monotonic()
                    # Sleep only when a millisecond ahead: at thousands of bars/s a wait
                    # per bar would cost more than the bar; the average rate is the same.
                    if delay > 0.001:
                        if stop.wait(delay):
                            return
                    elif delay < -1.0:
                        due = time.monotonic()  # fell behind (e.g. paused): don't burst
                yield walk.bar(ts, self.interval)
                next_ts[symbol] = ts + self.step
            ts += self.step
