"""The notifier as a real process on real Kafka, delivering to a real receiver on 127.0.0.1.

The receiver (tests/unit/notifier/webhook_receiver.py) verifies every Standard Webhooks
signature with its own code written from the specification, and answers as scripted: 500s,
429 with Retry-After, answers slower than the client's timeout, 410, redirects.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stockpipe.common.messages import Alert, Codec, alert_id

from harness import Stack, http_get, json_body, metrics_of, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "notifier"))
from webhook_receiver import Receiver, Reply, always, fail_first  # noqa: E402

pytestmark = pytest.mark.integration

ALERTS = Codec(Alert)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "XXXXsecretTOKEN"  # in a URL, as Slack's webhook URLs hold theirs
SYMBOLS = ("AAPL", "MSFT", "EURUSD=X", "BTC-USD")
# Small delays: retries in tens of milliseconds, so failures cost the test little time.
FAST = {"NOTIFY_RETRY_INITIAL": "0.05", "NOTIFY_RETRY_MAX": "0.2", "NOTIFY_TIMEOUT": "1",
        "NOTIFY_MAX_ATTEMPTS": "6", "PROGRESS_INTERVAL": "0", "NOTIFIER_BATCH_TIMEOUT": "0.05"}


RULES = ("price_change", "rsi_overbought", "volume_spike", "macd_cross_up", "volatility_high")


def make_alerts(n: int) -> list[Alert]:
    """``n`` alerts of the last minutes over a few symbols and rules (ALERT_MAX_AGE keeps its default)."""
    per_minute = len(SYMBOLS) * len(RULES)
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=n // per_minute + 1)
    out = []
    for i in range(n):
        symbol, rule = SYMBOLS[i % len(SYMBOLS)], RULES[(i // len(SYMBOLS)) % len(RULES)]
        ts = t0 + timedelta(minutes=i // per_minute)
        out.append(Alert(id=alert_id(symbol, "1m", ts, rule), symbol=symbol, interval="1m", ts=ts, rule=rule,
                         value=0.02 + i / 10_000, threshold=0.02, message=f"{rule} ({i})"))
    return out


def publish(stack: Stack, alerts: list[Alert], extra: list[tuple[bytes, bytes]] = ()) -> None:
    stack.produce_keyed("alerts", [(a.symbol.encode(), ALERTS.encode(a)) for a in alerts] + list(extra))


def endpoints(*entries: dict) -> str:
    return json.dumps(list(entries))


def picked(webhook_id: str | None, one_in: int) -> bool:
    """A stable pick of one alert in ``one_in`` (alert ids are UUIDs)."""
    return webhook_id is not None and int(webhook_id[:8], 16) % one_in == 0


def some(failure, one_in: int = 6):
    """``failure`` on the first attempt of one alert in ``one_in``, else 200."""
    return lambda req: failure(req) if req.attempt == 1 and picked(req.webhook_id, one_in) else Reply(200)


def ids_at(rx: Receiver, path: str) -> dict[str, list]:
    """webhook-id -> requests with that id."""
    out: dict[str, list] = defaultdict(list)
    for r in rx.at(path):
        out[r.webhook_id or r.json()["text"]].append(r)
    return out


def test_alerts_reach_every_endpoint_signed_through_failures_and_the_rest_is_dead_lettered(stack: Stack) -> None:
    alerts = make_alerts(24)
    ids = {a.id for a in alerts}
    with Receiver() as rx:
        json_eps = {
            "/ok": always(200),
            "/flaky": fail_first(2, 500),
            "/ratelimited": some(lambda req: Reply(429, {"Retry-After": "1"})),
            "/timeout": some(lambda req: Reply(200, delay=1.5)),  # answers after the client's 1 s timeout
            "/slow": lambda req: Reply(200, delay=0.05),
        }
        eps = [{"url": rx.script(p, s, SECRET) + f"?token={TOKEN}", "format": "json", "secret": SECRET}
               for p, s in json_eps.items()]
        eps.append({"url": rx.script("/services/T0/B0/" + TOKEN, fail_first(1, 503)), "format": "slack",
                    "symbols": ["AAPL", "EURUSD=X"]})
        eps.append({"url": rx.script("/gone", always(410), SECRET), "secret": SECRET})
        eps.append({"url": rx.script("/moved", always(302, Location=rx.url("/ok")), SECRET), "secret": SECRET,
                    "rules": ["price_change", "volume_spike"], "intervals": ["1m"], "symbols": ["MSFT"]})
        notifier = stack.start("notifier", NOTIFY_ENDPOINTS=endpoints(*eps), DASHBOARD_URL="https://dash.example",
                               LOG_LEVEL="debug", **FAST)
        notifier.wait_ready()
        publish(stack, alerts, extra=[(b"AAPL", b'{"v": 1, "id": "x"}')])  # a poison message too

        for path in json_eps:
            wait_for(lambda p=path: {r.webhook_id for r in rx.answered_ok(p)} >= ids, 60, what=f"every alert at {path}")
        slack_want = {a for a in alerts if a.symbol in ("AAPL", "EURUSD=X")}
        wait_for(lambda: len({r.body for r in rx.answered_ok("/services/T0/B0/" + TOKEN)}) == len(slack_want), 30,
                 what="the Slack alerts")

        for path in json_eps:
            reqs = rx.at(path)
            assert all(r.verified for r in reqs), [r.error for r in reqs if not r.verified][:3]
            for wid, same in ids_at(rx, path).items():  # retries repeat the same alert under the same id
                assert {r.json()["data"]["id"] for r in same} == {wid}
                assert len({r.body for r in same}) == 1
            # One symbol's alerts share a partition and reach each endpoint in order.
            for symbol in SYMBOLS:
                want = [a.id for a in alerts if a.symbol == symbol]
                got = [wid for wid in ids_at(rx, path) if wid in want]
                assert got == want, f"{path}: {symbol}'s alerts out of order"
        body = rx.answered_ok("/ok")[0].json()
        assert body["type"] == "alert.raised" and body["data"]["dashboard_url"].startswith("https://dash.example/symbol/")
        slack = json.loads(rx.answered_ok("/services/T0/B0/" + TOKEN)[0].body)
        assert slack["blocks"][-1]["elements"][0]["url"].startswith("https://dash.example/symbol/")

        # 410: one request, then the endpoint is disabled. Redirect: not followed, given up.
        assert len(rx.at("/gone")) == 1
        msft = [a for a in alerts if a.symbol == "MSFT" and a.rule in ("price_change", "volume_spike")]
        assert len(rx.at("/moved")) == len(msft)  # the filter held; each answered 302 once
        assert len(rx.at("/ok")) == len(rx.answered_ok("/ok"))  # nothing arrived through the redirect

        def dead_letters() -> list:
            return stack.consume_all("dlq")

        # The poison message, the alert that met the 410 and the MSFT alerts that met the
        # redirect: one dead letter per alert, naming every endpoint that gave up on it. Which
        # alert /gone saw first depends on the order the partitions were read in; when it is
        # one of the MSFT ones, that alert's one dead letter names both endpoints.
        gone_id = rx.at("/gone")[0].webhook_id
        want = {gone_id} | {a.id for a in msft}
        got = wait_for(lambda: d if len(d := dead_letters()) >= 1 + len(want) else None, 30, what="dead letters")
        errors = {m.value(): dict(m.headers())["error"].decode() for m in got}
        assert len(got) == 1 + len(want), sorted(errors.values())
        for m in got:
            assert dict(m.headers())["source_topic"].decode() == stack.topic("alerts")
        # The poison's id is no UUID: refused on that field before its missing ones are noticed.
        poison = [e for e in errors.values() if e.startswith("invalid_field")]
        assert len(poison) == 1, sorted(errors.values())
        by_id = {ALERTS.decode(v).id: e for v, e in errors.items() if not e.startswith("invalid_field")}
        assert set(by_id) == want
        assert "endpoint_gone" in by_id[gone_id] and "410 Gone" in by_id[gone_id]
        for a in msft:
            assert "delivery_rejected" in by_id[a.id] and "HTTP 302" in by_id[a.id], by_id[a.id]

        metrics = metrics_of(notifier.port)
        port = rx.port
        assert metrics[("stockpipe_notifier_endpoints_disabled_total", (("endpoint", f"http://127.0.0.1:{port}"),))] == 1
        assert metrics[("stockpipe_notifier_retries_total", (("endpoint", f"http://127.0.0.1:{port}"),))] >= 2 * len(alerts)
        delivered = metrics[("stockpipe_notifier_deliveries_total",
                             (("endpoint", f"http://127.0.0.1:{port}"), ("outcome", "delivered")))]
        assert delivered == 5 * len(alerts) + len(slack_want)
        assert notifier.terminate() == 0
    log = notifier.output()
    assert TOKEN not in log and SECRET not in log and SECRET[6:] not in log
    assert "answered 410 Gone: disabled" in log


def test_a_sigkilled_notifier_restarted_loses_no_alert(stack: Stack) -> None:
    alerts = make_alerts(300)
    ids = {a.id for a in alerts}
    gate = threading.Event()  # closed: after 60 deliveries the receiver stops answering until the kill
    with Receiver() as rx:
        def script(req):
            if len(rx.answered_ok("/")) >= 60:
                gate.wait(10)
            # A 500 now and then: the kill also lands mid-retry.
            return Reply(500 if req.attempt == 1 and picked(req.webhook_id, 7) else 200)
        url = rx.script("/", script, SECRET)
        env = dict(NOTIFY_ENDPOINTS=endpoints({"url": url, "secret": SECRET}), NOTIFIER_BATCH_SIZE="20", **FAST)
        first = stack.start("notifier", **env)
        first.wait_ready()
        publish(stack, alerts)
        wait_for(lambda: len(rx.answered_ok("/")) >= 60, 60, interval=0.02, what="deliveries under way")
        first.kill()
        gate.set()
        before = {r.webhook_id for r in rx.answered_ok("/")}
        assert len(before) < len(ids), "everything was delivered before the kill"
        second = stack.start("notifier", **env)
        wait_for(lambda: {r.webhook_id for r in rx.answered_ok("/")} >= ids, 90, interval=0.2,
                 what="every alert after the restart")
        assert second.terminate() == 0
        reqs = rx.at("/")
        assert [(r.webhook_id, r.error) for r in reqs if not r.verified] == []
        by_id = ids_at(rx, "/")
        assert set(by_id) == ids
        for wid, same in by_id.items():  # a re-delivery is the same alert under the same webhook-id
            assert {r.json()["data"]["id"] for r in same} == {wid}
        redelivered = [wid for wid, same in by_id.items() if sum(200 <= r.status < 300 for r in same) > 1]
        print(f"{len(before)} alerts delivered before the kill, {len(redelivered)} delivered twice after it")
    assert stack.consume_all("dlq") == []


def test_sigterm_while_retrying_exits_at_once_and_the_next_start_delivers(stack: Stack) -> None:
    alerts = make_alerts(10)
    ids = {a.id for a in alerts}
    state = {"status": 503}
    with Receiver() as rx:
        url = rx.script("/", lambda req: Reply(state["status"]), SECRET)
        # Long waits between attempts: SIGTERM comes while every alert waits for its retry.
        env = dict(NOTIFY_ENDPOINTS=endpoints({"url": url, "secret": SECRET}), **FAST)
        env.update(NOTIFY_RETRY_INITIAL="30", NOTIFY_RETRY_MAX="30")
        first = stack.start("notifier", **env)
        first.wait_ready()
        publish(stack, alerts)
        wait_for(lambda: rx.at("/"), 30, what="a first attempt")
        start = time.monotonic()
        assert first.terminate() == 0
        assert time.monotonic() - start < 5, "SIGTERM waited for a retry"
        assert rx.answered_ok("/") == [] and stack.consume_all("dlq") == []
        state["status"] = 200  # the receiver is back
        second = stack.start("notifier", **env)
        wait_for(lambda: {r.webhook_id for r in rx.answered_ok("/")} >= ids, 60, what="every alert after the restart")
        assert second.terminate() == 0
    assert "stopping with" in first.output()  # said what stays uncommitted


def test_no_endpoints_says_so_once_and_idles(stack: Stack) -> None:
    notifier = stack.start("notifier", PROGRESS_INTERVAL="0")
    notifier.wait_ready()
    time.sleep(1.5)
    assert http_get(notifier.port, "/healthz")[0] == 200
    assert json_body(http_get(notifier.port, "/readyz")[1])["status"] == "ready"
    assert notifier.terminate() == 0
    log = notifier.output()
    assert log.count("NOTIFY_ENDPOINTS is empty") == 1
    assert "partitions assigned" not in log  # idle: it does not consume


def test_a_410_is_remembered_across_a_restart_until_the_endpoint_is_enabled_again(stack: Stack) -> None:
    alerts = make_alerts(32)
    first_batch, second_batch, third_batch, fourth_batch = alerts[:8], alerts[8:16], alerts[16:24], alerts[24:]
    with Receiver() as rx:
        gone = rx.script("/gone", always(410), SECRET) + f"?token={TOKEN}"
        ok = rx.script("/ok", always(200), SECRET)
        slack = rx.script("/slack", always(200))
        env = dict(NOTIFY_ENDPOINTS=endpoints({"url": ok, "secret": SECRET}, {"url": gone, "secret": SECRET},
                                              {"url": slack, "format": "slack"}), **FAST)
        port = rx.port

        first = stack.start("notifier", **env)
        first.wait_ready()
        publish(stack, first_batch)
        wait_for(lambda: len(rx.answered_ok("/ok")) == len(first_batch) and len(rx.answered_ok("/slack")) == 8, 60,
                 what="the first alerts")
        gone_id = wait_for(lambda: stack.query("SELECT endpoint_id, endpoint, reason FROM notifier_disabled_endpoints"),
                           30, what="the 410 remembered")
        [(endpoint_id, name, reason)] = gone_id
        assert name == f"http://127.0.0.1:{port}" and reason == "410 Gone"
        assert TOKEN not in endpoint_id and len(endpoint_id) == 64
        assert first.terminate() == 0
        assert len(rx.at("/gone")) == 1

        # Restarted: the endpoint stays disabled; the others keep receiving.
        second = stack.start("notifier", **env)
        second.wait_ready()
        publish(stack, second_batch)
        wait_for(lambda: len(rx.answered_ok("/ok")) == 16 and len(rx.answered_ok("/slack")) == 16, 60,
                 what="the second alerts at the other endpoints")
        time.sleep(0.5)
        assert len(rx.at("/gone")) == 1, "a disabled endpoint was called after the restart"
        metrics = metrics_of(second.port)
        assert metrics[("stockpipe_notifier_disabled_endpoints", (("endpoint", f"http://127.0.0.1:{port}"),))] == 1
        assert metrics[("stockpipe_notifier_deliveries_total",
                        (("endpoint", f"http://127.0.0.1:{port}"), ("outcome", "disabled")))] == len(second_batch)
        assert second.terminate() == 0
        log = second.output()
        assert f"endpoint #2 http://127.0.0.1:{port} is disabled: it answered 410 Gone on" in log
        assert f"endpoint_id '{endpoint_id}'" in log and "NOTIFY_REENABLE=2" in log
        assert "not sent (1 skipped since start)" in log  # the first skip is logged, with the count
        assert TOKEN not in log and SECRET[6:] not in log

        # NOTIFY_REENABLE=2: the 410 is forgotten; the endpoint is called again (and, still
        # answering 410, disabled and remembered again).
        third = stack.start("notifier", NOTIFY_REENABLE="2", **env)
        third.wait_ready()
        publish(stack, third_batch)
        wait_for(lambda: len(rx.at("/gone")) == 2 and len(rx.answered_ok("/ok")) == 24, 60,
                 what="the re-enabled endpoint called again")
        assert third.terminate() == 0
        assert "enabled again by NOTIFY_REENABLE" in third.output()
        wait_for(lambda: stack.query("SELECT 1 FROM notifier_disabled_endpoints"), 30, what="the new 410 remembered")

        # Deleting the row, as the log says, does the same.
        stack.execute("DELETE FROM notifier_disabled_endpoints WHERE endpoint_id = %s", (endpoint_id,))
        fourth = stack.start("notifier", **env)
        fourth.wait_ready()
        publish(stack, fourth_batch)
        wait_for(lambda: len(rx.at("/gone")) == 3 and len(rx.answered_ok("/ok")) == 32, 60,
                 what="the endpoint called again after its row was deleted")
        assert fourth.terminate() == 0
    reasons = [dict(m.headers())["error"].decode().split(":")[0] for m in stack.consume_all("dlq")]
    assert reasons == ["endpoint_gone"] * 3


def test_postgresql_away_at_start_is_waited_out_alive_and_sigterm_still_stops_it(stack: Stack) -> None:
    with Receiver() as rx:
        url = rx.script("/", always(200), SECRET)
        notifier = stack.start("notifier", NOTIFY_ENDPOINTS=endpoints({"url": url, "secret": SECRET}),
                               POSTGRES_DSN="host=127.0.0.1 port=1 dbname=x user=x", POSTGRES_CONNECT_TIMEOUT="1",
                               **FAST)

        def waiting() -> bool:
            try:
                code, body = http_get(notifier.port, "/readyz")
            except OSError:
                return False
            return code == 503 and "postgres" in json_body(body)["reasons"]

        wait_for(waiting, 30, what="/readyz naming PostgreSQL")
        time.sleep(2)
        assert notifier.alive() and http_get(notifier.port, "/healthz")[0] == 200
        start = time.monotonic()
        assert notifier.terminate() == 0
        assert time.monotonic() - start < 5
    assert "reading the disabled endpoints from PostgreSQL failed, retrying" in notifier.output()
