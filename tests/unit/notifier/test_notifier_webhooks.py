"""Standard Webhooks signing and the two body formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import standardwebhooks
from webhook_receiver import SignatureError, verify_standard_webhook

from stockpipe.common.messages import Alert, Codec
from stockpipe.notifier.endpoints import decode_secret
from stockpipe.notifier.webhooks import json_body, json_headers, sign, slack_body

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ALERTS = Codec(Alert)


def alert(**kw) -> Alert:
    fields = dict(id="7e9b2c1e-0000-5000-8000-000000000001", symbol="EURUSD=X", interval="1m",
                  ts=datetime(2024, 1, 2, 15, 30, tzinfo=UTC), rule="rsi_overbought", value=72.3456789,
                  threshold=70.0, message="RSI 72.35 crossed above 70 <&>")
    fields.update(kw)
    return Alert(**fields)


def test_the_specifications_own_example() -> None:
    # The signature example of the Standard Webhooks documentation and reference libraries.
    key = decode_secret(SECRET)
    got = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("secret", [SECRET, "whsec_" + "A" * 43, "whsec_" + "A" * 44])  # unpadded, padded
def test_signed_headers_verify_with_the_reference_library_and_the_spec(secret: str) -> None:
    body = json_body(alert(), "https://dash.example")
    now = int(datetime.now(UTC).timestamp())
    headers = json_headers(decode_secret(secret), "7e9b2c1e-0000-5000-8000-000000000001", now, body)
    assert headers["webhook-id"] == "7e9b2c1e-0000-5000-8000-000000000001"
    assert headers["webhook-timestamp"] == str(now)
    assert standardwebhooks.Webhook(secret).verify(body.decode(), headers)["type"] == "alert.raised"
    verify_standard_webhook(secret, headers, body)
    with pytest.raises(SignatureError):
        verify_standard_webhook(secret, headers, body.replace(b"72.3", b"99.3"))
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body.decode(), headers | {"webhook-id": "other"})


def test_json_body_carries_the_alert_unchanged() -> None:
    a = alert()
    body = json.loads(json_body(a, "https://dash.example/"))
    assert body["type"] == "alert.raised"
    assert body["timestamp"] == "2024-01-02T15:31:00Z"  # when the bar closed
    assert ALERTS.decode(json.dumps(body["data"]).encode()) == a  # data decodes as the alert itself
    assert body["data"]["dashboard_url"] == "https://dash.example/symbol/EURUSD%3DX?interval=1m"
    assert json_body(a) == json_body(a)  # the same bytes on every attempt
    assert "dashboard_url" not in json.loads(json_body(a, ""))["data"]


def test_slack_body() -> None:
    body = json.loads(slack_body(alert(), "https://dash.example"))
    assert body["text"].startswith("EURUSD=X rsi_overbought (1m): RSI 72.35 crossed above 70 &lt;&amp;&gt;")
    header, section, actions = body["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "EURUSD=X: rsi_overbought"}
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in section["fields"]}
    assert fields == {"Symbol": "EURUSD=X", "Rule": "rsi_overbought", "Value": "72.3457", "Threshold": "70",
                      "Interval": "1m", "Bar": "2024-01-02 15:30 UTC"}
    assert section["text"]["text"] == "RSI 72.35 crossed above 70 &lt;&amp;&gt;"  # Slack's escaping
    [button] = actions["elements"]
    assert button["url"] == "https://dash.example/symbol/EURUSD%3DX?interval=1m"
    assert len(section["fields"]) <= 10 and len(header["text"]["text"]) <= 150 and len(button["text"]["text"]) <= 75


def test_slack_body_limits_and_no_dashboard() -> None:
    body = json.loads(slack_body(alert(message="x" * 10_000, symbol="BRK.B", rule="r" * 64), ""))
    assert [b["type"] for b in body["blocks"]] == ["header", "section"]  # no link without DASHBOARD_URL
    assert len(body["blocks"][1]["text"]["text"]) <= 3000
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    assert json.loads(slack_body(alert(message=""), ""))["blocks"][1]["text"]["text"]  # never empty
