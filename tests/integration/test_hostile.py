"""The hostile corpus (tests/hostile/corpus.py) fired at the running services.

Every message of every category goes to the topic it targets, between valid ones; then:
each invalid message is in ``dlq`` with its reason (once per service that reads its topic)
and counted; the services are the same processes (same PID, never restarted); every valid
message reached its table (the ingestor) or its webhook endpoints, signed (the notifier,
against a real receiver on 127.0.0.1); nothing hostile reached a table or an endpoint. The
forecaster reads ``indicators``: a valid series of its own goes in half before and half after
that topic's corpus, and its forecast runs are made.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hostile.corpus import TOPIC_KINDS, Case, cases, fits_kafka

from stockpipe.common.messages import Alert, Bar, Codec, Forecast, Indicators
from stockpipe.forecaster.pool import arima_task

from harness import Stack, metrics_of, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "notifier"))
from webhook_receiver import Receiver, always  # noqa: E402

pytestmark = pytest.mark.integration

CODECS = {"raw": Codec(Bar), "indicators": Codec(Indicators), "alerts": Codec(Alert), "forecasts": Codec(Forecast)}
# Which running services read each topic kind (each dead-letters what it rejects).
READERS = {"raw": ("ingestor", "analytics"), "indicators": ("ingestor", "forecaster"), "alerts": ("ingestor",),
           "forecasts": ("ingestor",)}
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# The forecaster's series around the corpus: a run at bars 20, 30 and 40 (small windows, quick fits).
FORECASTER = dict(ARIMA_MIN_OBSERVATIONS=20, FORECAST_EVERY_BARS=10, ARIMA_WINDOW=40, FORECAST_HISTORY=100,
                  ARIMA_FORECAST_STEPS=3, ARIMA_MAX_P=2, ARIMA_MAX_Q=2, ML_WINDOW_SIZE=5, MIN_TRAINING_SAMPLES=50,
                  FORECASTER_WORKERS=1)
FORECAST_SYMBOL, FORECAST_BARS = "ZZFORECAST", 40


def forecaster_series(now: datetime) -> list[Indicators]:
    """40 valid 1m bars of one series, ending two hours ago (before every corpus time)."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=120 + FORECAST_BARS)
    closes = 50.0 * np.exp(np.cumsum(np.random.default_rng(12).normal(0.0, 0.01, FORECAST_BARS)))
    return [Indicators(symbol=FORECAST_SYMBOL, interval="1m", ts=start + timedelta(minutes=i), close=float(c))
            for i, c in enumerate(closes)]


def series_keys(stack: Stack, table: str) -> set[tuple]:
    return {(s, i, ts) for s, i, ts in stack.query(f'SELECT symbol, "interval", ts FROM {table}')}


def fire(stack: Stack, corpus: list[Case], around: dict[str, list[tuple[bytes, bytes]]] | None = None) -> None:
    """Produce every case to the topic of its kind, in corpus order; ``around[kind]``: valid
    messages of a kind, half before and half after its cases."""
    for kind in TOPIC_KINDS:
        mine = [(c.key, c.value) for c in corpus if c.topic_kind == kind]
        if around and kind in around:
            half = len(around[kind]) // 2
            mine = around[kind][:half] + mine + around[kind][half:]
        if mine:
            # One message per request: a batch holding the ~1 MB case and others would exceed
            # the broker's max.message.bytes as a whole.
            stack.produce_keyed(kind, mine, **{"batch.num.messages": 1, "message.max.bytes": 1_048_000})


def dead_letters(stack: Stack) -> dict[tuple[str, int, int], list[str]]:
    """The ``error`` headers on ``dlq`` by (source topic, partition, offset); checks truncation."""
    by_source: dict[tuple, list[str]] = {}
    for m in stack.consume_all("dlq", timeout=30):
        h = {k: v.decode() for k, v in m.headers()}
        if len(m.value() or b"") >= 900_000 or "truncated" in h:  # too big to go on with its headers
            assert len(m.value()) == 900_000 and int(h["truncated"]) > 900_000, h
        by_source.setdefault((h["source_topic"], int(h["source_partition"]), int(h["source_offset"])), []).append(
            h["error"])
    return by_source


def wait_for_dead_letters(stack: Stack, n: int) -> dict[tuple[str, int, int], list[str]]:
    """The dead letters once there are ``n`` of them (and 2 s later: no more must come)."""
    wait_for(lambda: sum(map(len, dead_letters(stack).values())) >= n, 120, interval=1.0,
             what=f"{n} dead letters")
    time.sleep(2)
    return dead_letters(stack)


def sources(stack: Stack, corpus: list[Case]) -> dict[tuple[str, int, int], Case]:
    """Where each case landed: (topic, partition, offset) -> case."""
    by_bytes = {(c.topic_kind, c.key, c.value): c for c in corpus}
    out = {}
    for kind in {c.topic_kind for c in corpus}:
        for m in stack.consume_all(kind, timeout=30):
            case = by_bytes.get((kind, m.key(), m.value()))
            if case is not None:
                out[(stack.topic(kind), m.partition(), m.offset())] = case
    assert len(out) == len(corpus)
    return out


def dead_letter_problems(case_of: dict[tuple, Case], by_source: dict[tuple, list[str]],
                         readers: dict[str, tuple[str, ...]], valid_may_die=lambda c: False) -> list[str]:
    """Each invalid case dead-lettered once per reader with its reason; no valid one at all."""
    problems = []
    for src, c in case_of.items():
        errors = by_source.get(src, [])
        if c.valid:
            if errors and not valid_may_die(c):
                problems.append(f"{c.name}: valid but dead-lettered: {errors}")
            continue
        if len(errors) != len(readers[c.topic_kind]):
            problems.append(f"{c.name}: dead-lettered {len(errors)}x, expected {len(readers[c.topic_kind])}")
        elif not all(e.startswith(f"{c.reason}:") for e in errors):
            problems.append(f"{c.name}: reasons {errors}, expected {c.reason}")
    return problems


def test_the_hostile_corpus_ends_in_dlq_and_stops_nothing(stack: Stack) -> None:
    ingestor = stack.start("ingestor")
    analytics = stack.start("analytics")
    forecaster = stack.start("forecaster", **FORECASTER)
    services = (ingestor, analytics, forecaster)
    for svc in services:
        svc.wait_ready(120)
    pids = {s.name: s.proc.pid for s in services}

    corpus = [c for c in cases() if fits_kafka(c)]
    series = forecaster_series(datetime.now(UTC))
    fire(stack, corpus, {"indicators": [(FORECAST_SYMBOL.encode(), CODECS["indicators"].encode(m)) for m in series]})
    invalid = [c for c in corpus if not c.valid]
    valid: dict[str, list[Case]] = {k: [c for c in corpus if c.valid and c.topic_kind == k] for k in READERS}
    by_source = wait_for_dead_letters(stack, sum(len(READERS[c.topic_kind]) for c in invalid))

    # Each invalid message: in dlq once per service reading its topic, with its reason.
    case_of = sources(stack, corpus)
    problems = dead_letter_problems(case_of, by_source, READERS,
                                    valid_may_die=lambda c: c.topic_kind == "raw" and c.category == "extreme_ratio")
    assert not problems, "\n".join(problems)
    # ... and none of the forecaster's valid series (the only messages that are not cases).
    assert [errors for src, errors in by_source.items() if src not in case_of] == []

    # Counted by reason in each service.
    for name, svc in (("ingestor", ingestor), ("analytics", analytics), ("forecaster", forecaster)):
        want = Counter(c.reason for c in invalid if name in READERS[c.topic_kind])
        metrics = metrics_of(svc.port)
        for reason, n in want.items():
            assert metrics.get(("stockpipe_dlq_messages_total", (("reason", reason),)), 0) >= n, (name, reason)

    # Valid messages reached their tables; nothing hostile did.
    def keys(kind: str) -> set[tuple]:
        out = set()
        for c in valid[kind]:
            m = CODECS[kind].decode(c.value)
            out.add((m.symbol, m.interval, getattr(m, "ts", None) or m.made_at))
        return out

    want_bars = keys("raw")
    wait_for(lambda: series_keys(stack, "price_bars") >= want_bars, 60, what="every valid bar stored")
    assert series_keys(stack, "price_bars") == want_bars
    want_ind = keys("indicators") | {(m.symbol, m.interval, m.ts) for m in series}
    wait_for(lambda: series_keys(stack, "indicators") >= want_ind, 60, what="every valid indicator row stored")
    assert series_keys(stack, "indicators") <= want_ind | want_bars  # analytics adds one per valid bar
    want_alert_ids = {CODECS["alerts"].decode(c.value).id for c in valid["alerts"]}
    wait_for(lambda: {r[0] for r in stack.query("SELECT id::text FROM alerts")} >= want_alert_ids, 60,
             what="every valid alert stored")
    for (symbol, interval, ts) in stack.query('SELECT symbol, "interval", ts FROM alerts'):
        assert (symbol, interval, ts) in want_bars | {k for k in keys("alerts")}
    want_fc = {(f.symbol, f.interval, f.made_at) for f in (CODECS["forecasts"].decode(c.value)
                                                          for c in valid["forecasts"])}
    # The forecaster's runs on its series, the corpus in between, owed at bars 20, 30 and 40: the
    # last is always made, from all 40 bars; the others may be overtaken by it (at most one
    # pending fit per series, as documented: here they all come in one batch).
    runs = [(FORECAST_SYMBOL, "1m", series[n - 1].ts) for n in range(20, FORECAST_BARS + 1, 10)]
    want_fc.add(runs[-1])

    def stored_runs() -> set[tuple]:
        return {tuple(r) for r in stack.query('SELECT DISTINCT symbol, "interval", made_at FROM forecasts')}

    try:
        wait_for(lambda: stored_runs() >= want_fc, 120, what="every valid forecast stored")
    except AssertionError as exc:
        m = metrics_of(forecaster.port)
        raise AssertionError(f"{exc}: missing {want_fc - stored_runs()}; forecaster: " + str(
            {k: v for k, v in m.items() if k[0].startswith("stockpipe_forecaster_f")})) from exc
    assert stored_runs() - set(runs[:-1]) == want_fc
    # ... and it is the forecast of those 40 bars, as if the corpus had never been there.
    s = {k.lower(): v for k, v in FORECASTER.items()}
    r = arima_task(np.log([m.close for m in series]), s["arima_max_p"], 2, s["arima_max_q"], s["arima_forecast_steps"],
                   0.95, None, None)
    got = stack.query("SELECT yhat FROM forecasts WHERE symbol = %s AND made_at = %s AND model <> 'linreg' "
                      "ORDER BY target_ts", (FORECAST_SYMBOL, runs[-1][2]))
    assert [g[0] for g in got] == pytest.approx([math.exp(v) for v in r["mean"]], rel=1e-9)

    # The same processes, never restarted, still serving.
    for svc in services:
        assert svc.alive() and svc.proc.pid == pids[svc.name]
    assert all(svc.terminate() == 0 for svc in services)


def test_the_hostile_alerts_at_the_notifier_are_dead_lettered_once_and_the_valid_ones_delivered(
        stack: Stack) -> None:
    """The ``alerts`` corpus fired at a running notifier with real webhook endpoints on 127.0.0.1."""
    corpus = [c for c in cases("alerts") if fits_kafka(c)]
    invalid = [c for c in corpus if not c.valid]
    valid = {CODECS["alerts"].decode(c.value).id: c for c in corpus if c.valid}
    with Receiver() as rx:
        hook = rx.script("/hook", always(200), WEBHOOK_SECRET)
        slack = rx.script("/slack", always(200))
        notifier = stack.start("notifier", NOTIFY_ENDPOINTS=json.dumps([
            {"url": hook, "format": "json", "secret": WEBHOOK_SECRET}, {"url": slack, "format": "slack"}]),
            PROGRESS_INTERVAL="0", NOTIFIER_BATCH_TIMEOUT="0.05")
        notifier.wait_ready()
        pid = notifier.proc.pid
        fire(stack, corpus)

        by_source = wait_for_dead_letters(stack, len(invalid))
        # Each invalid alert: in dlq exactly once, with its reason; no valid one.
        problems = dead_letter_problems(sources(stack, corpus), by_source, {"alerts": ("notifier",)})
        assert not problems, "\n".join(problems)
        metrics = metrics_of(notifier.port)
        for reason, n in Counter(c.reason for c in invalid).items():
            assert metrics.get(("stockpipe_dlq_messages_total", (("reason", reason),)), 0) == n, reason

        # Every valid alert delivered to both endpoints, signed, once, as it was on the topic.
        wait_for(lambda: {r.webhook_id for r in rx.answered_ok("/hook")} >= set(valid), 60,
                 what="every valid alert at the json endpoint")
        wait_for(lambda: len(rx.answered_ok("/slack")) >= len(valid), 60, what="every valid alert at Slack")
        time.sleep(1)  # nothing more may come
        hook_reqs = rx.at("/hook")
        assert all(r.verified for r in hook_reqs), [r.error for r in hook_reqs if not r.verified][:3]
        assert sorted(r.webhook_id for r in hook_reqs) == sorted(valid)  # once each, nothing hostile
        for r in hook_reqs:
            sent = CODECS["alerts"].decode(msgspec.json.encode(r.json()["data"]))
            assert sent == CODECS["alerts"].decode(valid[r.webhook_id].value), valid[r.webhook_id].name
        slack_texts = [r.json()["text"] for r in rx.at("/slack")]
        assert len(slack_texts) == len(valid) and all("\n" not in t and "<" not in t for t in slack_texts)
        port = rx.port
        assert metrics_of(notifier.port)[("stockpipe_notifier_deliveries_total",
                                          (("endpoint", f"http://127.0.0.1:{port}"), ("outcome", "delivered")))] \
            == 2 * len(valid)

        # The same process, never restarted, still serving.
        assert notifier.alive() and notifier.proc.pid == pid
        assert notifier.terminate() == 0
