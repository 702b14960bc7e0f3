"""What goes over the wire: Standard Webhooks signed JSON, and Slack incoming-webhook bodies.

Standard Webhooks (https://www.standardwebhooks.com, "Signature scheme"): every request carries

- ``webhook-id``: the alert's id. Alert ids are deterministic, so every retry and every
  re-delivery after a restart carries the same one: receivers de-duplicate on it;
- ``webhook-timestamp``: seconds since the epoch when this attempt was signed;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}`` keyed with
  the base64-decoded part of the ``whsec_`` secret.

The body is ``{"type": "alert.raised", "timestamp": <when the alert's bar closed>, "data": <the
alert message as on the alerts topic>}``, the same bytes on every attempt (only the timestamp
header and the signature change). Slack gets ``text`` (the notification line) plus blocks with
symbol, rule, value, threshold, interval, bar time and a button to the dashboard's symbol view.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC
from urllib.parse import quote

import msgspec

from stockpipe.common.messages import Alert, interval_length

__all__ = ["EVENT_TYPE", "USER_AGENT", "sign", "json_body", "json_headers", "slack_body", "dashboard_link"]

EVENT_TYPE = "alert.raised"
USER_AGENT = "stockpipe-notifier/0.1"

_encode = msgspec.json.Encoder().encode
# Slack's limits: section text 3,000 characters, a field 2,000, a header 150, a button 75.
_SLACK_TEXT_MAX = 2900


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def json_body(alert: Alert, dashboard_url: str = "") -> bytes:
    """The Standard Webhooks payload of one alert; ``data`` decodes as an :class:`Alert`."""
    data = msgspec.to_builtins(alert)
    link = dashboard_link(dashboard_url, alert)
    if link:
        data["dashboard_url"] = link  # an extra field: consumers of the schema ignore it
    closed = (alert.ts + interval_length(alert.interval)).astimezone(UTC)
    return _encode({"type": EVENT_TYPE, "timestamp": closed, "data": data})


def json_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers of one signed attempt, signed at ``timestamp`` (epoch seconds)."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }


def dashboard_link(dashboard_url: str, alert: Alert) -> str:
    """``{DASHBOARD_URL}/symbol/{symbol}?interval={interval}``, or "" without a dashboard URL."""
    if not dashboard_url:
        return ""
    return f"{dashboard_url.rstrip('/')}/symbol/{quote(alert.symbol, safe='')}?interval={quote(alert.interval)}"


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters (its docs: "Escaping text").
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(x: float) -> str:
    return f"{x:.6g}"


def slack_body(alert: Alert, dashboard_url: str = "") -> bytes:
    """A Slack incoming-webhook body: ``text`` for notifications, blocks for the message."""
    message = alert.message if len(alert.message) <= _SLACK_TEXT_MAX else alert.message[:_SLACK_TEXT_MAX] + "…"
    bar = alert.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"{alert.symbol} {alert.rule} ({alert.interval}): {message} "
            f"(value {_number(alert.value)}, threshold {_number(alert.threshold)})")
    fields = [("Symbol", alert.symbol), ("Rule", alert.rule), ("Value", _number(alert.value)),
              ("Threshold", _number(alert.threshold)), ("Interval", alert.interval), ("Bar", bar)]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{alert.symbol}: {alert.rule}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(message or text)},
         "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"} for name, value in fields]},
    ]
    link = dashboard_link(dashboard_url, alert)
    if link:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": f"Open {alert.symbol} in the dashboard"},
            "url": link}]})
    return _encode({"text": _slack_escape(text), "blocks": blocks})
