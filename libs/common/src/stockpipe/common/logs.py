"""Logging set-up, done once in each service's ``__main__``.

One line per event on stdout: plain text, or JSON objects with ``LOG_FORMAT=json``. Fields
passed through ``extra=`` (topic, partition, offset, symbol...) appear in the JSON object and
at the end of a text line. Passwords in DSNs and ``password=`` pairs are masked in every line,
whatever logged them (librdkafka and psycopg2 errors included).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

__all__ = ["configure", "mask_secrets"]

_SECRET_PATTERNS = (
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)", re.I), r"\1***\3"),
    # password=..., password: ..., sasl.password=...
    (re.compile(r"""(password["']?\s*[=:]\s*)('[^']*'|"[^"]*"|[^\s,;&]+)""", re.I), r"\1***"),
)

# LogRecord attributes that are not user-supplied extras.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def mask_secrets(text: str) -> str:
    """Replace passwords in DSNs and ``password=`` pairs with ``***``."""
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


class _TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's naming
        # One line per event: a multi-line message (psycopg's "connection refused\n\tIs the
        # server running...") is joined with " | ". Tracebacks of bugs still follow in full.
        record.message = _LINE_BREAKS.sub(" | ", record.message.strip())
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return mask_secrets(line)


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(entry, default=str))


class _Repeats(logging.Filter):
    """Lets a librdkafka line through once per ``window`` seconds per kind of event.

    While a broker is away, each client thread reports every reconnect attempt (several a
    second): one line per event is what helps, a flood of identical ones is not. Lines are
    grouped by librdkafka's facility and client (``FAIL [analytics#producer-2]``); how many
    were held back is said on the next one let through.
    """

    def __init__(self, window: float = 30.0) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        key = msg.split("]", 1)[0]  # "FAIL [analytics#producer-2"
        last, held = self._seen.get(key, (0.0, 0))
        if record.created - last < self.window:
            self._seen[key] = (last, held + 1)
            return False
        if held:
            record.msg, record.args = f"{msg} ({held} similar lines in the last {self.window:.0f}s)", None
        self._seen[key] = (record.created, 0)
        if len(self._seen) > 1000:  # bounded: facilities x clients is small in practice
            self._seen.clear()
        return True


def configure(level: str = "info", fmt: str = "text", service: str = "stockpipe") -> None:
    """Route every logger to stdout in the chosen format; call once at start-up."""
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter(service))
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter that would drown the service's own lines at INFO.
    for noisy in ("yfinance", "urllib3", "peewee", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    rdkafka = logging.getLogger("librdkafka")
    rdkafka.filters[:] = [_Repeats()]
