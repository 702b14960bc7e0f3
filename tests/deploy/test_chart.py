"""The Helm chart (deploy/helm/stockpipe), through what `helm template` renders.

Every ci/*-values.yaml scenario lints strictly, renders and validates offline against the
Kubernetes 1.34 JSON schemas and the CRDs (kubeconform -strict); then the switches that
matter, each asserted on the rendered objects: restricted pods, external endpoints,
existingSecret, Ingress vs HTTPRoute, monitoring on/off, NetworkPolicies, HPA, images.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
from helmchart import (
    CHART,
    KUBE_VERSION,
    SERVICES,
    RenderError,
    component,
    container_env,
    objects,
    one,
    pod_spec,
    render,
    render_text,
    schema_dir,
    tool,
)

SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
NEW = ("forecaster", "dashboard", "notifier")


def test_scenarios_exist() -> None:
    for name in ("default", "external", "ingress", "httproute", "monitoring"):
        assert f"{name}-values.yaml" in SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_lints_renders_and_validates(scenario: str, tmp_path) -> None:
    values = CHART / "ci" / scenario
    lint = subprocess.run([tool("helm"), "lint", "--strict", str(CHART), "-f", str(values),
                           "--kube-version", KUBE_VERSION], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(render_text(files=[values]))
    check = subprocess.run(
        [tool("kubeconform"), "-strict", "-summary", "-output", "text",
         "-schema-location", str(schema_dir()) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json", str(manifest)],
        capture_output=True, text=True, timeout=120)
    # No schema for a kind is an error too (no -ignore-missing-schemas): every object is checked.
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in check.stdout, check.stdout


def test_kubeconform_rejects_a_broken_object(tmp_path) -> None:
    """The validation is real: a misspelt field fails it."""
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(render_text().replace("revisionHistoryLimit:", "revisionHistoryLimt:", 1))
    check = subprocess.run(
        [tool("kubeconform"), "-strict", "-schema-location",
         str(schema_dir()) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json", str(manifest)],
        capture_output=True, text=True, timeout=120)
    assert check.returncode != 0 and "revisionHistoryLimt" in check.stdout


# -- workloads -------------------------------------------------------------------------------


def test_default_deploys_all_six_services_with_kafka_and_postgres() -> None:
    docs = render()
    deployments = objects(docs, "Deployment")
    assert sorted(deployments) == sorted(f"t-stockpipe-{s}" for s in SERVICES)
    assert sorted(objects(docs, "StatefulSet")) == ["t-stockpipe-kafka", "t-stockpipe-postgresql"]
    for s in SERVICES:
        c = pod_spec(deployments[f"t-stockpipe-{s}"])["containers"][0]
        assert c["image"] == f"stockpipe-{s}:0.1.0"
        assert c["imagePullPolicy"] == "IfNotPresent"


def _pods(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield d, pod_spec(d)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_meets_the_restricted_pod_security_standard(scenario: str) -> None:
    for obj, spec in _pods(render(files=[CHART / "ci" / scenario])):
        name = obj["metadata"]["name"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["enableServiceLinks"] is False, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (name, c["name"])
            assert "privileged" not in sc
        if component(obj) not in ("kafka", "postgresql"):
            # stockpipe's own images: uid 10001, read-only root, a writable /tmp.
            assert psc["runAsUser"] == 10001, name
            for c in spec.get("initContainers", []) + spec["containers"]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, (name, c["name"])
                assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], (name, c["name"])


def test_services_probe_healthz_and_readyz_on_their_port() -> None:
    docs = render()
    for s in SERVICES:
        dep = one(docs, "Deployment", f"t-stockpipe-{s}")
        c = pod_spec(dep)["containers"][0]
        port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
        assert port == (8050 if s == "dashboard" else 8000)
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container_env(docs, c)["HTTP_PORT"] == str(port)
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        svc = one(docs, "Service", f"t-stockpipe-{s}")
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
        assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        # Selectors never hold the chart version (it changes on every upgrade).
        assert set(svc["spec"]["selector"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                                "app.kubernetes.io/component"}
        # SIGTERM gets SHUTDOWN_TIMEOUT and then some before the kubelet kills.
        assert pod_spec(dep)["terminationGracePeriodSeconds"] > float(container_env(docs, c)["SHUTDOWN_TIMEOUT"])


@pytest.mark.parametrize("service", NEW)
def test_each_new_service_can_be_switched_off(service: str) -> None:
    docs = render({service: {"enabled": False}})
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not [n for n in names if n[1] == f"t-stockpipe-{service}"], names
    assert len(objects(docs, "Deployment")) == 5


def test_pod_disruption_budgets_for_every_service() -> None:
    docs = render()
    pdbs = objects(docs, "PodDisruptionBudget")
    assert sorted(pdbs) == sorted(f"t-stockpipe-{s}" for s in SERVICES)
    assert all(p["spec"]["maxUnavailable"] == 1 for p in pdbs.values())


def test_config_change_rolls_only_that_service() -> None:
    def checksums(values):
        return {n: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for n, d in objects(render(values), "Deployment").items()}
    fixed = {"postgresql": {"password": "p", "readonlyRole": {"password": "r"}}}
    before = checksums(fixed)
    after = checksums({**fixed, "ingestor": {"config": {"INGESTOR_BATCH_SIZE": "100"}}})
    assert before["t-stockpipe-ingestor"] != after["t-stockpipe-ingestor"]
    assert before["t-stockpipe-analytics"] == after["t-stockpipe-analytics"]
    common = checksums({**fixed, "config": {"logLevel": "debug"}})
    assert all(common[n] != before[n] for n in before)
    password = checksums({**fixed, "postgresql": {"password": "other", "readonlyRole": {"password": "r"}}})
    assert password["t-stockpipe-ingestor"] != before["t-stockpipe-ingestor"]


def test_bad_values_are_refused_by_the_schema() -> None:
    for bad in ({"config": {"logLevel": "verbose"}}, {"ingestor": {"port": 70000}},
                {"image": {"pullPolicy": "Sometimes"}}, {"kafka": {"securityProtocol": "tls"}},
                {"ingestor": {"replica": 2}}):
        with pytest.raises(RenderError, match="schema"):
            render(bad)


# -- credentials -----------------------------------------------------------------------------


def test_generated_passwords_are_the_same_in_every_secret() -> None:
    docs = render()
    main = one(docs, "Secret", "t-stockpipe")["data"]
    assert main == one(docs, "Secret", "t-stockpipe-migrate")["data"]
    assert len(base64.b64decode(main["postgres-password"])) == 32
    assert main["postgres-password"] != main["postgres-readonly-password"]


def test_dashboard_reads_with_the_read_only_role() -> None:
    docs = render({"postgresql": {"password": "writer-pw", "readonlyRole": {"password": "reader-pw"}}})
    dash = container_env(docs, pod_spec(one(docs, "Deployment", "t-stockpipe-dashboard"))["containers"][0])
    assert (dash["POSTGRES_USER"], dash["POSTGRES_PASSWORD"]) == ("stockpipe_readonly", "reader-pw")
    ing = container_env(docs, pod_spec(one(docs, "Deployment", "t-stockpipe-ingestor"))["containers"][0])
    assert (ing["POSTGRES_USER"], ing["POSTGRES_PASSWORD"]) == ("stockpipe", "writer-pw")
    # The in-chart PostgreSQL creates the role at its first start.
    pg = pod_spec(one(docs, "StatefulSet", "t-stockpipe-postgresql"))
    assert "readonly-role.sh" in one(docs, "ConfigMap", "t-stockpipe-postgresql-init")["data"]
    assert {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True} in pg["containers"][0]["volumeMounts"]


def test_existing_secret_replaces_the_charts() -> None:
    docs = render({"existingSecret": "mine"})
    assert not objects(docs, "Secret")
    refs = set()
    for _, spec in _pods(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            for e in c.get("env", []):
                if "secretKeyRef" in e.get("valueFrom", {}):
                    refs.add(e["valueFrom"]["secretKeyRef"]["name"])
    assert refs == {"mine"}


# -- external Kafka / PostgreSQL -------------------------------------------------------------


def test_external_kafka_and_postgres() -> None:
    docs = render(files=[CHART / "ci" / "external-values.yaml"])
    assert not objects(docs, "StatefulSet")
    env = container_env(docs, pod_spec(one(docs, "Deployment", "t-stockpipe-ingestor"))["containers"][0]
                        | {"env": []})
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-0.kafka.example.svc:9093,kafka-1.kafka.example.svc:9093"
    assert env["KAFKA_SECURITY_PROTOCOL"] == "sasl_ssl" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_COMPRESSION"] == "zstd"
    assert env["POSTGRES_HOST"] == "stockpipe-rw.databases.svc"
    job = one(docs, "Job", "t-stockpipe-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    # No init-container migrations: the pre-install hook did it.
    assert all("initContainers" not in pod_spec(d) for d in objects(docs, "Deployment").values())
    # Egress to the external servers' namespaces on their ports.
    np = one(docs, "NetworkPolicy", "t-stockpipe-ingestor")
    kafka_rule = [r for r in np["spec"]["egress"] if r["ports"][0]["port"] == 9093][0]
    assert kafka_rule["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kafka"}


@pytest.mark.parametrize(("values", "message"), [
    ({"kafka": {"enabled": False}}, "kafka.bootstrapServers is required"),
    ({"postgresql": {"enabled": False}}, "postgresql.host is required"),
    ({"kafka": {"sasl": {"mechanism": "PLAIN"}}}, "kafka.sasl.password is required"),
    ({"analytics": {"autoscaling": {"enabled": True, "maxReplicas": 12}}}, "replicas beyond the partition count"),
    ({"ingress": {"enabled": True}, "dashboard": {"enabled": False}}, "ingress.enabled needs dashboard.enabled"),
])
def test_contradictory_values_fail_with_a_clear_message(values: dict, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(values)


def test_in_chart_database_migrates_in_the_writers_init_containers() -> None:
    docs = render()
    job = one(docs, "Job", "t-stockpipe-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    with_init = {n for n, d in objects(docs, "Deployment").items() if "initContainers" in pod_spec(d)}
    assert with_init == {"t-stockpipe-producer", "t-stockpipe-ingestor", "t-stockpipe-forecaster", "t-stockpipe-notifier"}
    init = pod_spec(one(docs, "Deployment", "t-stockpipe-ingestor"))["initContainers"][0]
    assert init["command"] == ["python", "-m", "stockpipe.common.migrate"]
    topics = [d for n, d in objects(docs, "Job").items() if n.startswith("t-stockpipe-topics-")]
    assert len(topics) == 1 and pod_spec(topics[0])["containers"][0]["command"] == ["python", "-m", "stockpipe.common.topics"]
    env = container_env(docs, pod_spec(topics[0])["containers"][0])
    assert env["TOPIC_PARTITIONS"] == "6" and env["KAFKA_BOOTSTRAP_SERVERS"] == "t-stockpipe-kafka:9092"


def test_kafka_is_single_node_kraft_with_a_small_heap() -> None:
    docs = render({"kafka": {"image": {"repository": "local/kafka", "tag": "deb"}},
                   "postgresql": {"image": {"repository": "local/postgres", "tag": "15"}},
                   "image": {"pullPolicy": "Never"}})
    kafka = pod_spec(one(docs, "StatefulSet", "t-stockpipe-kafka"))["containers"][0]
    env = {e["name"]: e.get("value") for e in kafka["env"]}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://t-stockpipe-kafka:9092"
    assert env["KAFKA_HEAP_OPTS"].startswith("-Xms")
    assert kafka["image"] == "local/kafka:deb" and kafka["imagePullPolicy"] == "Never"
    pg = pod_spec(one(docs, "StatefulSet", "t-stockpipe-postgresql"))["containers"][0]
    assert pg["image"] == "local/postgres:15"
    assert {"name": "data", "mountPath": "/var/lib/postgresql"} in pg["volumeMounts"]
    for d in objects(docs, "Deployment").values():
        assert pod_spec(d)["containers"][0]["imagePullPolicy"] == "Never"


def test_image_registry_tag_and_digest() -> None:
    docs = render({"image": {"registry": "reg.example:5000", "tag": "1.2.3"},
                   "analytics": {"image": {"repository": "other/analytics", "digest": "sha256:" + "a" * 64}}})
    images = {n: pod_spec(d)["containers"][0]["image"] for n, d in objects(docs, "Deployment").items()}
    assert images["t-stockpipe-ingestor"] == "reg.example:5000/stockpipe-ingestor:1.2.3"
    assert images["t-stockpipe-analytics"] == "other/analytics@sha256:" + "a" * 64


# -- dashboard exposure ----------------------------------------------------------------------


def test_no_ingress_or_route_by_default() -> None:
    docs = render()
    assert not objects(docs, "Ingress") and not objects(docs, "HTTPRoute")


def test_ingress_routes_to_the_dashboard() -> None:
    docs = render(files=[CHART / "ci" / "ingress-values.yaml"])
    ing = one(docs, "Ingress", "t-stockpipe-dashboard")
    assert ing["spec"]["ingressClassName"] == "nginx"
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "t-stockpipe-dashboard", "port": {"name": "http"}}
    assert ing["spec"]["tls"][0]["secretName"] == "stockpipe-tls"
    assert not objects(docs, "HTTPRoute")


def test_httproute_routes_to_the_dashboard() -> None:
    docs = render(files=[CHART / "ci" / "httproute-values.yaml"])
    route = one(docs, "HTTPRoute", "t-stockpipe-dashboard")
    assert route["spec"]["parentRefs"][0]["name"] == "shared-gateway"
    svc = one(docs, "Service", "t-stockpipe-dashboard")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "t-stockpipe-dashboard", "port": svc["spec"]["ports"][0]["port"]}]
    assert not objects(docs, "Ingress")


# -- monitoring ------------------------------------------------------------------------------


def test_monitoring_off_by_default() -> None:
    docs = render()
    assert not objects(docs, "ServiceMonitor") and not objects(docs, "PrometheusRule")
    assert not [c for c in objects(docs, "ConfigMap").values() if "grafana_dashboard" in c["metadata"]["labels"]]


def test_monitoring_objects_for_kube_prometheus_stack() -> None:
    docs = render(files=[CHART / "ci" / "monitoring-values.yaml"])
    sms = objects(docs, "ServiceMonitor")
    assert sorted(sms) == sorted(f"t-stockpipe-{s}" for s in SERVICES)
    for name, sm in sms.items():
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
        assert sm["spec"]["selector"]["matchLabels"] == one(docs, "Service", name)["spec"]["selector"]
    rule = one(docs, "PrometheusRule", "t-stockpipe")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert all(a.startswith("StockPipeline") for a in alerts) and len(alerts) >= 7
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            assert r["labels"]["severity"] in ("warning", "critical")
            assert r["annotations"]["summary"] and r["annotations"]["description"]
    dash = [c for c in objects(docs, "ConfigMap").values() if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dash) == 1
    board = json.loads(dash[0]["data"]["stockpipe.json"])
    assert board["templating"]["list"][0] == {**board["templating"]["list"][0], "name": "datasource", "type": "datasource"}
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("produced", "consumed", "lag", "processing time", "dead-letter", "error", "forecast accuracy"):
        assert topic in titles, topic


def test_hpa_replaces_replicas() -> None:
    docs = render(files=[CHART / "ci" / "monitoring-values.yaml"])
    hpas = objects(docs, "HorizontalPodAutoscaler")
    assert sorted(hpas) == ["t-stockpipe-analytics", "t-stockpipe-forecaster"]
    assert "replicas" not in one(docs, "Deployment", "t-stockpipe-analytics")["spec"]
    assert one(docs, "Deployment", "t-stockpipe-ingestor")["spec"]["replicas"] == 1
    assert hpas["t-stockpipe-analytics"]["spec"]["maxReplicas"] <= 6


# -- network policies ------------------------------------------------------------------------


def test_network_policies() -> None:
    docs = render()
    nps = objects(docs, "NetworkPolicy")
    assert sorted(nps) == sorted([f"t-stockpipe-{s}" for s in SERVICES] + ["t-stockpipe-kafka", "t-stockpipe-postgresql"])
    # Only the dashboard takes traffic from anyone; the others only from the metrics scrapers.
    for s in SERVICES:
        ingress = nps[f"t-stockpipe-{s}"]["spec"]["ingress"]
        assert len(ingress) == 1
        assert ("from" in ingress[0]) == (s != "dashboard"), s
    # Only the services that use PostgreSQL may reach it.
    pg_port = 5432
    for s in SERVICES:
        egress_ports = {p["port"] for r in nps[f"t-stockpipe-{s}"]["spec"]["egress"] for p in r["ports"]}
        assert (pg_port in egress_ports) == (s != "analytics"), s
        assert 9092 in egress_ports and 53 in egress_ports
    # The in-chart servers admit only their labelled clients.
    pg_from = nps["t-stockpipe-postgresql"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert pg_from == {"app.kubernetes.io/instance": "t", "stockpipe.io/postgres-client": "true"}
    labelled = {component(d) for _, d in [(None, d) for d in docs if d["kind"] in ("Deployment", "Job")]
                if d["spec"]["template"]["metadata"]["labels"].get("stockpipe.io/postgres-client") == "true"}
    assert labelled == {"producer", "ingestor", "forecaster", "dashboard", "notifier", "migrate"}
    assert not objects(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")


def _notes(tmp_path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (helm template skips it: a copy of the chart
    renders it into a ConfigMap instead)."""
    import shutil

    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "_zz_notes.tpl").write_text('{{- define "zz.notes" -}}\n' + notes + "\n{{- end -}}\n")
        (chart / "templates" / "zz-notes.yaml").write_text(
            'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include "zz.notes" . | quote }}\n')
    proc = subprocess.run([tool("helm"), "template", "sp", str(chart), "-n", "stockpipe", "--kube-version", KUBE_VERSION,
                           "--show-only", "templates/zz-notes.yaml", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import yaml

    return yaml.safe_load(proc.stdout)["data"]["notes"]


def test_notes_say_how_to_reach_the_dashboard(tmp_path) -> None:
    assert "kubectl -n stockpipe port-forward svc/sp-stockpipe-dashboard 8050:80" in _notes(tmp_path)
    assert "http://stockpipe.local/" in _notes(tmp_path, "--set", "ingress.enabled=true")
    routed = _notes(tmp_path, "--set", "httpRoute.enabled=true", "--set", "httpRoute.hostnames[0]=sp.example")
    assert "http://sp.example/" in routed
    external = _notes(tmp_path, "-f", str(CHART / "ci" / "external-values.yaml"))
    assert "kafka-0.kafka.example.svc:9093" in external and "Strimzi" not in external


# -- documentation ---------------------------------------------------------------------------


def test_every_value_is_documented_and_the_readme_table_is_current() -> None:
    import sys

    import yaml

    sys.path.insert(0, str(CHART.parent / "tools"))
    import values_table

    text = (CHART / "values.yaml").read_text()
    documented = {row[0] for row in values_table.rows(text)}

    def leaves(node, path=()):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                yield from leaves(v, (*path, k))
        else:
            yield path

    undocumented = [".".join(p) for p in leaves(yaml.safe_load(text))
                    if not any(".".join(p[:i]) in documented for i in range(1, len(p) + 1))]
    assert not undocumented, f"values without a `# --` comment (on them or a parent): {undocumented}"
    proc = subprocess.run([sys.executable, str(CHART.parent / "tools" / "values_table.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_dashboard_settings_from_the_chart() -> None:
    docs = render({"dashboard": {"authPassword": "pw", "config": {"DASHBOARD_AUTH_USER": "me"}},
                   "notifier": {"enabled": False}})
    env = container_env(docs, pod_spec(one(docs, "Deployment", "t-stockpipe-dashboard"))["containers"][0])
    assert env["DASHBOARD_DB_ROLE"] == env["POSTGRES_USER"] == "stockpipe_readonly"
    assert (env["DASHBOARD_AUTH_USER"], env["DASHBOARD_AUTH_PASSWORD"]) == ("me", "pw")
    urls = dict(u.split("=", 1) for u in env["DASHBOARD_METRICS_URLS"].split(","))
    assert urls == {s: f"http://t-stockpipe-{s}:8000/metrics" for s in ("producer", "ingestor", "analytics", "forecaster")}
    # ... and the policies let it read them.
    np = one(docs, "NetworkPolicy", "t-stockpipe-ingestor")["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "stockpipe", "app.kubernetes.io/instance": "t",
                                            "app.kubernetes.io/component": "dashboard"}}} in np
    # Without a password the Secret has no key and the variable is optional.
    docs = render()
    assert "dashboard-auth-password" not in one(docs, "Secret", "t-stockpipe")["data"]
