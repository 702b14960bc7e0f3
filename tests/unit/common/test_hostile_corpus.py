"""Every case of the hostile corpus through its decoder: valid ones decode, the others get their reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hostile.corpus import CATEGORIES, TOPIC_KINDS, Case, cases, fits_kafka

from stockpipe.common.errors import InvalidMessage
from stockpipe.common.messages import DECODE_ERRORS, Alert, Bar, Codec, Forecast, Indicators

CODECS = {"raw": Codec(Bar), "indicators": Codec(Indicators), "alerts": Codec(Alert), "forecasts": Codec(Forecast)}
CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_gets_its_verdict(case: Case) -> None:
    codec = CODECS[case.topic_kind]
    if case.valid:
        message = codec.decode(case.value)
        times = [message.made_at, *(p.ts for p in message.points)] if case.topic_kind == "forecasts" else [message.ts]
        assert all(t.tzinfo is UTC for t in times)  # normalised, offsets or not
        assert codec.decode(codec.encode(message)) == message
        return
    with pytest.raises(InvalidMessage) as info:
        codec.decode(case.value)
    assert (info.value.reason, case.name) == (case.reason, case.name), info.value.detail
    assert info.value.detail
    # The path the ingestor's loop takes (decoder + DECODE_ERRORS + invalid()) agrees.
    if case.value is not None:
        with pytest.raises(DECODE_ERRORS) as raw:
            codec.decoder.decode(case.value)
        assert Codec.invalid(raw.value).reason == case.reason


def test_normalised_cases_keep_the_instant() -> None:
    normalised = [c for c in CASES if c.normalised]
    assert {c.topic_kind for c in normalised} == set(TOPIC_KINDS)
    for case in normalised:
        message = CODECS[case.topic_kind].decode(case.value)
        field = "made_at" if case.topic_kind == "forecasts" else "ts"
        sent = datetime.fromisoformat(msgspec.json.decode(case.value)[field])
        assert sent.utcoffset() != timedelta(0), case.name
        assert getattr(message, field) == sent and getattr(message, field).tzinfo is UTC


def test_every_topic_kind_and_category_is_covered() -> None:
    assert {c.topic_kind for c in CASES} == set(TOPIC_KINDS)
    assert {c.category for c in CASES} == set(CATEGORIES)
    for kind in TOPIC_KINDS:
        mine = [c for c in CASES if c.topic_kind == kind]
        assert sum(c.valid for c in mine) >= 5 and sum(not c.valid for c in mine) >= 40


def test_valid_cases_are_distinct_rows() -> None:
    keys = set()
    for case in (c for c in CASES if c.valid):
        m = CODECS[case.topic_kind].decode(case.value)
        key = (case.topic_kind, m.symbol, m.interval, m.made_at, m.model) if case.topic_kind == "forecasts" \
            else (case.topic_kind, m.symbol, m.interval, m.ts)
        assert key not in keys, case.name
        keys.add(key)


def test_oversized_cases_are_flagged_for_kafka() -> None:
    too_big = {c.name for c in CASES if not fits_kafka(c)}
    assert too_big == {f"{k}/size-over-{s}" for k in TOPIC_KINDS for s in ("1mb", "4mb")}


@pytest.mark.parametrize("kind", TOPIC_KINDS)
def test_the_batch_decoder_lets_no_invalid_case_through(kind: str) -> None:
    # decode_all (the ingestor's path for a run of one topic) returns the messages decode()
    # gives, or None ("one by one"): never a list with an invalid message in it.
    decoder = CODECS[kind].decoder
    valid = [c.value for c in CASES if c.topic_kind == kind and c.valid]
    got = decoder.decode_all(valid)
    assert got is None or got == [decoder.decode(v) for v in valid]
    for case in (c for c in CASES if c.topic_kind == kind and not c.valid):
        assert decoder.decode_all([*valid, case.value]) is None, case.name
        assert decoder.decode_all([case.value, *valid]) is None, case.name
