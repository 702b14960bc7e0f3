"""Render the Helm chart and look at what it makes: shared by the tests/deploy/test_chart*.py files.

The tools (helm, kubeconform, promtool) and kubeconform's offline schemas come from
``deploy/helm/tools/install.sh`` (``make chart-tools``) in the cache directory
``$STOCKPIPE_CACHE`` (default /var/cache/stockpipe, else ~/.cache/stockpipe), else PATH.
Missing ones skip the tests on a laptop and fail them in CI (``CI=true``).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "stockpipe"
KUBE_VERSION = "1.34.4"
# CRD-backed kinds the chart can render: announce their APIs as a cluster with the CRDs would.
API_VERSIONS = ("monitoring.coreos.com/v1", "gateway.networking.k8s.io/v1")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVICES = ("producer", "ingestor", "analytics", "forecaster", "dashboard", "notifier")


def cache_dirs() -> list[Path]:
    if os.environ.get("STOCKPIPE_CACHE"):
        return [Path(os.environ["STOCKPIPE_CACHE"])]
    return [Path("/var/cache/stockpipe"), Path.home() / ".cache" / "stockpipe"]


def _missing(what: str) -> None:
    message = f"{what} not found: run `make chart-tools` (deploy/helm/tools/install.sh)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def tool(name: str) -> str:
    """Path of helm, kubeconform or promtool; fails in CI, skips elsewhere, when missing."""
    for d in cache_dirs():
        if (d / "bin" / name).is_file():
            return str(d / "bin" / name)
    found = shutil.which(name)
    if not found:
        _missing(name)
    return found  # type: ignore[return-value]


def schema_dir() -> Path:
    for d in cache_dirs():
        pointer = d / "kubeconform" / "current"
        if pointer.is_file():
            path = Path(pointer.read_text().strip())
            if (path / ".complete").is_file():
                return path
    _missing("kubeconform schemas")
    raise AssertionError  # unreachable


class RenderError(Exception):
    """helm template refused the values; the message is helm's."""


@functools.lru_cache(maxsize=64)
def _render(values_json: str, files: tuple[str, ...], release: str, namespace: str) -> str:
    cmd = [tool("helm"), "template", release, str(CHART), "--namespace", namespace,
           "--kube-version", KUBE_VERSION]
    for api in API_VERSIONS:
        cmd += ["--api-versions", api]
    for f in files:
        cmd += ["-f", f]
    cmd += ["-f", "-"]
    proc = subprocess.run(cmd, input=values_json, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip())
    return proc.stdout


def render_text(values: dict | None = None, files: Iterable[str | Path] = (), release: str = "t",
                namespace: str = "stockpipe") -> str:
    """The rendered manifests (YAML text); raises RenderError with helm's message."""
    return _render(json.dumps(values or {}, sort_keys=True), tuple(str(f) for f in files), release, namespace)


def render(values: dict | None = None, files: Iterable[str | Path] = (), release: str = "t",
           namespace: str = "stockpipe") -> list[dict[str, Any]]:
    """The rendered objects; raises RenderError with helm's message."""
    text = render_text(values, files, release, namespace)
    return [d for d in yaml.safe_load_all(text) if d]


def objects(docs: list[dict], kind: str) -> dict[str, dict]:
    """name -> object of one kind."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = objects(docs, kind)
    assert name in found, f"no {kind} {name}; have {sorted(found)}"
    return found[name]


def component(obj: dict) -> str | None:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def container_env(docs: list[dict], container: dict) -> dict[str, str]:
    """A container's environment as the kubelet would give it: envFrom ConfigMaps/Secrets
    first, then env (which wins), with secretKeyRef/configMapKeyRef resolved from the rendered
    objects. A reference to an object not rendered (existingSecret) is an AssertionError,
    unless it is optional."""
    cms = objects(docs, "ConfigMap")
    secrets = objects(docs, "Secret")
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(cms[src["configMapRef"]["name"]]["data"])
        elif "secretRef" in src:
            env.update({k: base64.b64decode(v).decode() for k, v in secrets[src["secretRef"]["name"]]["data"].items()})
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref = e["valueFrom"]
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            data = secrets.get(r["name"], {}).get("data", {})
            if r["key"] in data:
                env[e["name"]] = base64.b64decode(data[r["key"]]).decode()
            else:
                assert r.get("optional"), f"{e['name']}: Secret {r['name']} key {r['key']} is not rendered"
        elif "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            env[e["name"]] = cms[r["name"]]["data"][r["key"]]
    return env
