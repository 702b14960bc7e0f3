"""Small helpers of the cluster test: kubectl, helm and psql through the real binaries.

Every call has a timeout and raises ``KubeError`` with the command's stderr on failure, so a
failing test says what the cluster answered. ``STOCKPIPE_CLUSTER_KUBECONFIG`` names the
cluster (set by tests/cluster/run.sh), ``STOCKPIPE_K8S_BIN`` where kubectl and helm are.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KUBECONFIG = os.environ.get("STOCKPIPE_CLUSTER_KUBECONFIG", "")
BIN = Path(os.environ.get("STOCKPIPE_K8S_BIN", "/var/cache/stockpipe/k8s/bin"))


class KubeError(Exception):
    pass


def _run(args: list[str], *, timeout: float, input: str | None = None, check: bool = True) -> str:
    env = dict(os.environ, KUBECONFIG=KUBECONFIG, HELM_CACHE_HOME="/tmp/stockpipe-helm/cache",
               HELM_CONFIG_HOME="/tmp/stockpipe-helm/config", HELM_DATA_HOME="/tmp/stockpipe-helm/data")
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input, env=env)
    except subprocess.TimeoutExpired as exc:
        raise KubeError(f"{' '.join(args)}: no answer within {timeout:.0f}s") from exc
    if check and p.returncode != 0:
        raise KubeError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()[-3000:]}")
    return p.stdout


def kubectl(*args: str, timeout: float = 60, input: str | None = None, check: bool = True) -> str:
    return _run([str(BIN / "kubectl"), *args], timeout=timeout, input=input, check=check)


def kubectl_json(*args: str, timeout: float = 60) -> Any:
    return json.loads(kubectl(*args, "-o", "json", timeout=timeout))


def helm(*args: str, timeout: float = 900) -> str:
    return _run([str(BIN / "helm"), *args], timeout=timeout)


def apply(objects: list[dict], namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                   "items": objects}))


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    """Poll ``check`` until it returns a truthy value (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except KubeError as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


def pods(namespace: str, selector: str = "") -> list[dict]:
    args = ["get", "pods", "-n", namespace]
    if selector:
        args += ["-l", selector]
    return kubectl_json(*args)["items"]


def is_ready(pod: dict) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conds.get("Ready") == "True"


def describe_pods(namespace: str) -> str:
    """Status, restarts and the last log lines of every pod: the post-mortem of a failure."""
    lines = []
    for pod in pods(namespace):
        name = pod["metadata"]["name"]
        st = pod.get("status", {})
        restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses", []))
        waiting = [c["state"]["waiting"].get("reason", "") for c in st.get("containerStatuses", [])
                   if "waiting" in c.get("state", {})]
        lines.append(f"--- {name}: {st.get('phase')} ready={is_ready(pod)} restarts={restarts} {waiting}")
        lines.append(kubectl("logs", "-n", namespace, name, "--all-containers", "--tail", "15",
                             check=False, timeout=30))
    lines.append(kubectl("get", "events", "-n", namespace, "--sort-by", ".lastTimestamp", check=False)[-4000:])
    return "\n".join(lines)


def psql(namespace: str, pod: str, sql: str, *, user: str, db: str, timeout: float = 120) -> str:
    """Run SQL in the PostgreSQL pod (local socket, as the chart's superuser); rows as text."""
    return kubectl("exec", "-n", namespace, pod, "-c", "postgresql", "--", "psql", "-X", "-q", "-At",
                   "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db, "-c", sql, timeout=timeout)
