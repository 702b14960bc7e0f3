"""The ``companies`` table: Yahoo's profile for real tickers, a label for simulated ones.

Filled on a background thread at start: a profile lookup per ticker can take seconds (or
minutes when Yahoo rate limits), and bars matter more than labels, so the loop that
publishes bars (and beats ``/healthz``) never waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from stockpipe.common.db import Database
from stockpipe.common.errors import TransientError

__all__ = ["COMPANIES_UPSERT", "COMPANIES_LABEL", "company_rows", "fill_companies", "start_fill"]

logger = logging.getLogger(__name__)

COMPANIES_UPSERT = """
INSERT INTO companies (symbol, name, sector, industry, exchange, currency, updated_at)
VALUES (%(symbol)s, %(name)s, %(sector)s, %(industry)s, %(exchange)s, %(currency)s, now())
ON CONFLICT (symbol) DO UPDATE SET
    name = COALESCE(EXCLUDED.name, companies.name),
    sector = COALESCE(EXCLUDED.sector, companies.sector),
    industry = COALESCE(EXCLUDED.industry, companies.industry),
    exchange = COALESCE(EXCLUDED.exchange, companies.exchange),
    currency = COALESCE(EXCLUDED.currency, companies.currency),
    updated_at = now()
"""

# A label never overwrites a real profile.
COMPANIES_LABEL = """
INSERT INTO companies (symbol, name, sector, industry, exchange, currency, updated_at)
VALUES (%(symbol)s, %(name)s, %(sector)s, %(industry)s, %(exchange)s, %(currency)s, now())
ON CONFLICT (symbol) DO NOTHING
"""

Lookup = Callable[[str], "dict[str, str | None] | None"]


def company_rows(symbols: Sequence[str], source: str, lookup: Lookup | None = None,
                 stop: threading.Event | None = None) -> list[dict[str, str | None]]:
    """The rows to upsert: ``lookup(symbol)`` (Yahoo's profile) for yfinance, a label otherwise."""
    if source != "yfinance":
        return [{"symbol": s, "name": f"{s} ({source} data)", "sector": None, "industry": None,
                 "exchange": None, "currency": "USD"} for s in symbols]
    assert lookup is not None
    rows = []
    for symbol in symbols:
        if stop is not None and stop.is_set():
            break
        info = lookup(symbol)
        if info:
            rows.append({"symbol": symbol, **info})
    return rows


def fill_companies(db: Database, symbols: Sequence[str], source: str, lookup: Lookup | None = None,
                   stop: threading.Event | None = None) -> int:
    """Upsert the companies rows of ``symbols``; returns how many. Never raises a TransientError."""
    try:
        rows = company_rows(symbols, source, lookup, stop)
        if rows:
            with db.transaction() as cur:
                cur.executemany(COMPANIES_UPSERT if source == "yfinance" else COMPANIES_LABEL, rows)
            logger.info("companies updated: %d", len(rows))
        return len(rows)
    except TransientError as exc:  # bars matter more than labels: go on without
        logger.warning("companies not updated: %s", exc)
        return 0


def start_fill(db: Database, symbols: Sequence[str], source: str, lookup: Lookup | None = None,
               stop: threading.Event | None = None) -> threading.Thread:
    """:func:`fill_companies` on a daemon thread (started); join it before closing ``db``."""
    thread = threading.Thread(target=fill_companies, args=(db, symbols, source, lookup, stop),
                              name="companies", daemon=True)
    thread.start()
    return thread
