"""Yahoo Finance bars through yfinance.

- :mod:`.client`: the shared HTTP session, ``yf.download`` with per-ticker rate limits,
  the reachability probe and company profiles (everything that talks to Yahoo);
- :mod:`.frames`: a downloaded DataFrame to final, on-grid, validated bars (pure);
- :mod:`.live`: :class:`YahooSource`, the live poll (aligned to interval boundaries plus a
  grace period, chunked, resuming from the last acknowledged bar);
- :mod:`.backfill`: :func:`backfill_bars`, history one ticker at a time.
"""

from stockpipe.producer.sources.yahoo.backfill import backfill_bars
from stockpipe.producer.sources.yahoo.client import (
    SOURCE,
    Download,
    Fetched,
    YahooUnavailable,
    fetch_company,
    probe,
    shared_session,
    yf_download,
)
from stockpipe.producer.sources.yahoo.frames import frame_to_bars, on_grid
from stockpipe.producer.sources.yahoo.live import YahooSource, YahooStats

__all__ = [
    "SOURCE",
    "Download",
    "Fetched",
    "YahooSource",
    "YahooStats",
    "YahooUnavailable",
    "backfill_bars",
    "fetch_company",
    "frame_to_bars",
    "on_grid",
    "probe",
    "shared_session",
    "yf_download",
]
