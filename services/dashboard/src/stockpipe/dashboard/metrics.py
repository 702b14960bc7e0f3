"""The dashboard's own Prometheus metrics, and /metrics under several gunicorn workers.

gunicorn runs the app in several processes; each has its own counters. prometheus-client's
multiprocess mode keeps every process's values in files under ``PROMETHEUS_MULTIPROC_DIR``
and sums them at scrape time, so a scrape answered by any worker shows the whole server.
``__main__`` empties that directory at start and marks exited workers dead.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = ["REQUESTS", "REQUEST_SECONDS", "render", "CONTENT_TYPE_LATEST"]

REQUESTS = Counter("stockpipe_dashboard_requests", "HTTP requests served, by route kind and status code",
                   ["route", "code"])
REQUEST_SECONDS = Histogram(
    "stockpipe_dashboard_request_seconds", "Time to answer a request, by route kind", ["route"],
    # From a cached asset (1 ms) to a slow chart under load (5 s).
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5))


def render() -> bytes:
    """The metrics text: summed over all workers in multiprocess mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
