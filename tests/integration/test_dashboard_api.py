"""The REST API and the operations endpoints of the real dashboard process (gunicorn, 2 workers)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

import pytest
from test_dashboard_queries import START, fill_history

from harness import ServiceProcess, Stack, free_port, http_get, metrics_of

pytestmark = pytest.mark.integration

SYMBOLS = ["AAPL", "MSFT", "SYN0001"]
BARS = 3_000


@pytest.fixture(scope="module")
def served(infra_env, tmp_path_factory) -> tuple[Stack, ServiceProcess]:
    stack = Stack(infra_env, tmp_path_factory.mktemp("dashboard-api")).create()
    fill_history(stack.dsn, SYMBOLS[:2], BARS, source="yfinance")
    fill_history(stack.dsn, SYMBOLS[2:], BARS, source="synthetic", seed=3)
    dash = stack.start("dashboard", DASHBOARD_WORKERS=2)
    dash.wait_ready(60)
    yield stack, dash
    assert dash.terminate() == 0, dash.output()[-2000:]
    stack.destroy()


def get(dash: ServiceProcess, path: str, **params) -> tuple[int, dict]:
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    code, body = http_get(dash.port, path + query)
    return code, json.loads(body)


def test_series_and_symbols(served) -> None:
    _, dash = served
    code, body = get(dash, "/api/v1/series")
    assert code == 200
    assert [(s["symbol"], s["interval"]) for s in body["items"]] == [(s, "1m") for s in SYMBOLS]
    by = {s["symbol"]: s for s in body["items"]}
    assert by["SYN0001"]["simulated"] is True and by["AAPL"]["simulated"] is False
    assert by["AAPL"]["last_ts"] == (START + timedelta(minutes=BARS - 1)).isoformat().replace("+00:00", "Z")
    code, body = get(dash, "/api/v1/symbols")
    assert code == 200 and body["items"][0] == {"symbol": "AAPL", "name": None, "intervals": ["1m"]}


def test_bars_pages_through_a_range_with_the_cursor(served) -> None:
    stack, dash = served
    frm = (START + timedelta(minutes=100)).isoformat()
    to = (START + timedelta(minutes=349)).isoformat()
    seen, cursor, pages = [], None, 0
    while True:
        params = {"symbol": "MSFT", "from": frm, "to": to, "limit": 100, **({"cursor": cursor} if cursor else {})}
        code, body = get(dash, "/api/v1/bars", **params)
        assert code == 200, body
        seen += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == 250
    want = stack.query("SELECT ts, open, close, volume FROM price_bars WHERE symbol = 'MSFT' AND ts BETWEEN %s AND %s "
                       "ORDER BY ts", (frm, to))
    assert [(b["open"], b["close"], b["volume"]) for b in seen] == [(r[1], r[2], r[3]) for r in want]
    assert body["source"] == "yfinance"


def test_bars_points_downsamples_and_keeps_extremes(served) -> None:
    stack, dash = served
    code, body = get(dash, "/api/v1/bars", symbol="AAPL", points=100)
    assert code == 200 and 0 < len(body["items"]) <= 100 and body["bucket_seconds"] > 60
    hi, lo, vol = stack.query("SELECT max(high), min(low), sum(volume) FROM price_bars WHERE symbol = 'AAPL'")[0]
    assert max(b["high"] for b in body["items"]) == pytest.approx(hi)
    assert min(b["low"] for b in body["items"]) == pytest.approx(lo)
    assert sum(b["volume"] for b in body["items"]) == vol


def test_indicators_forecasts_models(served) -> None:
    _, dash = served
    code, body = get(dash, "/api/v1/indicators", symbol="AAPL", limit=60)
    assert code == 200 and len(body["items"]) == 60 and body["next_cursor"]
    assert body["items"][0]["rsi"] is None and body["items"][-1]["sma_long"] is not None  # warm-up, then values
    code, body = get(dash, "/api/v1/forecasts", symbol="AAPL", latest="true")
    assert code == 200 and {p["model"] for p in body["items"]} == {"arima(1,1,1)", "naive"}
    assert len({p["made_at"] for p in body["items"]}) == 1
    code, body = get(dash, "/api/v1/forecasts", symbol="AAPL", limit=50)
    assert code == 200 and len(body["items"]) == 50 and body["next_cursor"]
    code, page2 = get(dash, "/api/v1/forecasts", symbol="AAPL", limit=50, cursor=body["next_cursor"])
    assert code == 200 and page2["items"][0] != body["items"][-1]
    code, body = get(dash, "/api/v1/models", symbol="AAPL")
    assert code == 200 and {m["kind"] for m in body["items"]} == {"arima", "naive"}
    assert all("artifact" not in m for m in body["items"]) and body["items"][0]["metrics"]["mase"] in (1.04, 1.0)
    code, body = get(dash, "/api/v1/models", limit=1)
    assert code == 200 and body["next_cursor"]
    code, body2 = get(dash, "/api/v1/models", limit=1, cursor=body["next_cursor"])
    assert code == 200 and body2["items"][0]["id"] != body["items"][0]["id"]


def test_alerts_filter_and_page_newest_first(served) -> None:
    stack, dash = served
    rule = stack.scalar("SELECT rule FROM alerts GROUP BY rule ORDER BY count(*) DESC LIMIT 1")
    total = stack.scalar("SELECT count(*) FROM alerts WHERE symbol = 'AAPL' AND rule = %s", (rule,))
    assert total > 5
    got, cursor = [], None
    for _ in range(100):
        code, body = get(dash, "/api/v1/alerts", symbol="AAPL", rule=rule, limit=5, **({"cursor": cursor} if cursor else {}))
        assert code == 200
        got += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(got) == total and len({a["id"] for a in got}) == total
    assert all(a["symbol"] == "AAPL" and a["rule"] == rule for a in got)
    assert [a["ts"] for a in got] == sorted((a["ts"] for a in got), reverse=True)


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/api/v1/bars", {}, "symbol"),
    ("/api/v1/bars", {"symbol": "aapl"}, "symbol"),
    ("/api/v1/bars", {"symbol": "AAPL\n"}, "symbol"),
    ("/api/v1/bars", {"symbol": "AAPL", "interval": "1x"}, "interval"),
    ("/api/v1/bars", {"symbol": "AAPL", "limit": 0}, "limit"),
    ("/api/v1/bars", {"symbol": "AAPL", "limit": 5001}, "limit"),
    ("/api/v1/bars", {"symbol": "AAPL", "limit": "ten"}, "limit"),
    ("/api/v1/bars", {"symbol": "AAPL", "from": "yesterday"}, "from"),
    ("/api/v1/bars", {"symbol": "AAPL", "from": "2024-01-03T00:00:00Z", "to": "2024-01-02T00:00:00Z"}, "from"),
    ("/api/v1/bars", {"symbol": "AAPL", "points": 10}, "points"),
    ("/api/v1/bars", {"symbol": "AAPL", "points": 100, "cursor": "abc"}, "cursor"),
    ("/api/v1/indicators", {"symbol": "AAPL", "limit": -1}, "limit"),
    ("/api/v1/alerts", {"rule": "DROP TABLE"}, "rule"),
    ("/api/v1/alerts", {"limit": 1001}, "limit"),
    ("/api/v1/forecasts", {"interval": "1m"}, "symbol"),
    ("/api/v1/models", {"limit": 501}, "limit"),
    ("/api/v1/series", {"symbol": "x" * 40}, "symbol"),
])
def test_bad_parameters_get_422_naming_the_field(served, path: str, params: dict, field: str) -> None:
    _, dash = served
    code, body = get(dash, path, **params)
    assert code == 422, body
    assert field in body["errors"]["query"], body


@pytest.mark.parametrize("cursor", ["not-base64!", base64.urlsafe_b64encode(b'["x"]').decode(),
                                    base64.urlsafe_b64encode(b"[1, 2, 3]").decode(), "W10"])
def test_a_forged_cursor_gets_400(served, cursor: str) -> None:
    _, dash = served
    for path, extra in (("/api/v1/bars", {"symbol": "AAPL"}), ("/api/v1/alerts", {}), ("/api/v1/models", {}),
                        ("/api/v1/forecasts", {"symbol": "AAPL"})):
        code, body = get(dash, path, cursor=cursor, **extra)
        assert code == 400 and "cursor" in body["message"], (path, body)


def test_any_rfc3339_offset_works_and_out_of_range_times_are_422(served) -> None:
    _, dash = served
    # Found by schemathesis: PostgreSQL refuses offsets beyond ±15:59, so times go in as UTC.
    code, body = get(dash, "/api/v1/bars", symbol="AAPL", **{"from": "2024-01-02T16:20:00+16:20"}, limit=1)
    assert code == 200 and body["items"][0]["ts"] == "2024-01-02T00:00:00Z"
    code, body = get(dash, "/api/v1/alerts", to="9999-12-31T23:00:00-05:00")
    assert code == 422 and "to" in body["errors"]["query"]
    from datetime import datetime, timezone

    from stockpipe.dashboard.queries import encode_cursor
    odd = datetime(2024, 1, 2, 16, 20, tzinfo=timezone(timedelta(hours=16, minutes=20)))
    code, body = get(dash, "/api/v1/bars", symbol="AAPL", cursor=encode_cursor(odd), limit=1)
    assert code == 200 and body["items"][0]["ts"] == "2024-01-02T00:01:00Z"


def test_unknown_api_path_is_json_404_and_cors_is_off(served) -> None:
    _, dash = served
    code, body = get(dash, "/api/v1/nothing")
    assert code == 404 and body["code"] == 404
    req = urllib.request.Request(f"http://127.0.0.1:{dash.port}/api/v1/series", headers={"Origin": "http://evil.test"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    code, body = http_get(dash.port, "/api/v1/series", timeout=5)
    req = urllib.request.Request(f"http://127.0.0.1:{dash.port}/api/v1/series", method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 405


def test_openapi_document_lists_every_endpoint(served) -> None:
    _, dash = served
    code, doc = get(dash, "/api/v1/openapi.json")
    assert code == 200 and doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {f"/api/v1/{p}" for p in ("series", "symbols", "bars", "indicators", "alerts",
                                                            "forecasts", "models")}
    params = {p["name"]: p for p in doc["paths"]["/api/v1/bars"]["get"]["parameters"]}
    assert {"symbol", "interval", "from", "to", "limit", "cursor", "points"} <= set(params)
    assert params["limit"]["schema"]["maximum"] == 5000


def test_metrics_sum_over_gunicorn_workers(served) -> None:
    _, dash = served
    before = metrics_of(dash.port).get(("stockpipe_dashboard_requests_total", (("code", "200"), ("route", "healthz"))), 0)
    n = 40
    for _ in range(n):  # new connections: gunicorn spreads them over both workers
        assert http_get(dash.port, "/healthz")[0] == 200
    after = metrics_of(dash.port)[("stockpipe_dashboard_requests_total", (("code", "200"), ("route", "healthz")))]
    assert after - before == n
    pids = {dict(k[1]).get("pid") for k in metrics_of(dash.port)}
    assert pids == {None}, "multiprocess mode sums workers: no per-pid series"


def test_readyz_503_with_reason_when_postgres_is_unreachable(tmp_path, infra_env) -> None:
    stack = Stack(infra_env, tmp_path)
    stack.database = "no_such_db_" + str(int(time.time()))
    dash = stack.start("dashboard", DASHBOARD_WORKERS=1)
    try:
        def up():
            try:
                return http_get(dash.port, "/healthz", timeout=2)[0] == 200
            except OSError:
                return False
        from harness import wait_for
        wait_for(up, 30, what="dashboard /healthz")
        code, body = http_get(dash.port, "/readyz")
        assert code == 503
        reason = json.loads(body)["reasons"]["postgres"]
        assert "no_such_db" in reason and "password" not in reason.lower()
    finally:
        assert dash.terminate() == 0


def test_basic_auth_constant_time_and_probes_stay_open(infra_env, tmp_path) -> None:
    stack = Stack(infra_env, tmp_path).create()
    dash = stack.start("dashboard", DASHBOARD_WORKERS=1, DASHBOARD_AUTH_USER="ops", DASHBOARD_AUTH_PASSWORD="s3cret:x")
    try:
        dash.wait_ready(60)
        assert http_get(dash.port, "/api/v1/series")[0] == 401
        assert http_get(dash.port, "/")[0] == 401
        for user, pw in (("ops", "wrong"), ("op", "s3cret:x"), ("", ""), ("ops", "s3cret")):
            token = base64.b64encode(f"{user}:{pw}".encode()).decode()
            req = urllib.request.Request(f"http://127.0.0.1:{dash.port}/api/v1/series",
                                         headers={"Authorization": "Basic " + token})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code == 401 and "Basic" in err.value.headers["WWW-Authenticate"]
        token = base64.b64encode(b"ops:s3cret:x").decode()
        req = urllib.request.Request(f"http://127.0.0.1:{dash.port}/api/v1/series", headers={"Authorization": "Basic " + token})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        assert http_get(dash.port, "/healthz")[0] == 200 and http_get(dash.port, "/metrics")[0] == 200
    finally:
        assert dash.terminate() == 0
        stack.destroy()


@pytest.mark.parametrize(("env", "variable"), [
    ({"HTTP_PORT": "port"}, "HTTP_PORT"),
    ({"DASHBOARD_WORKERS": "0"}, "DASHBOARD_WORKERS"),
    ({"DASHBOARD_AUTH_USER": "ops"}, "DASHBOARD_AUTH_PASSWORD"),
    ({"DASHBOARD_METRICS_URLS": "producer=ftp://x"}, "DASHBOARD_METRICS_URLS"),
    ({"DASHBOARD_DB_ROLE": "x; DROP"}, "DASHBOARD_DB_ROLE"),
])
def test_a_bad_setting_exits_2_naming_the_variable(infra_env, tmp_path, env: dict, variable: str) -> None:
    import subprocess
    import sys

    stack = Stack(infra_env, tmp_path)
    full = stack.env(**{"HTTP_PORT": free_port(), **env})
    proc = subprocess.run([sys.executable, "-m", "stockpipe.dashboard"], env=full, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"invalid setting {variable}=" in lines[0], proc.stderr
