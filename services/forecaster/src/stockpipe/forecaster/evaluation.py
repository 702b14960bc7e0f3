"""Honest accuracy: every forecast scored on the bars it predicted, once they arrive.

Rolling-origin evaluation: each forecast run is an origin; its points are compared with the
closes of their target bars, which no fit had seen when the forecast was made. Per step ahead
(1 and ``ARIMA_FORECAST_STEPS``, or the regression's horizon):

- MAE and RMSE, in price units;
- MASE: the model's MAE divided by the MAE of the naive last-value forecast (the close at
  the origin) on the very same targets. Below 1 beats naive; on a random walk expect ~1.
  (Scaled by the out-of-sample naive error rather than the in-sample one of Hyndman &
  Koehler, so that 1 means "as good as doing nothing" on the bars actually forecast.)
- coverage: the fraction of targets inside [lo, hi], to compare with the nominal level.

The same :class:`Scorer` serves the running service (fed bar by bar), the tests and the
benchmark (:func:`backtest`), so the figures in the README are the service's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Scorer", "backtest", "MIN_SCORED"]

# Fewer scored points than this and "beats naive" is not claimed either way.
MIN_SCORED = 10


@dataclass
class _Sums:
    n: int = 0
    abs_err: float = 0.0
    sq_err: float = 0.0
    naive_abs: float = 0.0
    covered: int = 0
    with_interval: int = 0

    def add(self, y: float, yhat: float, lo: float | None, hi: float | None, naive: float) -> None:
        e = y - yhat
        self.n += 1
        self.abs_err += abs(e)
        self.sq_err += e * e
        self.naive_abs += abs(y - naive)
        if lo is not None and hi is not None:
            self.with_interval += 1
            self.covered += lo <= y <= hi

    def summary(self) -> dict[str, Any]:
        if not self.n:
            return {"n": 0}
        mae = self.abs_err / self.n
        naive_mae = self.naive_abs / self.n
        mase = mae / naive_mae if naive_mae > 0 else None
        return {
            "n": self.n,
            "mae": mae,
            "rmse": math.sqrt(self.sq_err / self.n),
            "naive_mae": naive_mae,
            "mase": mase,
            "coverage": self.covered / self.with_interval if self.with_interval else None,
            "sums": [self.n, self.abs_err, self.sq_err, self.naive_abs, self.covered, self.with_interval],
        }


@dataclass
class Scorer:
    """Scores one model's forecasts of one series; ``level`` is the nominal coverage."""

    level: float
    _pending: dict[Hashable, list[tuple[int, float, float | None, float | None, float]]] = field(
        default_factory=dict)
    _sums: dict[int, _Sums] = field(default_factory=dict)

    def add(self, origin_close: float, points: Iterable[tuple[int, Hashable, float, float | None, float | None]]
            ) -> None:
        """Remember a forecast: (step, target, yhat, lo, hi) per point, made at ``origin_close``."""
        for step, target, yhat, lo, hi in points:
            self._pending.setdefault(target, []).append((step, yhat, lo, hi, origin_close))

    def observe(self, target: Hashable, close: float) -> int:
        """Score the points aimed at ``target``; returns how many were scored."""
        points = self._pending.pop(target, None)
        if not points:
            return 0
        for step, yhat, lo, hi, naive in points:
            self._sums.setdefault(step, _Sums()).add(close, yhat, lo, hi, naive)
        return len(points)

    def forget_before(self, target: Any) -> None:
        """Drop points aimed before ``target`` (bars that never came: a gap in the feed)."""
        for t in [t for t in self._pending if t < target]:  # type: ignore[operator]
            del self._pending[t]

    def metrics(self) -> dict[str, Any]:
        """Per step (as a string key) the summary, plus the nominal level and a verdict.

        ``beats_naive`` is True when MASE < 1 at every step with at least MIN_SCORED points,
        False when some such step has MASE >= 1, None when nothing has been scored enough.
        """
        steps = {str(k): s.summary() for k, s in sorted(self._sums.items())}
        judged = [s["mase"] for s in steps.values() if s["n"] >= MIN_SCORED and s.get("mase") is not None]
        verdict = None if not judged else all(m < 1 for m in judged)
        return {"level": self.level, "steps": steps, "beats_naive": verdict}

    def restore(self, metrics: dict[str, Any]) -> None:
        """Continue from a stored ``metrics()`` (a restart keeps the track record)."""
        for k, s in metrics.get("steps", {}).items():
            if "sums" in s:
                n, a, q, na, c, w = s["sums"]
                self._sums[int(k)] = _Sums(int(n), float(a), float(q), float(na), int(c), int(w))


ForecastFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def backtest(closes: np.ndarray, forecast: ForecastFn, *, start: int, every: int, steps: int,
             level: float) -> dict[str, Any]:
    """Rolling-origin evaluation of ``forecast`` over ``closes`` (prices).

    Origins are ``start, start + every, ...``; at each, ``forecast(closes[: origin + 1])``
    returns (yhat, lo, hi) in prices for 1..steps bars ahead, and the points are scored against
    the closes that follow. Returns :meth:`Scorer.metrics`.
    """
    closes = np.asarray(closes, dtype=np.float64)
    scorer = Scorer(level)
    n = len(closes)
    for origin in range(start, n - 1, every):
        yhat, lo, hi = forecast(closes[: origin + 1])
        scorer.add(float(closes[origin]), ((k + 1, origin + k + 1, float(yhat[k]), float(lo[k]), float(hi[k]))
                                           for k in range(steps) if origin + k + 1 < n))
        for t in range(origin + 1, min(origin + steps, n - 1) + 1):
            scorer.observe(t, float(closes[t]))
    return scorer.metrics()
