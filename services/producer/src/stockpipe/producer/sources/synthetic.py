"""Seeded synthetic bars: geometric Brownian motion with consistent OHLC, each asset class
with its own trading sessions, volatility, price scale and volume.

Every symbol has its own generator seeded from (seed, symbol), so the same settings give
the same bars on every machine. Each bar walks ``_STEPS`` sub-steps of a GBM; open is the
previous close, high/low are the extremes of the walk, so OHLC is consistent by
construction. Volume is log-normal around a per-symbol base and grows with the size of the
move (volume and volatility are correlated in real markets).

Asset classes (:func:`asset_class`, from the symbol as Yahoo spells it):

| class | symbols | bars (intraday intervals) | annual volatility | prices | volume |
|---|---|---|---|---|---|
| equity | AAPL, BRK-B, ... | Mon-Fri 09:30-16:00 New York time, not on NYSE holidays | 15-60 % | 20-500, cents | shares |
| crypto | BTC-USD, ETH-USD, ... (base-QUOTE with a fiat/stable quote) | around the clock, 7 days | 50-100 % | by coin, 6 significant digits | quote currency |
| fx | EURUSD=X, USDJPY=X, ... | Sunday 17:00 to Friday 17:00 New York time | 5-12 % | near 1 (JPY: ~150), 6 significant digits | 0, as Yahoo reports |
| load | SYN0001... (SYNTHETIC_SYMBOLS) | around the clock | 15-60 % | 20-500, cents | shares |

Equities skip the NYSE full-day holidays (:mod:`.holidays`: New Year's, MLK, Presidents',
Good Friday, Memorial, Juneteenth, Independence, Labor, Thanksgiving, Christmas, computed by
rule with the weekend observance); early closes at 13:00 are not modelled. FX has no
exchange and no holiday calendar: it skips weekends only, and trades (thinly, as Yahoo still
publishes EURUSD=X bars then) on December 25 and January 1 that fall on a weekday. Daily and
longer bars: equities on weekdays but NYSE holidays, FX on weekdays, crypto and load every day. Volatility
is converted per step with the class's own trading minutes per year (252 x 390 for
equities, 365 x 1440 for crypto, 260 x 1440 for FX). The auto source's fallback symbols
(``AAPL.SYN``) take the class of the ticker they stand for.

Bars are paced at ``rate`` bars per second over all symbols, and never run ahead of the wall
clock: a bar is only emitted once its interval has closed, so after catching up on history
the source becomes a live 1-bar-per-interval feed.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

import numpy as np

from stockpipe.common.messages import Bar, interval_length
from stockpipe.producer.sources.holidays import is_nyse_holiday

__all__ = ["AssetClass", "ASSET_CLASSES", "SyntheticSource", "asset_class", "synthetic_symbols", "FALLBACK_SUFFIX"]

_STEPS = 8  # sub-steps per bar: enough for high/low to look like a real intrabar range
_SQRT_STEPS = math.sqrt(_STEPS)
_BLOCK = 64  # bars drawn at once per symbol: numpy's cost per call spread over 64 bars
_NEW_YORK = ZoneInfo("America/New_York")
_OPEN, _CLOSE = clock_time(9, 30), clock_time(16, 0)  # NYSE/Nasdaq regular hours
_FX_ROLL = clock_time(17, 0)  # FX trades from Sunday to Friday 17:00 New York time
FALLBACK_SUFFIX = ".SYN"
_CRYPTO = re.compile(r"^[A-Z0-9]{2,10}-(USD|USDT|USDC|EUR|GBP|JPY|BTC|ETH)$")
_LOAD = re.compile(r"^SYN[0-9]{4,}$")
# Rough price levels of well-known coins, so BTC-USD does not trade at 37.
_COIN_PRICE = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 550.0, "XRP": 0.6, "DOGE": 0.15,
               "ADA": 0.45, "LTC": 80.0}


@dataclass(frozen=True)
class AssetClass:
    """How one kind of instrument trades; see the table in the module docstring."""

    name: str
    minutes_per_year: float
    annual_vol: tuple[float, float]
    volume: bool  # False: volume is always 0 (FX, as on Yahoo)

    def is_open(self, ts: datetime, step: timedelta) -> bool:
        """Whether a bar of length ``step`` starting at ``ts`` (UTC) lies in a session."""
        if self.name in ("crypto", "load"):
            return True
        if step >= timedelta(days=1):  # a daily bar's ts is midnight UTC of its trading date
            return ts.weekday() < 5 and not (self.name == "equity" and is_nyse_holiday(ts.date()))
        local = ts.astimezone(_NEW_YORK)
        if self.name == "equity":
            return (local.weekday() < 5 and _OPEN <= local.time() < _CLOSE
                    and not is_nyse_holiday(local.date()))
        # fx: Sunday 17:00 .. Friday 17:00 New York
        day, t = local.weekday(), local.time()
        return (day == 6 and t >= _FX_ROLL) or day < 4 or (day == 4 and t < _FX_ROLL)


ASSET_CLASSES = {
    "equity": AssetClass("equity", 252 * 390, (0.15, 0.6), True),
    "crypto": AssetClass("crypto", 365 * 1440, (0.5, 1.0), True),
    "fx": AssetClass("fx", 260 * 1440, (0.05, 0.12), False),
    "load": AssetClass("load", 252 * 390, (0.15, 0.6), True),
}


def asset_class(symbol: str) -> AssetClass:
    """The asset class of a Yahoo symbol (a fallback ``X.SYN`` counts as ``X``)."""
    base = symbol.removesuffix(FALLBACK_SUFFIX)
    if base.endswith("=X"):
        return ASSET_CLASSES["fx"]
    if _CRYPTO.match(base):
        return ASSET_CLASSES["crypto"]
    if _LOAD.match(base):
        return ASSET_CLASSES["load"]
    return ASSET_CLASSES["equity"]


def synthetic_symbols(n: int) -> list[str]:
    """``SYN0001`` ... for the load generator."""
    return [f"SYN{i:04d}" for i in range(1, n + 1)]


def _significant(price: float, digits: int = 6) -> int:
    """Decimals that keep ``digits`` significant digits of ``price`` (at least 2)."""
    return max(2, digits - 1 - math.floor(math.log10(price))) if price > 0 else 2


class _Walk:
    """One symbol's GBM state.

    Bars are drawn in blocks of ``_BLOCK`` with numpy: each bar takes nine standard normals
    (eight sub-steps of the log price, one for the volume's noise), the whole block's path
    is one cumulative sum, and the rounding to the quoted precision runs on the block too.
    The walk itself is never rounded: a bar opens at the previous bar's close rounded the
    same way, so ``open`` always equals the previous ``close``; a restart continues from the
    last close sent.
    """

    __slots__ = ("symbol", "kind", "rng", "price", "mu", "sigma", "base_volume", "decimals", "_log",
                 "_block", "_next")

    def __init__(self, symbol: str, seed: int, interval_minutes: float) -> None:
        self.symbol = symbol
        self.kind = asset_class(symbol)
        crc = zlib.crc32(f"{seed}:{symbol}".encode())
        rng, kind = random.Random(crc), self.kind
        base = symbol.removesuffix(FALLBACK_SUFFIX)
        price = rng.uniform(20, 500)
        if kind.name == "crypto":
            coin = base.split("-")[0]
            price = _COIN_PRICE.get(coin, 10 ** rng.uniform(-1, 3)) * rng.uniform(0.9, 1.1)
        elif kind.name == "fx":
            price = (150.0 if "JPY" in base else 1.0) * rng.uniform(0.7, 1.4)
        self.decimals = 2 if kind.name in ("equity", "load") else _significant(price)
        annual_vol = rng.uniform(*kind.annual_vol)
        step_years = interval_minutes / kind.minutes_per_year / _STEPS
        self.sigma = annual_vol * math.sqrt(step_years)
        self.mu = (rng.uniform(-0.05, 0.15) - annual_vol**2 / 2) * step_years
        self.base_volume = rng.uniform(2_000, 50_000) * interval_minutes if kind.volume else 0.0
        self.restart(price, crc)

    def restart(self, price: float, seed: int) -> None:
        """Continue the walk from ``price`` (a bar's close) with draws seeded by ``seed``."""
        self.price = price = max(round(price, self.decimals), 10.0 ** -self.decimals)  # quotable, > 0
        self._log = math.log(price)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._block = np.empty((0, 5))
        self._next = 0

    def _draw(self) -> None:
        """The next ``_BLOCK`` bars as rows of (open, high, low, close, volume)."""
        z = self.rng.standard_normal((_BLOCK, _STEPS + 1))
        log = np.cumsum(self.mu + self.sigma * z[:, :_STEPS]).reshape(_BLOCK, _STEPS)
        log += self._log
        self._log = float(log[-1, -1])
        path = np.exp(log)
        scale = 10.0 ** self.decimals
        tick = 1.0 / scale
        # Rounded to the quoted precision, at least one tick (every price quotable, > 0).
        # Rounding is monotonic, so low <= open, close <= high survives it.
        rows = np.empty((_BLOCK, 5))
        close = np.maximum(np.rint(path[:, -1] * scale) / scale, tick)
        rows[1:, 0] = close[:-1]
        rows[0, 0] = self.price
        rows[:, 1] = np.maximum(np.rint(path.max(axis=1) * scale) / scale, rows[:, 0])
        rows[:, 2] = np.maximum(np.minimum(np.rint(path.min(axis=1) * scale) / scale, rows[:, 0]), tick)
        rows[:, 3] = close
        np.maximum(rows[:, 1], close, out=rows[:, 1])
        np.minimum(rows[:, 2], close, out=rows[:, 2])
        # Volume: log-normal noise around the base, growing with the size of the move.
        move = np.abs(np.log(close / rows[:, 0])) / (self.sigma * _SQRT_STEPS)
        rows[:, 4] = np.floor(self.base_volume * (1.0 + move) * np.exp(0.5 * z[:, _STEPS]))
        self.price = float(close[-1])
        self._block, self._next = rows, 0

    def bar(self, ts: datetime, interval: str) -> Bar:
        i = self._next
        if i == len(self._block):
            self._draw()
            i = 0
        self._next = i + 1
        o, h, lo, c, volume = self._block[i].tolist()
        return Bar(symbol=self.symbol, ts=ts, interval=interval, open=o, high=h, low=lo, close=c,
                   volume=int(volume), source="synthetic")


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
        minutes = self.step.total_seconds() / 60
        self._walks = {s: _Walk(s, seed, minutes) for s in self.symbols}
        if start is None:
            now = clock()
            floor = now - (now - datetime(2000, 1, 3, tzinfo=UTC)) % self.step
            self._starts = self._history_starts(floor, history)
        else:
            self._starts = dict.fromkeys((w.kind.name for w in self._walks.values()), start.astimezone(UTC))
        self.start = min(self._starts.values(), default=(start or clock()).astimezone(UTC))

    def _history_starts(self, end: datetime, history: int) -> dict[str, datetime]:
        """Per asset class, the latest start that gives each of its symbols ``history`` bars
        before ``end``.

        Bars are counted in each class's sessions: 1,000 one-minute equity bars reach back
        about three trading days, not 1,000 minutes (which, at night, hold none). Each class
        starts at its own point, so crypto beside equities also gets 1,000 bars, not the
        three days' worth that the equities' start would give it.
        """
        kinds = {w.kind.name: w.kind for w in self._walks.values()}
        need = dict.fromkeys(kinds, history)
        starts = dict.fromkeys(kinds, end)
        ts = end
        # Bounded: equities trade about a fifth of all minutes; a class that never opens at
        # this interval must not keep the loop going (it starts where the search gave up).
        for _ in range(history * 10 + 20_000):
            if not any(n > 0 for n in need.values()):
                break
            ts -= self.step
            for name, kind in kinds.items():
                if need[name] > 0:
                    starts[name] = ts
                    if kind.is_open(ts, self.step):
                        need[name] -= 1
        return starts

    def series(self) -> set[tuple[str, str]]:
        """The (symbol, interval) series this source publishes."""
        return {(s, self.interval) for s in self.symbols}

    def bars(self, resume: Mapping[tuple[str, str], Bar], stop: threading.Event) -> Iterator[Bar]:
        """Bars in time order, round-robin over symbols, until ``stop`` is set.

        ``resume`` holds the last bar sent per (symbol, interval) before a restart: each
        symbol continues from that bar's close and time. A symbol emits only while its
        asset class trades (module docstring).
        """
        next_ts: dict[str, datetime] = {}
        for s, walk in self._walks.items():
            last = resume.get((s, self.interval))
            if last is not None:
                # Re-seed from the resume point: a restart continues deterministically.
                walk.restart(last.close, zlib.crc32(f"{self.seed}:{s}:{last.ts.isoformat()}".encode()))
                next_ts[s] = last.ts + self.step
            else:
                next_ts[s] = self._starts[walk.kind.name]
        ts = min(next_ts.values()) if next_ts else self.start
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        due = time.monotonic()
        step = self.step
        while not stop.is_set():
            # Never emit a bar whose interval has not closed yet.
            wait = (ts + step - self.clock()).total_seconds()
            if wait > 0 and stop.wait(wait):
                return
            sessions: dict[str, bool] = {}  # asset class -> trading at ts (one time-zone look-up per class)
            for symbol, walk in self._walks.items():
                if next_ts[symbol] > ts:
                    continue
                kind = walk.kind
                trading = sessions.get(kind.name)
                if trading is None:
                    trading = sessions[kind.name] = kind.is_open(ts, step)
                if not trading:
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
                next_ts[symbol] = ts + step
            ts += step
