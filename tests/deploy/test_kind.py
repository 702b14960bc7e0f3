"""deploy/kind: what `make kind-up` does, step by step, without a cluster (kind's node image
cannot be pulled on this machine). The configuration files are checked, the scripts are
shellcheck-clean, the steps run in order (DRY_RUN=1 prints each command), and the exact
`helm upgrade` command kind-up runs renders valid objects."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest
import yaml
from helmchart import CHART, IN_CI, KUBE_VERSION, REPO, schema_dir, tool

KIND = REPO / "deploy" / "kind"
SCRIPTS = sorted([*KIND.glob("*.sh"), *(REPO / "deploy" / "helm").rglob("*.sh"), *(REPO / "deploy" / "docker").glob("*.sh"),
                  CHART / "files" / "scripts" / "readonly-role.sh"])


def dry_run(*steps: str) -> list[list[str]]:
    proc = subprocess.run([str(KIND / "kind-up.sh"), *steps], env={**os.environ, "DRY_RUN": "1"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_are_shellcheck_clean(script) -> None:
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        if IN_CI:
            pytest.fail("shellcheck not found (apt-get install shellcheck)")
        pytest.skip("shellcheck not found")
    proc = subprocess.run([shellcheck, "-x", str(script)], cwd=script.parent, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def test_cluster_config() -> None:
    cfg = yaml.safe_load((KIND / "cluster.yaml").read_text())
    assert (cfg["kind"], cfg["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane"]
    kps = yaml.safe_load((KIND / "kube-prometheus-stack.yaml").read_text())
    # The chart's dashboards are found by the label the chart puts on them.
    assert kps["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"


def test_steps_run_in_order() -> None:
    commands = dry_run()
    heads = [" ".join(c[:3]) for c in commands]
    order = ["kind create cluster", "cloud-provider-kind", "build.sh", "kind load docker-image",
             "helm upgrade --install kube-prometheus-stack", "helm upgrade --install stockpipe"]
    positions = []
    for want in order:
        # Matched at the start of the command (the program run), not anywhere in it.
        hits = [i for i, c in enumerate(commands) if " ".join([os.path.basename(c[0]), *c[1:]]).startswith(want)]
        assert hits, f"no '{want}' step in {heads}"
        positions.append(hits[0])
    assert positions == sorted(positions), heads
    # Every service of this checkout is loaded into the node.
    loaded = {c[-1].split(":")[0] for c in commands if c[:3] == ["kind", "load", "docker-image"]}
    present = {p.parent.name for p in REPO.glob("services/*/src/stockpipe/*/__main__.py")}
    assert loaded == {f"stockpipe-{s}" for s in present}


def test_unknown_step_is_refused() -> None:
    proc = subprocess.run([str(KIND / "kind-up.sh"), "nonsense"], env={**os.environ, "DRY_RUN": "1"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "unknown step" in proc.stderr


def test_kind_install_renders_valid_objects(tmp_path) -> None:
    """The very `helm upgrade --install` kind-up runs, as `helm template`, through kubeconform."""
    helm_cmd = next(c for c in dry_run("chart") if c[:4] == ["helm", "upgrade", "--install", "stockpipe"])
    args = [a for a in helm_cmd[5:] if a not in ("--create-namespace", "--wait", "--wait-for-jobs")]
    args = [a for i, a in enumerate(args) if a != "--timeout" and (i == 0 or args[i - 1] != "--timeout")]
    proc = subprocess.run([tool("helm"), "template", "stockpipe", str(CHART), *args, "--kube-version", KUBE_VERSION,
                           "--api-versions", "monitoring.coreos.com/v1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert deployments and all(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"
                               for d in deployments)
    assert {d["kind"] for d in docs} >= {"ServiceMonitor", "PrometheusRule"}
    (tmp_path / "kind.yaml").write_text(proc.stdout)
    check = subprocess.run([tool("kubeconform"), "-strict", "-summary", "-schema-location",
                            str(schema_dir()) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json", str(tmp_path / "kind.yaml")],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout


def test_kind_down_deletes_the_cluster() -> None:
    proc = subprocess.run([str(KIND / "kind-down.sh")], env={**os.environ, "DRY_RUN": "1", "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "kind delete cluster --name stockpipe" in proc.stdout or "no cluster to delete" in proc.stderr
