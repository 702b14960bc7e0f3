"""Settings: parsing, defaults, and the one-line error naming the variable."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import pytest

from stockpipe.common.errors import SettingsError
from stockpipe.common.settings import CommonSettings, Secret, describe, load, setting


@dataclass(frozen=True, kw_only=True)
class Example(CommonSettings):
    batch_size: int = setting(100, ge=1, help="rows per batch")
    ratio: float = setting(0.5, gt=0, le=1)
    enabled: bool = setting(False)
    mode: Literal["fast", "safe"] = setting("safe")
    tickers: tuple[str, ...] = setting(("AAPL",), pattern=r"[A-Z]+")


def test_defaults_without_environment() -> None:
    s = load(Example, {})
    assert (s.batch_size, s.ratio, s.enabled, s.mode, s.tickers) == (100, 0.5, False, "safe", ("AAPL",))
    assert s.topic("raw") == "raw"


@pytest.mark.parametrize(
    "env, attr, expected",
    [
        ({"BATCH_SIZE": " 7 "}, "batch_size", 7),
        ({"RATIO": "1"}, "ratio", 1.0),
        ({"ENABLED": "yes"}, "enabled", True),
        ({"ENABLED": "0"}, "enabled", False),
        ({"MODE": "FAST"}, "mode", "fast"),
        ({"TICKERS": "MSFT, TSLA,,"}, "tickers", ("MSFT", "TSLA")),
        ({"BATCH_SIZE": ""}, "batch_size", 100),  # empty means unset
    ],
)
def test_parses_each_type(env: dict, attr: str, expected: object) -> None:
    assert getattr(load(Example, env), attr) == expected


@pytest.mark.parametrize(
    "env, variable, expected_text",
    [
        ({"BATCH_SIZE": "ten"}, "BATCH_SIZE", "an integer"),
        ({"BATCH_SIZE": "0"}, "BATCH_SIZE", ">= 1"),
        ({"RATIO": "nan"}, "RATIO", "finite"),
        ({"RATIO": "2"}, "RATIO", "<= 1"),
        ({"ENABLED": "maybe"}, "ENABLED", "a boolean"),
        ({"MODE": "turbo"}, "MODE", "one of fast, safe"),
        ({"TICKERS": "AAPL,msft"}, "TICKERS", "'msft'"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT", "<= 65535"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS", "matching"),
    ],
)
def test_bad_value_names_variable_value_and_expectation(env: dict, variable: str, expected_text: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(Example, env)
    message = str(info.value)
    assert "\n" not in message
    assert variable in message and expected_text in message
    assert repr(next(iter(env.values()))) in message


def test_secret_never_shows() -> None:
    s = load(Example, {"POSTGRES_PASSWORD": "hunter2", "POSTGRES_USER": "me"})
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.safe_view())
    assert s.postgres_password.get() == "hunter2"
    assert s.dsn() == "postgresql://me:hunter2@127.0.0.1:5432/stockpipe"


def test_dsn_overrides_parts_and_topic_prefix() -> None:
    s = load(Example, {"POSTGRES_DSN": "postgresql://a:b@db:6543/x", "TOPIC_PREFIX": "prod.", "TOPIC_RAW": "bars"})
    assert s.dsn() == "postgresql://a:b@db:6543/x"
    assert s.topic("raw") == "prod.bars" and s.topic("dlq") == "prod.dlq"


def test_describe_lists_every_variable() -> None:
    names = [row[0] for row in describe(Example)]
    assert {"BATCH_SIZE", "KAFKA_BOOTSTRAP_SERVERS", "POSTGRES_DSN", "LOG_LEVEL"} <= set(names)
    assert Secret("x") == Secret("x") and not Secret("")


@pytest.mark.parametrize("module", ["stockpipe.ingestor", "stockpipe.producer"])
def test_service_exits_2_with_one_line_on_bad_setting(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module], env={"HTTP_PORT": "port", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "HTTP_PORT='port'" in lines[0] and "an integer" in lines[0]


def test_a_busy_http_port_stops_start_up_with_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "stockpipe.ingestor"],
            env={"HTTP_PORT": str(port), "HTTP_HOST": "127.0.0.1", "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert f"HTTP_PORT='{port}'" in last and "a free port" in last and "Traceback" not in proc.stderr
