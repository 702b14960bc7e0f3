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
