"""History from Yahoo for ``python -m stockpipe.producer backfill``: one download per ticker.

Closed bars only (plus the grace of the live source), on the interval grid, each ticker's
bars in time order, and only those newer than the last bar of the series already on
``raw`` (``after``), so a backfill run twice, or resumed after an interruption, sends
nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from stockpipe.common.lifecycle import Backoff
from stockpipe.common.messages import Bar
from stockpipe.producer.sources.yahoo.client import (
    RETRYABLE,
    Download,
    YahooUnavailable,
    bound_download,
    describe,
    probe,
)
from stockpipe.producer.sources.yahoo.frames import frame_to_bars, tickers_with_data

__all__ = ["backfill_bars"]

logger = logging.getLogger(__name__)


def backfill_bars(
    tickers: Iterable[str],
    period: str,
    interval: str,
    download: Download | None = None,
    *,
    after: Mapping[str, datetime] | None = None,
    session: Any = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    grace: float = 10.0,
    retries: int = 3,
    backoff_initial: float = 5.0,
    backoff_max: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    reachable: Callable[[], bool] | None = None,
) -> Iterator[Bar]:
    """Closed history bars, one download per ticker, each ticker's bars in time order.

    ``tickers`` is consumed lazily, one ticker per download, so ``tqdm(tickers)`` advances
    as each ticker is done. ``period``/``interval`` as yfinance takes them (1m: 7 days at
    most). ``after``: per symbol, the last bar already sent (bars at or before it are
    skipped). A rate limit or network error is retried ``retries`` times with backoff,
    then raises :class:`YahooUnavailable`. An empty answer is retried likewise only when
    ``reachable()`` (default: :func:`probe`) says Yahoo is down; otherwise that ticker has
    no data for the period: warned and skipped.
    """
    download = download or bound_download(session, threads=False)
    reachable = reachable or (lambda: probe(5.0, session=session))
    after = after or {}
    for raw_symbol in tickers:
        symbol = raw_symbol.strip().upper()
        backoff = Backoff(backoff_initial, backoff_max)
        while True:
            now = clock()  # before the request, as in YahooSource.poll
            try:
                fetched = download([symbol], interval, period=period)
                if tickers_with_data(fetched.frame, [symbol]) or reachable():
                    break
                raise YahooUnavailable(f"empty result for {symbol} and Yahoo unreachable")
            except RETRYABLE as exc:
                if backoff.attempt >= retries:
                    raise YahooUnavailable(f"backfill of {symbol} gave up after {retries} retries: "
                                           f"{describe(exc)}") from exc
                delay = backoff.next_delay()
                logger.warning("backfill %s: %s; retrying in %.1f s", symbol, describe(exc), delay)
                sleep(delay)
        bars, invalid = frame_to_bars(fetched.frame, [symbol], interval, now, grace=timedelta(seconds=grace),
                                      after={symbol: after[symbol]} if symbol in after else None)
        if not bars and not invalid:
            if symbol in after:
                logger.info("backfill %s: nothing after %s", symbol, after[symbol].isoformat())
            else:
                logger.warning("backfill %s: no bars for period=%s interval=%s", symbol, period, interval)
        yield from bars
