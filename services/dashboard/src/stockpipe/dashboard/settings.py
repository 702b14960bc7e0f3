"""Settings of the dashboard (Dash UI + REST API behind gunicorn)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg2.extensions import make_dsn

from stockpipe.common.errors import SettingsError
from stockpipe.common.settings import CommonSettings, Secret, setting

__all__ = ["DashboardSettings"]

_METRICS_URL = r"^[a-z][a-z0-9-]{0,62}=https?://[^\s,]+$"
_ROLE = r"^([a-z_][a-z0-9_]{0,62})?$"


@dataclass(frozen=True, kw_only=True)
class DashboardSettings(CommonSettings):
    service_name: str = setting("dashboard", help="name in logs and in PostgreSQL's application_name")
    http_port: int = setting(8050, ge=0, le=65535, help="port of the dashboard, the API and /metrics /healthz /readyz")
    dashboard_workers: int = setting(2, ge=1, le=64, help="gunicorn worker processes")
    dashboard_threads: int = setting(4, ge=1, le=64, help="threads per gunicorn worker")
    dashboard_auth_user: str = setting("", help="HTTP basic auth user (empty with an empty password = no auth)")
    dashboard_auth_password: Secret = setting(Secret(""), help="HTTP basic auth password")
    dashboard_db_role: str = setting(
        "stockpipe_reader", pattern=_ROLE,
        help="PostgreSQL role the dashboard's sessions run as (SET ROLE; made by migration 0002, SELECT only); "
             "empty = the login user's own rights. Sessions are read-only either way")
    dashboard_metrics_urls: tuple[str, ...] = setting(
        (), pattern=_METRICS_URL,
        help="the services' /metrics for the Pipeline health page, comma separated name=url "
             "(e.g. producer=http://127.0.0.1:8001/metrics)")
    dashboard_live_interval: float = setting(
        0.5, gt=0, le=60, help="seconds between the live view's checks for new bars")
    dashboard_max_points: int = setting(
        2000, ge=50, le=20_000, help="most candles a chart ships; longer windows are downsampled in PostgreSQL")
    dashboard_cors_origins: tuple[str, ...] = setting(
        (), pattern=r"^https?://[^\s,/]+$", help="origins allowed to call /api/v1 from a browser (CORS); empty = none")
    dashboard_metrics_timeout: float = setting(2.0, gt=0, le=30, help="seconds to wait for a service's /metrics")

    def __post_init__(self) -> None:
        if bool(self.dashboard_auth_user) != bool(self.dashboard_auth_password):
            raise SettingsError("DASHBOARD_AUTH_PASSWORD" if self.dashboard_auth_user else "DASHBOARD_AUTH_USER",
                                "***" if self.dashboard_auth_password else "",
                                "both DASHBOARD_AUTH_USER and DASHBOARD_AUTH_PASSWORD set, or neither")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.dashboard_auth_user)

    def metrics_urls(self) -> dict[str, str]:
        """Service name -> its /metrics URL, in the order given."""
        return dict(item.split("=", 1) for item in self.dashboard_metrics_urls)

    def dsn(self) -> str:
        """The DSN of a read-only session: every transaction read-only, running as the reader role.

        Even a DSN naming a superuser gets no more than SELECT: ``role`` switches the session
        to ``DASHBOARD_DB_ROLE`` before the first statement.
        """
        # The planner cannot count date_bin buckets: it expects a month's 40,000 bars to make
        # ~25,000 of them (there are <= 2,000). jit=off: so costed, the chart statement
        # passed jit_above_cost and spent 0.7 s compiling a 0.1 s query; every statement here
        # is short, JIT never pays. work_mem=16MB: so costed, the aggregation's hash table did
        # not fit the default 4 MB, and it sorted the 40,000 rows instead, spilling to disk.
        options = ("-c default_transaction_read_only=on -c statement_timeout=10000 -c jit=off"
                   " -c work_mem=16MB")
        if self.dashboard_db_role:
            if not re.fullmatch(_ROLE, self.dashboard_db_role):  # pragma: no cover - checked by load()
                raise SettingsError("DASHBOARD_DB_ROLE", self.dashboard_db_role, "a role name")
            options += f" -c role={self.dashboard_db_role}"
        return make_dsn(super().dsn(), options=options)
