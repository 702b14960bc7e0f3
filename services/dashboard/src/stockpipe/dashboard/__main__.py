"""``python -m stockpipe.dashboard``: the dashboard under gunicorn (never Flask's debug server).

Wiring only: settings (a bad one exits 2 with one line), logging, the metrics directory that
prometheus-client's multiprocess mode shares between gunicorn workers, then gunicorn itself.
Each worker builds its own app (and its own connection pool) after the fork.
"""

from __future__ import annotations

import os
import shutil
import tempfile

# Before anything imports prometheus_client: it picks its value store (per-process memory or
# the shared files) when first imported, and workers inherit the master's modules.
_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(
    tempfile.gettempdir(), f"stockpipe-dashboard-metrics-{os.getpid()}")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _MULTIPROC_DIR

import logging  # noqa: E402
from typing import Any  # noqa: E402

from gunicorn.app.base import BaseApplication  # noqa: E402

from stockpipe.common.lifecycle import run_main  # noqa: E402
from stockpipe.common.logs import configure  # noqa: E402
from stockpipe.common.settings import load  # noqa: E402
from stockpipe.dashboard.settings import DashboardSettings  # noqa: E402

logger = logging.getLogger("stockpipe.dashboard")


def _fresh_metrics_dir(path: str) -> None:
    """Empty the multiprocess directory: files of a previous run would be summed in."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700, exist_ok=True)


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class _Gunicorn(BaseApplication):
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": [f"{s.http_host}:{s.http_port}"],
            "workers": s.dashboard_workers,
            "threads": s.dashboard_threads,
            "worker_class": "gthread",
            # A chart query is bounded by statement_timeout (10 s); 30 s means a stuck worker.
            "timeout": 30,
            "graceful_timeout": max(1, int(s.shutdown_timeout)),
            "keepalive": 5,
            "child_exit": _child_exit,
            "proc_name": s.service_name,
            "errorlog": "-",
            "loglevel": s.log_level,
            "worker_tmp_dir": tempfile.gettempdir(),
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from stockpipe.dashboard.app import create_app

        configure(self.settings.log_level, self.settings.log_format, self.settings.service_name)
        return create_app(self.settings).server


def main() -> int:
    settings = load(DashboardSettings)
    settings.dsn()  # a malformed POSTGRES_DSN fails here, with exit 2
    configure(settings.log_level, settings.log_format, settings.service_name)
    _fresh_metrics_dir(_MULTIPROC_DIR)
    logger.info("starting %s with %s", settings.service_name, settings.safe_view())
    logger.info("dashboard on http://%s:%d/ (API /api/v1, OpenAPI /api/v1/openapi.json)",
                "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host, settings.http_port)
    try:
        _Gunicorn(settings).run()
    finally:
        shutil.rmtree(_MULTIPROC_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    run_main(main)
