#!/usr/bin/env python3
"""Run several named commands in the foreground, one log stream, like foreman/honcho.

Usage::

    run_services.py [--stop-timeout SECONDS] NAME=COMMAND...

    python3 deploy/local/run_services.py \\
        producer='python -m stockpipe.producer' \\
        dashboard='gunicorn stockpipe.dashboard.app:server'

Each COMMAND runs through ``/bin/sh -c`` in its own session (so its own process
group), stdin from /dev/null, with this process's environment (``run.sh`` loads
``.local/env`` into it) plus ``PYTHONUNBUFFERED=1`` unless already set, so Python
children print each line at once.
Every line a child writes to stdout or stderr is printed as ``name | line``, names
padded to the longest, each name in its own colour when stdout is a terminal and
``NO_COLOR`` is unset.

Stopping: on Ctrl-C (SIGINT) or SIGTERM every child's process group gets SIGTERM,
then up to ``--stop-timeout`` seconds (default 12) to exit, then SIGKILL. A second
Ctrl-C during that wait sends SIGKILL at once.

When a child exits on its own: with code 0 this is noted and the others keep running;
with any other code it is reported loudly and the others are stopped as above.

Exit status: 0 after a requested stop in which every child exited within the timeout,
or when every child exited 0 on its own; the child's code when one failed (128+N when
killed by signal N); 1 when a requested stop had to SIGKILL a child; 2 for a usage
error (bad NAME=COMMAND).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, TextIO

__all__ = [
    "Runner",
    "ServiceSpec",
    "main",
    "parse_service_spec",
    "prefix_line",
]

# Enough for services that close their consumers and commit offsets on SIGTERM (a
# Kafka consumer's leave-group plus a final commit takes a few seconds at worst) while
# a Ctrl-C still feels prompt.
DEFAULT_STOP_TIMEOUT_S = 12.0
# How often the main loop looks at signals and children: short enough that Ctrl-C and
# a crash are acted on at once, long enough to cost nothing.
_POLL_S = 0.1
# After a child exits, how long to let its reader thread print the last buffered
# lines before the exit is announced (the pipe may stay open in a grandchild).
_DRAIN_S = 1.0

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# ANSI colours for the names: distinct on dark and light terminals; red is kept for
# our own alarms.
_COLORS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_ALARM = "1;31"
_SYSTEM = "system"


@dataclass(frozen=True)
class ServiceSpec:
    """One named command: ``name`` for the prefix, ``command`` for ``/bin/sh -c``."""

    name: str
    command: str


def parse_service_spec(spec: str) -> ServiceSpec:
    """``"name=command args"`` -> ServiceSpec; ValueError when malformed."""
    name, sep, command = spec.partition("=")
    if not sep or not _NAME_RE.fullmatch(name) or not command.strip():
        raise ValueError(f"expected NAME=COMMAND (NAME of letters, digits, _ . -), got {spec!r}")
    return ServiceSpec(name=name, command=command)


def prefix_line(name: str, width: int, line: str, color: str | None = None) -> str:
    """``name`` padded to ``width``, ``" | "``, then ``line``; the name (and its
    padding) wrapped in the ANSI colour ``color`` (e.g. "36") when given."""
    label = name.ljust(width)
    if color:
        label = f"\x1b[{color}m{label}\x1b[0m"
    return f"{label} | {line}"


def _exit_code(returncode: int) -> int:
    """Popen's returncode (negative for "killed by signal N") as a shell exit status."""
    return 128 - returncode if returncode < 0 else returncode


class Runner:
    """Starts the services, copies their output, watches and stops them."""

    def __init__(
        self,
        services: list[ServiceSpec],
        env: dict[str, str],
        out: TextIO,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        use_color: bool = False,
    ) -> None:
        self._services = services
        self._env = env
        self._out = out
        self._stop_timeout_s = stop_timeout_s
        self._width = max(len(s.name) for s in [*services, ServiceSpec(_SYSTEM, "-")])
        self._colors = {s.name: (_COLORS[i % len(_COLORS)] if use_color else None) for i, s in enumerate(services)}
        self._alarm = _ALARM if use_color else None
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._readers: dict[str, threading.Thread] = {}
        # Set by the signal handler, read by the main loop: plain assignments, because
        # a handler that took a lock could deadlock against the main thread holding it.
        self._signals_seen = 0

    # -- output ---------------------------------------------------------------------
    def _emit(self, name: str, line: str, color: str | None) -> None:
        with self._lock:
            self._out.write(prefix_line(name, self._width, line, color) + "\n")
            self._out.flush()

    def _say(self, message: str, loud: bool = False) -> None:
        self._emit(_SYSTEM, message, self._alarm if loud else None)

    def _copy_output(self, name: str, stream: IO[bytes]) -> None:
        color = self._colors[name]
        for raw in iter(stream.readline, b""):
            self._emit(name, raw.decode("utf-8", "replace").rstrip("\r\n"), color)
        stream.close()

    # -- life cycle -----------------------------------------------------------------
    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals_seen += 1

    def start(self) -> None:
        for spec in self._services:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", spec.command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._env,
                # Own session and process group: a terminal's Ctrl-C reaches only us,
                # and we stop each service with everything it started.
                start_new_session=True,
            )
            assert proc.stdout is not None
            reader = threading.Thread(target=self._copy_output, args=(spec.name, proc.stdout), daemon=True)
            reader.start()
            self._procs[spec.name] = proc
            self._readers[spec.name] = reader
            self._say(f"started {spec.name} (pid {proc.pid}): {spec.command}")

    def _signal_group(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # Gone already (or, after a pid wrapped round, not ours): nothing to signal.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def stop(self) -> bool:
        """SIGTERM every service's process group, wait, SIGKILL the rest.

        Returns True when every service exited before the timeout.
        """
        signals_at_start = self._signals_seen
        for proc in self._procs.values():
            # Also groups whose leader has exited: anything it left behind goes too.
            self._signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout_s
        while time.monotonic() < deadline and self._signals_seen == signals_at_start:
            if all(p.poll() is not None for p in self._procs.values()):
                break
            time.sleep(_POLL_S)
        clean = True
        for name, proc in self._procs.items():
            if proc.poll() is None:
                clean = False
                self._say(f"{name} still running after SIGTERM: sending SIGKILL", loud=True)
            self._signal_group(proc, signal.SIGKILL)
        for proc in self._procs.values():
            proc.wait()
        for reader in self._readers.values():
            reader.join(timeout=_DRAIN_S)
        return clean

    def run(self) -> int:
        """Start everything and supervise until a stop; returns the exit status.

        Must run in the main thread (it handles SIGINT and SIGTERM while it runs, and
        puts the previous handlers back when it returns).
        """
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _supervise(self) -> int:
        self.start()
        running = set(self._procs)
        while True:
            if self._signals_seen:
                self._say("stopping all services")
                clean = self.stop()
                self._say("all services stopped" if clean else "stopped, some by SIGKILL")
                return 0 if clean else 1
            for name in sorted(running):
                rc = self._procs[name].poll()
                if rc is None:
                    continue
                running.discard(name)
                self._readers[name].join(timeout=_DRAIN_S)
                if rc == 0:
                    self._say(f"{name} exited with code 0")
                    continue
                self._say(
                    f"*** {name} FAILED: exited with code {_exit_code(rc)}; stopping the others ***",
                    loud=True,
                )
                self.stop()
                return _exit_code(rc)
            if not running:
                self._say("all services exited")
                return 0
            time.sleep(_POLL_S)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run named commands in the foreground with prefixed output.",
        epilog="Example: run_services.py api='python -m api' worker='python -m worker'",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT_S,
        metavar="SECONDS",
        help=f"grace period between SIGTERM and SIGKILL (default {DEFAULT_STOP_TIMEOUT_S:g})",
    )
    parser.add_argument("services", nargs="+", metavar="NAME=COMMAND")
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Command-line entry point; returns the exit status (see the module docstring)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    out = out if out is not None else sys.stdout
    try:
        services = [parse_service_spec(s) for s in args.services]
    except ValueError as exc:
        parser.error(str(exc))
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        parser.error(f"service names must be unique: {' '.join(names)}")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    use_color = out.isatty() and "NO_COLOR" not in os.environ
    runner = Runner(services, env, out, stop_timeout_s=args.stop_timeout, use_color=use_color)
    return runner.run()


if __name__ == "__main__":
    # A child may print bytes that the terminal's encoding cannot show; replace them
    # rather than crash the whole supervisor.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    sys.exit(main())
