"""A real webhook receiver on 127.0.0.1 for the notifier's tests: verifies, records, misbehaves.

Signature verification is written here from the Standard Webhooks specification
(https://www.standardwebhooks.com, "Verifying webhooks"), independently of the notifier's
signing code: strip ``whsec_``, base64-decode the key, HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{raw body}``, base64, compare in constant time against each
space-separated ``v1,<sig>`` of ``webhook-signature``; reject timestamps more than five
minutes away from now.

Each path can be scripted (:meth:`Receiver.script`) to answer per attempt of a webhook-id:
a status, extra headers (``Retry-After``, ``Location``), a delay before answering (slow
endpoints, timeouts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Receiver", "Reply", "Request", "verify_standard_webhook", "SignatureError"]

TOLERANCE = 300  # seconds: the spec's suggested window against replays


class SignatureError(Exception):
    pass


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> dict:
    """Verify per the spec; return the parsed body or raise :class:`SignatureError`."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit():
        raise SignatureError(f"webhook-timestamp {stamp!r} is not integer seconds")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > TOLERANCE:
        raise SignatureError(f"webhook-timestamp {stamp} is more than {TOLERANCE}s from now")
    assert secret.startswith("whsec_")
    encoded = secret[len("whsec_"):]
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))  # the reference libraries accept it unpadded
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for candidate in signatures.split(" "):
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(sig), expected):
            return json.loads(body)
    raise SignatureError("no v1 signature matches")


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    attempt: int  # 1 for the first request with this (path, webhook-id or body), 2 for the next...
    verified: bool | None = None  # None: no secret configured for the path
    error: str = ""
    status: int = 0  # what the script answered (the client may have timed out before)

    @property
    def webhook_id(self) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get("webhook-id")

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering


Script = Callable[[Request], Reply]


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that records every POST."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._scripts: dict[str, Script] = {}
        self._secrets: dict[str, str] = {}
        self._attempts: dict[tuple[str, str], int] = defaultdict(int)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
            # Headers and body go out in two writes: without TCP_NODELAY each answer on a
            # kept-alive connection waits 40 ms for the client's delayed ACK.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The client went away mid-request (a SIGKILLed notifier): no request was
                    # made, as for any HTTP server; recording it would fail its signature check.
                    self.close_connection = True
                    return
                reply = receiver._record(self.path, dict(self.headers.items()), body)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (timeout): fine
                    pass

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, script: Script, secret: str | None = None) -> str:
        """Answer POSTs to ``path`` with ``script``; verify them with ``secret``. Returns the URL."""
        self._scripts[path] = script
        if secret:
            self._secrets[path] = secret
        return self.url(path)

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        route = path.split("?", 1)[0]
        req = Request(path=route, headers=headers, body=body, at=time.monotonic(), attempt=0)
        secret = self._secrets.get(route)
        if secret:
            try:
                verify_standard_webhook(secret, headers, body)
                req.verified = True
            except (SignatureError, ValueError) as exc:
                req.verified, req.error = False, str(exc)
        with self._lock:
            key = (route, req.webhook_id or body.decode(errors="replace"))
            self._attempts[key] += 1
            req.attempt = self._attempts[key]
            self.requests.append(req)
        script = self._scripts.get(route)
        reply = script(req) if script else Reply(404)
        req.status = reply.status
        return reply

    def at(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def answered_ok(self, path: str) -> list[Request]:
        """Requests to ``path`` answered 2xx (or about to be: a slow answer may still be on its way)."""
        return [r for r in self.at(path) if 200 <= r.status < 300]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def always(status: int = 200, **headers: str) -> Script:
    return lambda req: Reply(status, dict(headers))


def fail_first(n: int, status: int = 500, then: int = 200, delay: float = 0.0, **headers: str) -> Script:
    """``status`` (with ``headers``, after ``delay``) for the first ``n`` attempts of each id, then ``then``."""
    return lambda req: Reply(status, dict(headers), delay) if req.attempt <= n else Reply(then)
