"""The dashboard's pure parts: settings, cursors, downsampling width, figures, auth, the app factory."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stockpipe.common.errors import SettingsError
from stockpipe.common.settings import Secret, describe, load
from stockpipe.dashboard.app import _authorized, _route_kind, create_app
from stockpipe.dashboard.figures import (
    FORECAST_START,
    OVERLAYS,
    TRACE,
    live_patch_arrays,
    model_accuracy,
    sparkline_svg,
    symbol_figure,
)
from stockpipe.dashboard.queries import (
    BAR_COLUMNS,
    INDICATOR_COLUMNS,
    SQL,
    Chart,
    CursorError,
    bucket_width,
    decode_cursor,
    encode_cursor,
)
from stockpipe.dashboard.settings import DashboardSettings

T0 = datetime(2024, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(("env", "variable"), [
    ({"HTTP_PORT": "x"}, "HTTP_PORT"),
    ({"DASHBOARD_WORKERS": "0"}, "DASHBOARD_WORKERS"),
    ({"DASHBOARD_MAX_POINTS": "10"}, "DASHBOARD_MAX_POINTS"),
    ({"DASHBOARD_LIVE_INTERVAL": "0"}, "DASHBOARD_LIVE_INTERVAL"),
    ({"DASHBOARD_METRICS_URLS": "producer"}, "DASHBOARD_METRICS_URLS"),
    ({"DASHBOARD_METRICS_URLS": "a=http://x/metrics,b=file:///etc/passwd"}, "DASHBOARD_METRICS_URLS"),
    ({"DASHBOARD_DB_ROLE": "reader; drop"}, "DASHBOARD_DB_ROLE"),
    ({"DASHBOARD_AUTH_USER": "ops"}, "DASHBOARD_AUTH_PASSWORD"),
    ({"DASHBOARD_AUTH_PASSWORD": "pw"}, "DASHBOARD_AUTH_USER"),
    ({"DASHBOARD_CORS_ORIGINS": "*"}, "DASHBOARD_CORS_ORIGINS"),
])
def test_bad_settings_name_the_variable(env: dict, variable: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(DashboardSettings, env)
    assert str(err.value).startswith(f"invalid setting {variable}=")
    assert "pw" not in str(err.value)


def test_defaults_and_metrics_urls() -> None:
    s = load(DashboardSettings, {"DASHBOARD_METRICS_URLS": "producer=http://127.0.0.1:8001/metrics,"
                                                         "ingestor=http://127.0.0.1:8002/metrics"})
    assert s.http_port == 8050 and not s.auth_enabled
    assert s.metrics_urls() == {"producer": "http://127.0.0.1:8001/metrics", "ingestor": "http://127.0.0.1:8002/metrics"}


def test_dsn_is_read_only_and_switches_role() -> None:
    dsn = DashboardSettings(postgres_dsn=Secret("postgresql://u:p@h:5/db")).dsn()
    assert "default_transaction_read_only=on" in dsn and "role=stockpipe_reader" in dsn and "jit=off" in dsn
    assert "role=" not in DashboardSettings(dashboard_db_role="").dsn()


def test_readme_documents_every_dashboard_variable() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    missing = [var for var, _, _ in describe(DashboardSettings) if f"`{var}`" not in readme]
    assert not missing, f"README lacks {missing}"


@pytest.mark.parametrize("values", [(T0,), (T0, str(uuid.UUID(int=5))), (T0, "arima(1,1,1)", T0), (T0, 42)])
def test_cursor_round_trip(values: tuple) -> None:
    kinds = [type(v) if not (isinstance(v, str) and v.count("-") == 4) else uuid.UUID for v in values]
    assert decode_cursor(encode_cursor(*values), kinds) == list(values)


@pytest.mark.parametrize("raw", ["", "!!!", base64.urlsafe_b64encode(b"{}").decode(),
                                 base64.urlsafe_b64encode(b'["2024-01-02T00:00:00"]').decode(),  # naive
                                 base64.urlsafe_b64encode(b'[1]').decode(),
                                 base64.urlsafe_b64encode(b'["\xff"]').decode()])
def test_forged_cursors_are_refused(raw: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(raw, [datetime])


@pytest.mark.parametrize(("span_bars", "max_points"), [(10, 2000), (1999, 2000), (2000, 2000), (2001, 2000),
                                                         (40_000, 2000), (40_000, 500), (525_600, 2000), (61, 50)])
def test_bucket_width_keeps_any_alignment_under_max_points(span_bars: int, max_points: int) -> None:
    step = 60
    width = bucket_width((span_bars - 1) * step, step, max_points)
    if span_bars <= max_points:
        assert width == 0
        return
    assert width % step == 0
    for offset in (0, 17 * step, width - step):  # whatever the series' start within a bucket
        buckets = {(offset + i * step) // width for i in range(span_bars)}
        assert len(buckets) <= max_points


def test_every_statement_is_parameterised() -> None:
    for name, sql in SQL.items():
        assert "{" not in sql and "}" not in sql, name  # nothing left to format in
        assert "%(" in sql or name == "alert_rules", name


def _chart(n: int = 5, alerts: int = 2) -> Chart:
    ts = [T0 + timedelta(minutes=i) for i in range(n)]
    bars = {c: list(range(1, n + 1)) for c in BAR_COLUMNS}
    bars["ts"] = ts
    ind = {c: [None] * (n - 2) + [1.0, 2.0] for c in INDICATOR_COLUMNS}
    ind["ts"] = ts
    return Chart("AAPL", "1m", "1d", ts[0], ts[-1], "synthetic", 0, bars, ind,
                 [{"ts": ts[i], "rule": "rsi_overbought", "message": "m", "high": 10.0} for i in range(alerts)],
                 [{"made_at": ts[-1], "model": "naive", "target_ts": ts[-1] + timedelta(minutes=h), "yhat": 5.0,
                   "lo": 4.0, "hi": 6.0} for h in (1, 2, 3)], [])


def test_symbol_figure_trace_layout() -> None:
    fig = symbol_figure(_chart(), "dark", overlays=["ema"])
    data = fig["data"]
    assert data[TRACE["candles"]]["type"] == "candlestick" and len(data[0]["x"]) == 5
    assert data[TRACE["ema_short"]]["visible"] is True and data[TRACE["sma_short"]]["visible"] == "legendonly"
    assert len(data[TRACE["alerts"]]["x"]) == 2 and data[TRACE["alerts"]]["visible"] == "legendonly"
    assert [t["yaxis"] for t in data[TRACE["rsi"]:TRACE["volatility"] + 1]] == ["y3", "y4", "y4", "y4", "y5"]
    band, line = data[FORECAST_START:]
    assert band["fill"] == "toself" and band["y"] == [6.0, 6.0, 6.0, 4.0, 4.0, 4.0] and len(band["x"]) == 6
    assert line["name"] == "forecast naive" and line["y"] == [5.0, 5.0, 5.0]
    assert fig["layout"]["font"]["color"] == "#e4e7eb"
    from plotly.io.json import to_json_plotly

    out = json.loads(to_json_plotly(fig))  # numpy arrays out as JSON: times in epoch ms, NaN as null
    assert out["data"][0]["x"][0] == T0.timestamp() * 1000 and out["data"][TRACE["rsi"]]["y"][0] is None
    assert {name for names in OVERLAYS.values() for name in names} <= set(TRACE)


def test_a_series_without_volume_gets_a_flat_labelled_volume_panel() -> None:
    chart = _chart()
    chart.bars["volume"] = [0] * 5  # FX: Yahoo reports volume 0
    axis = symbol_figure(chart)["layout"]["yaxis2"]
    assert axis["title"]["text"] == "no volume" and axis["range"] == [0, 1]
    axis = symbol_figure(_chart())["layout"]["yaxis2"]
    assert axis["title"]["text"] == "volume" and axis["rangemode"] == "tozero" and "range" not in axis


@pytest.mark.parametrize(("price", "text"), [
    (187.234, "187.23"), (64_123.456, "64,123.46"), (1.085432, "1.0854"), (0.00001234, "0.000012"), (None, "–"),
])
def test_prices_keep_the_decimals_their_size_needs(price: float | None, text: str) -> None:
    from stockpipe.dashboard.pages import _price

    assert _price(price) == text


def test_live_patch_arrays_extend_the_right_traces() -> None:
    bars = [(T0, 1.0, 2.0, 0.5, 1.5, 100, "synthetic")]
    ind = [(T0, 1.5, *([None] * 11), 0.01)]
    out = live_patch_arrays(bars, ind)
    ms = int(T0.timestamp() * 1000)
    assert out[TRACE["candles"]] == {"x": [ms], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5]}
    assert out[TRACE["volume"]]["y"] == [100] and out[TRACE["volatility"]]["y"] == [0.01]
    assert out[TRACE["rsi"]]["y"] == [None]
    assert live_patch_arrays([], []) == {}


def test_sparkline_is_an_svg_data_uri() -> None:
    uri = sparkline_svg([1.0, 2.0, float("nan"), 1.5])
    svg = base64.b64decode(uri.split(",", 1)[1]).decode()
    assert svg.startswith("<svg") and svg.count(",") == 3  # three finite points
    assert "polyline" not in base64.b64decode(sparkline_svg([1.0]).split(",", 1)[1]).decode()


@pytest.mark.parametrize(("registry", "want"), [
    ([{"kind": "arima", "metrics": {"mase": 1.04, "coverage": 0.93}}], (1.04, 0.93)),
    ([{"kind": "arima", "interval": "1d", "metrics": {"mase": 9}},
      {"kind": "arima", "interval": "1m", "metrics": {"holdout": {"MASE_h5": 1.1, "coverage_95": 0.9}}}], (1.1, 0.9)),
    ([{"kind": "naive", "metrics": {"mase": 1.0}}], (None, None)),
    ([{"kind": "arima", "metrics": "garbage"}], (None, None)),
    ([{"model": "arima(1,1,1)", "metrics": {"mase": True, "coverage": float("nan")}}], (None, None)),
    ([], (None, None)),
])
def test_model_accuracy_reads_metrics_defensively(registry: list, want: tuple) -> None:
    acc = model_accuracy("arima(1,1,1)", "1m", registry)
    assert (acc["mase"], acc["coverage"]) == want


def test_basic_auth_parsing() -> None:
    good = "Basic " + base64.b64encode(b"ops:pa:ss").decode()
    assert _authorized(good, b"ops", b"pa:ss")
    for header in (None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"ops").decode(),
                   "Basic " + base64.b64encode(b"ops:pa").decode(), "Basic " + base64.b64encode(b"OPS:pa:ss").decode()):
        assert not _authorized(header, b"ops", b"pa:ss"), header


@pytest.mark.parametrize(("path", "kind"), [("/api/v1/bars", "api_bars"), ("/api/v1/bars/x", "api_other"),
                                            ("/_dash-update-component", "dash_callback"), ("/assets/style.css", "static"),
                                            ("/metrics", "metrics"), ("/symbol/AAPL", "page"), ("/x" * 50, "page")])
def test_route_kinds_are_few(path: str, kind: str) -> None:
    assert _route_kind(path) == kind


def test_the_factory_connects_to_nothing_and_reports_why_not_ready() -> None:
    # Port 9 (discard) on localhost: nothing listens, so any connection attempt fails.
    app = create_app(DashboardSettings(postgres_dsn=Secret("postgresql://u:secretpw@127.0.0.1:9/db"),
                                       postgres_connect_timeout=1))
    client = app.server.test_client()
    assert client.get("/healthz").status_code == 200
    resp = client.get("/readyz")
    body = resp.get_json()
    assert resp.status_code == 503 and "postgres" in body["reasons"] and "secretpw" not in json.dumps(body)
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert client.get("/api/v1/bars").status_code == 422
    assert client.get("/").status_code == 200 and b"_dash-renderer" in client.get("/").data


def test_cors_only_for_listed_origins_and_only_the_api() -> None:
    app = create_app(DashboardSettings(dashboard_cors_origins=("https://ok.test",)))
    client = app.server.test_client()
    ok = client.get("/api/v1/openapi.json", headers={"Origin": "https://ok.test"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://ok.test"
    other = client.get("/api/v1/openapi.json", headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in other.headers
    off = create_app(DashboardSettings()).server.test_client().get("/api/v1/openapi.json",
                                                                    headers={"Origin": "https://ok.test"})
    assert "Access-Control-Allow-Origin" not in off.headers
