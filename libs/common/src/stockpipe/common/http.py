"""The HTTP thread every service runs: ``/metrics``, ``/healthz``, ``/readyz``.

- ``/healthz`` (liveness): 200 while the main loop has called :meth:`Health.beat` within
  ``liveness_timeout`` seconds; a loop waiting out an outage keeps beating.
- ``/readyz`` (readiness): 200 when every registered check passes (Kafka, PostgreSQL...),
  else 503 with ``{"status": "unavailable", "reasons": {...}}``. Checks run at most once a
  second however often probes come, so a busy probe never loads the dependencies.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from stockpipe.common.errors import SettingsError
from stockpipe.common.logs import mask_secrets
from stockpipe.common.metrics import DEPENDENCY_UP

__all__ = ["Health", "HealthServer"]

logger = logging.getLogger(__name__)

Check = Callable[[], None]  # raises with a reason when the dependency is not usable


class Health:
    """Liveness heartbeat and readiness checks, shared by the main loop and the HTTP thread."""

    def __init__(self, liveness_timeout: float = 60.0, check_interval: float = 1.0) -> None:
        self.liveness_timeout = liveness_timeout
        self._check_interval = check_interval
        self._last_beat = time.monotonic()
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, str]] | None = None

    def beat(self) -> None:
        """Called by the main loop on every turn, including while it waits out an outage."""
        self._last_beat = time.monotonic()

    def add_check(self, name: str, check: Check) -> None:
        # Under the lock: a probe iterating the checks while the main thread adds one
        # raised "dictionary changed size during iteration" (seen in a container smoke test).
        with self._lock:
            self._checks[name] = check
            self._cached = None

    def alive(self) -> tuple[bool, float]:
        age = time.monotonic() - self._last_beat
        return age <= self.liveness_timeout, age

    def failures(self) -> dict[str, str]:
        """Name → reason for each failing check; empty when ready."""
        with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self._check_interval:
                return self._cached[1]
            failed: dict[str, str] = {}
            for name, check in list(self._checks.items()):
                try:
                    check()
                except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
                    failed[name] = mask_secrets(f"{type(exc).__name__}: {exc}".strip())[:500]
                DEPENDENCY_UP.labels(name).set(0 if name in failed else 1)
            self._cached = (time.monotonic(), failed)
            return failed


class _Handler(BaseHTTPRequestHandler):
    health: Health  # set on the subclass made per server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, age = self.health.alive()
            body = {"status": "ok" if ok else "stalled", "last_beat_seconds_ago": round(age, 3)}
            self._json(200 if ok else 503, body)
        elif path == "/readyz":
            failed = self.health.failures()
            if failed:
                self._json(503, {"status": "unavailable", "reasons": failed})
            else:
                self._json(200, {"status": "ready"})
        else:
            self._json(404, {"error": f"no such path {path}"})

    def _json(self, code: int, body: dict) -> None:
        self._send(code, json.dumps(body).encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        logger.debug("http %s", format % args)


class HealthServer:
    """Serves :class:`Health` and the Prometheus registry from a daemon thread."""

    def __init__(self, health: Health, host: str = "0.0.0.0", port: int = 8000) -> None:
        handler = type("Handler", (_Handler,), {"health": health})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:  # taken, or not an address of this machine: a setting to fix
            raise SettingsError("HTTP_PORT", str(port), f"a free port on {host} ({exc.strerror})") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        self._thread.start()
        logger.info("serving /metrics /healthz /readyz on port %d", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
