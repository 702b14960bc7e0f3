"""Secrets never reach a log line; the HTTP endpoints answer as DESIGN.md says."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stockpipe.common.http import Health, HealthServer
from stockpipe.common.logs import configure, mask_secrets


@pytest.mark.parametrize(
    "text, secret",
    [
        ("connect postgresql://stockpipe:s3cr3t@db:5432/x failed", "s3cr3t"),
        ("dsn=host=db password=s3cr3t user=me", "s3cr3t"),
        ("sasl.password: 'p w'", "p w"),
        ('{"password": "s3cr3t"}', "s3cr3t"),
    ],
)
def test_mask_secrets(text: str, secret: str) -> None:
    masked = mask_secrets(text)
    assert secret not in masked and "***" in masked


def test_json_log_line_has_extras_and_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json", "ingestor")
    logging.getLogger("t").info("using postgresql://u:pw123@h/db", extra={"topic": "raw", "partition": 3})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["service"] == "ingestor" and entry["topic"] == "raw" and entry["partition"] == 3
    assert "pw123" not in line


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_endpoints() -> None:
    health = Health(liveness_timeout=0.3, check_interval=0)
    state = {"db_up": False}

    def db_check() -> None:
        if not state["db_up"]:
            raise ConnectionError("connection refused")

    health.add_check("postgres", db_check)
    server = HealthServer(health, "127.0.0.1", 0).start()
    try:
        code, body = _get(server.port, "/readyz")
        assert code == 503 and "connection refused" in json.loads(body)["reasons"]["postgres"]
        state["db_up"] = True
        assert _get(server.port, "/readyz")[0] == 200
        health.beat()
        assert _get(server.port, "/healthz")[0] == 200
        time.sleep(0.4)  # no beat for longer than the liveness timeout
        assert _get(server.port, "/healthz")[0] == 503
        code, body = _get(server.port, "/metrics")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert code == 200 and "stockpipe_dependency_up" in names
        assert _get(server.port, "/nope")[0] == 404
    finally:
        server.stop()


def test_a_check_added_while_a_probe_runs_the_checks() -> None:
    """A probe running the checks while the main thread registers one must not raise
    (a container smoke test hit "dictionary changed size during iteration")."""
    import threading

    health = Health(check_interval=0.0)
    entered, release = threading.Event(), threading.Event()

    def slow() -> None:  # a check that takes a while (a database connect): the probe is mid-iteration
        entered.set()
        release.wait(5)

    health.add_check("test-slow", slow)
    health.add_check("test-other", lambda: None)
    outcome: dict[str, object] = {}

    def probe() -> None:
        try:
            outcome["failures"] = health.failures()
        except Exception as exc:  # noqa: BLE001 - the test collects any failure
            outcome["error"] = exc

    prober = threading.Thread(target=probe)
    prober.start()
    assert entered.wait(5)
    adder = threading.Thread(target=health.add_check, args=("test-late", lambda: None))
    adder.start()
    adder.join(0.2)  # registered now (no lock) or once the probe is done (the lock)
    release.set()
    prober.join(5)
    adder.join(5)
    assert "error" not in outcome, outcome
    assert outcome["failures"] == {}
    assert health.failures() == {}


def test_a_multi_line_message_is_one_text_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "text", "test")
    logging.getLogger("stockpipe.test").warning(
        "reading failed, retrying: %s", 'connection to server at "127.0.0.1", port 5 failed: refused\n'
        "\tIs the server running on that host?\n")
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    assert "failed: refused | Is the server running on that host?" in out
