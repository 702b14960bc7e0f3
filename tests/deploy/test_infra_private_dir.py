"""``deploy/local/infra.sh`` as root from a clone in a 0700 directory (issue 12 item 11).

The usual place in a container is /root/stockpipe: a directory the ``postgres`` system
user (which runs the server, as initdb refuses root) cannot enter. ``infra.sh up`` must
work there without any setting: the cluster moves to /var/tmp/stockpipe-postgres/<hash>,
owned by ``postgres``, with ``.local/postgres`` pointing at it; ``destroy`` removes both.

A real clone (``git clone`` of this repository into ``mktemp -d`` + ``chmod 700``) with the
working tree's deploy/local scripts laid over it, so the scripts under test are the ones
being edited. Kafka is named external (nothing listens there; nothing is started for it),
so only PostgreSQL starts: bounded to about a minute.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_ready() -> str | None:
    if os.geteuid() != 0:
        return "only root meets this: initdb refuses root, so the server runs as the postgres user"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres system user (make deps installs PostgreSQL)"
    if not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        return "no PostgreSQL server binaries (make deps installs them)"
    if shutil.which("git") is None:
        return "git is missing"
    return None


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_infra_up_and_down_as_root_in_a_0700_clone() -> None:
    reason = _pg_ready()
    if reason:
        if IN_CI and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    private = Path(tempfile.mkdtemp(prefix="stockpipe-0700-"))
    private.chmod(0o700)
    clone = private / "stockpipe"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCKPIPE_", "POSTGRES_", "KAFKA_"))}
    # An external Kafka by name: infra.sh starts nothing for it (nothing listens on port 9).
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    try:
        cloned = run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], private, env)
        assert cloned.returncode == 0, cloned.stderr
        shutil.copytree(REPO / "deploy" / "local", clone / "deploy" / "local", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        assert subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(clone)]).returncode != 0

        up = run(["deploy/local/infra.sh", "up"], clone, env)
        assert up.returncode == 0, up.stdout + up.stderr
        link = clone / ".local" / "postgres"
        assert link.is_symlink()
        target = Path(os.readlink(link))
        assert target.parent == Path("/var/tmp/stockpipe-postgres")
        assert target.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        envfile = (clone / ".local" / "env").read_text()
        assert "export POSTGRES_DSN=postgresql://stockpipe:stockpipe@127.0.0.1:" in envfile

        # The services' own check: a password login over TCP, then a query.
        psql = run(["deploy/local/postgres.sh", "psql", "-tAc", "SELECT current_user"], clone, env)
        assert psql.returncode == 0 and psql.stdout.strip() == "stockpipe", psql.stderr
        status = run(["deploy/local/infra.sh", "status"], clone, env)
        assert "postgres  running" in status.stdout, status.stdout

        # Down and up again: the same relocated cluster comes back.
        assert run(["deploy/local/infra.sh", "down"], clone, env).returncode == 0
        again = run(["deploy/local/infra.sh", "up"], clone, env)
        assert again.returncode == 0, again.stderr
        assert Path(os.readlink(link)) == target and "creating a new cluster" not in again.stderr

        destroyed = run(["deploy/local/infra.sh", "destroy"], clone, env)
        assert destroyed.returncode == 0, destroyed.stderr
        assert not target.exists() and not link.is_symlink()
    finally:
        if clone.exists():
            run(["deploy/local/infra.sh", "destroy"], clone, env)
        shutil.rmtree(private, ignore_errors=True)


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_make_run_as_root_in_a_0700_clone() -> None:
    """``make run`` itself from a 0700 clone as root: Kafka and PostgreSQL start (the cluster
    moved where ``postgres`` can reach it), the six services run and bars reach the
    dashboard's API; Ctrl-C (SIGINT to make's process group, as a terminal sends it) stops
    every service cleanly and then both servers. The clone uses this checkout's .venv, so it
    runs this checkout's code (``make -o .venv/.installed run VENV=...``): a fresh .venv is `make deps`' business, tested by CI's own fresh
    clone; what is under test here is the directory handling and the stop."""
    import json
    import signal
    import time
    import urllib.request

    reason = _pg_ready()
    if reason:
        if IN_CI and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    venv = REPO / ".venv"
    if not (venv / ".installed").exists():
        pytest.skip("no .venv made by make deps in this checkout")
    private = Path(tempfile.mkdtemp(prefix="stockpipe-0700-run-"))
    private.chmod(0o700)
    clone = private / "stockpipe"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STOCKPIPE_", "POSTGRES_", "KAFKA_", "MAKE", "MFLAGS"))}
    env.update(PROGRESS_INTERVAL="5", NO_COLOR="1")
    services = ("producer", "ingestor", "analytics", "notifier", "dashboard", "forecaster")
    ports = dict(zip(services, _free_ports(len(services))))
    log = private / "make-run.log"
    proc = None
    try:
        cloned = run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], private, env)
        assert cloned.returncode == 0, cloned.stderr
        shutil.copytree(REPO / "deploy" / "local", clone / "deploy" / "local", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(REPO / "Makefile", clone / "Makefile")
        # -o: the clone's files are newer than the venv's stamp, and make must not reinstall
        # this checkout's .venv from the clone (it would point the venv at a temporary clone).
        args = ["make", "-o", f"{venv}/.installed", "run", f"VENV={venv}"] + [f"PORT_{s}={p}" for s, p in ports.items()]
        with log.open("wb") as fh:
            proc = subprocess.Popen(args, cwd=clone, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)

        def series() -> list:
            try:
                url = f"http://127.0.0.1:{ports['dashboard']}/api/v1/series"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return json.load(resp)["items"]
            except (OSError, ValueError, KeyError):
                return []

        deadline = time.monotonic() + 300
        while not series():
            assert proc.poll() is None, f"make run exited {proc.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"no series on the dashboard after 300 s:\n{log.read_text()[-4000:]}"
            time.sleep(2)
        target = Path(os.readlink(clone / ".local" / "postgres"))
        assert target.parent == Path("/var/tmp/stockpipe-postgres")

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(90)
        out = log.read_text()
        assert "all services stopped" in out, out[-4000:]
        assert "SIGKILL" not in out and "Traceback" not in out, out[-4000:]
        assert "infra: kafka stopped" in out and "infra: postgres stopped" in out, out[-3000:]
        for s in services:
            assert f"{s} exited with 1" not in out
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        if clone.exists():
            run(["deploy/local/infra.sh", "destroy"], clone, env)
        shutil.rmtree(private, ignore_errors=True)
