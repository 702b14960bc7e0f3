"""One summary line every few seconds, so a running service shows it is doing its work.

    progress = Progress("stored", every=settings.progress_interval)
    progress.add(rows=len(rows), rejected=len(rejected))   # in the loop, cheap
    progress.tick()                                         # logs when the interval is up

logs ``stored 48,210 rows (1,607/s), 3 rejected (0/s) in the last 30s``; nothing when
nothing happened, and never with ``every`` = 0.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

__all__ = ["Progress"]

logger = logging.getLogger("stockpipe.progress")


class Progress:
    def __init__(self, verb: str, every: float = 30.0) -> None:
        self.verb = verb
        self.every = every
        self._counts: Counter[str] = Counter()
        self._since = time.monotonic()

    def add(self, **counts: int) -> None:
        self._counts.update(counts)

    def tick(self) -> None:
        if not self.every:
            return
        now = time.monotonic()
        elapsed = now - self._since
        if elapsed < self.every:
            return
        if any(self._counts.values()):
            parts = [f"{n:,} {what} ({n / elapsed:,.0f}/s)" for what, n in self._counts.items()]
            logger.info("%s %s in the last %.0fs", self.verb, ", ".join(parts), elapsed)
        self._counts.clear()
        self._since = now
