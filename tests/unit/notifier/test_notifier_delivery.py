"""The delivery engine against a real HTTP receiver on 127.0.0.1 that verifies and misbehaves."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest
from prometheus_client import REGISTRY
from webhook_receiver import Receiver, Reply, always, fail_first

from stockpipe.common.errors import TransientError
from stockpipe.common.messages import Alert, alert_id
from stockpipe.notifier.delivery import (
    DeliveryStopped,
    Dispatcher,
    RetryPolicy,
    Verdict,
    classify,
    parse_retry_after,
)
from stockpipe.notifier.endpoints import parse_endpoints

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = RetryPolicy(max_attempts=5, initial=0.01, cap=0.05, timeout=0.3, max_age=0)


def alerts(n: int, symbol: str = "AAPL", ts: datetime | None = None) -> list[tuple[Alert, str]]:
    """``n`` alerts (with a stand-in "source" each, as the Kafka message would be)."""
    t0 = ts or datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=n)
    out = []
    for i in range(n):
        ts_i = t0 + timedelta(minutes=i)
        out.append((Alert(id=alert_id(symbol, "1m", ts_i, "price_change"), symbol=symbol, interval="1m", ts=ts_i,
                          rule="price_change", value=0.021 + i / 1000, threshold=0.02, message=f"close moved {i}"),
                    f"msg-{i}"))
    return out


def dispatcher(endpoints: list[dict], policy: RetryPolicy = FAST, **kw) -> Dispatcher:
    return Dispatcher(parse_endpoints(json.dumps(endpoints)), policy=policy, dashboard_url="http://dash.test", **kw)


def outcome(receiver: Receiver, name: str) -> float:
    return REGISTRY.get_sample_value("stockpipe_notifier_deliveries_total",
                                     {"endpoint": f"http://127.0.0.1:{receiver.port}", "outcome": name}) or 0.0


def first_arrivals(receiver: Receiver, path: str) -> list[str]:
    """Webhook ids (or Slack texts) in the order their first request arrived."""
    seen: dict[str, None] = {}
    for r in receiver.at(path):
        seen.setdefault(r.webhook_id or r.json()["text"], None)
    return list(seen)


@pytest.mark.parametrize(("status", "verdict"), [
    (200, Verdict.DELIVERED), (202, Verdict.DELIVERED), (204, Verdict.DELIVERED),
    (410, Verdict.GONE),
    (408, Verdict.RETRY), (425, Verdict.RETRY), (429, Verdict.RETRY), (500, Verdict.RETRY), (502, Verdict.RETRY),
    (503, Verdict.RETRY), (504, Verdict.RETRY),
    (301, Verdict.REJECTED), (302, Verdict.REJECTED), (307, Verdict.REJECTED), (308, Verdict.REJECTED),
    (400, Verdict.REJECTED), (401, Verdict.REJECTED), (403, Verdict.REJECTED), (404, Verdict.REJECTED),
    (413, Verdict.REJECTED),
])
def test_classify(status: int, verdict: Verdict) -> None:
    assert classify(status) is verdict


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), (" 0 ", 0.0), (None, None), ("", None), ("soon", None), ("-5", None), ("1.5", None),
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # in the past: at once
    (formatdate(1_000_030, usegmt=True), 30.0),  # IMF-fixdate
    ("Monday, 12-Jan-70 13:47:10 GMT", 30.0),  # RFC 850 form of the same instant
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_000_000.0) == expected


def test_every_alert_arrives_signed_once_per_id_in_order_despite_failures() -> None:
    batch1, batch2 = alerts(4, "AAPL"), alerts(4, "MSFT")
    ids = [a.id for a, _ in batch1 + batch2]
    with Receiver() as rx:
        paths = {
            "/ok": always(200),
            "/flaky": fail_first(2, 500),  # two 500s per alert, then 200
            "/ratelimited": fail_first(1, 429, **{"Retry-After": "0"}),
            "/slow": lambda req: Reply(200, delay=0.1),
            "/timeout": fail_first(1, 200, delay=0.6),  # the first answer comes after the client gave up
            "/dropped": fail_first(1, 502),
        }
        eps = [{"url": rx.script(p, s, SECRET) + "?token=XYZ", "format": "json", "secret": SECRET}
               for p, s in paths.items()]
        slack_url = rx.script("/slack", fail_first(1, 503))
        d = dispatcher(eps + [{"url": slack_url, "format": "slack"}])
        try:
            f1, f2 = d.submit(batch1), d.submit(batch2)
            assert f1.result(timeout=30) == [] and f2.result(timeout=30) == []
        finally:
            d.close()
        for path in paths:
            reqs = rx.at(path)
            assert all(r.verified for r in reqs), [r.error for r in reqs if not r.verified]
            delivered = {r.webhook_id for r in rx.answered_ok(path)}
            assert delivered == set(ids), path
            assert first_arrivals(rx, path) == ids, f"{path}: not in order"
            for r in reqs:  # the body is the alert; the id header is the alert's id
                assert r.json()["data"]["id"] == r.webhook_id
        assert len(rx.at("/flaky")) == 3 * len(ids)
        assert len(rx.at("/timeout")) == 2 * len(ids)
        slack = rx.answered_ok("/slack")
        assert [r.json()["blocks"][0]["text"]["text"] for r in slack] == [f"{a.symbol}: {a.rule}" for a, _ in
                                                                           batch1 + batch2]
        assert outcome(rx, "delivered") == 7 * len(ids)


def test_a_slow_endpoint_does_not_delay_the_others() -> None:
    batch = alerts(5)
    with Receiver() as slow_rx, Receiver() as fast_rx:
        slow = slow_rx.script("/", lambda req: Reply(200, delay=0.4), SECRET)
        fast = fast_rx.script("/", always(200), SECRET)
        d = dispatcher([{"url": slow, "secret": SECRET}, {"url": fast, "secret": SECRET}],
                       RetryPolicy(initial=0.01, timeout=2, max_age=0))
        try:
            start = time.monotonic()
            future = d.submit(batch)
            while len(fast_rx.answered_ok("/")) < 5 and time.monotonic() - start < 5:
                time.sleep(0.01)
            fast_done = time.monotonic() - start
            assert len(slow_rx.at("/")) <= 2, "the fast endpoint waited for the slow one"
            assert future.result(timeout=10) == []
            slow_done = time.monotonic() - start
        finally:
            d.close()
    assert fast_done < 0.4 < 5 * 0.4 <= slow_done + 0.05


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(form: str) -> None:
    def retry_after() -> str:
        return "1" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)

    with Receiver() as rx:
        url = rx.script("/", lambda req: Reply(429, {"Retry-After": retry_after()}) if req.attempt == 1 else Reply(200),
                        SECRET)
        d = dispatcher([{"url": url, "secret": SECRET}])
        try:
            assert d.submit(alerts(1)).result(timeout=10) == []
        finally:
            d.close()
        first, second = rx.at("/")
        assert second.at - first.at >= 0.95  # the backoff alone would have been 10-50 ms
        assert first.webhook_id == second.webhook_id


def test_a_huge_retry_after_is_capped() -> None:
    with Receiver() as rx:
        url = rx.script("/", fail_first(1, 503, **{"Retry-After": "86400"}), SECRET)
        d = dispatcher([{"url": url, "secret": SECRET}], RetryPolicy(initial=0.01, cap=0.05, retry_after_max=0.2,
                                                                      timeout=1, max_age=0))
        try:
            start = time.monotonic()
            assert d.submit(alerts(1)).result(timeout=10) == []
            assert 0.2 <= time.monotonic() - start < 2
        finally:
            d.close()


def test_410_disables_the_endpoint_and_dead_letters_the_alert() -> None:
    batch = alerts(3)
    with Receiver() as gone_rx, Receiver() as ok_rx:
        gone = gone_rx.script("/", always(410), SECRET)
        ok = ok_rx.script("/", always(200), SECRET)
        d = dispatcher([{"url": gone, "secret": SECRET}, {"url": ok, "secret": SECRET}])
        try:
            [failure] = d.submit(batch).result(timeout=10)
            assert d.submit(alerts(2, "MSFT")).result(timeout=10) == []  # later alerts: skipped, not dead-lettered
        finally:
            d.close()
        assert len(gone_rx.at("/")) == 1
        assert (failure.source, failure.reason) == ("msg-0", "endpoint_gone")
        assert "410" in failure.detail and "?" not in failure.detail
        assert len(ok_rx.answered_ok("/")) == 5
        assert outcome(gone_rx, "gone") == 1 and outcome(gone_rx, "disabled") == 4
        assert REGISTRY.get_sample_value("stockpipe_notifier_endpoints_disabled_total",
                                         {"endpoint": f"http://127.0.0.1:{gone_rx.port}"}) == 1


def test_410_is_handed_to_on_gone_and_logs_how_to_enable_the_endpoint_again(caplog: pytest.LogCaptureFixture) -> None:
    gone_eps = []
    with Receiver() as rx:
        url = rx.script("/", always(410), SECRET) + "?token=XYZ"
        d = dispatcher([{"url": url, "secret": SECRET}], on_gone=gone_eps.append)
        try:
            with caplog.at_level(logging.INFO, logger="stockpipe.notifier"):
                [failure] = d.submit(alerts(2)).result(timeout=10)
        finally:
            d.close()
    [ep] = gone_eps
    assert ep.index == 1 and failure.reason == "endpoint_gone"
    text = caplog.text
    assert "answered 410 Gone: disabled, also after a restart" in text
    assert f"endpoint_id '{ep.id}'" in text and "NOTIFY_REENABLE=1" in text
    assert "XYZ" not in text and SECRET not in text
    assert REGISTRY.get_sample_value("stockpipe_notifier_disabled_endpoints",
                                     {"endpoint": f"http://127.0.0.1:{rx.port}"}) == 1


def test_an_endpoint_disabled_before_the_start_gets_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver() as off_rx, Receiver() as on_rx:
        eps = parse_endpoints(json.dumps([{"url": off_rx.script("/", always(200), SECRET), "secret": SECRET},
                                          {"url": on_rx.script("/", always(200), SECRET), "secret": SECRET}]))
        d = Dispatcher(eps, policy=FAST, disabled={eps[0].id: "410 Gone on 2026-12-01T10:00:00+00:00"})
        try:
            with caplog.at_level(logging.WARNING, logger="stockpipe.notifier"):
                assert d.submit(alerts(3)).result(timeout=10) == []
                assert d.submit(alerts(2, "MSFT")).result(timeout=10) == []
        finally:
            d.close()
        assert off_rx.at("/") == [] and len(on_rx.answered_ok("/")) == 5
        assert outcome(off_rx, "disabled") == 5 and outcome(on_rx, "delivered") == 5
        skipped = [r.getMessage() for r in caplog.records if "is disabled" in r.getMessage()]
        # The first skip is logged (then one line per 10 minutes at most, with the count).
        assert len(skipped) == 1 and "410 Gone on 2026-12-01" in skipped[0] and "NOTIFY_REENABLE=1" in skipped[0]
        gauge = "stockpipe_notifier_disabled_endpoints"
        assert REGISTRY.get_sample_value(gauge, {"endpoint": f"http://127.0.0.1:{off_rx.port}"}) == 1
        assert REGISTRY.get_sample_value(gauge, {"endpoint": f"http://127.0.0.1:{on_rx.port}"}) == 0


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(status: int) -> None:
    with Receiver() as rx:
        target = rx.script("/target", always(200), SECRET)
        url = rx.script("/moved", always(status, Location=target), SECRET)
        d = dispatcher([{"url": url, "secret": SECRET}])
        try:
            [failure] = d.submit(alerts(1)).result(timeout=10)
        finally:
            d.close()
        assert rx.at("/target") == [] and len(rx.at("/moved")) == 1
        assert failure.reason == "delivery_rejected" and f"HTTP {status}" in failure.detail


def test_after_the_last_attempt_the_alert_is_given_up_and_the_circuit_opens() -> None:
    batch = alerts(4)
    state = {"status": 500}
    with Receiver() as rx:
        url = rx.script("/", lambda req: Reply(state["status"]), SECRET)
        d = dispatcher([{"url": url, "secret": SECRET}], RetryPolicy(max_attempts=3, initial=0.01, cap=0.02,
                                                                      timeout=1, max_age=0))
        try:
            failures = d.submit(batch[:3]).result(timeout=10)
            assert [f.source for f in failures] == ["msg-0", "msg-1", "msg-2"]
            assert {f.reason for f in failures} == {"delivery_failed"}
            assert "HTTP 500 after 3 attempts" in failures[0].detail
            assert "HTTP 500 after 1 attempt" in failures[1].detail
            # 3 attempts for the first alert; one each behind it while the endpoint is down.
            assert [r.attempt for r in rx.at("/")] == [1, 2, 3, 1, 1]
            state["status"] = 200
            assert d.submit(batch[3:]).result(timeout=10) == []  # one attempt, it gets through: closed again
            state["status"] = 503
            [failure] = d.submit(alerts(1, "MSFT")).result(timeout=10)
            assert "after 3 attempts" in failure.detail  # full retries again
        finally:
            d.close()
        assert outcome(rx, "failed") == 4 and outcome(rx, "delivered") == 1


def test_old_alerts_are_not_sent_and_retries_stop_at_the_max_age() -> None:
    policy = RetryPolicy(initial=0.01, cap=0.02, timeout=1, max_age=120)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with Receiver() as rx:
        url = rx.script("/", fail_first(1, 429, **{"Retry-After": "3600"}), SECRET)
        d = dispatcher([{"url": url, "secret": SECRET}], policy)
        try:
            old = alerts(1, ts=now - timedelta(hours=3))  # a backfill's alert
            assert d.submit(old).result(timeout=10) == []
            assert rx.at("/") == []
            [failure] = d.submit(alerts(1, ts=now - timedelta(minutes=1))).result(timeout=10)
            assert failure.reason == "expired" and "HTTP 429" in failure.detail
            assert len(rx.at("/")) == 1  # given up at once: the hour's wait would outlive the alert
        finally:
            d.close()
        assert outcome(rx, "skipped_old") == 1 and outcome(rx, "expired") == 1


def test_shutdown_stops_retrying_and_fails_the_batches_left() -> None:
    stopping = threading.Event()
    with Receiver() as rx:
        url = rx.script("/", always(503), SECRET)
        d = dispatcher([{"url": url, "secret": SECRET}], RetryPolicy(initial=30, cap=30, timeout=1, max_age=0),
                       stopping=stopping)
        try:
            f1, f2 = d.submit(alerts(1)), d.submit(alerts(1, "MSFT"))
            deadline = time.monotonic() + 5
            while not rx.at("/") and time.monotonic() < deadline:
                time.sleep(0.01)
            start = time.monotonic()
            stopping.set()  # SIGTERM while the first alert waits 15-30 s for its retry
            for f in (f1, f2):
                with pytest.raises(DeliveryStopped):
                    f.result(timeout=5)
            assert time.monotonic() - start < 1
            assert issubclass(DeliveryStopped, TransientError)  # the consume loop does not commit it
            with pytest.raises(DeliveryStopped):  # a batch the loop hands over meanwhile fails at once
                d.submit(alerts(1, "TSLA")).result(timeout=0.1)
        finally:
            d.close()
        assert len(rx.at("/")) == 1


def test_connection_refused_is_retried_and_urls_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Receiver() as rx:
        port = rx.port
    # The receiver is gone: its port refuses connections.
    url = f"http://127.0.0.1:{port}/services/T000/B000/SECRETTOKEN"
    d = dispatcher([{"url": url, "format": "slack"}], RetryPolicy(max_attempts=2, initial=0.01, cap=0.02,
                                                                   timeout=1, max_age=0))
    try:
        [failure] = d.submit(alerts(1)).result(timeout=10)
    finally:
        d.close()
    assert failure.reason == "delivery_failed" and "ConnectError" in failure.detail
    assert "SECRETTOKEN" not in failure.detail
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "retrying" in logged and "SECRETTOKEN" not in logged and "/services/" not in logged


def test_an_alert_that_comes_again_is_not_sent_twice_by_one_process() -> None:
    batch = alerts(3)
    with Receiver() as rx:
        url = rx.script("/", always(200), SECRET)
        d = dispatcher([{"url": url, "secret": SECRET}])
        try:
            assert d.submit(batch).result(timeout=10) == []
            assert d.submit(batch[1:] + alerts(1, "MSFT")).result(timeout=10) == []  # analytics re-emitted two
        finally:
            d.close()
        assert len(rx.at("/")) == 4
        assert outcome(rx, "duplicate") == 2
