"""The delivery engine: one worker thread per endpoint, alerts to each endpoint in order.

:meth:`Dispatcher.submit` takes a batch of alerts, queues each one to every endpoint whose
filters it matches and returns a :class:`~concurrent.futures.Future` that completes when every
endpoint has finished with every alert of the batch: delivered, or given up on (dead-lettered,
skipped as too old, or its endpoint disabled). The consume loop commits a batch's offsets only
then, so a crash re-delivers (same ``webhook-id``) and loses nothing.

Per endpoint and alert (:meth:`_EndpointWorker.deliver`):

1. skipped if the endpoint is disabled by a 410 (now, or remembered from before a restart:
   :mod:`stockpipe.notifier.store`), if this process delivered the same alert id
   to it lately (analytics re-emits alerts after a crash), or if the alert is already older
   than ``max_age`` (its bar closed that long ago: a backfill or a long outage);
2. POSTed with a timeout, redirects not followed. 2xx: delivered. 410: the endpoint is
   disabled (logged, metric) and the alert dead-lettered (``endpoint_gone``). 408, 425, 429,
   5xx, a timeout or a connection error: retried after a capped exponential backoff with
   jitter, or after the ``Retry-After`` the receiver asked for if that is longer. Any other
   answer (3xx, 4xx) will not change on retry: dead-lettered (``delivery_rejected``);
3. after ``max_attempts`` attempts the alert is dead-lettered (``delivery_failed``); if the next
   retry would come after the alert's max age it is dead-lettered at once (``expired``).
4. Circuit breaker: once an alert has used up its attempts on an endpoint, the alerts queued
   behind it get one attempt each (dead-lettered at once if it fails) until one gets through.
   Alerts to one endpoint go in order, so without it an endpoint down for an hour would take
   ``max_attempts`` x backoff per alert and hold up every commit behind it.

What was given up on comes back in the batch's result (:class:`Failure`); the caller
dead-letters it before committing. A slow or failing endpoint holds only its own queue: the
others keep delivering. Once shutdown is requested no retry is waited for: the batch of an
alert that would need one fails with :class:`DeliveryStopped` (a :class:`TransientError`: not
committed, delivered again on the next start), and so does every batch after it.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from prometheus_client import Counter, Gauge, Histogram

from stockpipe.common.errors import TransientError
from stockpipe.common.lifecycle import Backoff
from stockpipe.common.messages import Alert, interval_length
from stockpipe.notifier.endpoints import Endpoint
from stockpipe.notifier.store import how_to_enable
from stockpipe.notifier.webhooks import USER_AGENT, json_body, json_headers, slack_body

__all__ = [
    "RetryPolicy",
    "Verdict",
    "classify",
    "parse_retry_after",
    "Response",
    "Sender",
    "HttpSender",
    "Dispatcher",
    "Failure",
    "DeliveryStopped",
    "DELIVERIES",
    "RETRIES",
    "ENDPOINTS_DISABLED",
    "DISABLED_ENDPOINTS",
]

logger = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO, and URLs may hold tokens (Slack's do).
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

DELIVERIES = Counter("stockpipe_notifier_deliveries", "Alerts finished per endpoint, by outcome",
                     ["endpoint", "outcome"])
RETRIES = Counter("stockpipe_notifier_retries", "Delivery attempts retried, per endpoint", ["endpoint"])
ENDPOINTS_DISABLED = Counter("stockpipe_notifier_endpoints_disabled",
                             "Endpoints disabled because they answered 410 Gone", ["endpoint"])
DISABLED_ENDPOINTS = Gauge("stockpipe_notifier_disabled_endpoints",
                           "Configured endpoints that are disabled (a 410 Gone now or remembered from before a "
                           "restart): alerts to them are skipped", ["endpoint"])
# A disabled endpoint's skipped alerts are logged at most this often (seconds), with a count.
_SKIP_LOG_EVERY = 600.0
# From receiving an alert to its endpoint's 2xx, retries included: 10 ms to 10 minutes.
DELIVERY_SECONDS = Histogram("stockpipe_notifier_delivery_seconds",
                             "Seconds from consuming an alert to its delivery, per endpoint", ["endpoint"],
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
REQUEST_SECONDS = Histogram("stockpipe_notifier_request_seconds", "Seconds per HTTP attempt, per endpoint",
                            ["endpoint"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one alert on one endpoint (seconds)."""

    max_attempts: int = 8
    initial: float = 1.0  # the first backoff; doubles per attempt, with jitter
    cap: float = 60.0  # the longest backoff between two attempts
    retry_after_max: float = 600.0  # a Retry-After longer than this is shortened to it
    timeout: float = 10.0  # per HTTP call: connect, each read, each write
    max_age: float = 3600.0  # alerts whose bar closed longer ago are not sent (0 = no limit)


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"
    REJECTED = "rejected"


# Answers that may change on a retry: timeouts, "too early", rate limits, server errors.
_RETRYABLE = frozenset({408, 425, 429})


def classify(status: int) -> Verdict:
    """What an HTTP status means for this alert on this endpoint."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.GONE
    if status in _RETRYABLE or 500 <= status < 600:
        return Verdict.RETRY
    return Verdict.REJECTED  # 1xx, 3xx (redirects are never followed), other 4xx


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Response:
    status: int
    retry_after: str | None = None


class Sender(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response: ...

    def close(self) -> None: ...


# Read at most this much of a receiver's answer: its status is all that matters.
_MAX_ANSWER_BYTES = 64 * 1024


class HttpSender:
    """POSTs with httpx: redirects never followed, a timeout on every phase, answers not kept."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._client = httpx.Client(follow_redirects=False, timeout=httpx.Timeout(timeout),
                                    headers={"user-agent": USER_AGENT})

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """One attempt; raises :class:`httpx.HTTPError` (no URL in it) when no answer came."""
        deadline = time.monotonic() + self._timeout
        with self._client.stream("POST", url, content=body, headers=headers) as resp:
            read = 0
            # Drain a short answer so the connection can be reused; a long or trickling one
            # is cut off (the connection is then closed instead).
            for chunk in resp.iter_raw():
                read += len(chunk)
                if read > _MAX_ANSWER_BYTES or time.monotonic() > deadline:
                    break
            return Response(resp.status_code, resp.headers.get("retry-after"))

    def close(self) -> None:
        self._client.close()


class DeliveryStopped(TransientError):
    """Shutdown came before every alert of a batch was finished: do not commit it."""


@dataclass(frozen=True, slots=True)
class Failure:
    """An alert given up on at one endpoint: dead-letter ``source`` with ``reason`` and ``detail``."""

    alert: Alert
    source: Any
    endpoint: str
    reason: str  # delivery_failed, delivery_rejected, endpoint_gone, expired
    detail: str


class _Batch:
    """Counts a batch's deliveries still open; completes its future (with the failures) at zero."""

    __slots__ = ("seq", "future", "failures", "_open", "_lock")

    def __init__(self, seq: int, n: int) -> None:
        self.seq = seq
        self.future: Future[list[Failure]] = Future()
        self.failures: list[Failure] = []
        self._open = n
        self._lock = threading.Lock()
        if n == 0:
            self.future.set_result(self.failures)

    def done(self, failure: Failure | None) -> None:
        with self._lock:
            if failure is not None:
                self.failures.append(failure)
            self._open -= 1
            if self._open == 0 and not self.future.done():
                self.future.set_result(self.failures)

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if not self.future.done():
                self.future.set_exception(exc)


@dataclass(frozen=True, slots=True)
class _Job:
    alert: Alert
    source: Any  # what dead-lettering needs to name the input (the Kafka message)
    received: float  # time.monotonic() when submitted
    batch: _Batch


class _Stopped(Exception):
    pass


_STOP = object()
# Delivered ids remembered per endpoint: hours of alerts at a busy pace, under 1 MB.
_RECENT_IDS = 10_000


class _EndpointWorker:
    """One endpoint's queue and thread: alerts in order, one at a time."""

    def __init__(self, endpoint: Endpoint, dispatcher: Dispatcher) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.d = dispatcher
        # Why it is disabled ("410 Gone on ..."), from before a restart; "" = enabled.
        self.disabled_note = dispatcher.disabled.get(endpoint.id, "")
        self.disabled = bool(self.disabled_note)
        self._skipped = 0  # alerts not sent because the endpoint is disabled
        self._skip_logged: float | None = None
        self._disabled_gauge = DISABLED_ENDPOINTS.labels(endpoint.name)
        self._disabled_gauge.inc(1 if self.disabled else 0)  # 0: the series exists from the start
        self.failing = False  # the circuit breaker: an alert used up its attempts, none got through since
        # Ids delivered lately, oldest first: an alert that comes again (analytics re-emits after
        # a crash) is not sent twice by this process. Slack cannot de-duplicate on webhook-id.
        self._recent: dict[str, None] = {}
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.sender: Sender = dispatcher.sender_factory(dispatcher.policy.timeout)
        self.thread = threading.Thread(target=self._run, name=f"notify-{endpoint.index}", daemon=True)
        self._outcomes = {o: DELIVERIES.labels(self.name, o)
                          for o in ("delivered", "failed", "rejected", "gone", "expired", "skipped_old", "disabled",
                                    "duplicate")}
        self._retries = RETRIES.labels(self.name)
        self._latency = DELIVERY_SECONDS.labels(self.name)
        self._request = REQUEST_SECONDS.labels(self.name)

    def _run(self) -> None:
        try:
            while True:
                job = self.queue.get()
                if job is _STOP:
                    return
                try:
                    outcome, failure = self.deliver(job)
                except _Stopped:
                    # This batch and every later one cannot be committed now: they are read
                    # and delivered again on the next start.
                    self.d.abort_from(job.batch.seq)
                    return
                except Exception as exc:  # a bug: fail the batch so the consume loop crashes loudly
                    logger.exception("delivering to %s failed unexpectedly", self.name)
                    job.batch.fail(exc)
                    return
                self._outcomes[outcome].inc()
                job.batch.done(failure)
        finally:
            self.sender.close()

    def deliver(self, job: _Job) -> tuple[str, Failure | None]:
        """Deliver one alert to this endpoint or give up on it: (outcome, what to dead-letter)."""
        alert, ep, d, policy = job.alert, self.endpoint, self.d, self.d.policy
        if self.disabled:
            self._skip(alert)
            return "disabled", None
        if alert.id in self._recent:
            return "duplicate", None
        expires = d.expires_at(alert)
        if expires is not None and d.clock() >= expires:
            return "skipped_old", None  # never attempted: a backfill's or a long outage's old alerts

        def give_up(outcome: str, reason: str, detail: str) -> tuple[str, Failure]:
            return outcome, Failure(alert, job.source, self.name, reason, f"endpoint #{ep.index} {self.name}: {detail}")

        body = (json_body if ep.format == "json" else slack_body)(alert, d.dashboard_url)
        url = ep.url.get()
        attempts = 1 if self.failing else policy.max_attempts
        backoff = Backoff(policy.initial, policy.cap)
        last = ""
        for attempt in range(1, attempts + 1):
            if d.stop.is_set() or (attempt > 1 and d.stopping.is_set()):
                raise _Stopped
            if ep.key is not None:
                headers = json_headers(ep.key, alert.id, int(d.clock()), body)
            else:
                headers = {"content-type": "application/json"}
            start = time.monotonic()
            retry_after = None
            try:
                answer = self.sender.post(url, body, headers)
            except httpx.HTTPError as exc:  # timeouts, refused connections, broken answers
                verdict, last = Verdict.RETRY, _describe(exc, url, self.name)
            else:
                verdict, last, retry_after = classify(answer.status), f"HTTP {answer.status}", answer.retry_after
            self._request.observe(time.monotonic() - start)
            if verdict is Verdict.DELIVERED:
                self._latency.observe(time.monotonic() - job.received)
                self._recent[alert.id] = None
                if len(self._recent) > _RECENT_IDS:
                    del self._recent[next(iter(self._recent))]
                if self.failing:
                    self.failing = False
                    logger.info("endpoint #%d %s accepts alerts again", ep.index, self.name)
                return "delivered", None
            if verdict is Verdict.GONE:
                self.disabled = True
                self.disabled_note = f"410 Gone on {_now_iso(d.clock())}"
                ENDPOINTS_DISABLED.labels(self.name).inc()
                self._disabled_gauge.inc()
                if d.on_gone is not None:
                    d.on_gone(ep)
                logger.error("endpoint #%d %s answered 410 Gone: disabled, also after a restart (remembered in "
                             "PostgreSQL); %s", ep.index, self.name, how_to_enable(ep))
                return give_up("gone", "endpoint_gone", "answered 410 Gone; endpoint disabled")
            if verdict is Verdict.REJECTED:
                return give_up("rejected", "delivery_rejected", f"answered {last}")
            if attempt == attempts:
                break
            delay = backoff.next_delay()
            asked = parse_retry_after(retry_after, d.clock())
            if asked is not None:
                delay = max(delay, min(asked, policy.retry_after_max))
            if expires is not None and d.clock() + delay >= expires:
                return give_up("expired", "expired", f"{last}; older than ALERT_MAX_AGE={policy.max_age:g}s "
                                                     "by the next attempt")
            self._retries.inc()
            logger.warning("endpoint #%d %s: %s on attempt %d for alert %s, retrying in %.2fs",
                           ep.index, self.name, last, attempt, alert.id, delay)
            if d.sleep(delay):
                raise _Stopped
        if not self.failing:
            self.failing = True
            logger.error("endpoint #%d %s: %s after %d attempts; the alerts behind it get one attempt each "
                         "until one gets through", ep.index, self.name, last, attempts)
        return give_up("failed", "delivery_failed", f"{last} after {attempts} attempt{'s' if attempts > 1 else ''}")


    def _skip(self, alert: Alert) -> None:
        """Count an alert not sent to this disabled endpoint; log the first, then every 10 minutes."""
        self._skipped += 1
        now = time.monotonic()
        if self._skip_logged is None or now - self._skip_logged >= _SKIP_LOG_EVERY:
            self._skip_logged = now
            ep = self.endpoint
            logger.warning("endpoint #%d %s is disabled (%s): alert %s not sent (%d skipped since start); %s",
                           ep.index, self.name, self.disabled_note, alert.id, self._skipped, how_to_enable(ep))


def _now_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _describe(exc: httpx.HTTPError, url: str, name: str) -> str:
    """The exception's name and first line, the URL (it may hold a token) replaced by its host."""
    text = str(exc).replace(url, name).splitlines()[0][:200] if str(exc) else ""
    return type(exc).__name__ + (f" ({text})" if text else "")


class Dispatcher:
    """Fans alerts out to the endpoints' workers; one future per submitted batch."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        policy: RetryPolicy,
        dashboard_url: str = "",
        stopping: threading.Event | None = None,
        sender_factory: Callable[[float], Sender] = HttpSender,
        clock: Callable[[], float] = time.time,
        disabled: Mapping[str, str] | None = None,
        on_gone: Callable[[Endpoint], None] | None = None,
    ) -> None:
        """``disabled``: endpoint id -> why, for endpoints disabled before this start;
        ``on_gone(endpoint)`` is called (on its worker thread) when an endpoint answers 410."""
        self.policy = policy
        self.disabled = dict(disabled or {})
        self.on_gone = on_gone
        self.dashboard_url = dashboard_url
        self.sender_factory = sender_factory
        self.clock = clock
        self.stopping = stopping or threading.Event()  # shutdown requested: no more retries
        self.stop = threading.Event()  # closed: no more attempts at all
        self._open: dict[int, _Batch] = {}
        self._seq = 0
        self._aborted = False
        self._lock = threading.Lock()
        self.workers = [_EndpointWorker(ep, self) for ep in endpoints]
        for w in self.workers:
            w.thread.start()

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; True as soon as shutdown is requested or the dispatcher closed."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            # Two events to watch: wake on the dispatcher's own, check shutdown every 0.1 s.
            if self.stop.wait(min(left, 0.1)) or self.stopping.is_set():
                return True
        return self.stop.is_set() or self.stopping.is_set()

    def expires_at(self, alert: Alert) -> float | None:
        """Epoch seconds after which the alert is too old to send (None: never)."""
        if not self.policy.max_age:
            return None
        closed = alert.ts + interval_length(alert.interval)
        return closed.timestamp() + self.policy.max_age

    def submit(self, alerts: Iterable[tuple[Alert, Any]]) -> Future[list[Failure]]:
        """Queue ``(alert, source)`` pairs to every matching endpoint, in order.

        The future's result is the list of what was given up on (to dead-letter) once every
        endpoint has finished with every alert; it raises :class:`DeliveryStopped` if shutdown
        came first (then nothing of this batch may be committed).
        """
        now = time.monotonic()
        routed = [(w, a, s) for a, s in alerts for w in self.workers if w.endpoint.matches(a)]
        with self._lock:
            self._seq += 1
            if self.stop.is_set() or self._aborted:  # an earlier batch is not delivered: nothing after it commits
                stopped: Future[list[Failure]] = Future()
                stopped.set_exception(DeliveryStopped("the notifier is stopping"))
                return stopped
            batch = _Batch(self._seq, len(routed))
            if routed:
                self._open[batch.seq] = batch
        if routed:
            batch.future.add_done_callback(lambda _f: self._forget(batch))
            for w, a, s in routed:
                w.queue.put(_Job(a, s, now, batch))
        return batch.future

    def _forget(self, batch: _Batch) -> None:
        with self._lock:
            self._open.pop(batch.seq, None)

    def abort_from(self, seq: int) -> None:
        """Fail batch ``seq`` and every later open one with :class:`DeliveryStopped`."""
        with self._lock:
            self._aborted = True
            doomed = [b for s, b in self._open.items() if s >= seq]
        for b in doomed:
            b.fail(DeliveryStopped("shutdown before every endpoint finished the batch"))

    def pending(self) -> int:
        """Batches submitted and not finished yet."""
        with self._lock:
            return len(self._open)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers (interrupting backoff waits); open batches fail with DeliveryStopped.

        An HTTP call in flight runs to its timeout at most; the threads are daemons, so the
        process never waits longer than ``timeout`` for them.
        """
        self.stop.set()
        for w in self.workers:
            w.queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
        self.abort_from(0)
