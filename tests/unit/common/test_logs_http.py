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


def test_readiness_checks_added_while_probes_run() -> None:
    """A probe iterating the checks while the main thread registers one must not raise
    (a container smoke test hit "dictionary changed size during iteration")."""
    import threading

    health = Health(check_interval=0.0)
    stop = threading.Event()
    errors: list[BaseException] = []

    def probe() -> None:
        while not stop.is_set():
            try:
                health.failures()
            except BaseException as exc:  # noqa: BLE001 - the test collects any failure
                errors.append(exc)
                return

    threads = [threading.Thread(target=probe) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(2000):
            health.add_check(f"check{i}", lambda: None)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert errors == []
    assert health.failures() == {}


def test_a_multi_line_message_is_one_text_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "text", "test")
    logging.getLogger("stockpipe.test").warning(
        "reading failed, retrying: %s", 'connection to server at "127.0.0.1", port 5 failed: refused\n'
        "\tIs the server running on that host?\n")
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    assert "failed: refused | Is the server running on that host?" in out
