"""Model fits in worker processes, so a fit never holds up consuming.

- :func:`cpu_budget`: the CPUs this process may use: its affinity mask, capped by a cgroup
  CPU quota (``cpu.max`` v2, ``cpu.cfs_quota_us`` v1) as Kubernetes sets from a CPU limit.
- :class:`FitPool`: that many worker processes (``forkserver``: never a fork of a process
  whose librdkafka threads run), each with BLAS/OpenMP pinned to one thread (two threads per
  fit under load ran 50-100x slower here). Results come back through callbacks on the
  pool's result thread. :meth:`FitPool.terminate` abandons fits in flight (SIGTERM).
- :func:`arima_task`, :func:`linreg_task`: what a worker runs: plain arrays and numbers in,
  a JSON-able dict out.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from stockpipe.common.lifecycle import pin_blas_threads

__all__ = ["cpu_budget", "FitPool", "arima_task", "linreg_task"]

logger = logging.getLogger(__name__)


def _cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def cpu_budget(root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: affinity, capped by the cgroup quota (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


# Signals the forkserver must never die of. `make run` stops a service by signalling its
# whole process group, and a terminal's Ctrl-C reaches the foreground group: a forkserver
# killed that way made the pool see every worker as dead (its sentinels closed) and restart
# them through the dead forkserver, a traceback on every stop. It starts with them blocked
# (the mask survives fork and exec) and exits by itself when the service's pipe closes.
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _init_worker() -> None:
    # Workers take SIGTERM again (FitPool.terminate ends them with it), in a process group of
    # their own so that a signal to the service's group does not reach them: the service ends
    # them itself; a worker whose service died exits when the pool's pipe closes.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    try:
        os.setpgid(0, 0)
    except OSError:  # pragma: no cover - already a group leader
        pass
    pin_blas_threads()  # before numpy loads in this process
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        pass


def arima_task(log_closes: Any, max_p: int, max_d: int, max_q: int, steps: int, level: float,
               params: dict | None, previous: dict | None) -> dict[str, Any]:
    """Fit (unless ``params`` is given) and forecast; the fallbacks are decided here.

    - ``params`` given (a model the registry already has): forecast from it, no fit.
    - a flat or degenerate series: the naive model (``fresh`` so it is stored).
    - a failed fit: the ``previous`` model forecasts (``failed`` says why); no previous: naive.
    Returns {params, mean, lo, hi (log prices), fresh, failed, seconds}.
    """
    from stockpipe.forecaster.models import Degenerate, FitFailed, fit_arima, forecast_log, naive_params

    start = time.perf_counter()
    failed = None
    fresh = params is None
    if params is None:
        try:
            params = fit_arima(log_closes, max_p, max_d, max_q)
        except Degenerate:
            params = naive_params(log_closes)
        except FitFailed as exc:
            failed = str(exc)
            params, fresh = (previous, False) if previous else (naive_params(log_closes), True)
    try:
        mean, lo, hi = forecast_log(params, log_closes, steps, level)
    except FitFailed as exc:  # the model does not carry to this window: the naive forecast does
        failed = failed or str(exc)
        params, fresh = naive_params(log_closes), True
        mean, lo, hi = forecast_log(params, log_closes, steps, level)
    return {"params": params, "mean": mean.tolist(), "lo": lo.tolist(), "hi": hi.tolist(),
            "fresh": fresh, "failed": failed, "seconds": time.perf_counter() - start}


def linreg_task(x: Any, y: Any, window: int, horizon: int, test_size: float, random_state: int) -> dict[str, Any]:
    """Train the regression; {params, failed, seconds} (params None when it failed)."""
    from stockpipe.forecaster.models import FitFailed, fit_linreg

    start = time.perf_counter()
    try:
        params = fit_linreg(x, y, window=window, horizon=horizon, test_size=test_size, random_state=random_state)
        failed = None
    except FitFailed as exc:
        params, failed = None, str(exc)
    return {"params": params, "failed": failed, "seconds": time.perf_counter() - start}


class FitPool:
    """``workers`` processes running tasks; callbacks arrive on the pool's result thread."""

    def __init__(self, workers: int) -> None:
        pin_blas_threads()  # inherited by the forkserver and every worker it starts
        ctx = multiprocessing.get_context("forkserver")
        self.workers = workers
        # The forkserver starts here, from this thread: with the stop signals blocked (see
        # _STOP_SIGNALS). One that comes meanwhile is delivered when the mask is restored.
        # The resource tracker first: starting it unblocks SIGINT and SIGTERM on its way out.
        resource_tracker.ensure_running()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self._pool = ctx.Pool(workers, initializer=_init_worker)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._closed = False

    def submit(self, fn: Callable[..., Any], args: tuple, on_done: Callable[[Any], None],
               on_error: Callable[[BaseException], None]) -> None:
        self._pool.apply_async(fn, args, callback=on_done, error_callback=on_error)

    def terminate(self) -> None:
        """Abandon fits in flight: the workers are killed, no callback comes for them."""
        if not self._closed:
            self._closed = True
            self._pool.terminate()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers; what has not finished within ``timeout`` is abandoned."""
        if self._closed:
            return
        self._pool.close()
        deadline = time.monotonic() + timeout
        # Pool.join has no timeout: wait on the worker processes ourselves, then terminate.
        while time.monotonic() < deadline and any(p.is_alive() for p in self._pool._pool):  # noqa: SLF001
            time.sleep(0.05)
        self.terminate()
