"""Shared test set-up: the real Kafka and PostgreSQL, started once per session.

They come from ``deploy/local/infra.sh`` (what ``make infra-up`` runs) under
``.local/test``, so a developer's own ``make run`` keeps running beside the tests. Where
Java, Maven or PostgreSQL is missing, integration tests skip on a laptop, but fail in CI
(``CI=true``): there a missing tool is a failure, never a silent skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

sys.path.insert(0, str(Path(__file__).parent / "integration"))
sys.path.insert(0, str(Path(__file__).parent))  # hostile.corpus: test data shared by unit and integration tests

from harness import TEST_STATE, InfraError, Stack, infra  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# CI runs the same examples every time: a red build is reproducible, never a coin toss.
# Locally hypothesis explores new examples on each run (and remembers failures in .hypothesis/).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    hypothesis_settings.load_profile("ci")


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if not (shutil.which("initdb") or shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/initdb")):
        missing.append("PostgreSQL server (initdb)")
    return missing


@pytest.fixture(scope="session")
def infra_env() -> Iterator[dict[str, str]]:
    """KAFKA_BOOTSTRAP_SERVERS and POSTGRES_DSN of the session's servers."""
    missing = _missing_tools()
    if missing:
        message = f"integration tests need {', '.join(missing)} (make deps installs them)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        env = infra("up", TEST_STATE)
    except InfraError as exc:
        pytest.fail(str(exc))
    yield env
    if not os.environ.get("STOCKPIPE_KEEP_INFRA"):
        infra("down", TEST_STATE)


@pytest.fixture
def stack(infra_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    """A private database and topic prefix on the session's servers."""
    s = Stack(infra_env, tmp_path).create()
    yield s
    s.destroy()
