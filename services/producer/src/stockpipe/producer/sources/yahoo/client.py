"""Talking to Yahoo Finance: the shared session, ``yf.download`` with rate limits made
visible, the reachability probe and company profiles.

Every HTTP request goes through one curl_cffi session per process (yfinance keeps a
process-wide singleton of its own and reuses the cookie and crumb it holds); tests pass a
session that answers with recorded Yahoo responses, so yfinance's real parsing runs.

``yf.download`` never raises for a failed ticker: it logs the failure on the ``yfinance``
logger (``['AAPL', 'MSFT']: YFRateLimitError('Too Many Requests...')``) and returns empty
columns for it. :func:`yf_download` listens to that logger for the duration of the call (in
the calling thread only) and reports which tickers were rate limited, so the rows of the
others are kept; a network failure shows up as an empty result.
"""

from __future__ import annotations

import ast
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import yfinance as yf
from yfinance.exceptions import YFRateLimitError

from stockpipe.common.errors import TransientError

__all__ = [
    "SOURCE",
    "Download",
    "Fetched",
    "RETRYABLE",
    "YahooUnavailable",
    "describe",
    "fetch_company",
    "probe",
    "shared_session",
    "yf_download",
]

logger = logging.getLogger(__name__)

SOURCE = "yfinance"
# The chart endpoint yfinance itself reads; it answers without cookie or crumb.
_CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/{symbol}"


class YahooUnavailable(TransientError):
    """Yahoo gave no usable answer (no data at all for any ticker, or unreachable)."""


# Failures that are waited out, never raised out of the live loop: Yahoo's rate limit, any
# OSError (socket, DNS, timeouts, and curl_cffi's RequestException, which subclasses it)
# and YahooUnavailable (an empty answer). Everything else is a bug and propagates.
RETRYABLE = (YFRateLimitError, YahooUnavailable, OSError)


def describe(exc: BaseException) -> str:
    """A short reason for a log line."""
    if isinstance(exc, YFRateLimitError):
        return "rate limited by Yahoo (HTTP 429)"
    if isinstance(exc, YahooUnavailable):
        return str(exc)
    return f"network error: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Fetched:
    """One download's answer: the frame (columns (ticker, field)) and the tickers Yahoo
    rate limited (their columns are empty; the other tickers' rows are good)."""

    frame: pd.DataFrame
    limited: frozenset[str] = field(default_factory=frozenset)


Download = Callable[..., Fetched]
"""``download(tickers, interval, *, start=None, end=None, period=None) -> Fetched``."""


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


# --------------------------------------------------------------------------- yf.download


class _YfErrors(logging.Handler):
    """Collects ERROR records the ``yfinance`` logger emits in one thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())

    def rate_limited(self, tickers: Sequence[str]) -> set[str]:
        """The tickers named in a rate-limit error line (all of them if none is named)."""
        limited: set[str] = set()
        for message in self.messages:
            if "YFRateLimitError" not in message and "Too Many Requests" not in message:
                continue
            head = message.split("]:", 1)[0] + "]" if message.startswith("[") else ""
            try:
                names = ast.literal_eval(head) if head else None
            except (ValueError, SyntaxError):
                names = None
            if isinstance(names, list) and names:
                limited.update(str(n).upper() for n in names)
            else:  # a rate limit we cannot attribute: treat every ticker as limited
                limited.update(t.upper() for t in tickers)
        return limited


def yf_download(
    tickers: Sequence[str],
    interval: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    period: str | None = None,
    session: Any = None,
    threads: bool = True,
) -> Fetched:
    """``yf.download`` for ``tickers`` (closed and forming bars, columns (ticker, field)).

    Either ``period`` (e.g. "5d") or ``start``/``end`` (aware times; end exclusive). The
    tickers Yahoo rate limited are in :attr:`Fetched.limited`; raises
    :class:`YFRateLimitError` only when every ticker was. ``threads``: fetch the tickers in
    parallel (yfinance still makes one chart request per ticker).
    """
    yf_logger = logging.getLogger("yfinance")
    errors = _YfErrors()
    yf_logger.addHandler(errors)
    window: dict[str, Any] = {"start": start, "end": end} if start is not None or end is not None else \
        {"period": period or "1d"}
    try:
        frame = yf.download(
            list(tickers), interval=interval, group_by="ticker", auto_adjust=False,
            actions=False, prepost=False, progress=False, threads=threads,
            session=session if session is not None else shared_session(), **window,
        )
    finally:
        yf_logger.removeHandler(errors)
    limited = errors.rate_limited(tickers) & {t.upper() for t in tickers}
    if limited and limited >= {t.upper() for t in tickers}:
        raise YFRateLimitError()
    return Fetched(frame if frame is not None else pd.DataFrame(), frozenset(limited))


def bound_download(session: Any = None, *, threads: bool = True) -> Download:
    """:func:`yf_download` on ``session`` (default: the shared one), as a :data:`Download`."""

    def download(tickers: Sequence[str], interval: str, **window: Any) -> Fetched:
        return yf_download(tickers, interval, session=session, threads=threads, **window)

    return download


# --------------------------------------------------------------------------- probe, company


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
    for name, keys in _COMPANY_KEYS.items():
        company[name] = next((str(info[k]) for k in keys if info.get(k) not in (None, "")), None)
    if not any(company.values()):
        logger.warning("company profile for %s: Yahoo returned none of %s", symbol, ", ".join(_COMPANY_KEYS))
        return None
    return company
