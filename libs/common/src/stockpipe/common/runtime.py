"""What every service starts with: logging, signals, and the health/metrics HTTP thread.

    settings = load(IngestorSettings)
    with Runtime(settings) as rt:              # logs configured, SIGTERM handled, HTTP up
        rt.health.add_check("postgres", db.check)
        while not rt.shutdown.requested: ...
"""

from __future__ import annotations

import logging
from types import TracebackType

from stockpipe.common.http import Health, HealthServer
from stockpipe.common.lifecycle import Shutdown
from stockpipe.common.logs import configure
from stockpipe.common.settings import CommonSettings

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)


class Runtime:
    """Logging, signal handling and the HTTP endpoints of one service process."""

    def __init__(self, settings: CommonSettings, *, serve_http: bool = True) -> None:
        configure(settings.log_level, settings.log_format, settings.service_name)
        self.settings = settings
        self.shutdown = Shutdown(settings.shutdown_timeout).install()
        self.health = Health(settings.liveness_timeout)
        self.http = HealthServer(self.health, settings.http_host, settings.http_port) if serve_http else None

    def __enter__(self) -> Runtime:
        logger.info("starting %s with %s", self.settings.service_name, self.settings.safe_view())
        if self.http:
            self.http.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.http:
            self.http.stop()
        if exc is None:
            logger.info("%s stopped cleanly", self.settings.service_name)
