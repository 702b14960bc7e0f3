"""NOTIFY_ENDPOINTS: parsing, the one-line errors that never show a secret, and filters."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from stockpipe.common.errors import SettingsError
from stockpipe.common.messages import Alert
from stockpipe.common.settings import Secret, load
from stockpipe.notifier.endpoints import decode_secret, parse_endpoints
from stockpipe.notifier.settings import NotifierSettings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks documentation's example
TOKEN_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecrettoken"


def alert(symbol: str = "AAPL", rule: str = "rsi_overbought", interval: str = "1m") -> Alert:
    return Alert(id="a", symbol=symbol, interval=interval, ts=datetime(2024, 1, 2, tzinfo=UTC), rule=rule,
                 value=71.0, threshold=70.0, message="m")


def test_a_full_configuration_parses() -> None:
    eps = parse_endpoints(json.dumps([
        {"url": "https://hooks.example.com:8443/in?x=1", "format": "json", "secret": SECRET,
         "symbols": ["AAPL", "MSFT"], "rules": ["rsi_overbought"], "intervals": ["1m"]},
        {"url": TOKEN_URL, "format": "slack"},
        {"url": "http://127.0.0.1:9000/", "secret": SECRET},  # format defaults to json
    ]))
    assert [e.format for e in eps] == ["json", "slack", "json"]
    assert [e.name for e in eps] == ["https://hooks.example.com:8443", "https://hooks.slack.com", "http://127.0.0.1:9000"]
    assert eps[0].key == decode_secret(SECRET) and len(eps[0].key) == 24
    assert eps[0].symbols == {"AAPL", "MSFT"} and eps[1].symbols is None
    assert "XXXXsecrettoken" not in repr(eps[1]) and "XXXXsecrettoken" not in str(eps)


@pytest.mark.parametrize("raw", ["", "  ", "[]"])
def test_no_endpoints(raw: str) -> None:
    assert parse_endpoints(raw) == []


@pytest.mark.parametrize(("raw", "problem"), [
    ("not json", "not JSON"),
    ("[{'url': 'x'}]", "not JSON"),
    ('{"url": "https://a.example"}', "put it in [ ]"),
    ('"https://a.example"', "JSON str"),
    ('[42]', "entry 1 is not an object"),
    ('[{"format": "slack"}]', "'url' is missing"),
    ('[{"url": ""}]', "'url' is missing"),
    ('[{"url": "ftp://files.example/x", "format": "slack"}]', "must be http:// or https://"),
    ('[{"url": "file:///etc/passwd", "format": "slack"}]', "must be http:// or https://"),
    ('[{"url": "hooks.example.com/x", "format": "slack"}]', "must be http:// or https://"),
    ('[{"url": "https:///nohost", "format": "slack"}]', "has no host"),
    ('[{"url": "https://h.example:99999/", "format": "slack"}]', "not a valid URL"),
    ('[{"url": "https://a.example", "format": "xml"}]', "unknown 'format' 'xml'"),
    ('[{"url": "https://a.example"}]', "format json needs a 'secret'"),
    ('[{"url": "https://a.example", "secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]', "must start with whsec_"),
    ('[{"url": "https://a.example", "secret": "whsec_not base64!"}]', "not base64"),
    ('[{"url": "https://a.example", "secret": "whsec_c2hvcnQ="}]', "at least 16 bytes"),
    ('[{"url": "https://a.example", "format": "slack", "symbol": ["AAPL"]}]', "unknown key 'symbol'"),
    ('[{"url": "https://a.example", "format": "slack", "symbols": "AAPL"}]', "'symbols' must be a non-empty list"),
    ('[{"url": "https://a.example", "format": "slack", "rules": []}]', "'rules' must be a non-empty list"),
    ('[{"url": "https://a.example", "format": "slack"}, {"url": "gopher://x"}]', "entry 2"),
    (json.dumps([{"url": "https://a.example", "format": "slack"}] * 65), "at most 64 endpoints"),
])
def test_bad_values_name_the_problem(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_endpoints(raw)
    assert problem in str(info.value)


@pytest.mark.parametrize("raw", [
    f'[{{"url": "{TOKEN_URL}", "format": "bogus"}}]',
    f'[{{"url": "{TOKEN_URL}", "format": "json", "secret": "whsec_XXXXsecrettoken"}}]',
    f'[{{"url": "{TOKEN_URL}", "format": "json", "secret": "{SECRET}", "extra": 1}}]',
    f'[{{"url": "{TOKEN_URL}"  "format": "slack"}}]',  # a missing comma
])
def test_the_error_line_never_shows_a_url_or_secret(raw: str) -> None:
    settings = load(NotifierSettings, {"NOTIFY_ENDPOINTS": raw})
    with pytest.raises(SettingsError) as info:
        settings.endpoints()
    line = str(info.value)
    assert line.startswith("invalid setting NOTIFY_ENDPOINTS='***': expected a JSON list of endpoints (")
    assert "\n" not in line
    for secret in ("XXXXsecrettoken", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "hooks.slack.com"):
        assert secret not in line


def test_the_settings_never_show_the_endpoints() -> None:
    settings = load(NotifierSettings, {"NOTIFY_ENDPOINTS": f'[{{"url": "{TOKEN_URL}", "format": "slack"}}]'})
    assert isinstance(settings.notify_endpoints, Secret)
    assert "XXXXsecrettoken" not in str(settings.safe_view())


@pytest.mark.parametrize(("env", "variable"), [
    ({"NOTIFY_ENDPOINTS": '[{"url": "ftp://x"}]'}, "NOTIFY_ENDPOINTS"),
    ({"DASHBOARD_URL": "dash.example"}, "DASHBOARD_URL"),
    ({"NOTIFY_MAX_ATTEMPTS": "0"}, "NOTIFY_MAX_ATTEMPTS"),
    ({"ALERT_MAX_AGE": "-1"}, "ALERT_MAX_AGE"),
    ({"NOTIFY_REENABLE": "first"}, "NOTIFY_REENABLE"),
    ({"NOTIFY_ENDPOINTS": '[{"url": "http://127.0.0.1:9/", "format": "slack"}]', "NOTIFY_REENABLE": "1,2"},
     "NOTIFY_REENABLE"),
])
def test_a_bad_setting_exits_2_with_one_line(env: dict[str, str], variable: str) -> None:
    """Through the real entry point: exit code 2, one line on stderr, nothing else started."""
    proc = subprocess.run([sys.executable, "-m", "stockpipe.notifier"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HTTP_PORT": "0", **env})
    assert proc.returncode == 2, proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"invalid setting {variable}=" in lines[0], proc.stderr


@pytest.mark.parametrize(("filters", "matching"), [
    ({}, {"AAPL/rsi_overbought/1m", "MSFT/price_change/1d"}),
    ({"symbols": ["AAPL"]}, {"AAPL/rsi_overbought/1m"}),
    ({"rules": ["price_change"]}, {"MSFT/price_change/1d"}),
    ({"intervals": ["1d", "1h"]}, {"MSFT/price_change/1d"}),
    ({"symbols": ["AAPL"], "rules": ["price_change"]}, set()),  # every filter must match
    ({"symbols": ["AAPL", "MSFT"], "intervals": ["1m"]}, {"AAPL/rsi_overbought/1m"}),
])
def test_filters(filters: dict, matching: set[str]) -> None:
    [ep] = parse_endpoints(json.dumps([{"url": "https://a.example", "format": "slack", **filters}]))
    alerts = [alert("AAPL", "rsi_overbought", "1m"), alert("MSFT", "price_change", "1d")]
    assert {f"{a.symbol}/{a.rule}/{a.interval}" for a in alerts if ep.matches(a)} == matching


def test_an_endpoint_is_identified_by_a_hash_of_its_url_only() -> None:
    a, b, c = parse_endpoints(json.dumps([
        {"url": TOKEN_URL, "format": "slack"},
        {"url": "https://hooks.example.com/in", "secret": SECRET, "symbols": ["AAPL"]},
        {"url": "https://hooks.example.com/in", "secret": "whsec_" + "A" * 32},  # same URL, other secret
    ]))
    assert b.id == c.id != a.id  # position, format, filters and secret do not change the identity
    assert len(a.id) == 64 and int(a.id, 16) >= 0
    assert "secrettoken" not in a.id and "hooks" not in a.id
    assert parse_endpoints(json.dumps([{"url": TOKEN_URL + "2", "format": "slack"}]))[0].id != a.id


@pytest.mark.parametrize(("value", "numbers"), [("", []), ("all", [1, 2, 3]), ("2", [2]), ("3,1", [1, 3])])
def test_notify_reenable_names_endpoints_by_number(value: str, numbers: list[int]) -> None:
    settings = load(NotifierSettings, {"NOTIFY_ENDPOINTS": json.dumps([{"url": f"http://h{i}.example/", "format": "slack"}
                                                                       for i in range(3)]),
                                       "NOTIFY_REENABLE": value})
    assert [ep.index for ep in settings.reenabled(settings.endpoints())] == numbers
