"""The live Yahoo source: final bars of many tickers, polled just after each interval closes.

Each poll (one per interval, at ``boundary + grace``; at least ``poll_interval`` apart):

1. reads the clock, then downloads the tickers in chunks of ``chunk_size`` (one
   ``yf.download`` per chunk) on a worker thread, beating liveness while it waits, so a
   slow Yahoo never turns ``/healthz`` red;
2. asks each chunk for the window from the oldest last-acknowledged bar of its tickers
   (inclusive) to now, so the window always overlaps the last bar sent: the 23:59 bar of a
   24/7 symbol is fetched after midnight too (a ``range=1d`` request would start at 00:00
   and lose it). A ticker with nothing on ``raw`` yet gets ``period`` of history;
3. yields the final bars newer than the last acknowledged one per series, then
   :data:`~stockpipe.producer.sources.FLUSH`: the publisher waits until Kafka acknowledged
   them (however long Kafka is away) and only then advances ``resume``, so the next poll
   asks again for anything not acknowledged, and asks for nothing twice.

Tickers Yahoo rate limited keep the rows of the others; they alone are asked again after a
backoff (capped, jittered) until they answer. A poll that gives nothing at all (network
down, Yahoo down, every ticker limited) is retried with the same backoff; neither ever ends
the loop. Anything else is a bug and propagates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from yfinance.exceptions import YFRateLimitError

from stockpipe.common.lifecycle import Backoff
from stockpipe.common.messages import Bar, interval_length
from stockpipe.producer.sources import FLUSH, Flush
from stockpipe.producer.sources.yahoo.client import (
    RETRYABLE,
    SOURCE,
    Download,
    YahooUnavailable,
    bound_download,
    describe,
)
from stockpipe.producer.sources.yahoo.frames import frame_to_bars, tickers_with_data

__all__ = ["POLLS", "YahooSource", "YahooStats", "lookback", "poll_window_start"]

logger = logging.getLogger(__name__)

POLLS = Counter("stockpipe_producer_yahoo_polls", "Yahoo downloads of the live loop, by outcome", ["outcome"])

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How far back Yahoo serves intraday bars (yfinance's limits, less a day of margin).
_MAX_LOOKBACK = {"1m": timedelta(days=7), "2m": timedelta(days=59), "5m": timedelta(days=59),
                 "15m": timedelta(days=59), "30m": timedelta(days=59), "60m": timedelta(days=729),
                 "90m": timedelta(days=59), "1h": timedelta(days=729)}
_PERIOD_UNITS = {"d": timedelta(days=1), "wk": timedelta(weeks=1), "mo": timedelta(days=31), "y": timedelta(days=366)}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def lookback(period: str, interval: str) -> timedelta:
    """``period`` ("1d", "5d", "1mo", "max", ...) as a span, capped by what Yahoo serves for ``interval``."""
    cap = _MAX_LOOKBACK.get(interval, timedelta(days=36600))
    for unit, length in _PERIOD_UNITS.items():
        if period.endswith(unit) and period[: -len(unit)].isdigit():
            return min(cap, int(period[: -len(unit)]) * length)
    return cap  # "max", "ytd": as far as Yahoo goes


def poll_window_start(tickers: Sequence[str], interval: str, resume: Mapping[tuple[str, str], Bar],
                      now: datetime, history: timedelta) -> datetime:
    """Start of the window one download asks for: the oldest last-acknowledged bar of
    ``tickers`` (inclusive, so the window overlaps it), or ``now - history`` for a ticker
    without one; never before what Yahoo serves for ``interval``."""
    floor = now - _MAX_LOOKBACK.get(interval, timedelta(days=36600))
    starts = [resume[(t, interval)].ts if (t, interval) in resume else now - history for t in tickers]
    return max(floor, min(starts))


@dataclass
class YahooStats:
    """Counters since start: polls tried, polls failed, bars yielded, rows dropped."""

    polls: int = 0
    failures: int = 0
    bars: int = 0
    invalid_rows: int = 0


class _Stopped(Exception):
    pass


class YahooSource:
    """Live bars from Yahoo Finance: final bars only, each once, in order per series.

    ``tickers``: Yahoo symbols (upper-cased). ``interval``: bar interval ("1m").
    ``grace``: seconds after an interval closes before its bar counts as final (and the
    poll runs). ``poll_interval``: about the seconds between two polls (each still falls
    just after an interval boundary; see :meth:`next_poll`). ``period``: history asked for a ticker
    with nothing on ``raw`` yet. ``chunk_size``: tickers per download. ``download``:
    see :data:`~stockpipe.producer.sources.yahoo.client.Download`, default yfinance on
    ``session``. ``clock``: aware UTC now. ``beat``: called while a download runs.
    ``backoff_initial``/``backoff_max``: seconds, see :class:`~stockpipe.common.lifecycle.Backoff`.
    """

    name = SOURCE

    def __init__(
        self,
        tickers: Sequence[str],
        interval: str = "1m",
        *,
        poll_interval: float = 60.0,
        period: str = "1d",
        grace: float = 10.0,
        chunk_size: int = 50,
        download: Download | None = None,
        session: Any = None,
        threads: bool = True,
        clock: Callable[[], datetime] = _utc_now,
        beat: Callable[[], None] = lambda: None,
        backoff_initial: float = 5.0,
        backoff_max: float = 300.0,
    ) -> None:
        self.tickers = tuple(dict.fromkeys(t.strip().upper() for t in tickers if t.strip()))
        if not self.tickers:
            raise ValueError("YahooSource needs at least one ticker")
        self.step = interval_length(interval)  # fails early on an interval it cannot time
        if poll_interval <= 0 or grace < 0 or chunk_size < 1:
            raise ValueError(f"bad poll_interval={poll_interval}, grace={grace} or chunk_size={chunk_size}")
        self.interval = interval
        self.poll_interval = float(poll_interval)
        self.history = lookback(period, interval)
        self.grace = timedelta(seconds=grace)
        self.chunk_size = chunk_size
        self._download = download or bound_download(session, threads=threads)
        self._clock = clock
        self._beat = beat
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._missing: set[str] = set()
        self.stats = YahooStats()

    def series(self) -> set[tuple[str, str]]:
        """The (symbol, interval) series this source publishes."""
        return {(t, self.interval) for t in self.tickers}

    def next_poll(self, after: datetime, last_start: datetime | None = None) -> datetime:
        """The first ``boundary + grace`` later than ``after``, and no earlier than
        ``poll_interval`` after ``last_start`` less one interval (the slack that lets a poll
        that ran late keep its slot); boundaries are whole intervals since the epoch."""
        spaced = after if last_start is None else last_start + timedelta(seconds=self.poll_interval) - self.step
        due = _EPOCH + ((after - self.grace - _EPOCH) // self.step) * self.step + self.grace
        while due <= after or due < spaced:
            due += self.step
        return due

    # -- one poll

    def poll(self, resume: Mapping[tuple[str, str], Bar], tickers: Sequence[str] | None = None,
             stop: threading.Event | None = None) -> tuple[list[Bar], set[str]]:
        """One poll of ``tickers`` (default all): the final bars newer than ``resume``, by
        (ts, symbol), and the tickers Yahoo rate limited (asked again later).

        Raises a :data:`~stockpipe.producer.sources.yahoo.client.RETRYABLE` error when
        the poll got nothing at all.
        """
        tickers = list(tickers or self.tickers)
        # Read the clock before asking: a bar that closes while the request is in flight
        # may have been captured still forming, so it must wait for the next poll.
        now = self._clock()
        self.stats.polls += 1
        limited: set[str] = set()
        with_data: set[str] = set()
        bars: list[Bar] = []
        last_error: BaseException | None = None
        after = {t: resume[(t, self.interval)].ts for t in tickers if (t, self.interval) in resume}
        for i in range(0, len(tickers), self.chunk_size):
            chunk = tickers[i:i + self.chunk_size]
            start = poll_window_start(chunk, self.interval, resume, now, self.history)
            try:
                fetched = self._beside(lambda c=chunk, s=start: self._download(c, self.interval, start=s), stop)
            except RETRYABLE as exc:  # this chunk failed as a whole; the others may not
                last_error = exc
                if isinstance(exc, YFRateLimitError):
                    limited.update(chunk)
                continue
            limited |= set(fetched.limited)
            got = tickers_with_data(fetched.frame, chunk)
            with_data |= got
            chunk_bars, invalid = frame_to_bars(fetched.frame, sorted(got), self.interval, now,
                                                grace=self.grace, after=after)
            bars.extend(chunk_bars)
            self.stats.invalid_rows += invalid
        if not with_data:
            if last_error is not None and not isinstance(last_error, YahooUnavailable):
                raise last_error
            # yf.download turns a network failure into an empty frame, so this is the only sign.
            raise YahooUnavailable(f"empty result for {','.join(tickers)} (interval={self.interval}): "
                                   "Yahoo unreachable, or no trading data yet")
        self._note_missing(set(tickers) - with_data - limited, tickers)
        bars.sort(key=lambda b: (b.ts, b.symbol))
        return bars, limited

    def _beside(self, call: Callable[[], Any], stop: threading.Event | None) -> Any:
        """Run ``call`` on a worker thread; beat while waiting; raise _Stopped on ``stop``.

        A daemon thread: a download abandoned at shutdown never delays the exit.
        """
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                box["error"] = exc

        worker = threading.Thread(target=run, name="yahoo-download", daemon=True)
        worker.start()
        while True:
            worker.join(0.25)
            if not worker.is_alive():
                break
            self._beat()
            if stop is not None and stop.is_set():
                raise _Stopped
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _note_missing(self, missing: set[str], asked: Sequence[str]) -> None:
        # Once per change, not once per poll: a delisted ticker would otherwise warn all day.
        previous = self._missing & set(asked)
        for symbol in sorted(missing - previous):
            logger.warning("Yahoo returned no data for %s (see the yfinance log for its reason)", symbol)
        for symbol in sorted(previous - missing):
            logger.info("Yahoo has data for %s again", symbol)
        self._missing = (self._missing - set(asked)) | missing

    # -- the loop

    def bars(self, resume: Mapping[tuple[str, str], Bar], stop: threading.Event) -> Iterator[Bar | Flush]:
        """Final bars until ``stop`` is set, each newer than the last acknowledged one.

        ``resume``: last acknowledged bar per (symbol, interval) (read back from ``raw``
        at start, advanced by the publisher after each :data:`FLUSH`); never changed here.
        Waits with ``stop.wait`` so a set ``stop`` ends the iteration promptly.
        """
        backoff = self._backoff
        last_start: datetime | None = None
        retry: list[str] = []
        due = next_full = self._clock()  # the first poll at once
        while not stop.is_set():
            wait = (due - self._clock()).total_seconds()
            if wait > 0 and stop.wait(wait):
                return
            full = not retry
            started = self._clock()
            try:
                batch, limited = self.poll(resume, None if full else retry, stop)
            except _Stopped:
                return
            except RETRYABLE as exc:
                self.stats.failures += 1
                POLLS.labels("failed").inc()
                delay = backoff.next_delay()
                logger.warning("Yahoo poll failed (%s); retrying in %.1f s (%d in a row)",
                               describe(exc), delay, backoff.attempt)
                due = self._clock() + timedelta(seconds=delay)
                if retry and next_full <= due:  # a retry of a few tickers never holds up the others
                    retry, due = [], next_full
                continue
            POLLS.labels("ok").inc()
            if full:
                last_start = started
            if batch:
                self.stats.bars += len(batch)
                for bar in batch:
                    yield bar
                    if stop.is_set():
                        return
                yield FLUSH
            aligned = next_full = self.next_poll(self._clock(), last_start) if full else next_full
            if limited:
                delay = backoff.next_delay()
                logger.warning("Yahoo rate limited %s; asking for them again in %.1f s",
                               ",".join(sorted(limited)), delay)
                retry_at = self._clock() + timedelta(seconds=delay)
                retry, due = (sorted(limited), retry_at) if retry_at < aligned else ([], aligned)
            else:
                if backoff.attempt:
                    logger.info("Yahoo poll succeeded after %d failed attempts", backoff.attempt)
                backoff.reset()
                retry, due = [], aligned
