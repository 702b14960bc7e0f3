"""The exception root and the three kinds of failure every service tells apart.

- :class:`InvalidMessage`: a poison message. It goes to the dead-letter topic with its reason
  and the consumer moves on.
- :class:`TransientError`: a dependency outage (Kafka, PostgreSQL). Retried with bounded
  backoff while ``/readyz`` reports it.
- anything else is a bug and crashes loudly.
"""

from __future__ import annotations

__all__ = ["StockpipeError", "SettingsError", "InvalidMessage", "TransientError"]


class StockpipeError(Exception):
    """Root of every exception stockpipe raises on purpose."""


class SettingsError(StockpipeError):
    """A bad configuration value; ``str()`` is the one line printed before exit code 2."""

    def __init__(self, variable: str, value: str, expected: str) -> None:
        self.variable = variable
        self.value = value
        self.expected = expected
        super().__init__(f"invalid setting {variable}={value!r}: expected {expected}")


class InvalidMessage(StockpipeError):
    """A message that can never be processed. ``reason`` is a short label for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class TransientError(StockpipeError):
    """A dependency is unreachable for now; retry later."""
