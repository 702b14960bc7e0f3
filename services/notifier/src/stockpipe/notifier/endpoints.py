"""The webhook endpoints of ``NOTIFY_ENDPOINTS`` and which alerts each one wants.

``NOTIFY_ENDPOINTS`` is a JSON list (DESIGN.md)::

    [{"url": "https://hooks.example.com/stockpipe", "format": "json", "secret": "whsec_...",
      "symbols": ["AAPL", "MSFT"], "rules": ["rsi_overbought"], "intervals": ["1m"]},
     {"url": "https://hooks.slack.com/services/T000/B000/XXXX", "format": "slack"}]

- ``url``: http or https, required. It may hold a token (Slack's do), so it is never logged:
  logs and metrics name an endpoint by its scheme and host only (:attr:`Endpoint.name`).
- ``format``: ``json`` (Standard Webhooks, signed; the default) or ``slack``.
- ``secret``: ``whsec_`` + base64 of at least 16 random bytes, required for ``json``.
- ``symbols``, ``rules``, ``intervals``: optional filters; an alert must match every one given.

Anything else (not JSON, an unknown key, a missing url...) is a :class:`ValueError` whose text
names the entry and the problem but never a secret or a URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from stockpipe.common.messages import Alert
from stockpipe.common.settings import Secret

__all__ = ["Endpoint", "parse_endpoints", "decode_secret", "MAX_ENDPOINTS"]

# One delivery thread per endpoint: a bound on threads and on connections kept open.
MAX_ENDPOINTS = 64
# The Standard Webhooks spec asks for 24-64 byte keys; below 16 bytes a key is guessable.
_MIN_SECRET_BYTES = 16
_SECRET_PREFIX = "whsec_"
_KEYS = {"url", "format", "secret", "symbols", "rules", "intervals"}
_FILTERS = ("symbols", "rules", "intervals")

Format = Literal["json", "slack"]


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (padding optional, as in the reference library)."""
    if not secret.startswith(_SECRET_PREFIX):
        raise ValueError("the secret must start with whsec_")
    body = secret[len(_SECRET_PREFIX):]
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the secret after whsec_ is not base64") from None
    if len(key) < _MIN_SECRET_BYTES:
        raise ValueError(f"the secret must decode to at least {_MIN_SECRET_BYTES} bytes")
    return key


@dataclass(frozen=True)
class Endpoint:
    """One configured receiver. ``url`` and ``secret`` are secrets: log :attr:`name` instead."""

    index: int  # 1-based position in NOTIFY_ENDPOINTS, to tell two endpoints on one host apart
    url: Secret
    format: Format
    key: bytes | None  # the decoded signing key (json format)
    symbols: frozenset[str] | None = None
    rules: frozenset[str] | None = None
    intervals: frozenset[str] | None = None

    @property
    def name(self) -> str:
        """Scheme and host (with a non-default port): what logs and metrics show."""
        parts = urlsplit(self.url.get())
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port and parts.port != {"http": 80, "https": 443}[parts.scheme] else ""
        return f"{parts.scheme}://{host}{port}"

    @property
    def id(self) -> str:
        """A stable identity: the SHA-256 (hex) of the URL, never the URL (it may hold a token).

        The same URL is the same endpoint whatever its position, format or secret; a new URL is
        a new endpoint (which is how a user hands out a fresh one after a 410 Gone).
        """
        return hashlib.sha256(self.url.get().encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Endpoint(#{self.index} {self.name} {self.format})"

    __str__ = __repr__

    def matches(self, alert: Alert) -> bool:
        """True when the alert passes every filter this endpoint has."""
        return ((self.symbols is None or alert.symbol in self.symbols)
                and (self.rules is None or alert.rule in self.rules)
                and (self.intervals is None or alert.interval in self.intervals))


def _filter(entry: dict, key: str, where: str) -> frozenset[str] | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}: {key!r} must be a non-empty list of strings (leave it out to match all)")
    return frozenset(v.strip() for v in value)


def _endpoint(index: int, entry: object) -> Endpoint:
    where = f"entry {index}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not an object")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    url = entry.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{where}: 'url' is missing")
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{where}: 'url' is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{where}: 'url' must be http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{where}: 'url' has no host")
    fmt = entry.get("format", "json")
    if fmt not in ("json", "slack"):
        shown = fmt if isinstance(fmt, str) and len(fmt) <= 20 else "..."
        raise ValueError(f"{where}: unknown 'format' {shown!r} (json or slack)")
    secret = entry.get("secret")
    key = None
    if fmt == "json":
        if not isinstance(secret, str):
            raise ValueError(f"{where}: format json needs a 'secret' (whsec_ + base64)")
        try:
            key = decode_secret(secret.strip())
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    elif secret is not None and not isinstance(secret, str):
        raise ValueError(f"{where}: 'secret' must be a string")
    return Endpoint(index=index, url=Secret(url), format=fmt, key=key,
                    **{k: _filter(entry, k, where) for k in _FILTERS})


def parse_endpoints(raw: str) -> list[Endpoint]:
    """The endpoints of a ``NOTIFY_ENDPOINTS`` value; empty or blank = none."""
    if not raw.strip():
        return []
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        # The decoder's message names a position, never the text around it.
        raise ValueError(f"not JSON ({type(exc).__name__} at line {exc.lineno} column {exc.colno})"
                         if isinstance(exc, json.JSONDecodeError) else "not JSON") from None
    if not isinstance(entries, list):
        got = "one object: put it in [ ]" if isinstance(entries, dict) else f"JSON {type(entries).__name__}"
        raise ValueError(f"a JSON list of endpoint objects, got {got}")
    if len(entries) > MAX_ENDPOINTS:
        raise ValueError(f"at most {MAX_ENDPOINTS} endpoints (one delivery thread each)")
    return [_endpoint(i, e) for i, e in enumerate(entries, start=1)]
