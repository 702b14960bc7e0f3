"""Settings of the producer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from stockpipe.common.errors import SettingsError
from stockpipe.common.messages import INTERVAL_PATTERN, SYMBOL_PATTERN
from stockpipe.common.settings import CommonSettings, setting

__all__ = ["ProducerSettings", "ticker_problem"]

_SYMBOL = re.compile(SYMBOL_PATTERN.strip("^$"))


def ticker_problem(ticker: str) -> str | None:
    """Why ``ticker`` cannot be a symbol on ``raw`` (DESIGN.md's pattern), in words; None if it can.

    Checked at start-up: a symbol the pattern refuses would otherwise only show up as dead
    letters of every bar at run time. Yahoo's index symbols (``^GSPC``, ``^DJI``) start with
    ``^``, which the message schema does not allow as a first character.
    """
    if _SYMBOL.fullmatch(ticker):
        return None
    if ticker.startswith("^"):
        return (f"{ticker!r} starts with '^': Yahoo index symbols (^GSPC, ^DJI) are not supported; "
                "follow an ETF that tracks the index instead, e.g. SPY")
    if ticker.upper() != ticker and _SYMBOL.fullmatch(ticker.upper()):
        return f"{ticker!r} is not upper case (as Yahoo spells symbols: {ticker.upper()!r})"
    if len(ticker) > 15:
        return f"{ticker!r} is longer than 15 characters"
    return f"{ticker!r} holds a character other than A-Z, 0-9 and . ^ = - (or starts with one of . ^ = -)"


@dataclass(frozen=True, kw_only=True)
class ProducerSettings(CommonSettings):
    service_name: str = setting("producer", help="name in logs, client ids and consumer groups")
    producer_source: Literal["auto", "yfinance", "synthetic", "replay"] = setting(
        "auto", help="where bars come from; auto = yfinance, else synthetic under TICKER.SYN symbols, loudly")
    tickers: tuple[str, ...] = setting(("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"),
                                       help="symbols to publish, comma separated (as Yahoo spells them; "
                                       "not index symbols such as ^GSPC)")
    bar_interval: str = setting("1m", help="bar interval (yfinance/synthetic)", pattern=INTERVAL_PATTERN.strip("^$"))
    poll_interval: float = setting(60.0, gt=0, help="about the seconds between two yfinance polls (each falls just "
                                   "after an interval closes, plus YAHOO_GRACE)")
    yahoo_grace: float = setting(10.0, ge=0, le=3600, help="seconds after an interval closes before its Yahoo bar "
                                 "is final (Yahoo adds late trades)")
    yahoo_chunk_size: int = setting(50, ge=1, le=1000, help="tickers per yfinance download")
    yfinance_period: str = setting("1d", help="history asked for a ticker with nothing on raw yet",
                                   pattern=r"[1-9][0-9]*(d|wk|mo|y)|max|ytd")
    max_messages: int = setting(0, ge=0, help="stop after this many bars, flushing first (0 = never)")
    resume_scan: int = setting(20_000, ge=0, help="messages read back per raw partition to find where each series "
                               "left off, further back while one is missing (0 = start over)")
    companies: bool = setting(True, help="fill the companies table (yfinance: from Yahoo's profile)")
    synthetic_symbols: int = setting(0, ge=0, le=100_000, help="generate N symbols (SYN0001...) instead of TICKERS")
    synthetic_rate: float = setting(5.0, ge=0, help="synthetic bars per second over all symbols (0 = as fast as possible)")
    synthetic_seed: int = setting(42, help="seed of the synthetic generator (same seed, same bars)")
    synthetic_history: int = setting(1000, ge=0, help="synthetic bars per symbol before now at start (counted in its "
                                   "asset class's sessions); then live")
    synthetic_start: str = setting("", help="RFC 3339 start of synthetic bars (overrides SYNTHETIC_HISTORY)")
    replay_file: str = setting("", help="CSV file for the replay source (columns in the README)")
    replay_speed: float = setting(0.0, ge=0, help="replay pace: 0 = as fast as possible, 1 = real time, 60 = 60x")

    def __post_init__(self) -> None:
        for ticker in self.tickers:
            problem = ticker_problem(ticker)
            if problem:
                raise SettingsError("TICKERS", ",".join(self.tickers),
                                    f"comma-separated symbols matching {SYMBOL_PATTERN} ({problem})")
