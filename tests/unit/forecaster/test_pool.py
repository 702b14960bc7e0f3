"""The fit pool's CPU budget, its workers' BLAS pinning, and start-up on a bad setting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stockpipe.forecaster.pool import FitPool, cpu_budget


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 2),
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
])
def test_cpu_budget_is_affinity_capped_by_the_cgroup_quota(tmp_path: Path, files: dict, expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert cpu_budget(tmp_path) == (affinity if expected is None else min(affinity, expected))


def _blas_threads() -> dict:
    from threadpoolctl import threadpool_info

    return {os.environ.get("OPENBLAS_NUM_THREADS"): [i["num_threads"] for i in threadpool_info()]}


def test_workers_run_tasks_with_one_blas_thread() -> None:
    pool = FitPool(2)
    got: list = []
    try:
        pool.submit(_blas_threads, (), got.append, got.append)
        pool.submit(np.linalg.inv, (np.eye(3),), got.append, got.append)
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pool.terminate()
    info = next(g for g in got if isinstance(g, dict))
    assert list(info) == ["1"] and all(n == 1 for n in info["1"])


@pytest.mark.parametrize("env", [{"ARIMA_CONFIDENCE_LEVEL": "1.5"}, {"FORECASTER_WORKERS": "-2"},
                                 {"ARIMA_WINDOW": "2000"}])
def test_a_bad_setting_exits_2_with_one_line(env: dict) -> None:
    proc = subprocess.run([sys.executable, "-m", "stockpipe.forecaster"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and next(iter(env)) in lines[0], proc.stderr
