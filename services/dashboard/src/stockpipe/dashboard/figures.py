"""Plotly figures as plain dicts, built by pure functions (tests call them directly).

Dicts rather than ``plotly.graph_objects``: no per-point validation, so a 2,000-candle
figure costs a few milliseconds. The symbol view's traces sit at fixed indices
(:data:`TRACE`), so the live view appends new bars to them with ``Patch`` and the overlay
toggles flip their ``visible`` without redrawing the figure.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from stockpipe.dashboard.queries import Chart

__all__ = [
    "TRACE",
    "OVERLAYS",
    "THEMES",
    "symbol_figure",
    "empty_figure",
    "theme_layout",
    "live_patch_arrays",
    "sparkline_svg",
    "model_accuracy",
]

# Trace index of each fixed trace of the symbol figure (forecasts follow them).
TRACE = {
    "candles": 0, "sma_short": 1, "sma_long": 2, "ema_short": 3, "ema_long": 4,
    "bb_upper": 5, "bb_middle": 6, "bb_lower": 7, "alerts": 8, "volume": 9,
    "rsi": 10, "macd": 11, "macd_signal": 12, "macd_hist": 13, "volatility": 14,
}
FORECAST_START = 15
# Overlay toggle -> the traces it shows or hides.
OVERLAYS = {"sma": ("sma_short", "sma_long"), "ema": ("ema_short", "ema_long"),
            "bollinger": ("bb_upper", "bb_middle", "bb_lower"), "alerts": ("alerts",)}

THEMES: dict[str, dict[str, str]] = {
    "light": {"text": "#1f2933", "grid": "#e4e7eb", "up": "#0f9d58", "down": "#d93025", "volume": "#9aa5b1",
              "sma": "#1a73e8", "sma2": "#7b61ff", "ema": "#f29900", "ema2": "#e8710a", "bb": "#5f6b7a",
              "rsi": "#7b61ff", "macd": "#1a73e8", "signal": "#f29900", "vol": "#d93025",
              "forecast": "#c2185b", "band": "rgba(194,24,91,0.15)", "alert": "#f29900"},
    "dark": {"text": "#e4e7eb", "grid": "#2e3a47", "up": "#34d399", "down": "#f87171", "volume": "#52606d",
             "sma": "#60a5fa", "sma2": "#a78bfa", "ema": "#fbbf24", "ema2": "#fb923c", "bb": "#9aa5b1",
             "rsi": "#a78bfa", "macd": "#60a5fa", "signal": "#fbbf24", "vol": "#f87171",
             "forecast": "#f472b6", "band": "rgba(244,114,182,0.18)", "alert": "#fbbf24"},
}

# Row domains (bottom, top) of the linked subplots: price, volume, RSI, MACD, volatility.
_ROWS = {"y": (0.47, 1.0), "y2": (0.37, 0.455), "y3": (0.245, 0.355), "y4": (0.12, 0.23), "y5": (0.0, 0.105)}


def _iso(values: Sequence[Any]) -> np.ndarray:
    """Times as epoch milliseconds (a date axis reads numbers as ms): numpy arrays go to JSON
    in one orjson call, where plotly walks a Python list element by element (5x slower for
    a 2,000-candle figure), and 13 digits are half an ISO string's size."""
    return np.array([v.timestamp() * 1000 if isinstance(v, datetime) else v for v in values], dtype=np.float64) \
        .round().astype(np.int64) if len(values) else np.array([], dtype=np.int64)


def _num(values: Sequence[Any]) -> np.ndarray:
    """Numbers as a float array; None (warming up) becomes NaN, which goes out as null."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _line(name: str, x: list, y: list, color: str, *, yaxis: str = "y", visible: bool | str = True,
          dash: str | None = None, width: float = 1.3, legend: bool = True) -> dict[str, Any]:
    line: dict[str, Any] = {"color": color, "width": width}
    if dash:
        line["dash"] = dash
    return {"type": "scatter", "mode": "lines", "name": name, "x": x, "y": _num(y), "xaxis": "x", "yaxis": yaxis,
            "line": line, "visible": visible, "hoverinfo": "x+y+name", "connectgaps": False, "showlegend": legend}


def theme_layout(theme: str) -> dict[str, Any]:
    """The theme-dependent part of a layout (what a theme switch patches)."""
    t = THEMES.get(theme, THEMES["light"])
    axis = {"gridcolor": t["grid"], "zerolinecolor": t["grid"], "linecolor": t["grid"]}
    axes = ("xaxis", "yaxis", "yaxis2", "yaxis3", "yaxis4", "yaxis5")
    return {"font": {"color": t["text"]}, **{name: dict(axis) for name in axes}}


def empty_figure(message: str, theme: str = "light") -> dict[str, Any]:
    """A blank figure with a centred message (the empty state)."""
    t = THEMES.get(theme, THEMES["light"])
    return {"data": [], "layout": {
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)", "height": 300,
        "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": message, "showarrow": False, "font": {"size": 16, "color": t["text"]},
                         "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}]}}


def symbol_figure(chart: Chart, theme: str = "light", overlays: Sequence[str] = ("sma", "bollinger", "alerts")) -> dict[str, Any]:
    """The symbol view: candles + overlays + alerts, volume, RSI, MACD, volatility, forecasts."""
    t = THEMES.get(theme, THEMES["light"])
    on = set(overlays)
    b, ind = chart.bars, chart.indicators
    bx = _iso(b["ts"])
    ix = bx if ind["ts"] is b["ts"] else _iso(ind["ts"])  # downsampled: one list of bucket starts

    def shown(overlay: str) -> bool | str:
        return True if overlay in on else "legendonly"

    alerts = [a for a in chart.alerts if a.get("high") is not None]
    volume = _num(b["volume"])
    # FX series report no volume (Yahoo gives 0): a flat panel from 0 saying so, not an
    # autoscaled axis around zero with negative ticks.
    no_volume = not np.nanmax(volume, initial=0) > 0
    data: list[dict[str, Any]] = [
        {"type": "candlestick", "name": chart.symbol, "x": bx, "open": _num(b["open"]), "high": _num(b["high"]),
         "low": _num(b["low"]), "close": _num(b["close"]), "xaxis": "x", "yaxis": "y",
         "increasing": {"line": {"color": t["up"], "width": 1}, "fillcolor": t["up"]},
         "decreasing": {"line": {"color": t["down"], "width": 1}, "fillcolor": t["down"]}},
        _line("SMA short", ix, ind["sma_short"], t["sma"], visible=shown("sma")),
        _line("SMA long", ix, ind["sma_long"], t["sma2"], visible=shown("sma")),
        _line("EMA short", ix, ind["ema_short"], t["ema"], visible=shown("ema"), dash="dot"),
        _line("EMA long", ix, ind["ema_long"], t["ema2"], visible=shown("ema"), dash="dot"),
        _line("Bollinger upper", ix, ind["bb_upper"], t["bb"], visible=shown("bollinger"), dash="dash", width=1),
        _line("Bollinger middle", ix, ind["bb_middle"], t["bb"], visible=shown("bollinger"), width=0.8, legend=False),
        _line("Bollinger lower", ix, ind["bb_lower"], t["bb"], visible=shown("bollinger"), dash="dash", width=1),
        {"type": "scatter", "mode": "markers", "name": "alerts", "xaxis": "x", "yaxis": "y",
         "x": _iso([a["ts"] for a in alerts]), "y": [a["high"] * 1.004 for a in alerts],
         "text": [f"{a['rule']}: {a['message']}" for a in alerts], "hoverinfo": "x+text",
         "marker": {"symbol": "triangle-down", "size": 8, "color": t["alert"],
                    "line": {"width": 1, "color": t["text"]}}, "visible": shown("alerts")},
        {"type": "bar", "name": "volume", "x": bx, "y": volume, "xaxis": "x", "yaxis": "y2",
         "marker": {"color": t["volume"]}, "showlegend": False},
        _line("RSI", ix, ind["rsi"], t["rsi"], yaxis="y3", legend=False),
        _line("MACD", ix, ind["macd"], t["macd"], yaxis="y4", legend=False),
        _line("MACD signal", ix, ind["macd_signal"], t["signal"], yaxis="y4", legend=False),
        {"type": "bar", "name": "MACD histogram", "x": ix, "y": _num(ind["macd_hist"]), "xaxis": "x", "yaxis": "y4",
         "marker": {"color": t["volume"]}, "showlegend": False},
        _line("volatility", ix, ind["volatility"], t["vol"], yaxis="y5", legend=False),
    ]
    data += forecast_traces(chart.forecasts, t)

    layout: dict[str, Any] = {
        "uirevision": f"{chart.symbol}/{chart.interval}/{chart.window}",
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "margin": {"l": 55, "r": 15, "t": 36, "b": 30}, "height": 760, "hovermode": "x",
        "bargap": 0.1, "dragmode": "pan",
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "font": {"size": 11},
                   "bgcolor": "rgba(0,0,0,0)"},
        "modebar": {"orientation": "v", "bgcolor": "rgba(0,0,0,0)"},
        "xaxis": {"type": "date", "rangeslider": {"visible": False}, "anchor": "y5", "showspikes": True,
                  "spikemode": "across", "spikethickness": 1},
        "yaxis": {"domain": list(_ROWS["y"]), "title": {"text": "price"}},
        "yaxis2": {"domain": list(_ROWS["y2"]), "title": {"text": "no volume" if no_volume else "volume"},
                   **({"range": [0, 1], "showticklabels": False} if no_volume else {"rangemode": "tozero"})},
        "yaxis3": {"domain": list(_ROWS["y3"]), "title": {"text": "RSI"}, "range": [0, 100]},
        "yaxis4": {"domain": list(_ROWS["y4"]), "title": {"text": "MACD"}},
        "yaxis5": {"domain": list(_ROWS["y5"]), "title": {"text": "volatility"}},
        "shapes": [_hline(70, "y3", t), _hline(30, "y3", t)],
    }
    themed = theme_layout(theme)
    for key, value in themed.items():
        layout[key] = {**layout.get(key, {}), **value} if isinstance(value, dict) else value
    return {"data": data, "layout": layout}


def _hline(y: float, yref: str, t: Mapping[str, str]) -> dict[str, Any]:
    """RSI's overbought/oversold line across the whole x range."""
    return {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": yref, "y0": y, "y1": y,
            "line": {"color": t["bb"], "width": 1, "dash": "dot"}}


def forecast_traces(points: Sequence[Mapping[str, Any]], t: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per model of the latest run: its interval band (when it has one) and its line."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for p in points:
        by_model.setdefault(p["model"], []).append(p)
    traces = []
    for model, pts in by_model.items():
        pts = sorted(pts, key=lambda p: p["target_ts"])
        x = _iso([p["target_ts"] for p in pts])
        banded = [p for p in pts if p["lo"] is not None and p["hi"] is not None]
        if banded:
            bxs = _iso([p["target_ts"] for p in banded])
            traces.append({"type": "scatter", "mode": "lines", "name": f"{model} interval", "xaxis": "x",
                           "yaxis": "y", "x": np.concatenate([bxs, bxs[::-1]]),
                           "y": [p["hi"] for p in banded] + [p["lo"] for p in banded][::-1],
                           "fill": "toself", "fillcolor": t["band"], "line": {"width": 0},
                           "hoverinfo": "skip", "showlegend": False})
        traces.append({"type": "scatter", "mode": "lines+markers", "name": f"forecast {model}", "xaxis": "x",
                       "yaxis": "y", "x": x, "y": [p["yhat"] for p in pts], "marker": {"size": 4},
                       "line": {"color": t["forecast"], "width": 2, "dash": "dash"}})
    return traces


def live_patch_arrays(bars: Sequence[Sequence[Any]], indicators: Sequence[Sequence[Any]]) -> dict[int, dict[str, list]]:
    """Trace index -> {property: values to append} for new bars and indicator rows.

    ``bars`` rows are (ts, open, high, low, close, volume, ...); ``indicators`` rows are
    (ts, close, *INDICATOR_FIELDS) as :mod:`queries` returns them.
    """
    out: dict[int, dict[str, list]] = {}
    if bars:
        ts = _iso([r[0] for r in bars]).tolist()
        out[TRACE["candles"]] = {"x": ts, "open": [r[1] for r in bars], "high": [r[2] for r in bars],
                                 "low": [r[3] for r in bars], "close": [r[4] for r in bars]}
        out[TRACE["volume"]] = {"x": ts, "y": [r[5] for r in bars]}
    if indicators:
        from stockpipe.common.messages import INDICATOR_FIELDS

        ts = _iso([r[0] for r in indicators]).tolist()
        col = {name: [r[2 + i] for r in indicators] for i, name in enumerate(INDICATOR_FIELDS)}
        for name in ("sma_short", "sma_long", "ema_short", "ema_long", "bb_upper", "bb_middle", "bb_lower",
                     "rsi", "macd", "macd_signal", "macd_hist", "volatility"):
            out[TRACE[name]] = {"x": ts, "y": col[name]}
    return out


def sparkline_svg(values: Sequence[float], *, width: int = 120, height: int = 32, color: str = "#1a73e8") -> str:
    """A tiny line chart as an SVG data URI (one <img> per row: no plotly per sparkline)."""
    pts = [v for v in values if v is not None and math.isfinite(v)]
    if len(pts) < 2:
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"></svg>'
    else:
        lo, hi = min(pts), max(pts)
        span = (hi - lo) or 1.0
        step = (width - 2) / (len(pts) - 1)
        coords = " ".join(f"{1 + i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}"
                          for i, v in enumerate(pts))
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
               f'viewBox="0 0 {width} {height}"><polyline fill="none" stroke="{color}" stroke-width="1.5" '
               f'points="{coords}"/></svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _find_number(obj: Any, words: Sequence[str]) -> float | None:
    """The first number under a key containing one of ``words`` (case-insensitive), searched depth first."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if any(w in str(key).lower() for w in words) and isinstance(value, (int, float)) \
                    and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
        for value in obj.values():
            found = _find_number(value, words)
            if found is not None:
                return found
    return None


def model_accuracy(model: str, interval: str, registry: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The registry's newest accuracy figures for a forecast's ``model`` name.

    The registry rows are read as JSON (the forecaster may add columns), so every field is
    optional: a row matches when its ``kind`` (or ``model``) names the model, and its
    ``interval``, when it has one, is the series'. Figures: MASE against the naive forecast
    and the interval's coverage, wherever they sit in ``metrics``.
    """
    name = model.lower()
    for row in registry:  # newest first
        kind = str(row.get("kind") or row.get("model") or "").lower()
        if not kind or not (name == kind or name.startswith(kind) or kind.startswith(name)):
            continue
        if row.get("interval") not in (None, interval):
            continue
        metrics = row.get("metrics") if isinstance(row.get("metrics"), Mapping) else {}
        return {"kind": row.get("kind"), "trained_at": row.get("trained_at"),
                "mase": _find_number(metrics, ("mase",)), "coverage": _find_number(metrics, ("coverage",))}
    return {"kind": None, "trained_at": None, "mase": None, "coverage": None}
