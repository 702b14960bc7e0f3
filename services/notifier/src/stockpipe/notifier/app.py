"""The notifier as a handler of the shared consume loop: ``alerts`` → webhook endpoints.

The delivery contract, per batch of alerts polled from ``alerts`` (own consumer group, so a
slow endpoint never holds up the ingestor or analytics):

1. the loop decodes each message; an invalid one is dead-lettered by the loop with its reason;
2. :meth:`NotifierHandler.handle` queues every alert to each endpoint whose filters match
   (:class:`~stockpipe.notifier.delivery.Dispatcher`: one worker per endpoint, in order) and
   returns a Future;
3. the Future completes once every endpoint has delivered or given up on every alert of the
   batch; what was given up on is added to the batch's rejects (one per alert, naming each
   endpoint that failed) and the loop dead-letters them to ``dlq``;
4. the loop waits for Kafka's acknowledgement of those, then commits the batch's offsets, in
   batch order.

A crash before 4 re-reads the batch: every alert is delivered again with the same
``webhook-id`` (its id), so receivers de-duplicate, and none is lost. On SIGTERM no retry is
waited for: batches not finished by then stay uncommitted and are delivered on the next start.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

from stockpipe.common.consume import Batch, Handler
from stockpipe.common.errors import InvalidMessage
from stockpipe.common.kafka import Message
from stockpipe.common.messages import Alert, Codec
from stockpipe.notifier.delivery import Dispatcher, Failure, RetryPolicy

__all__ = ["NotifierHandler", "rejection", "stall_timeout"]

logger = logging.getLogger(__name__)


def rejection(failures: list[Failure]) -> InvalidMessage:
    """One dead-letter reason for an alert given up on at one or more endpoints."""
    first = failures[0]
    if len(failures) == 1:
        return InvalidMessage(first.reason, first.detail)
    return InvalidMessage(first.reason, "; ".join(f"{f.reason}: {f.detail}" for f in failures))


def stall_timeout(policy: RetryPolicy, batch_size: int) -> float:
    """How long one batch may legitimately take: beyond it the consume loop turns /healthz red.

    The first alert of a batch may use every attempt, each followed by the longest wait (or
    until it is too old); with the circuit breaker the alerts behind it take one call each.
    """
    one = policy.max_attempts * (policy.timeout + max(policy.cap, policy.retry_after_max))
    if policy.max_age:
        one = min(one, policy.max_age + policy.timeout)
    return one + batch_size * (policy.timeout + 1.0) + 60.0  # 60 s: slack for a loaded machine


class NotifierHandler(Handler):
    """Alerts in; deliveries out; what could not be delivered to the dead-letter topic."""

    def __init__(self, alerts_topic: str, dispatcher: Dispatcher) -> None:
        self.alerts = alerts_topic
        self.codecs = {alerts_topic: Codec(Alert)}
        self.dispatcher = dispatcher

    def handle(self, batch: Batch) -> Future:
        inner = self.dispatcher.submit((alert, msg) for msg, alert in batch.items)
        outer: Future = Future()

        def settled(f: Future) -> None:  # on the worker thread that finished the batch
            try:
                failures = f.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the loop (DeliveryStopped: not committed)
                outer.set_exception(exc)
                return
            by_message: dict[int, tuple[Message, list[Failure]]] = {}
            for failure in failures:
                by_message.setdefault(id(failure.source), (failure.source, []))[1].append(failure)
            for msg, fs in by_message.values():
                batch.rejected.append((msg, rejection(fs)))
            outer.set_result(None)

        inner.add_done_callback(settled)
        return outer

    def close(self) -> None:
        self.dispatcher.close(timeout=1.0)
