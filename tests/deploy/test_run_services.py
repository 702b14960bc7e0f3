"""Tests for deploy/local/run_services.py: env-file parsing, line prefixes, and the
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


# -- env files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("export A=1", {"A": "1"}),
        ("A=1", {"A": "1"}),
        ("export\tA=1", {"A": "1"}),
        ("  export A=1  ", {"A": "1"}),
        ("A=", {"A": ""}),
        ("A=''", {"A": ""}),
        ("export A='x y'", {"A": "x y"}),
        ('export A="x y"', {"A": "x y"}),
        ("export A='it'\\''s'", {"A": "it's"}),  # what infra.sh writes for a quote
        ('A="say \\"hi\\" \\\\ \\n"', {"A": 'say "hi" \\ \\n'}),  # \n stays literal in "..."
        ("A='$HOME'", {"A": "$HOME"}),
        ("A=$HOME", {"A": "$HOME"}),  # no expansion, by design
        ("A=a\\ b", {"A": "a b"}),
        ("A=a#b", {"A": "a#b"}),  # '#' inside a word is not a comment (as in sh)
        ("A=1 # the answer", {"A": "1"}),
        ("A=postgresql://u:p@127.0.0.1:5432/db", {"A": "postgresql://u:p@127.0.0.1:5432/db"}),
        ("A=k=v", {"A": "k=v"}),
        ("# comment\n\nexport A=1\n  # indented comment\nB=2\n", {"A": "1", "B": "2"}),
        ("A=1\nA=2", {"A": "2"}),  # the last one wins, as when sourced
        ("", {}),
    ],
)
def test_parse_env_text(text: str, expected: dict[str, str]) -> None:
    assert rs.parse_env_text(text) == expected


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("JUSTAWORD", 1),
        ("A=1\n1A=2", 2),
        ("export =1", 1),
        ("A='open", 1),
        ('A="open', 1),
        ("A=1 B=2", 1),
        ("A=x y", 1),
        ("A-B=1", 1),
    ],
)
def test_parse_env_text_rejects(text: str, line: int) -> None:
    with pytest.raises(rs.EnvFileError, match=f"line {line}"):
        rs.parse_env_text(text)


def test_parse_env_file_reads_infra_output(tmp_path: Path) -> None:
    # The shape deploy/local/infra.sh writes.
    env_file = tmp_path / "env"
    env_file.write_text(
        "# Written by deploy/local/infra.sh up\n"
        "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:40001\n"
        "export POSTGRES_DSN=postgresql://stockpipe:stockpipe@127.0.0.1:40002/stockpipe\n"
        "export POSTGRES_PASSWORD='p w'\n"
    )
    assert rs.parse_env_file(env_file) == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:40001",
        "POSTGRES_DSN": "postgresql://stockpipe:stockpipe@127.0.0.1:40002/stockpipe",
        "POSTGRES_PASSWORD": "p w",
    }


def test_parse_env_file_missing_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(rs.EnvFileError, match="nope"):
        rs.parse_env_file(missing)


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


def test_prefixes_output_and_loads_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("export GREETING='hello world'\n")
    res = _run(["--env-file", str(env_file), 'one=echo "$GREETING"', "second=echo err >&2"])
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert "one    | hello world" in lines  # padded to "system", the longest name
    assert "second | err" in lines
    assert "\x1b[" not in res.stdout  # no colour when stdout is not a terminal


def test_env_file_wins_over_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("export WHO=file\n")
    res = _run(["--env-file", str(env_file), 'a=echo "$WHO $PYTHONUNBUFFERED"'], env={**os.environ, "WHO": "environ"})
    assert "a      | file 1" in res.stdout.splitlines()


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


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert _run(["not-a-spec"]).returncode == 2
    assert _run(["a=true", "a=true"]).returncode == 2
    assert _run(["--env-file", str(tmp_path / "missing"), "a=true"]).returncode == 2


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
