"""Where bars come from: ``yahoo`` (live, backfill), ``synthetic``, ``replay``.

A source has a ``name`` (the ``source`` field of its bars) and
``bars(resume, stop) -> Iterator[Bar | Flush]``: bars in order per series, until ``stop``
is set or it runs out. ``resume`` maps (symbol, interval) to the last bar of that series
acknowledged by Kafka (read back from ``raw`` at start); a source continues each series
after it and never changes it. A source that asks for the same data again later (Yahoo's
polls) yields :data:`FLUSH` after each batch: the publisher then waits until Kafka has
acknowledged everything so far, however long that takes, and advances ``resume`` before
asking the source for more, so a bar is never asked for twice and never skipped.
"""

from __future__ import annotations

__all__ = ["FLUSH", "Flush"]


class Flush:
    """The type of :data:`FLUSH`."""

    _instance: Flush | None = None

    def __new__(cls) -> Flush:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "FLUSH"


FLUSH = Flush()
"""Yielded by a source: "wait until everything so far is acknowledged, then advance resume"."""
