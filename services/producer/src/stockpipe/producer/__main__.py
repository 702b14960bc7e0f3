"""``python -m stockpipe.producer [run]`` and ``python -m stockpipe.producer backfill``.

``run`` (the default) publishes live bars from ``PRODUCER_SOURCE`` until stopped or
``MAX_MESSAGES``; ``backfill`` loads history for ``TICKERS`` from Yahoo Finance onto ``raw``
with a progress bar (the ingestor stores it like any other bar; a 1d backfill is its own
series and never mixes with live 1m bars).
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import datetime

from stockpipe.common.db import Database
from stockpipe.common.errors import SettingsError, TransientError
from stockpipe.common.kafka import Publisher, kafka_check
from stockpipe.common.lifecycle import retry, run_main
from stockpipe.common.progress import Progress
from stockpipe.common.runtime import Runtime
from stockpipe.common.settings import load
from stockpipe.producer.app import COMPANIES_LABEL, COMPANIES_UPSERT, publish_bars, read_last_bars
from stockpipe.producer.settings import ProducerSettings
from stockpipe.producer.sources.replay import ReplaySource
from stockpipe.producer.sources.synthetic import SyntheticSource, synthetic_symbols

logger = logging.getLogger("stockpipe.producer")


def _symbols(settings: ProducerSettings) -> list[str]:
    if settings.synthetic_symbols:
        return synthetic_symbols(settings.synthetic_symbols)
    return list(settings.tickers)


def _synthetic(settings: ProducerSettings) -> SyntheticSource:
    start = None
    if settings.synthetic_start:
        try:
            start = datetime.fromisoformat(settings.synthetic_start.replace("Z", "+00:00"))
        except ValueError:
            raise SettingsError("SYNTHETIC_START", settings.synthetic_start, "an RFC 3339 time") from None
        if start.tzinfo is None:
            raise SettingsError("SYNTHETIC_START", settings.synthetic_start, "an RFC 3339 time with an offset")
    return SyntheticSource(_symbols(settings), interval=settings.bar_interval, seed=settings.synthetic_seed,
                           rate=settings.synthetic_rate, start=start, history=settings.synthetic_history)


def make_source(settings: ProducerSettings):
    """The configured source; ``auto`` probes Yahoo and falls back to synthetic, loudly."""
    kind = settings.producer_source
    if kind == "replay":
        if not settings.replay_file:
            raise SettingsError("REPLAY_FILE", "", "a CSV file path when PRODUCER_SOURCE=replay")
        try:
            return ReplaySource(settings.replay_file, interval=settings.bar_interval, speed=settings.replay_speed)
        except FileNotFoundError:
            raise SettingsError("REPLAY_FILE", settings.replay_file, "an existing CSV file") from None
    if kind == "synthetic":
        return _synthetic(settings)
    from stockpipe.producer.sources import yahoo  # pandas + yfinance: only when needed

    if kind == "auto" and not yahoo.probe(timeout=5.0):
        logger.warning("*" * 72)
        logger.warning("Yahoo Finance is unreachable: publishing SYNTHETIC bars (source=synthetic).")
        logger.warning("These prices are simulated. Set PRODUCER_SOURCE=yfinance to insist on real data.")
        logger.warning("*" * 72)
        return _synthetic(settings)
    return yahoo.YahooSource(list(settings.tickers), interval=settings.bar_interval,
                             poll_interval=settings.poll_interval, period=settings.yfinance_period)


def _fill_companies(settings: ProducerSettings, db: Database, source_name: str) -> None:
    """Upsert the companies table: Yahoo's profile for real tickers, a label for synthetic ones."""
    rows = []
    if source_name == "yfinance":
        from stockpipe.producer.sources import yahoo

        for symbol in settings.tickers:
            info = yahoo.fetch_company(symbol)
            if info:
                rows.append({"symbol": symbol, **info})
    else:
        rows = [{"symbol": s, "name": f"{s} ({source_name} data)", "sector": None, "industry": None,
                 "exchange": None, "currency": "USD"} for s in _symbols(settings)]
    if not rows:
        return
    with db.transaction() as cur:
        # A label never overwrites a real profile.
        cur.executemany(COMPANIES_UPSERT if source_name == "yfinance" else COMPANIES_LABEL, rows)
    logger.info("companies updated: %d", len(rows))


def run(settings: ProducerSettings) -> int:
    with Runtime(settings) as rt:
        publisher = Publisher(settings)
        rt.health.add_check("kafka", kafka_check(settings))
        source = make_source(settings)
        db = Database(settings, max_connections=1) if settings.companies else None
        if db is not None:
            rt.health.add_check("postgres", db.check)
            try:
                _fill_companies(settings, db, source.name)
            except TransientError as exc:  # bars matter more than labels: go on without
                logger.warning("companies not updated: %s", exc)
        resume = retry(lambda: read_last_bars(settings, settings.resume_scan), shutdown=rt.shutdown,
                       health=rt.health, what="reading where raw left off")
        if source.name == "yfinance":
            resume = {k: b.ts for k, b in resume.items()}
        stop = rt.shutdown.beating(rt.health.beat)
        topic = settings.topic("raw")
        logger.info("publishing %s bars to %s", source.name, topic)
        sent = publish_bars(source.bars(resume, stop), publisher, topic, max_messages=settings.max_messages,
                            stop=stop, on_beat=rt.health.beat,
                            progress=Progress("published", settings.progress_interval))
        logger.info("published %d bars", sent)
        if db is not None:
            db.close()
    return 0


def backfill(settings: ProducerSettings, period: str, interval: str) -> int:
    from tqdm import tqdm

    from stockpipe.producer.sources import yahoo

    with Runtime(settings, serve_http=False) as rt:
        publisher = Publisher(settings)
        topic = settings.topic("raw")
        total = 0
        with tqdm(settings.tickers, unit="ticker", desc=f"backfill {period}/{interval}") as bar:
            for symbol in bar:
                if rt.shutdown.requested:
                    break
                bar.set_postfix(symbol=symbol, bars=total)
                total += publish_bars(yahoo.backfill_bars([symbol], period, interval), publisher, topic)
        logger.info("backfill published %d bars to %s", total, topic)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m stockpipe.producer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="publish live bars (default)")
    bf = sub.add_parser("backfill", help="load history for TICKERS from Yahoo Finance onto raw")
    bf.add_argument("--period", default="1mo", help="how far back: 1d 5d 1mo 3mo 6mo 1y 2y 5y 10y ytd max")
    bf.add_argument("--interval", default="1d", help="bar interval: 1m (7 days max) ... 1d 1wk 1mo")
    bf.add_argument("--tickers", default=None, help="comma-separated symbols (default: TICKERS)")
    args = parser.parse_args()
    environ = dict(os.environ)
    if getattr(args, "tickers", None):
        environ["TICKERS"] = args.tickers  # validated like the variable
    settings = load(ProducerSettings, environ)
    if args.command == "backfill":
        return backfill(settings, args.period, args.interval)
    return run(settings)


if __name__ == "__main__":
    run_main(main)
