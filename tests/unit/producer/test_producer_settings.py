"""TICKERS: symbols the message schema refuses stop start-up with one clear line (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stockpipe.common.errors import SettingsError
from stockpipe.common.messages import SYMBOL_PATTERN
from stockpipe.common.settings import load
from stockpipe.producer.settings import ProducerSettings, ticker_problem


@pytest.mark.parametrize("tickers", ["AAPL", "BRK-B,BRK.B", "BTC-USD,ETH-USD", "EURUSD=X", "GC=F", "7203.T",
                                     "A" * 15])
def test_symbols_the_schema_takes_are_accepted(tickers: str) -> None:
    assert load(ProducerSettings, {"TICKERS": tickers}).tickers == tuple(tickers.split(","))


@pytest.mark.parametrize(("tickers", "words"), [
    ("^GSPC", "'^GSPC' starts with '^': Yahoo index symbols (^GSPC, ^DJI) are not supported"),
    ("AAPL,^DJI", "'^DJI' starts with '^'"),
    ("aapl", "'aapl' is not upper case (as Yahoo spells symbols: 'AAPL')"),
    ("A" * 16, "longer than 15 characters"),
    ("AA PL", "a character other than A-Z, 0-9 and . ^ = -"),
    ("-AAPL", "a character other than A-Z, 0-9 and . ^ = -"),
])
def test_a_symbol_the_schema_refuses_names_tickers_the_value_and_why(tickers: str, words: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(ProducerSettings, {"TICKERS": tickers})
    line = str(info.value)
    assert line.startswith(f"invalid setting TICKERS={tickers!r}: expected comma-separated symbols matching "
                           f"{SYMBOL_PATTERN}")
    assert words in line and "\n" not in line
    assert ticker_problem(tickers.split(",")[-1]) is not None


@pytest.mark.parametrize("args", [[], ["backfill", "--tickers", "AAPL,^GSPC"]])
def test_tickers_with_an_index_symbol_exit_2_with_one_line_before_anything_starts(args: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "HTTP_PORT": "0", "PRODUCER_SOURCE": "synthetic",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # nothing listens there: start-up must stop before it
    if not args:
        env["TICKERS"] = "AAPL,^GSPC"
    proc = subprocess.run([sys.executable, "-m", "stockpipe.producer", *args], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid setting TICKERS='AAPL,^GSPC'" in lines[0], proc.stderr
    assert "Yahoo index symbols" in lines[0]
