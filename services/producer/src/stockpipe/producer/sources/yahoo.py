"""Yahoo Finance bars through yfinance: the live poll, the backfill and company profiles.

The pure part is :func:`frame_to_bars`: a ``yf.download(..., group_by="ticker")`` DataFrame
in, validated final :class:`~stockpipe.common.messages.Bar` values out. Around it:

- :class:`YahooSource`: every ``poll_interval`` seconds one batched download for all
  tickers; yields only bars newer than the last one sent per (symbol, interval), only once
  their interval has closed; rate limits, network errors and empty answers are waited out
  with capped, jittered exponential backoff and never end the loop.
- :func:`backfill_bars`: closed history for one ticker at a time (a progress bar can
  advance per ticker).
- :func:`probe`: is Yahoo answering right now? Bounded in time even without DNS.
- :func:`fetch_company`: name, sector, industry, exchange and currency for ``companies``.

Every HTTP request goes through one curl_cffi session per process (yfinance keeps a
process-wide singleton of its own and reuses the cookie and crumb it holds); tests pass a
session that answers with recorded Yahoo responses, so yfinance's real parsing runs.

yf.download never raises for a failed ticker: it logs the failure on the ``yfinance``
logger and returns empty columns. :func:`yf_download` listens to that logger for the
duration of the call (in the calling thread only) to turn a rate limit back into
:class:`yfinance.exceptions.YFRateLimitError`; a network failure shows up as an empty result.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import yfinance as yf
from prometheus_client import Counter
from yfinance.exceptions import YFRateLimitError

from stockpipe.common.errors import TransientError
from stockpipe.common.messages import Bar, interval_length

__all__ = [
    "SOURCE",
    "Download",
    "YahooSource",
    "YahooStats",
    "YahooUnavailable",
    "backfill_bars",
    "fetch_company",
    "frame_to_bars",
    "probe",
    "shared_session",
    "yf_download",
]

logger = logging.getLogger(__name__)

POLLS = Counter("stockpipe_producer_yahoo_polls", "Yahoo downloads of the live loop, by outcome", ["outcome"])
INVALID_ROWS = Counter("stockpipe_producer_invalid_rows", "Rows from the source dropped as invalid bars")

SOURCE = "yfinance"

Download = Callable[[Sequence[str], str, str], pd.DataFrame]
"""``download(tickers, period, interval) -> DataFrame`` shaped like ``yf.download(group_by="ticker")``."""

# yfinance's column names for what a bar needs (auto_adjust=False: Close is the traded price).
_FIELDS = ("Open", "High", "Low", "Close", "Volume")
# The chart endpoint yfinance itself reads; it answers without cookie or crumb.
_CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/{symbol}"



class YahooUnavailable(TransientError):
    """Yahoo gave no usable answer (no data at all for any ticker, or unreachable)."""


# Failures that are waited out, never raised out of the live loop: Yahoo's rate limit, any
# OSError (socket, DNS, timeouts, and curl_cffi's RequestException, which subclasses it)
# and YahooUnavailable (an empty answer). Everything else is a bug and propagates.
_RETRYABLE = (YFRateLimitError, YahooUnavailable, OSError)


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- session

_session_lock = threading.Lock()
_session: Any = None


def shared_session() -> Any:
    """The process-wide curl_cffi session (created on first use, never connects by itself).

    One session for everything: yfinance's own state (cookie, crumb) is a process-wide
    singleton bound to the last session it was given, so two sessions would only make it
    fetch a new cookie and crumb at every switch.
    """
    global _session
    with _session_lock:
        if _session is None:
            from curl_cffi import requests as curl_requests

            # A browser TLS fingerprint, as yfinance uses by default: a bare client gets 429s.
            _session = curl_requests.Session(impersonate="chrome")
        return _session


# --------------------------------------------------------------------------- pure conversion


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


def frame_to_bars(
    frame: pd.DataFrame | None,
    tickers: Sequence[str],
    interval: str,
    now: datetime,
    *,
    after: Mapping[str, datetime] | None = None,
) -> tuple[list[Bar], int]:
    """Final bars from a ``yf.download`` frame, sorted by (ts, symbol), and the invalid-row count.

    ``frame``: as ``yf.download(tickers, ..., group_by="ticker")`` returns it (columns
    (ticker, field); group_by="column" and single-ticker flat columns are accepted too).
    ``now``: an aware time; a bar whose ``start + interval > now`` is still forming and is
    left out. ``after``: per symbol, bars at or before this ts are left out (already sent).
    Rows with a missing value (NaN) are dropped silently: Yahoo leaves minutes without
    trades empty, and a multi-ticker frame has holes where another ticker has a row.
    A complete row that fails :class:`Bar` validation (say high < low from bad data) is
    dropped, logged as a warning and counted in the second return value; nothing is repaired.
    Bar ``ts`` is the bar start in UTC; ``volume`` in shares.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if frame is None or frame.empty:
        return [], 0
    step = interval_length(interval)
    cutoff_now = pd.Timestamp(now)
    after = after or {}
    bars: list[Bar] = []
    invalid = missing = 0
    for symbol, sub in _per_ticker(frame, tickers):
        index = _utc_index(sub.index)
        try:
            values = sub.loc[:, list(_FIELDS)].to_numpy(dtype="float64", na_value=math.nan)
        except KeyError as exc:
            raise ValueError(f"{symbol}: frame lacks OHLCV columns: {exc}") from None
        wanted = np.asarray((index + step) <= cutoff_now)
        last_sent = after.get(symbol)
        if last_sent is not None:
            wanted &= np.asarray(index > pd.Timestamp(last_sent))
        complete = ~np.isnan(values).any(axis=1)
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
    bars.sort(key=lambda b: (b.ts, b.symbol))
    return bars, invalid


def _tickers_with_data(frame: pd.DataFrame | None, tickers: Sequence[str]) -> set[str]:
    if frame is None or frame.empty:
        return set()
    return {s for s, sub in _per_ticker(frame, tickers) if "Close" in sub and sub["Close"].notna().any()}


# --------------------------------------------------------------------------- yfinance call


class _YfErrors(logging.Handler):
    """Collects ERROR records the ``yfinance`` logger emits in one thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())

    @property
    def rate_limited(self) -> bool:
        # multi.download logs "['AAPL', ...]: YFRateLimitError('Too Many Requests. ...')".
        return any("YFRateLimitError" in m or "Too Many Requests" in m for m in self.messages)


def yf_download(
    tickers: Sequence[str],
    period: str,
    interval: str,
    *,
    session: Any = None,
    threads: bool = True,
) -> pd.DataFrame:
    """``yf.download`` for ``tickers`` (closed and forming bars, columns (ticker, field)).

    Raises :class:`YFRateLimitError` when Yahoo rate-limited any ticker (yf.download
    itself only logs that). ``threads``: fetch the tickers in parallel (yfinance still makes
    one chart request per ticker; this is one download call).
    """
    yf_logger = logging.getLogger("yfinance")
    errors = _YfErrors()
    yf_logger.addHandler(errors)
    try:
        frame = yf.download(
            list(tickers), period=period, interval=interval, group_by="ticker", auto_adjust=False,
            actions=False, prepost=False, progress=False, threads=threads,
            session=session if session is not None else shared_session(),
        )
    finally:
        yf_logger.removeHandler(errors)
    if errors.rate_limited:
        raise YFRateLimitError()
    return frame if frame is not None else pd.DataFrame()


def _bound_download(session: Any, *, threads: bool) -> Download:
    def download(tickers: Sequence[str], period: str, interval: str) -> pd.DataFrame:
        return yf_download(tickers, period, interval, session=session, threads=threads)

    return download


# --------------------------------------------------------------------------- backoff


class _Backoff:
    """Capped exponential backoff with jitter: the n-th failure in a row waits a random time
    in [s/2, s], s = min(initial * 2**(n-1), maximum). The random half spreads out replicas
    that failed together; the fixed half keeps the wait from collapsing to nothing."""

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self.initial, self.maximum, self.rng = initial, maximum, rng
        self.failures = 0

    def next_delay(self) -> float:
        step = min(self.maximum, self.initial * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return step / 2 + self.rng.uniform(0.0, step / 2)

    def reset(self) -> None:
        self.failures = 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, YFRateLimitError):
        return "rate limited by Yahoo (HTTP 429)"
    if isinstance(exc, YahooUnavailable):
        return str(exc)
    return f"network error: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- live source


@dataclass
class YahooStats:
    """Counters since start, for metrics: polls tried, polls failed, bars yielded, rows dropped."""

    polls: int = 0
    failures: int = 0
    bars: int = 0
    invalid_rows: int = 0


class YahooSource:
    """Live bars from Yahoo Finance: one batched download per poll, final bars only.

    ``tickers``: Yahoo symbols (upper-cased). ``interval``: bar interval ("1m").
    ``poll_interval``: seconds from one poll's start to the next. ``period``: how much
    history each poll asks for; "1d" covers a restart within the trading day.
    ``download``: ``download(tickers, period, interval) -> DataFrame``, default
    :func:`yf_download` on ``session`` (default :func:`shared_session`). ``clock``: aware
    UTC now. ``backoff_initial``/``backoff_max``: seconds, see :class:`_Backoff`.
    """

    name = SOURCE

    def __init__(
        self,
        tickers: Sequence[str],
        interval: str = "1m",
        poll_interval: float = 60.0,
        period: str = "1d",
        *,
        download: Download | None = None,
        session: Any = None,
        threads: bool = True,
        clock: Callable[[], datetime] = _utc_now,
        backoff_initial: float = 5.0,
        backoff_max: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.tickers = tuple(dict.fromkeys(t.strip().upper() for t in tickers if t.strip()))
        if not self.tickers:
            raise ValueError("YahooSource needs at least one ticker")
        interval_length(interval)  # fails early on an interval it cannot time
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self.interval = interval
        self.poll_interval = float(poll_interval)
        self.period = period
        self._download = download or _bound_download(session, threads=threads)
        self._clock = clock
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._missing: set[str] = set()
        self.stats = YahooStats()

    def poll(self, resume: Mapping[tuple[str, str], datetime]) -> list[Bar]:
        """One download: the closed bars newer than ``resume`` (not updated here), by (ts, symbol).

        Raises YFRateLimitError, OSError or YahooUnavailable (no data for any ticker).
        """
        # Read the clock before asking: a bar that closes while the request is in flight
        # may have been captured still forming, so it must wait for the next poll.
        now = self._clock()
        self.stats.polls += 1
        frame = self._download(list(self.tickers), self.period, self.interval)
        with_data = _tickers_with_data(frame, self.tickers)
        if not with_data:
            # yf.download turns a network failure into an empty frame, so this is the only sign.
            raise YahooUnavailable(f"empty result for {','.join(self.tickers)} (period={self.period}, "
                                   f"interval={self.interval}): Yahoo unreachable, or no trading data yet")
        self._note_missing(set(self.tickers) - with_data)
        after = {s: resume[(s, self.interval)] for s in self.tickers if (s, self.interval) in resume}
        bars, invalid = frame_to_bars(frame, self.tickers, self.interval, now, after=after)
        self.stats.invalid_rows += invalid
        INVALID_ROWS.inc(invalid)
        POLLS.labels("ok").inc()
        return bars

    def _note_missing(self, missing: set[str]) -> None:
        # Once per change, not once per poll: a delisted ticker would otherwise warn all day.
        for symbol in sorted(missing - self._missing):
            logger.warning("Yahoo returned no data for %s (see the yfinance log for its reason)", symbol)
        for symbol in sorted(self._missing - missing):
            logger.info("Yahoo has data for %s again", symbol)
        self._missing = missing

    def bars(self, resume: dict[tuple[str, str], datetime], stop: threading.Event) -> Iterator[Bar]:
        """Final bars until ``stop`` is set, each newer than the last one sent for its symbol.

        ``resume``: last sent bar start per (symbol, interval), e.g. read back from ``raw``
        after a restart; updated here as each bar is yielded. Waits with ``stop.wait`` so a
        set ``stop`` ends the iteration promptly. Rate limits, network errors and empty
        answers back off (logged each time) and never raise; anything else does.
        """
        backoff = _Backoff(self._backoff_initial, self._backoff_max, self._rng)
        while not stop.is_set():
            started = time.monotonic()
            try:
                batch = self.poll(resume)
            except _RETRYABLE as exc:
                self.stats.failures += 1
                POLLS.labels("failed").inc()
                delay = backoff.next_delay()
                logger.warning("Yahoo poll failed (%s); retrying in %.1f s (%d in a row)",
                               _describe(exc), delay, backoff.failures)
                if stop.wait(delay):
                    return
                continue
            if backoff.failures:
                logger.info("Yahoo poll succeeded after %d failed attempts", backoff.failures)
                backoff.reset()
            for bar in batch:
                resume[(bar.symbol, bar.interval)] = bar.ts
                self.stats.bars += 1
                yield bar
                if stop.is_set():
                    return
            if stop.wait(max(0.0, self.poll_interval - (time.monotonic() - started))):
                return


# --------------------------------------------------------------------------- probe, company, backfill


def probe(timeout: float = 5.0, *, symbol: str = "AAPL", session: Any = None) -> bool:
    """Whether Yahoo answers a chart request with data right now, within ``timeout`` seconds.

    One small request (1 daily bar of ``symbol``) on a daemon thread joined with
    ``timeout``: the answer comes in time even when name resolution hangs. False, with a
    warning saying why, on no answer, a network error, a rate limit or an unexpected body.
    """
    session = session if session is not None else shared_session()
    verdict: list[bool] = []

    def attempt() -> None:
        try:
            response = session.get(_CHART_URL.format(symbol=symbol), params={"range": "1d", "interval": "1d"},
                                   timeout=timeout)
            if response.status_code == 429:
                logger.warning("Yahoo probe: rate limited (HTTP 429)")
            elif response.status_code != 200:
                logger.warning("Yahoo probe: HTTP %d", response.status_code)
            elif not (response.json().get("chart") or {}).get("result"):
                logger.warning("Yahoo probe: answer without chart data")
            else:
                verdict.append(True)
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable now"
            logger.warning("Yahoo probe: %s: %s", type(exc).__name__, exc)

    thread = threading.Thread(target=attempt, name="yahoo-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        logger.warning("Yahoo probe: no answer within %.1f s", timeout)
        return False
    return bool(verdict)


_COMPANY_KEYS = {
    "name": ("longName", "shortName"),
    "sector": ("sector",),
    "industry": ("industry",),
    # The readable name ("NasdaqGS") before Yahoo's code ("NMS").
    "exchange": ("fullExchangeName", "exchange"),
    "currency": ("currency",),
}


def fetch_company(symbol: str, *, session: Any = None) -> dict[str, str | None] | None:
    """``companies`` fields for ``symbol`` from ``Ticker.info``: name, sector, industry, exchange, currency.

    Missing fields are None. None (and a warning) when the lookup fails or Yahoo knows
    none of the fields.
    """
    try:
        info = yf.Ticker(symbol, session=session if session is not None else shared_session()).info or {}
    except Exception as exc:  # noqa: BLE001 - yfinance raises many kinds; a profile is optional
        logger.warning("company profile for %s not fetched: %s: %s", symbol, type(exc).__name__, exc)
        return None
    company: dict[str, str | None] = {}
    for field, keys in _COMPANY_KEYS.items():
        company[field] = next((str(info[k]) for k in keys if info.get(k) not in (None, "")), None)
    if not any(company.values()):
        logger.warning("company profile for %s: Yahoo returned none of %s", symbol, ", ".join(_COMPANY_KEYS))
        return None
    return company


def backfill_bars(
    tickers: Iterable[str],
    period: str,
    interval: str,
    download: Download | None = None,
    *,
    session: Any = None,
    clock: Callable[[], datetime] = _utc_now,
    retries: int = 3,
    backoff_initial: float = 5.0,
    backoff_max: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    reachable: Callable[[], bool] | None = None,
) -> Iterator[Bar]:
    """Closed history bars, one download per ticker, each ticker's bars in time order.

    ``tickers`` is consumed lazily, one ticker per download, so ``tqdm(tickers)`` advances
    as each ticker is done. ``period``/``interval`` as yfinance takes them (1m: 7 days at
    most). A rate limit or network error is retried ``retries`` times with backoff, then
    raises :class:`YahooUnavailable`. An empty answer is retried likewise only when
    ``reachable()`` (default: :func:`probe`) says Yahoo is down; otherwise that ticker has
    no data for the period: warned and skipped.
    """
    download = download or _bound_download(session, threads=False)
    reachable = reachable or (lambda: probe(5.0, session=session))
    rng = random.Random()
    for raw_symbol in tickers:
        symbol = raw_symbol.strip().upper()
        backoff = _Backoff(backoff_initial, backoff_max, rng)
        while True:
            now = clock()  # before the request, as in YahooSource.poll
            try:
                frame = download([symbol], period, interval)
                if _tickers_with_data(frame, [symbol]) or reachable():
                    break
                raise YahooUnavailable(f"empty result for {symbol} and Yahoo unreachable")
            except _RETRYABLE as exc:
                if backoff.failures >= retries:
                    raise YahooUnavailable(f"backfill of {symbol} gave up after {retries} retries: "
                                           f"{_describe(exc)}") from exc
                delay = backoff.next_delay()
                logger.warning("backfill %s: %s; retrying in %.1f s", symbol, _describe(exc), delay)
                sleep(delay)
        bars, invalid = frame_to_bars(frame, [symbol], interval, now)
        if not bars and not invalid:
            logger.warning("backfill %s: no bars for period=%s interval=%s", symbol, period, interval)
        yield from bars
