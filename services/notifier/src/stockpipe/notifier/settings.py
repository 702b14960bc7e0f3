"""Settings of the notifier: the endpoints, the retry policy, the dashboard link."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from stockpipe.common.errors import SettingsError
from stockpipe.common.settings import CommonSettings, Secret, setting
from stockpipe.notifier.delivery import RetryPolicy
from stockpipe.notifier.endpoints import Endpoint, parse_endpoints

__all__ = ["NotifierSettings"]


@dataclass(frozen=True, kw_only=True)
class NotifierSettings(CommonSettings):
    service_name: str = setting("notifier", help="name in logs, client ids and consumer groups")
    notifier_group_id: str = setting("stockpipe-notifier", help="Kafka consumer group of the notifier")
    # A secret: the URLs may hold tokens and the json endpoints hold signing keys.
    notify_endpoints: Secret = setting(Secret(""), help="JSON list of webhook endpoints (see Notifier); empty = none")
    dashboard_url: str = setting("http://127.0.0.1:8050",
                                 help="dashboard base URL for alert links ({DASHBOARD_URL}/symbol/AAPL); empty = no link")
    alert_max_age: float = setting(3600.0, ge=0,
                                   help="seconds after its bar closed that an alert is still sent (0 = no limit)")
    notify_max_attempts: int = setting(8, ge=1, le=100, help="delivery attempts per alert and endpoint before the dlq")
    notify_retry_initial: float = setting(1.0, gt=0, help="seconds before the first retry; doubles per attempt, jittered")
    notify_retry_max: float = setting(60.0, gt=0, help="longest wait between two attempts, in seconds")
    notify_retry_after_max: float = setting(600.0, ge=0, help="longest Retry-After honoured, in seconds")
    notify_timeout: float = setting(10.0, gt=0, le=300, help="seconds per HTTP call (connect, each read and write)")
    notifier_batch_size: int = setting(100, ge=1, le=10_000, help="max alerts per batch")
    notifier_batch_timeout: float = setting(0.1, gt=0, le=10, help="seconds to wait for a batch to fill")
    notify_reenable: str = setting("", pattern=r"(all|[1-9][0-9]*(,[1-9][0-9]*)*)?",
                                   help="endpoints to send to again although they answered 410 Gone before: their "
                                   "numbers in NOTIFY_ENDPOINTS (1,3) or all; read at start, then remove it")

    def __post_init__(self) -> None:
        if self.dashboard_url and urlsplit(self.dashboard_url).scheme not in ("http", "https"):
            raise SettingsError("DASHBOARD_URL", self.dashboard_url, "an http:// or https:// URL, or empty")

    def endpoints(self) -> list[Endpoint]:
        """The parsed ``NOTIFY_ENDPOINTS``; raises :class:`SettingsError` (never showing the value)."""
        try:
            return parse_endpoints(self.notify_endpoints.get())
        except ValueError as exc:
            raise SettingsError("NOTIFY_ENDPOINTS", "***", f"a JSON list of endpoints ({exc})") from None

    def reenabled(self, endpoints: list[Endpoint]) -> list[Endpoint]:
        """The endpoints ``NOTIFY_REENABLE`` names; raises :class:`SettingsError` for a number beyond them."""
        value = self.notify_reenable.strip()
        if not value:
            return []
        if value == "all":
            return list(endpoints)
        numbers = {int(n) for n in value.split(",")}
        if max(numbers) > len(endpoints):
            raise SettingsError("NOTIFY_REENABLE", self.notify_reenable,
                                f"'all' or endpoint numbers from 1 to {len(endpoints)} (NOTIFY_ENDPOINTS has "
                                f"{len(endpoints)})")
        return [ep for ep in endpoints if ep.index in numbers]

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.notify_max_attempts, initial=self.notify_retry_initial,
                           cap=max(self.notify_retry_max, self.notify_retry_initial),
                           retry_after_max=self.notify_retry_after_max, timeout=self.notify_timeout,
                           max_age=self.alert_max_age)
