"""Endpoints disabled by a 410 Gone, remembered in PostgreSQL across restarts (all the SQL).

A 410 says the receiver is gone for good (RFC 9110 15.5.11), so the notifier stops sending to
it, and a restart (a deploy, a crash, a node drain) must not bring it back: each restart would
cost one more alert dead-lettered as ``endpoint_gone``, and a Slack webhook that was revoked
would be called again. The table ``notifier_disabled_endpoints`` (migration 0005) holds one row
per disabled endpoint, keyed by :attr:`Endpoint.id` (SHA-256 of its URL: neither the URL, which
may hold a token, nor the secret is stored).

- At start (:func:`prepare`): the rows of the endpoints named by ``NOTIFY_REENABLE`` are
  deleted, then the disabled ones among the configured endpoints are read. PostgreSQL being
  away is waited out (the caller retries with backoff; ``/readyz`` says so).
- On a 410 (:class:`GoneRecorder`): the endpoint is disabled in memory at once and its row is
  written by a thread of its own, retried through a PostgreSQL outage, so no delivery waits
  for the database. A row still unwritten at shutdown is lost: the endpoint then answers 410
  once more after the next start (one more alert dead-lettered) and is remembered then.

Sending to an endpoint again: delete its row (``DELETE FROM notifier_disabled_endpoints
WHERE endpoint_id = '...'``, the id is in the log), give it a new URL, or start once with
``NOTIFY_REENABLE=<its number>`` (or ``all``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from stockpipe.common.db import Database
from stockpipe.common.errors import TransientError
from stockpipe.common.lifecycle import Backoff
from stockpipe.notifier.endpoints import Endpoint

__all__ = ["Disabled", "DisabledEndpoints", "GoneRecorder", "prepare"]

logger = logging.getLogger(__name__)

TABLE = "notifier_disabled_endpoints"


@dataclass(frozen=True)
class Disabled:
    """One remembered 410: which endpoint (by hash and by scheme://host), when, why."""

    endpoint_id: str
    endpoint: str
    disabled_at: datetime
    reason: str

    def describe(self) -> str:
        return f"{self.reason} on {self.disabled_at.isoformat(timespec='seconds')}"


class DisabledEndpoints:
    """The rows of ``notifier_disabled_endpoints``; each call is one transaction.

    Raises :class:`TransientError` while PostgreSQL is unreachable.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, ids: Collection[str]) -> dict[str, Disabled]:
        """The disabled endpoints among ``ids``, by id."""
        with self.db.transaction() as cur:
            cur.execute(f"SELECT endpoint_id, endpoint, disabled_at, reason FROM {TABLE} "
                        "WHERE endpoint_id = ANY(%s)", (list(ids),))
            return {row[0]: Disabled(*row) for row in cur.fetchall()}

    def enable(self, ids: Collection[str]) -> list[Disabled]:
        """Forget the 410 of ``ids``; returns the rows deleted."""
        if not ids:
            return []
        with self.db.transaction() as cur:
            cur.execute(f"DELETE FROM {TABLE} WHERE endpoint_id = ANY(%s) "
                        "RETURNING endpoint_id, endpoint, disabled_at, reason", (list(ids),))
            return [Disabled(*row) for row in cur.fetchall()]

    def disable(self, endpoint_id: str, endpoint: str, reason: str) -> None:
        """Remember a 410 (the first one is kept: its time says since when)."""
        with self.db.transaction() as cur:
            cur.execute(f"INSERT INTO {TABLE} (endpoint_id, endpoint, reason) VALUES (%s, %s, %s) "
                        "ON CONFLICT (endpoint_id) DO NOTHING", (endpoint_id, endpoint, reason))


def how_to_enable(ep: Endpoint) -> str:
    """The three ways to send to a disabled endpoint again, for log lines."""
    return (f"to send to it again, delete its row from {TABLE} (endpoint_id '{ep.id}'), change its url, "
            f"or start once with NOTIFY_REENABLE={ep.index}")


def prepare(store: DisabledEndpoints, endpoints: Sequence[Endpoint], reenable: Sequence[Endpoint]) -> dict[str, str]:
    """At start: forget the 410s of ``reenable``, then the disabled endpoints (id -> why).

    Logs one line per endpoint enabled again and per endpoint that stays disabled.
    """
    for row in store.enable({ep.id for ep in reenable}):
        for ep in reenable:
            if ep.id == row.endpoint_id:
                logger.warning("endpoint #%d %s: enabled again by NOTIFY_REENABLE (it had answered %s); "
                               "remove NOTIFY_REENABLE, or each start forgets this endpoint's 410 again",
                               ep.index, ep.name, row.describe())
    disabled = store.load({ep.id for ep in endpoints})
    for ep in endpoints:
        row = disabled.get(ep.id)
        if row is not None:
            logger.error("endpoint #%d %s is disabled: it answered %s, and no alert is sent to it; %s",
                         ep.index, ep.name, row.describe(), how_to_enable(ep))
    return {ep_id: row.describe() for ep_id, row in disabled.items()}


_STOP = object()


class GoneRecorder:
    """Writes 410s into the table from a thread of its own, retrying through outages."""

    def __init__(self, store: DisabledEndpoints, *, initial: float = 0.5, cap: float = 30.0) -> None:
        self.store = store
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = threading.Event()
        self._backoff = (initial, cap)
        self._thread = threading.Thread(target=self._run, name="notify-gone", daemon=True)
        self._thread.start()

    def record(self, ep: Endpoint, reason: str = "410 Gone") -> None:
        """Remember that ``ep`` is gone (returns at once)."""
        self._queue.put((ep, reason))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            ep, reason = item
            backoff = Backoff(*self._backoff)
            while True:
                try:
                    self.store.disable(ep.id, ep.name, reason)
                except TransientError as exc:
                    if self._closing.is_set():
                        logger.error("endpoint #%d %s: its 410 could not be remembered (%s); after a restart "
                                     "it gets one alert more and is disabled again", ep.index, ep.name, exc)
                        break
                    delay = backoff.next_delay()
                    logger.warning("endpoint #%d %s: remembering its 410 failed, retrying in %.1fs: %s",
                                   ep.index, ep.name, delay, exc)
                    self._closing.wait(delay)  # on close: one last attempt
                    continue
                except Exception:  # a bug (the table is missing?): say so, keep the process delivering
                    logger.exception("endpoint #%d %s: remembering its 410 failed", ep.index, ep.name)
                    break
                logger.info("endpoint #%d %s: disabled across restarts (%s, endpoint_id '%s')",
                            ep.index, ep.name, TABLE, ep.id)
                break

    def close(self, timeout: float = 2.0) -> None:
        """Write what is pending (one more attempt each during an outage), for up to ``timeout`` s."""
        self._closing.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)
