"""The consume-loop handler: what was given up on becomes the batch's rejects, one per alert."""

from __future__ import annotations

import json

import pytest
from test_notifier_delivery import SECRET, alerts  # noqa: I001 - a sibling test module
from webhook_receiver import Receiver, Reply, always

from stockpipe.common.consume import Batch
from stockpipe.notifier.app import NotifierHandler, rejection, stall_timeout
from stockpipe.notifier.delivery import DeliveryStopped, Dispatcher, Failure, RetryPolicy
from stockpipe.notifier.endpoints import parse_endpoints

POLICY = RetryPolicy(max_attempts=2, initial=0.01, cap=0.02, timeout=1, max_age=0)


def test_failures_become_one_dead_letter_per_alert_naming_every_endpoint() -> None:
    items = alerts(3)
    with Receiver() as rx:
        # Both endpoints refuse the second alert; the first and third get through everywhere.
        def script(req):
            return Reply(400 if req.json()["data"]["id"] == items[1][0].id else 200)
        a = rx.script("/a", script, SECRET)
        b = rx.script("/b", script, SECRET)
        d = Dispatcher(parse_endpoints(json.dumps([{"url": a, "secret": SECRET}, {"url": b, "secret": SECRET}])),
                       policy=POLICY)
        handler = NotifierHandler("alerts", d)
        batch = Batch(messages=[m for _, m in items], items=[(m, a) for a, m in items])
        try:
            assert handler.handle(batch).result(timeout=10) is None
        finally:
            handler.close()
    [(msg, error)] = batch.rejected
    assert msg == "msg-1" and error.reason == "delivery_rejected"
    assert "endpoint #1" in error.detail and "endpoint #2" in error.detail and "HTTP 400" in error.detail


def test_an_alert_no_endpoint_wants_completes_at_once() -> None:
    with Receiver() as rx:
        url = rx.script("/", always(200), SECRET)
        d = Dispatcher(parse_endpoints(json.dumps([{"url": url, "secret": SECRET, "symbols": ["TSLA"]}])),
                       policy=POLICY)
        handler = NotifierHandler("alerts", d)
        items = alerts(2)
        batch = Batch(messages=[m for _, m in items], items=[(m, a) for a, m in items])
        try:
            future = handler.handle(batch)
            assert future.done() and future.result() is None and not batch.rejected
        finally:
            handler.close()
        assert rx.at("/") == []


def test_a_stopped_delivery_fails_the_batch_for_the_loop() -> None:
    d = Dispatcher([], policy=POLICY)
    d.close()
    handler = NotifierHandler("alerts", d)
    items = alerts(1)
    with pytest.raises(DeliveryStopped):
        handler.handle(Batch(messages=[items[0][1]], items=[(items[0][1], items[0][0])])).result(timeout=1)


def test_rejection_text() -> None:
    a = alerts(1)[0][0]
    one = rejection([Failure(a, "m", "http://x", "delivery_failed", "endpoint #1 http://x: HTTP 500 after 8 attempts")])
    assert str(one) == "delivery_failed: endpoint #1 http://x: HTTP 500 after 8 attempts"
    two = rejection([Failure(a, "m", "http://x", "endpoint_gone", "endpoint #1 http://x: answered 410 Gone"),
                     Failure(a, "m", "http://y", "expired", "endpoint #2 http://y: HTTP 429; too old")])
    assert two.reason == "endpoint_gone"
    assert two.detail == "endpoint_gone: endpoint #1 http://x: answered 410 Gone; expired: endpoint #2 http://y: HTTP 429; too old"


def test_stall_timeout_covers_the_slowest_legitimate_batch() -> None:
    policy = RetryPolicy()  # the defaults: 8 attempts, 10 s timeout, Retry-After up to 600 s, 1 h max age
    # The first alert until it is too old (3,600 s + one call), then 100 single calls.
    assert stall_timeout(policy, 100) == pytest.approx(3610 + 100 * 11 + 60)
    assert stall_timeout(RetryPolicy(max_age=0, max_attempts=2, timeout=1, cap=5, retry_after_max=0), 1) == \
        pytest.approx(2 * 6 + 2 + 60)
