"""The Dash pages: layouts as functions (fresh on each load) and their callbacks.

Callbacks keep no module-level state: what a page needs between calls (the live view's last
bar, the alerts page's cursors, the health page's previous scrape) lives in ``dcc.Store``
components in the browser.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

from dash import Dash, Input, Output, Patch, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate
from prometheus_client.parser import text_string_to_metric_families

from stockpipe.common.errors import TransientError
from stockpipe.common.messages import INTERVAL_PATTERN, SYMBOL_PATTERN
from stockpipe.dashboard import ids
from stockpipe.dashboard.figures import (
    OVERLAYS,
    TRACE,
    empty_figure,
    live_patch_arrays,
    model_accuracy,
    sparkline_svg,
    symbol_figure,
    theme_layout,
)
from stockpipe.dashboard.queries import WINDOWS, Reader, decode_cursor, encode_cursor
from stockpipe.dashboard.settings import DashboardSettings

__all__ = ["register", "shell_layout", "render_page", "symbol_data", "live_update"]

_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_INTERVAL_RE = re.compile(INTERVAL_PATTERN)
WINDOW_OPTIONS = [{"label": w, "value": w} for w in WINDOWS]
ALERTS_PAGE_SIZE = 25
_UNREACHABLE = "The database is unreachable right now; retrying."


def _ago(ts: datetime | None) -> str:
    if ts is None:
        return "never"
    seconds = (datetime.now(UTC) - ts).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _price(value: float | None) -> str:
    """A price with the decimals its size needs: 2 for equities and coins, 4 for FX rates
    near 1 (EURUSD=X at 1.0854 is not "1.09"), 6 for sub-unit tokens."""
    if value is None:
        return "–"
    size = abs(value)
    return _fmt(value, 2 if size >= 10 else 4 if size >= 1 else 6)


def _badge(source: str | None) -> html.Span | None:
    if source == "synthetic":
        return html.Span("SIMULATED", className="badge simulated", title="bars from the synthetic source")
    return None


# -- shell
def shell_layout() -> html.Div:
    """The frame every page shares: header with navigation and theme switch, page slot."""
    return html.Div(className="app", children=[
        dcc.Location(id=ids.URL, refresh="callback-nav"),
        dcc.Store(id=ids.THEME, storage_type="local", data="light"),
        html.Header(className="topbar", children=[
            html.A("stockpipe", href="/", className="brand"),
            html.Nav(id=ids.NAV, className="nav", children=[
                dcc.Link("Overview", href="/"), dcc.Link("Alerts", href="/alerts"),
                dcc.Link("Pipeline health", href="/health")]),
            html.Button("◐ theme", id=ids.THEME_TOGGLE, className="theme-toggle", n_clicks=0,
                        title="switch light / dark"),
        ]),
        html.Main(id=ids.PAGE, className="page"),
    ])


def render_page(pathname: str | None, search: str | None, reader: Reader, settings: DashboardSettings) -> Any:
    path = (pathname or "/").rstrip("/") or "/"
    query = urllib.parse.parse_qs((search or "").lstrip("?"))
    if path == "/":
        return overview_layout()
    if path == "/alerts":
        return alerts_layout(reader, query.get("symbol", [None])[0])
    if path == "/health":
        return health_layout(settings)
    if path.startswith("/symbol/"):
        symbol = urllib.parse.unquote(path[len("/symbol/"):])
        if _SYMBOL_RE.fullmatch(symbol):
            interval = query.get("interval", [""])[0]
            window = query.get("window", ["1d"])[0]
            return symbol_layout(reader, settings, symbol, interval, window if window in WINDOWS else "1d")
    return html.Div(className="empty", children=[html.H2("Not found"), html.P(f"No page at {path}."),
                                                  dcc.Link("Back to the overview", href="/")])


# -- overview
def overview_layout() -> html.Div:
    return html.Div([
        html.Div(className="toolbar", children=[
            html.H1("Overview"),
            dcc.RadioItems(id=ids.OVERVIEW_WINDOW, options=WINDOW_OPTIONS, value="1d", inline=True,
                           className="segmented"),
        ]),
        dcc.Interval(id=ids.OVERVIEW_REFRESH, interval=10_000),
        html.Div(id=ids.OVERVIEW_TABLE, className="card", children=html.P("Loading…", className="muted")),
    ])


def overview_table(rows: list[dict[str, Any]], window: str) -> Any:
    if not rows:
        return html.Div(className="empty", children=[
            html.H2("No data yet"),
            html.P("No bars are stored yet. Start the pipeline (make run) and the series appear here "
                   "as soon as the ingestor has written their first bars.")])
    head = html.Tr([html.Th("Series"), html.Th("Last", className="num"), html.Th(f"Change ({window})", className="num"),
                    html.Th("Trend", className="hide-sm"), html.Th("Latest alerts", className="hide-sm"),
                    html.Th("Data age")])
    body = []
    for r in rows:
        change = r["change"]
        cls = "num up" if change and change > 0 else "num down" if change and change < 0 else "num"
        href = f"/symbol/{urllib.parse.quote(r['symbol'])}?interval={r['interval']}&window={window}"
        alerts = [html.Span(a["rule"], className="chip", title=str(a["ts"])) for a in r["alerts"]]
        body.append(html.Tr(className="series-row", **{"data-symbol": r["symbol"]}, children=[
            html.Td([dcc.Link(r["symbol"], href=href, className="symbol-link"),
                     html.Span(r["interval"], className="interval"), _badge(r["source"]),
                     html.Div(r["name"] or "", className="muted small")]),
            html.Td(_price(r["last_close"]), className="num"),
            html.Td("–" if change is None else f"{change * 100:+.2f} %", className=cls),
            html.Td(html.Img(src=sparkline_svg(r["spark"], color="#0f9d58" if (change or 0) >= 0 else "#d93025"),
                             alt="trend"), className="hide-sm"),
            html.Td(alerts or html.Span("none", className="muted"), className="hide-sm"),
            html.Td(_ago(r["last_ts"]), title=str(r["last_ts"])),
        ]))
    return html.Table(className="table", children=[html.Thead(head), html.Tbody(body)])


# -- symbol view
def symbol_layout(reader: Reader, settings: DashboardSettings, symbol: str, interval: str, window: str) -> html.Div:
    intervals = [s.interval for s in reader.series(symbol)]
    if not intervals:
        return html.Div(className="empty", children=[
            html.H2(f"No data for {symbol} yet"), html.P("Its chart appears once the ingestor has stored a bar."),
            dcc.Link("Back to the overview", href="/")])
    if interval not in intervals:
        interval = "1m" if "1m" in intervals else intervals[0]
    return html.Div([
        dcc.Store(id=ids.SYMBOL, data=symbol),
        dcc.Store(id=ids.LIVE_STATE),
        dcc.Interval(id=ids.LIVE_TICK, interval=int(settings.dashboard_live_interval * 1000)),
        html.Div(className="toolbar", children=[
            html.H1(id=ids.SYMBOL_HEADER, children=symbol),
            dcc.Dropdown(id=ids.SYMBOL_INTERVAL, options=[{"label": i, "value": i} for i in intervals],
                         value=interval, clearable=False, className="interval-select",
                         disabled=len(intervals) == 1),
            dcc.RadioItems(id=ids.SYMBOL_WINDOW, options=WINDOW_OPTIONS, value=window, inline=True,
                           className="segmented"),
            dcc.Checklist(id=ids.SYMBOL_OVERLAYS, inline=True, className="overlays",
                          options=[{"label": "SMA", "value": "sma"}, {"label": "EMA", "value": "ema"},
                                   {"label": "Bollinger", "value": "bollinger"}, {"label": "alerts", "value": "alerts"}],
                          value=["sma", "bollinger", "alerts"]),
        ]),
        html.Div(id=ids.SYMBOL_STATUS, className="status muted"),
        html.Div(className="symbol-grid", children=[
            html.Div(className="card chart", children=dcc.Graph(
                id=ids.SYMBOL_GRAPH, figure=empty_figure("Loading…"),
                config={"displaylogo": False, "responsive": True, "scrollZoom": True})),
            html.Aside(id=ids.SYMBOL_FORECASTS, className="card side"),
        ]),
    ])


def forecast_panel(chart: Any) -> list[Any]:
    children: list[Any] = [html.H3("Forecasts")]
    models: dict[str, datetime] = {}
    for p in chart.forecasts:
        models.setdefault(p["model"], p["made_at"])
    if not models:
        children.append(html.P("No forecast for this series yet.", className="muted"))
    for model, made_at in models.items():
        acc = model_accuracy(model, chart.interval, chart.models)
        children.append(html.Div(className="model", **{"data-model": model}, children=[
            html.Div(html.Strong(model)), html.Div(f"made {_ago(made_at)}", className="muted small"),
            html.Dl([html.Dt("MASE vs naive"), html.Dd(_fmt(acc["mase"], 3), className="mase"),
                     html.Dt("interval coverage"),
                     html.Dd("–" if acc["coverage"] is None else f"{acc['coverage'] * 100:.1f} %", className="coverage")]),
        ]))
    children += [html.H3("Alerts in window"),
                 html.P(f"{len(chart.alerts)} alert{'s' if len(chart.alerts) != 1 else ''}"
                        + (" (latest 500 shown)" if len(chart.alerts) >= 500 else ""), className="muted"),
                 html.Ul(className="alert-list", children=[
                     html.Li([html.Span(a["rule"], className="chip"), " ", html.Span(_ago(a["ts"]), className="muted small")])
                     for a in chart.alerts[:8]])]
    return children


# -- alerts
def alerts_layout(reader: Reader, symbol: str | None) -> html.Div:
    symbols = sorted({s.symbol for s in reader.series()})
    rules = reader.alert_rules()
    return html.Div([
        dcc.Store(id=ids.ALERTS_PAGING, data={"stack": [], "next": None}),
        html.Div(className="toolbar", children=[
            html.H1("Alerts"),
            dcc.Dropdown(id=ids.ALERTS_SYMBOL, options=symbols, value=symbol if symbol in symbols else None,
                         placeholder="all symbols", className="filter"),
            dcc.Dropdown(id=ids.ALERTS_RULE, options=rules, value=None, placeholder="all rules", className="filter"),
        ]),
        html.Div(id=ids.ALERTS_TABLE, className="card"),
        html.Div(className="pager", children=[
            html.Button("← newer", id=ids.ALERTS_NEWER, n_clicks=0, disabled=True),
            html.Span(id=ids.ALERTS_PAGE_INFO, className="muted"),
            html.Button("older →", id=ids.ALERTS_OLDER, n_clicks=0, disabled=True),
        ]),
    ])


def alerts_table(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return html.Div(className="empty", children=[html.H2("No alerts"),
                                                      html.P("No alert matches these filters yet.")])
    head = html.Tr([html.Th("Time (UTC)"), html.Th("Series"), html.Th("Rule"), html.Th("Value", className="num"),
                    html.Th("Message", className="hide-sm")])
    return html.Table(className="table", children=[html.Thead(head), html.Tbody([
        html.Tr(className="alert-row", **{"data-rule": a["rule"], "data-symbol": a["symbol"]}, children=[
            html.Td(a["ts"].strftime("%Y-%m-%d %H:%M")),
            html.Td(dcc.Link(f"{a['symbol']} {a['interval']}",
                             href=f"/symbol/{urllib.parse.quote(a['symbol'])}?interval={a['interval']}")),
            html.Td(html.Span(a["rule"], className="chip")),
            html.Td(_fmt(a["value"], 4), className="num"),
            html.Td(a["message"], className="hide-sm"),
        ]) for a in rows])])


# -- pipeline health
def health_layout(settings: DashboardSettings) -> html.Div:
    if not settings.metrics_urls():
        body: Any = html.Div(className="empty", children=[
            html.H2("No services configured"),
            html.P("Set DASHBOARD_METRICS_URLS to the services' /metrics, e.g. "
                   "producer=http://127.0.0.1:8001/metrics,ingestor=http://127.0.0.1:8002/metrics")])
    else:
        body = html.P("Reading the services' metrics…", className="muted")
    return html.Div([
        dcc.Store(id=ids.HEALTH_SAMPLES),
        dcc.Interval(id=ids.HEALTH_TICK, interval=2000),
        html.Div(className="toolbar", children=[html.H1("Pipeline health")]),
        html.Div(id=ids.HEALTH_TABLE, className="card", children=body),
    ])


_SUMS = {
    "consumed": "stockpipe_messages_consumed_total",
    "produced": "stockpipe_messages_produced_total",
    "lag": "stockpipe_consumer_lag",
    "dlq": "stockpipe_dlq_messages_total",
    "errors": "stockpipe_errors_total",
}


def scrape(url: str, timeout: float) -> dict[str, float]:
    """One service's totals from its /metrics (sums over labels); raises when unreachable."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - URLs come from settings
        text = resp.read(8 << 20).decode("utf-8", "replace")
    out = dict.fromkeys(_SUMS, 0.0)
    names = {v: k for k, v in _SUMS.items()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = names.get(sample.name)
            if key:
                out[key] += sample.value
    return out


def health_rows(settings: DashboardSettings, previous: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per service: rates from the previous scrape (kept in the browser), lag, dead letters, errors."""
    urls = settings.metrics_urls()
    now = time.time()
    previous = previous or {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(urls)))) as pool:
        futures = {name: pool.submit(scrape, url, settings.dashboard_metrics_timeout) for name, url in urls.items()}
    rows, samples = [], {}
    for name, fut in futures.items():
        prev = previous.get(name) or {}
        try:
            cur = fut.result()
        except Exception as exc:  # noqa: BLE001 - an unreachable service is a row, not a crash
            rows.append({"service": name, "up": False, "error": f"{type(exc).__name__}: {exc}"[:200]})
            samples[name] = {**prev, "up": False}
            continue
        moved = cur["consumed"] + cur["produced"]
        last_moved = prev.get("moved")
        last_change = prev.get("last_change")
        if last_moved is None or moved != last_moved:
            last_change = now if last_moved is not None else None
        rate = None
        if prev.get("t") and now > prev["t"] and prev.get("moved") is not None:
            rate = max(0.0, (moved - prev["moved"]) / (now - prev["t"]))
        rows.append({"service": name, "up": True, "rate": rate, "lag": cur["lag"], "dlq": cur["dlq"],
                     "errors": cur["errors"], "since": None if last_change is None else now - last_change})
        samples[name] = {"t": now, "moved": moved, "last_change": last_change, "up": True}
    return rows, samples


def health_table(rows: list[dict[str, Any]]) -> Any:
    head = html.Tr([html.Th("Service"), html.Th("Messages/s", className="num"), html.Th("Consumer lag", className="num"),
                    html.Th("Dead letters", className="num"), html.Th("Errors", className="num"),
                    html.Th("Last message")])
    body = []
    for r in rows:
        if not r["up"]:
            body.append(html.Tr(className="service-row down", children=[
                html.Td([html.Span("●", className="dot down"), " ", r["service"]]),
                html.Td(f"unreachable: {r['error']}", colSpan=5, className="muted")]))
            continue
        since = r["since"]
        body.append(html.Tr(className="service-row", **{"data-service": r["service"]}, children=[
            html.Td([html.Span("●", className="dot up"), " ", r["service"]]),
            html.Td("…" if r["rate"] is None else f"{r['rate']:,.1f}", className="num"),
            html.Td(f"{r['lag']:,.0f}", className="num"),
            html.Td(f"{r['dlq']:,.0f}", className="num" + (" warn" if r["dlq"] else "")),
            html.Td(f"{r['errors']:,.0f}", className="num" + (" warn" if r["errors"] else "")),
            html.Td("no change seen yet" if since is None else f"{since:.0f} s ago"),
        ]))
    return html.Table(className="table", children=[html.Thead(head), html.Tbody(body)])


# -- callbacks
def register(app: Dash, reader: Reader, settings: DashboardSettings) -> None:
    """Wire every page's callbacks to ``reader`` and ``settings`` (closures: no module state)."""

    @app.callback(Output(ids.PAGE, "children"), Input(ids.URL, "pathname"), State(ids.URL, "search"))
    def _route(pathname: str | None, search: str | None) -> Any:
        try:
            return render_page(pathname, search, reader, settings)
        except TransientError:
            return html.Div(className="empty", children=[html.H2("Database unreachable"), html.P(_UNREACHABLE)])

    app.clientside_callback(
        """function(n, theme) {
            var t = theme || 'light';
            if (n > 0) { t = (t === 'dark') ? 'light' : 'dark'; }
            document.documentElement.setAttribute('data-theme', t);
            return t;
        }""",
        Output(ids.THEME, "data"), Input(ids.THEME_TOGGLE, "n_clicks"), State(ids.THEME, "data"))

    @app.callback(Output(ids.OVERVIEW_TABLE, "children"), Input(ids.OVERVIEW_WINDOW, "value"),
                  Input(ids.OVERVIEW_REFRESH, "n_intervals"))
    def _overview(window: str, _n: int | None) -> Any:
        if window not in WINDOWS:
            raise PreventUpdate
        try:
            return overview_table(reader.overview(window), window)
        except TransientError:
            return html.P(_UNREACHABLE, className="muted")

    @app.callback(Output(ids.SYMBOL_GRAPH, "figure"), Output(ids.SYMBOL_FORECASTS, "children"),
                  Output(ids.LIVE_STATE, "data"), Output(ids.SYMBOL_STATUS, "children"),
                  Input(ids.SYMBOL, "data"), Input(ids.SYMBOL_INTERVAL, "value"), Input(ids.SYMBOL_WINDOW, "value"),
                  State(ids.SYMBOL_OVERLAYS, "value"), State(ids.THEME, "data"))
    def _symbol_data(symbol: str, interval: str, window: str, overlays: list[str] | None, theme: str | None) -> Any:
        return symbol_data(reader, settings, symbol, interval, window, overlays or [], theme or "light")

    @app.callback(Output(ids.SYMBOL_GRAPH, "figure", allow_duplicate=True), Input(ids.SYMBOL_OVERLAYS, "value"),
                  prevent_initial_call=True)
    def _toggle(overlays: list[str] | None) -> Patch:
        patch = Patch()
        on = set(overlays or [])
        for overlay, traces in OVERLAYS.items():
            for name in traces:
                patch["data"][TRACE[name]]["visible"] = True if overlay in on else "legendonly"
        return patch

    @app.callback(Output(ids.SYMBOL_GRAPH, "figure", allow_duplicate=True), Input(ids.THEME, "data"),
                  State(ids.SYMBOL_GRAPH, "figure"), prevent_initial_call=True)
    def _retheme(theme: str | None, figure: dict | None) -> Patch:
        if not figure or not figure.get("data"):
            raise PreventUpdate
        patch = Patch()
        for key, value in theme_layout(theme or "light").items():
            patch["layout"][key].update(value)
        return patch

    @app.callback(Output(ids.SYMBOL_GRAPH, "figure", allow_duplicate=True),
                  Output(ids.LIVE_STATE, "data", allow_duplicate=True),
                  Input(ids.LIVE_TICK, "n_intervals"), State(ids.LIVE_STATE, "data"), prevent_initial_call=True)
    def _live(_n: int, state: dict | None) -> Any:
        return live_update(reader, state)

    @app.callback(Output(ids.ALERTS_TABLE, "children"), Output(ids.ALERTS_PAGING, "data"),
                  Output(ids.ALERTS_NEWER, "disabled"), Output(ids.ALERTS_OLDER, "disabled"),
                  Output(ids.ALERTS_PAGE_INFO, "children"),
                  Input(ids.ALERTS_SYMBOL, "value"), Input(ids.ALERTS_RULE, "value"),
                  Input(ids.ALERTS_NEWER, "n_clicks"), Input(ids.ALERTS_OLDER, "n_clicks"),
                  State(ids.ALERTS_PAGING, "data"))
    def _alerts(symbol: str | None, rule: str | None, _newer: int, _older: int, paging: dict | None) -> Any:
        paging = paging or {"stack": [], "next": None}
        stack: list[str | None] = list(paging.get("stack") or [])
        trigger = ctx.triggered_id
        if trigger == ids.ALERTS_OLDER and paging.get("next"):
            stack.append(paging["next"])
        elif trigger == ids.ALERTS_NEWER and stack:
            stack.pop()
        elif trigger not in (ids.ALERTS_OLDER, ids.ALERTS_NEWER):
            stack = []  # a filter changed: back to the newest
        cursor = None
        if stack and stack[-1]:
            ts, aid = decode_cursor(stack[-1], [datetime, uuid.UUID])
            cursor = (ts, aid)
        try:
            rows = reader.alerts_feed(symbol=symbol or None, rule=rule or None, cursor=cursor,
                                      limit=ALERTS_PAGE_SIZE + 1)
        except TransientError:
            return html.P(_UNREACHABLE, className="muted"), no_update, True, True, ""
        more = len(rows) > ALERTS_PAGE_SIZE
        rows = rows[:ALERTS_PAGE_SIZE]
        nxt = encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if more else None
        info = f"page {len(stack) + 1}" if rows else ""
        return alerts_table(rows), {"stack": stack, "next": nxt}, not stack, not more, info

    @app.callback(Output(ids.HEALTH_TABLE, "children"), Output(ids.HEALTH_SAMPLES, "data"),
                  Input(ids.HEALTH_TICK, "n_intervals"), State(ids.HEALTH_SAMPLES, "data"))
    def _health(_n: int | None, previous: dict | None) -> Any:
        if not settings.metrics_urls():
            raise PreventUpdate
        rows, samples = health_rows(settings, previous)
        return health_table(rows), samples


def symbol_data(reader: Reader, settings: DashboardSettings, symbol: str, interval: str, window: str,
                overlays: list[str], theme: str) -> tuple[Any, Any, Any, Any]:
    """The symbol view's data callback: figure, side panel, live state, status line."""
    if not symbol or not _SYMBOL_RE.fullmatch(symbol) or not interval or not _INTERVAL_RE.fullmatch(interval) \
            or window not in WINDOWS:
        raise PreventUpdate
    try:
        chart = reader.chart(symbol, interval, window, settings.dashboard_max_points)
    except TransientError:
        return empty_figure(_UNREACHABLE, theme), [], None, _UNREACHABLE
    if chart.empty:
        return (empty_figure(f"No bars for {symbol} {interval} yet", theme), forecast_panel(chart),
                {"symbol": symbol, "interval": interval, "bar": None, "ind": None}, "")
    figure = symbol_figure(chart, theme, overlays)
    last_ind = chart.indicators["ts"][-1] if chart.indicators["ts"] else None
    # Downsampled charts hold bucket starts: live bars continue after the window's real end.
    state = {"symbol": symbol, "interval": interval, "bar": chart.end.isoformat(),
             "ind": (chart.end if chart.bucket_seconds else last_ind or chart.start).isoformat()}
    points = len(chart.bars["ts"])
    status = [html.Span(f"{points:,} {'buckets' if chart.bucket_seconds else 'bars'}"),
              html.Span(f" of {chart.bucket_seconds // 60} min" if chart.bucket_seconds else ""),
              html.Span(f" · last bar {chart.end:%Y-%m-%d %H:%M} UTC ({_ago(chart.end)})"),
              _badge(chart.source) or ""]
    return figure, forecast_panel(chart), state, status


def live_update(reader: Reader, state: dict | None) -> tuple[Any, Any]:
    """New bars and indicator rows since the figure's last ones, appended with ``Patch``."""
    if not state or not state.get("bar"):
        raise PreventUpdate
    symbol, interval = state["symbol"], state["interval"]
    last_bar = datetime.fromisoformat(state["bar"])
    last_ind = datetime.fromisoformat(state["ind"]) if state.get("ind") else last_bar
    try:
        with reader.batch() as r:
            newest = r.last_ts(symbol, interval)
            bars = r.bars(symbol, interval, after=last_bar, limit=500) if newest and newest > last_bar else []
            ind = r.indicators(symbol, interval, after=last_ind, limit=500)
    except TransientError:
        raise PreventUpdate from None
    if not bars and not ind:
        raise PreventUpdate
    patch = Patch()
    for trace, props in live_patch_arrays(bars, ind).items():
        for prop, values in props.items():
            patch["data"][trace][prop].extend(values)
    new_state = dict(state)
    if bars:
        new_state["bar"] = bars[-1][0].isoformat()
    if ind:
        new_state["ind"] = ind[-1][0].isoformat()
    return patch, new_state
