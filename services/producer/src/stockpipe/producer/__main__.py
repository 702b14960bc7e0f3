"""``python -m stockpipe.producer [run]`` and ``python -m stockpipe.producer backfill``.

``run`` (the default) publishes live bars from ``PRODUCER_SOURCE`` until stopped or
``MAX_MESSAGES``; ``backfill`` loads history for ``TICKERS`` from Yahoo Finance onto ``raw``
with a progress bar (the ingestor stores it like any other bar; a 1d backfill is its own
series and never mixes with live 1m bars). The work is in :mod:`stockpipe.producer.app`.
"""

from __future__ import annotations

import argparse
import os

from stockpipe.common.lifecycle import run_main
from stockpipe.common.settings import load
from stockpipe.producer.app import backfill, run
from stockpipe.producer.settings import ProducerSettings


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
