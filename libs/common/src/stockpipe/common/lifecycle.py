"""Process lifecycle: SIGTERM handling, bounded backoff, and the start-up wiring.

``SIGTERM`` (and Ctrl-C) set :attr:`Shutdown.event`; main loops check it between batches,
finish the batch in hand, flush, commit and return, so the process exits 0 well within
Kubernetes' grace period. A second signal exits at once.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from stockpipe.common.errors import SettingsError, TransientError
from stockpipe.common.http import Health
from stockpipe.common.metrics import ERRORS

__all__ = ["Shutdown", "BeatingStop", "ShutdownRequested", "Backoff", "retry", "run_main", "pin_blas_threads", "tune_gc"]

logger = logging.getLogger(__name__)


class Shutdown:
    """A stop flag set by SIGTERM/SIGINT, with the deadline ``SHUTDOWN_TIMEOUT`` sets.

    Loops check :attr:`requested` between units of work and :meth:`remaining` while they
    settle what is in hand. Whatever a dependency does meanwhile (a broker that does not
    answer a final flush, a client library's close that waits), the process exits 0 at the
    deadline: what was not committed by then is simply read again on the next start.
    ``wait()`` doubles as an interruptible sleep.
    """

    # Loops aim to be done this long before the hard exit, so they usually finish cleanly.
    _MARGIN = 1.5

    def __init__(self, timeout: float = 10.0) -> None:
        self.event = threading.Event()
        self.timeout = timeout
        self._requested_at: float | None = None
        self._signals = 0

    def install(self) -> Shutdown:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        logger.info("%s received: finishing the batch in hand, then stopping (at most %gs)",
                    signal.Signals(signum).name, self.timeout)
        self._requested_at = time.monotonic()
        # Half a second early: the exit itself (flushing logs, freeing memory) takes time.
        watchdog = threading.Timer(max(0.1, self.timeout - 0.5), self._force_exit)
        watchdog.daemon = True
        watchdog.start()
        self.event.set()

    def _force_exit(self) -> None:
        logger.warning("still stopping after SHUTDOWN_TIMEOUT=%gs: exiting now; what was not committed is read "
                       "again on the next start", self.timeout)
        logging.shutdown()
        os._exit(0)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` by which a stopping loop should be done (inf while running)."""
        if self._requested_at is None:
            if not self.event.is_set():
                return math.inf
            self._requested_at = time.monotonic()  # set without a signal (tests): from now on
        return self._requested_at + max(0.0, self.timeout - self._MARGIN)

    def remaining(self) -> float:
        """Seconds left before :attr:`deadline` (inf while no shutdown is requested)."""
        return self.deadline - time.monotonic()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as shutdown is requested."""
        return self.event.wait(seconds)

    def beating(self, beat: Callable[[], None], every: float = 1.0) -> BeatingStop:
        """An Event-like stop flag whose ``wait`` calls ``beat`` every ``every`` seconds.

        Hand it to code that sleeps between units of work (a poll interval, a paced
        source): the process stays visibly alive on ``/healthz`` while it sleeps.
        """
        return BeatingStop(self.event, beat, every)


class BeatingStop:
    """``threading.Event``'s ``is_set``/``wait``, beating a liveness callback while waiting."""

    def __init__(self, event: threading.Event, beat: Callable[[], None], every: float) -> None:
        self._event = event
        self._beat = beat
        self._every = every

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._beat()
            step = self._every if deadline is None else min(self._every, deadline - time.monotonic())
            if step <= 0:
                return self._event.is_set()
            if self._event.wait(step):
                return True


class Backoff:
    """Exponential backoff with full jitter: 0.5 s, 1 s, 2 s ... capped, reset on success."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * (2 ** self.attempt))
        self.attempt += 1
        # Full jitter keeps replicas that failed together from retrying together.
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


T = TypeVar("T")


class ShutdownRequested(Exception):
    """Raised by :func:`retry` when shutdown interrupts the wait for a dependency."""


def retry(
    action: Callable[[], T],
    *,
    shutdown: Shutdown,
    health: Health | None = None,
    what: str,
    backoff: Backoff | None = None,
) -> T:
    """Run ``action`` until it stops raising :class:`TransientError`.

    Waits with backoff between attempts while beating ``health`` (the process is alive, just
    waiting). Raises :class:`ShutdownRequested` if shutdown comes during the wait.
    """
    backoff = backoff or Backoff()
    while True:
        try:
            result = action()
        except TransientError as exc:
            delay = backoff.next_delay()
            ERRORS.labels("transient").inc()
            logger.warning("%s failed, retrying in %.1fs: %s", what, delay, exc)
            end = delay
            while end > 0:  # beat while waiting so /healthz stays green
                if health:
                    health.beat()
                step = min(end, 1.0)
                if shutdown.wait(step):
                    raise ShutdownRequested(what) from exc
                end -= step
            continue
        if backoff.attempt:
            logger.info("%s recovered", what)
        backoff.reset()
        return result


def pin_blas_threads() -> None:
    """One BLAS thread per process: with two, fits under load ran 50-100x slower here."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


# Collect the youngest generation once 50,000 new container objects are alive rather than
# CPython's 700: a consume loop holds a batch of Kafka messages (objects the cyclic GC tracks)
# and allocates a few short-lived lists and tuples per message, and the default rescanned
# them again and again. Measured: the ingestor's GC time ~0.7 -> 0.04 us per message
# (gc.callbacks in the service), analytics' processing 3.6 -> 2.4-2.7 us per bar (the same
# bars offline). Nothing on a hot path makes reference cycles; the garbage that can wait is
# at most that many small objects (a few MB).
GC_THRESHOLDS = (50_000, 10, 10)


def tune_gc() -> None:
    """Fewer cyclic-GC passes in a long-running service: everything alive now (modules,
    settings; call it again once a service has set up) moves to the permanent generation, out
    of every scan, and the youngest generation is collected less often
    (:data:`GC_THRESHOLDS`). Reference counting frees memory as before."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_main(main: Callable[[], int | None]) -> None:
    """Call a service's main: exit 2 with one line on a bad setting, else main's code."""
    pin_blas_threads()
    tune_gc()
    try:
        code = main()
    except SettingsError as exc:
        print(f"{os.path.basename(sys.argv[0]) or 'stockpipe'}: {exc}", file=sys.stderr)
        sys.exit(2)
    except ShutdownRequested:
        code = 0
    sys.exit(code or 0)
