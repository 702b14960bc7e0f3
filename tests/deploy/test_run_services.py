"""Tests for deploy/local/run_services.py: line prefixes, and the
supervisor's behaviour (failure propagation, SIGTERM handling, SIGKILL after the grace
period) driven through real child processes.

The module is loaded from its path, so this file works where it is and after a move
under tests/.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _find_script() -> Path:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "deploy" / "local" / "run_services.py"
        if candidate.is_file():
            return candidate
    raise RuntimeError("deploy/local/run_services.py not found above this test file")


SCRIPT = _find_script()
_spec = importlib.util.spec_from_file_location("run_services", SCRIPT)
assert _spec is not None and _spec.loader is not None
rs = importlib.util.module_from_spec(_spec)
sys.modules["run_services"] = rs  # dataclasses look the module up by name
_spec.loader.exec_module(rs)


# -- service specs and prefixes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "name", "command"),
    [
        ("producer=python -m x", "producer", "python -m x"),
        ("a=echo a=b", "a", "echo a=b"),
        ("ws-1.x_y=sleep 1", "ws-1.x_y", "sleep 1"),
    ],
)
def test_parse_service_spec(spec: str, name: str, command: str) -> None:
    assert rs.parse_service_spec(spec) == rs.ServiceSpec(name, command)


@pytest.mark.parametrize("spec", ["noequals", "=cmd", "name=", "name=   ", "bad name=x", "-x=y"])
def test_parse_service_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        rs.parse_service_spec(spec)


@pytest.mark.parametrize(
    ("name", "width", "line", "color", "expected"),
    [
        ("api", 8, "hello", None, "api      | hello"),
        ("producer", 8, "x", None, "producer | x"),
        ("api", 3, "", None, "api | "),
        ("api", 5, "hi", "36", "\x1b[36mapi  \x1b[0m | hi"),
    ],
)
def test_prefix_line(name: str, width: int, line: str, color: str | None, expected: str) -> None:
    assert rs.prefix_line(name, width, line, color) == expected


# -- the supervisor, with real child processes ------------------------------------------


def _run(args: list[str], timeout: float = 30, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_prefixes_output_and_passes_the_environment() -> None:
    res = _run(['one=echo "$GREETING"', "second=echo err >&2"], env={**os.environ, "GREETING": "hello world"})
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert "one    | hello world" in lines  # padded to "system", the longest name
    assert "second | err" in lines
    assert "\x1b[" not in res.stdout  # no colour when stdout is not a terminal


def test_children_print_unbuffered() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    res = _run(['a=echo "unbuffered=$PYTHONUNBUFFERED"'], env=env)
    assert "a      | unbuffered=1" in res.stdout.splitlines()


def test_failing_child_stops_the_others_and_sets_exit_code() -> None:
    start = time.monotonic()
    res = _run(["ok=echo fine; exec sleep 60", "bad=sleep 0.5; echo dying; exit 3"])
    assert res.returncode == 3
    assert time.monotonic() - start < 10  # `ok` was stopped, not waited for
    assert "bad    | dying" in res.stdout
    assert "bad FAILED: exited with code 3" in res.stdout


def test_child_killed_by_signal_gives_128_plus_n() -> None:
    res = _run(["k=kill -TERM $$; sleep 5"])
    assert res.returncode == 128 + signal.SIGTERM


def test_children_exiting_zero_end_the_run_with_zero() -> None:
    res = _run(["a=true", "b=sleep 0.3"])
    assert res.returncode == 0
    assert "a exited with code 0" in res.stdout


def test_usage_errors_exit_2() -> None:
    assert _run(["not-a-spec"]).returncode == 2
    assert _run(["a=true", "a=true"]).returncode == 2
    assert _run(["--env-file", "x", "a=true"]).returncode == 2  # no env files: run.sh loads .local/env


def _start_and_wait_for(args: list[str], marker: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 15
    for line in proc.stdout:
        # The child's own line, not the "started ... (command)" line that quotes it.
        if line.rstrip("\n").endswith(f"| {marker}"):
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"never saw {marker!r}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_children_and_exits_zero(tmp_path: Path, sig: signal.Signals) -> None:
    pidfile = tmp_path / "pid"
    proc = _start_and_wait_for([f"svc=echo $$ > {pidfile}; echo ready; exec sleep 60", "other=exec sleep 60"], "ready")
    child = int(pidfile.read_text())
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert "all services stopped" in out
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_stubborn_child_gets_sigkill_after_timeout() -> None:
    proc = _start_and_wait_for(
        ["--stop-timeout", "1", "stubborn=trap '' TERM; echo ready; while :; do sleep 0.1; done"],
        "ready",
    )
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert 0.9 < time.monotonic() - start < 8
    assert proc.returncode == 1
    assert "sending SIGKILL" in out


def test_runner_in_process_with_fake_stdout() -> None:
    out = io.StringIO()
    runner = rs.Runner([rs.ServiceSpec("x", "echo one; echo two")], dict(os.environ), out)
    assert runner.run() == 0
    assert "x      | one\nx      | two\n" in out.getvalue()
