"""The producer: bars from a source -> ``raw``, keyed by symbol, losing nothing.

The delivery contract, step by step (what a crash or a SIGTERM at each step means):

1. **Where each series left off.** :func:`~stockpipe.producer.resume.read_last_bars` reads
   ``raw`` back (Kafka holds what was really sent). Kafka down: retried with backoff while
   ``/readyz`` says so. A series whose last bar came from another source is left alone (a
   series never mixes sources; logged once, counted).
2. **Publish.** Each bar is queued on an idempotent producer that retries forever
   (``message.timeout.ms=0``): through a broker outage of any length librdkafka keeps the
   bars, in order, and sends them when the broker is back; the broker drops the retries
   it already has, so no gap and no duplicate. A full local queue blocks the source
   (beating liveness, honouring SIGTERM).
3. **Acknowledged, then resume.** When a source yields ``FLUSH`` (Yahoo: after each poll)
   the loop waits until Kafka acknowledged everything so far, however long that takes,
   beating ``/healthz``, and only then advances ``resume`` (what the source filters its
   next poll by). So resume never runs ahead of Kafka.
4. **Stop.** ``MAX_MESSAGES`` or the end of the source: flush, patiently. SIGTERM: flush
   until shortly before ``SHUTDOWN_TIMEOUT``, then drop what Kafka has not acknowledged and
   exit 0. Nothing is lost: the next start's step 1 finds the last bar Kafka really has, and the
   source sends the rest again (Yahoo asks for it again, synthetic regenerates it from the
   same seed; replay re-reads the file).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from stockpipe.common.db import Database
from stockpipe.common.errors import SettingsError
from stockpipe.common.kafka import Publisher, kafka_check
from stockpipe.common.lifecycle import ShutdownRequested, retry
from stockpipe.common.messages import Bar, Codec
from stockpipe.common.metrics import PROCESSING_SECONDS
from stockpipe.common.progress import Progress
from stockpipe.common.reader import ReadStopped
from stockpipe.common.runtime import Runtime
from stockpipe.producer.companies import start_fill
from stockpipe.producer.resume import Series, foreign_series, read_last_bars
from stockpipe.producer.settings import ProducerSettings
from stockpipe.producer.sources import FLUSH, Flush
from stockpipe.producer.sources.replay import ReplaySource
from stockpipe.producer.sources.synthetic import FALLBACK_SUFFIX, SyntheticSource, synthetic_symbols

__all__ = ["publish_bars", "make_source", "fallback_symbols", "run", "backfill", "REFUSED_SERIES"]

logger = logging.getLogger(__name__)

_CODEC = Codec(Bar)
_PUBLISH_SECONDS = PROCESSING_SECONDS.labels("produce")
REFUSED_SERIES = Counter("stockpipe_producer_refused_series",
                         "Series not continued because their last bar on raw came from another source")
# Librdkafka settings of the producer: retry every bar until Kafka acknowledges it.
RETRY_FOREVER = {"message.timeout.ms": 0}


# --------------------------------------------------------------------------- the loop


def publish_bars(
    bars: Iterable[Bar | Flush],
    publisher: Publisher,
    topic: str,
    *,
    resume: dict[Series, Bar] | None = None,
    max_messages: int = 0,
    stop: threading.Event | None = None,
    on_beat: Callable[[], None] = lambda: None,
    progress: Progress | None = None,
    remaining: Callable[[], float] = lambda: 5.0,
) -> int:
    """Publish ``bars`` keyed by symbol until exhausted, ``max_messages`` or ``stop``; return the count.

    ``resume`` (updated in place) gets each series' last bar once Kafka acknowledged it:
    at every ``FLUSH`` from the source and at the end. On ``stop``, waits for
    acknowledgements at most ``remaining()`` seconds (what is left of SHUTDOWN_TIMEOUT) and
    drops the rest (module docstring, step 4).
    """
    stop = stop or threading.Event()
    pending: dict[Series, Bar] = {}
    sent = reported = 0
    encode = _CODEC.encode
    next_poll = time.monotonic()

    def settled() -> None:
        if resume is not None:
            resume.update(pending)
        pending.clear()

    for bar in bars:
        if bar is FLUSH:
            if not publisher.flush_patiently(stop, on_beat):
                break
            settled()
            continue
        assert isinstance(bar, Bar)
        if not publisher.publish(topic, encode(bar), bar.symbol):
            break  # stopped while waiting for room in the queue
        pending[(bar.symbol, bar.interval)] = bar
        sent += 1
        if sent % 512 == 0 or time.monotonic() >= next_poll:
            # Serve delivery reports and prove liveness, not once per message.
            publisher.poll(0)
            on_beat()
            if progress is not None:
                progress.add(bars=sent - reported)
                reported = sent
                progress.tick()
            next_poll = time.monotonic() + 0.5
        if max_messages and sent >= max_messages:
            break
        if stop.is_set():
            break
    start = time.perf_counter()
    if not stop.is_set() and publisher.flush_patiently(stop, on_beat):
        settled()
    else:
        dropped = publisher.abandon(max(0.0, remaining()))
        if dropped:
            logger.warning("stopping with %d bars not acknowledged by Kafka: the next start sends them again",
                           dropped)
        else:
            settled()
    _PUBLISH_SECONDS.observe(time.perf_counter() - start)
    return sent


def _own_series(bars: Iterable[Bar | Flush], refused: Mapping[Series, str]) -> Iterator[Bar | Flush]:
    """``bars`` without those of ``refused`` series."""
    if not refused:
        yield from bars
        return
    for bar in bars:
        if bar is FLUSH or (bar.symbol, bar.interval) not in refused:  # type: ignore[union-attr]
            yield bar


def _refuse_foreign(last: dict[Series, Bar], source: str) -> dict[Series, str]:
    """Take the series last written by another source out of ``last``; log and count them."""
    refused = foreign_series(last, source)
    for (symbol, interval), other in sorted(refused.items()):
        del last[(symbol, interval)]
        logger.error("not publishing %s %s: its last bar on raw came from %s, and a series never mixes "
                     "sources (use other symbols, e.g. SYNTHETIC_SYMBOLS or the auto fallback's %s%s, "
                     "or another TOPIC_PREFIX)", symbol, interval, other, symbol, FALLBACK_SUFFIX)
    REFUSED_SERIES.inc(len(refused))
    return refused


# --------------------------------------------------------------------------- sources


def fallback_symbols(tickers: Iterable[str]) -> list[str]:
    """The auto source's synthetic symbols: each ticker with ``.SYN`` (AAPL -> AAPL.SYN).

    Real and simulated bars never share a series: when Yahoo is back, the real AAPL series
    continues where its last real bar was, untouched by what was simulated meanwhile.
    """
    symbols = [t + FALLBACK_SUFFIX for t in tickers]
    too_long = [s for s in symbols if len(s) > 15]
    if too_long:
        raise SettingsError("TICKERS", ",".join(tickers),
                            f"symbols of at most {15 - len(FALLBACK_SUFFIX)} characters with PRODUCER_SOURCE=auto "
                            f"(the synthetic fallback publishes {too_long[0]})")
    return symbols


def _synthetic(settings: ProducerSettings, symbols: list[str]) -> SyntheticSource:
    start = None
    if settings.synthetic_start:
        try:
            start = datetime.fromisoformat(settings.synthetic_start.replace("Z", "+00:00"))
        except ValueError:
            raise SettingsError("SYNTHETIC_START", settings.synthetic_start, "an RFC 3339 time") from None
        if start.tzinfo is None:
            raise SettingsError("SYNTHETIC_START", settings.synthetic_start, "an RFC 3339 time with an offset")
    return SyntheticSource(symbols, interval=settings.bar_interval, seed=settings.synthetic_seed,
                           rate=settings.synthetic_rate, start=start, history=settings.synthetic_history)


def make_source(settings: ProducerSettings, beat: Callable[[], None] = lambda: None) -> Any:
    """The configured source; ``auto`` probes Yahoo and falls back to synthetic ``X.SYN`` symbols, loudly."""
    kind = settings.producer_source
    if kind == "replay":
        if not settings.replay_file:
            raise SettingsError("REPLAY_FILE", "", "a CSV file path when PRODUCER_SOURCE=replay")
        try:
            return ReplaySource(settings.replay_file, interval=settings.bar_interval, speed=settings.replay_speed)
        except FileNotFoundError:
            raise SettingsError("REPLAY_FILE", settings.replay_file, "an existing CSV file") from None
    if kind == "synthetic":
        symbols = synthetic_symbols(settings.synthetic_symbols) if settings.synthetic_symbols \
            else list(settings.tickers)
        return _synthetic(settings, symbols)
    from stockpipe.producer.sources import yahoo  # pandas + yfinance: only when needed

    if kind == "auto" and not yahoo.probe(timeout=5.0):
        symbols = fallback_symbols(settings.tickers)
        logger.warning("*" * 72)
        logger.warning("Yahoo Finance is unreachable: publishing SYNTHETIC bars (source=synthetic) under their own "
                       "symbols %s.", ",".join(symbols))
        logger.warning("These prices are simulated. Set PRODUCER_SOURCE=yfinance to insist on real data.")
        logger.warning("*" * 72)
        return _synthetic(settings, symbols)
    return yahoo.YahooSource(list(settings.tickers), interval=settings.bar_interval,
                             poll_interval=settings.poll_interval, period=settings.yfinance_period,
                             grace=settings.yahoo_grace, chunk_size=settings.yahoo_chunk_size, beat=beat)


def _series_of(source: Any) -> set[Series] | None:
    series = getattr(source, "series", None)
    return series() if callable(series) else None


def _symbols_of(source: Any) -> list[str]:
    return sorted({s for s, _ in _series_of(source) or ()})


# --------------------------------------------------------------------------- commands


def run(settings: ProducerSettings) -> int:
    """``python -m stockpipe.producer run``: live bars until SIGTERM or ``MAX_MESSAGES``."""
    with Runtime(settings) as rt:
        beat = rt.health.beat
        stop = rt.shutdown.beating(beat)
        publisher = Publisher(settings, stop=rt.shutdown.event, beat=beat, **RETRY_FOREVER)
        rt.health.add_check("kafka", kafka_check(settings))
        source = make_source(settings, beat)
        db = filler = None
        if settings.companies:
            db = Database(settings, max_connections=1)
            rt.health.add_check("postgres", db.check)
            lookup = None
            if source.name == "yfinance":
                from stockpipe.producer.sources.yahoo import fetch_company

                lookup = fetch_company
            filler = start_fill(db, _symbols_of(source), source.name, lookup, rt.shutdown.event)
        try:
            resume = retry(lambda: read_last_bars(settings, settings.resume_scan, _series_of(source),
                                                  stop=rt.shutdown.event, beat=beat),
                           shutdown=rt.shutdown, health=rt.health, what="reading where raw left off")
        except ReadStopped:
            raise ShutdownRequested("reading where raw left off") from None
        refused = _refuse_foreign(resume, source.name)
        topic = settings.topic("raw")
        logger.info("publishing %s bars to %s", source.name, topic)
        sent = publish_bars(_own_series(source.bars(resume, stop), refused), publisher, topic, resume=resume,
                            max_messages=settings.max_messages, stop=stop, on_beat=beat,
                            progress=Progress("published", settings.progress_interval),
                            remaining=rt.shutdown.remaining)
        logger.info("published %d bars", sent)
        if db is not None:
            if filler is not None:
                filler.join(max(0.0, min(5.0, rt.shutdown.remaining())))
            if filler is None or not filler.is_alive():
                db.close()
    return 0


def backfill(settings: ProducerSettings, period: str, interval: str) -> int:
    """``python -m stockpipe.producer backfill``: history of ``TICKERS`` from Yahoo onto ``raw``.

    Resumes per series like ``run``: bars at or before the last one on ``raw`` are not
    sent again, so a backfill interrupted (or run twice) sends each bar once; each
    ticker's bars are acknowledged before the next ticker starts.
    """
    from tqdm import tqdm

    from stockpipe.producer.sources import yahoo

    with Runtime(settings, serve_http=False) as rt:
        publisher = Publisher(settings, stop=rt.shutdown.event, **RETRY_FOREVER)
        topic = settings.topic("raw")
        wanted = {(t, interval) for t in settings.tickers}
        try:
            resume = retry(lambda: read_last_bars(settings, settings.resume_scan, wanted, stop=rt.shutdown.event),
                           shutdown=rt.shutdown, what="reading where raw left off")
        except ReadStopped:
            raise ShutdownRequested("reading where raw left off") from None
        refused = _refuse_foreign(resume, yahoo.SOURCE)
        total = 0
        with tqdm([t for t in settings.tickers if (t, interval) not in refused], unit="ticker",
                  desc=f"backfill {period}/{interval}") as progress:
            for symbol in progress:
                if rt.shutdown.requested:
                    break
                progress.set_postfix(symbol=symbol, bars=total)
                after = {symbol: resume[(symbol, interval)].ts} if (symbol, interval) in resume else None
                total += publish_bars(yahoo.backfill_bars([symbol], period, interval, after=after,
                                                          grace=settings.yahoo_grace),
                                      publisher, topic, resume=resume, stop=rt.shutdown.event,
                                      remaining=rt.shutdown.remaining)
        logger.info("backfill published %d bars to %s", total, topic)
    return 0
