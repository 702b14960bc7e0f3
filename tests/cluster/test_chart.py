"""The Helm chart on a real single-node Kubernetes: installed, bars moving, nothing lost.

Run by `make cluster-test` (tests/cluster/run.sh), which brings up the cluster of
deploy/cluster/cluster.py (kube-proxy in iptables mode, CoreDNS), imports the images and tears
it all down afterwards. The tests run in order and build on one another, as a user would:

1. smoke: a Deployment + Service, reached from another pod by its DNS name (CoreDNS) and
   ClusterIP (kube-proxy's rules); names outside the cluster do not resolve.
2. `helm install --wait --wait-for-jobs` of the cluster scenario (values.yaml): every pod
   Ready, the topic and migration Jobs complete.
3. Synthetic bars flow producer -> Kafka -> ingestor / analytics -> PostgreSQL (row counts
   through `kubectl exec psql`).
4. /metrics of every pod through the API server's pod proxy; the dashboard through its
   Service (when the chart deploys it).
5. `helm upgrade` changing a common setting while bars stream: every pod's config checksum
   changes and every pod is replaced.
6. `kubectl delete pod` of the ingestor and of analytics while bars stream.
7. The producer is stopped (scaled to 0), the consumers drain, and every bar on `raw` is in
   `price_bars` exactly once with its values, every bar has exactly one `indicators` row, and
   those indicator values equal an independent replay of `raw` through the analytics
   library: 0 lost, 0 duplicated, state rebuilt exactly across restarts.
8. `helm uninstall` leaves no workload behind.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
from kube import KubeError, apply, describe_pods, helm, is_ready, kubectl, kubectl_json, pods, psql, wait_until

pytestmark = pytest.mark.timeout(1200)

REPO = Path(__file__).resolve().parents[2]
# STOCKPIPE_CHART: try another copy of the chart (e.g. a branch not merged yet).
CHART = Path(os.environ.get("STOCKPIPE_CHART", REPO / "deploy" / "helm" / "stockpipe"))
VALUES = Path(__file__).with_name("values.yaml")
NS = "stockpipe-ci"
RELEASE = "stockpipe"
SMOKE_NS = "stockpipe-smoke"
# Services whose images were built and imported (tests/cluster/run.sh), others are disabled.
SERVICES = os.environ.get("STOCKPIPE_CLUSTER_SERVICES", "producer ingestor analytics").split()
OPTIONAL = ("forecaster", "dashboard", "notifier")
PG_USER = PG_DB = "stockpipe"
COMPONENT = "app.kubernetes.io/component"

state: dict = {}


def log(msg: str) -> None:
    print(f"[cluster-test {time.strftime('%H:%M:%S', time.gmtime())}] {msg}", flush=True)


def helm_values_args() -> list[str]:
    args = ["-f", str(VALUES)]
    for s in OPTIONAL:
        args += ["--set", f"{s}.enabled={'true' if s in SERVICES else 'false'}"]
    return args


def pod_of(component: str) -> str:
    ready = [p for p in pods(NS, f"{COMPONENT}={component}") if is_ready(p)]
    if not ready:
        raise KubeError(f"no Ready pod of {component}")
    return ready[0]["metadata"]["name"]


def sql(query: str) -> str:
    return psql(NS, pod_of("postgresql"), query, user=PG_USER, db=PG_DB).strip()


def counts() -> dict[str, int]:
    row = sql("SELECT (SELECT count(*) FROM price_bars), (SELECT count(*) FROM indicators),"
              " (SELECT count(*) FROM alerts)")
    bars, ind, alerts = (int(x) for x in row.split("|"))
    return {"price_bars": bars, "indicators": ind, "alerts": alerts}


def workloads() -> list[str]:
    return [s for s in SERVICES if s != "notifier" or "notifier" in SERVICES]


def deployments() -> dict[str, dict]:
    items = kubectl_json("get", "deployments", "-n", NS)["items"]
    return {d["metadata"]["labels"][COMPONENT]: d for d in items}


def all_ready(expect: set[str]) -> bool:
    """Every Deployment/StatefulSet rolled out and Ready, and no pod of another revision left."""
    ok = True
    for kind in ("deployments", "statefulsets"):
        for d in kubectl_json("get", kind, "-n", NS)["items"]:
            st, want = d.get("status", {}), d["spec"].get("replicas", 1)
            if not (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
                    and st.get("updatedReplicas", 0) == want and st.get("readyReplicas", 0) == want
                    and st.get("replicas", 0) == want):
                ok = False
    comps = {p["metadata"]["labels"].get(COMPONENT) for p in pods(NS) if is_ready(p)}
    return ok and expect <= comps


def fail_with_pods(msg: str) -> None:
    pytest.fail(f"{msg}\n{describe_pods(NS)}")


# ----------------------------------------------------------------- 1. Services and DNS

def test_smoke_service_routing_and_dns() -> None:
    """A Deployment behind a Service, reached by DNS name (CoreDNS) through kube-proxy."""
    kubectl("create", "namespace", SMOKE_NS)
    image = "stockpipe-ingestor:latest"
    sec = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    csec = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    labels = {"app": "echo"}
    apply([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"securityContext": sec, "automountServiceAccountToken": False, "containers": [{
                 "name": "echo", "image": image, "imagePullPolicy": "Never", "securityContext": csec,
                 "command": ["python", "-c",
                             "import http.server, socket\n"
                             "class H(http.server.BaseHTTPRequestHandler):\n"
                             "    def do_GET(self):\n"
                             "        body = socket.gethostname().encode()\n"
                             "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
                             "http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()\n"],
                 "ports": [{"containerPort": 8080, "name": "http"}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}},
    ], SMOKE_NS)
    wait_until("2 echo pods Ready", lambda: sum(is_ready(p) for p in pods(SMOKE_NS, "app=echo")) == 2, 180)
    cluster_ip = kubectl("get", "service", "echo", "-n", SMOKE_NS, "-o", "jsonpath={.spec.clusterIP}")
    client = (
        "import socket, urllib.request, json\n"
        "out = {'fqdn': socket.gethostbyname('echo.stockpipe-smoke.svc.cluster.local'),\n"
        "       'short': socket.gethostbyname('echo')}\n"
        "out['answers'] = sorted({urllib.request.urlopen('http://echo/', timeout=5).read().decode()\n"
        "                         for _ in range(30)})\n"
        "try:\n"
        "    socket.gethostbyname('example.com'); out['external'] = 'resolved'\n"
        "except OSError as exc:\n"
        "    out['external'] = 'no such name'\n"
        "print(json.dumps(out))\n"
    )
    apply([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
            "spec": {"restartPolicy": "Never", "securityContext": sec, "automountServiceAccountToken": False,
                     "containers": [{"name": "client", "image": image, "imagePullPolicy": "Never",
                                     "securityContext": csec, "command": ["python", "-c", client]}]}}], SMOKE_NS)
    phase = wait_until("the client pod to finish", lambda: kubectl(
        "get", "pod", "client", "-n", SMOKE_NS, "-o", "jsonpath={.status.phase}") in ("Succeeded", "Failed")
        and kubectl("get", "pod", "client", "-n", SMOKE_NS, "-o", "jsonpath={.status.phase}"), 180)
    logs = kubectl("logs", "client", "-n", SMOKE_NS)
    assert phase == "Succeeded", f"client pod {phase}: {logs}"
    out = json.loads(logs.strip().splitlines()[-1])
    echo_pods = {p["metadata"]["name"] for p in pods(SMOKE_NS, "app=echo")}
    log(f"smoke: echo -> {out['fqdn']} (Service {cluster_ip}); answered by {out['answers']}")
    assert out["fqdn"] == cluster_ip and out["short"] == cluster_ip
    # kube-proxy spreads connections over both endpoints; 30 tries all landing on one of two
    # is a 2e-9 chance.
    assert set(out["answers"]) == echo_pods
    assert out["external"] == "no such name"
    kubectl("delete", "namespace", SMOKE_NS, "--wait=true", timeout=180)


# ----------------------------------------------------------------- 2. install

def test_helm_install() -> None:
    t0 = time.monotonic()
    try:
        helm("install", RELEASE, str(CHART), "-n", NS, "--create-namespace", *helm_values_args(),
             "--wait", "--wait-for-jobs", "--timeout", "15m", timeout=1000)
    except KubeError as exc:
        fail_with_pods(f"helm install failed: {exc}")
    log(f"helm install --wait: {time.monotonic() - t0:.0f}s")
    expect = {"kafka", "postgresql", *workloads()}
    if not all_ready(expect):
        fail_with_pods("not every workload is Ready after helm install --wait")
    jobs = kubectl_json("get", "jobs", "-n", NS)["items"]
    done = {j["metadata"]["labels"].get(COMPONENT): j.get("status", {}).get("succeeded", 0) for j in jobs}
    # Migrations: a hook Job where the chart runs one at install (external database), else
    # the writers' `migrate` init containers (the in-chart PostgreSQL does not exist before).
    migrated = [f"{p['metadata']['name']}/{c['name']}" for p in pods(NS)
                for c in p.get("status", {}).get("initContainerStatuses", [])
                if c["name"] == "migrate" and c.get("state", {}).get("terminated", {}).get("exitCode") == 0]
    log(f"jobs: {done}; migrate init containers completed: {migrated}")
    assert done.get("topics", 0) >= 1, f"topics Job not complete: {done}"
    if "migrate" in done:
        assert done["migrate"] >= 1, f"migration Job not complete: {done}"
    else:
        assert migrated, "no migration ran: no migrate Job and no completed migrate init container"
    tables = sql("SELECT count(*) FROM information_schema.tables WHERE table_name IN "
                 "('price_bars', 'indicators', 'alerts')")
    assert tables == "3", f"schema missing after install: {tables} of 3 tables"
    for p in pods(NS):
        if p["metadata"]["labels"].get(COMPONENT) in expect:
            assert is_ready(p), p["metadata"]["name"]
    state["installed"] = True


# ----------------------------------------------------------------- 3. bars flow

def test_bars_flow_into_postgres() -> None:
    assert state.get("installed"), "install failed"
    first = wait_until("bars and indicators in PostgreSQL",
                       lambda: (c := counts())["price_bars"] > 0 and c["indicators"] > 0 and c, 300)
    later = wait_until("more bars", lambda: (c := counts())["price_bars"] > first["price_bars"] and c, 120)
    log(f"flowing: {first} -> {later}")
    assert later["indicators"] > 0
    if "forecaster" in SERVICES:
        # The forecaster reads the stream in-cluster too; its forecasts reach the table through
        # the ingestor (12 symbols x 1,000 bars of history: past ARIMA_MIN_OBSERVATIONS at once).
        made = wait_until("forecasts in PostgreSQL", lambda: int(sql("SELECT count(*) FROM forecasts")) or None, 420)
        models = int(sql("SELECT count(*) FROM models"))
        log(f"forecasts: {made} rows, models in the registry: {models}")
        assert models > 0


# ----------------------------------------------------------------- 4. metrics, dashboard

def test_metrics_of_every_pod_through_the_api_server() -> None:
    assert state.get("installed"), "install failed"
    seen = {}
    for p in pods(NS):
        comp = p["metadata"]["labels"].get(COMPONENT)
        if comp not in SERVICES or not is_ready(p):
            continue
        name = p["metadata"]["name"]
        port = next(cp["containerPort"] for c in p["spec"]["containers"] for cp in c.get("ports", [])
                    if cp.get("name") == "http")
        text = kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{name}:{port}/proxy/metrics")
        assert "stockpipe_" in text, f"{name}: no stockpipe_* metric"
        if comp in ("ingestor", "analytics"):
            assert "stockpipe_messages_consumed_total" in text, f"{name}: no consumed counter"
        if comp == "producer":
            assert "stockpipe_messages_produced_total" in text, f"{name}: no produced counter"
        seen[comp] = len(text.splitlines())
    log(f"/metrics lines per service: {seen}")
    assert set(seen) == set(workloads())


def test_dashboard_through_its_service() -> None:
    if "dashboard" not in SERVICES:
        pytest.skip("no dashboard image in this build (services/dashboard not built): chart value dashboard.enabled=false")
    svc = next(s for s in kubectl_json("get", "services", "-n", NS)["items"]
               if s["metadata"]["labels"].get(COMPONENT) == "dashboard")
    name, port = svc["metadata"]["name"], svc["spec"]["ports"][0]["port"]
    # Through the API server's Service proxy, and from a pod by DNS name through kube-proxy.
    page = kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/services/{name}:{port}/proxy/")
    assert "<html" in page.lower()
    code = kubectl("exec", "-n", NS, pod_of("ingestor"), "--", "python", "-c",
                   f"import urllib.request; print(urllib.request.urlopen('http://{name}:{port}/healthz', "
                   "timeout=10).status)")
    assert code.strip() == "200"


# ----------------------------------------------------------------- 5. upgrade while streaming

def test_helm_upgrade_rolls_every_pod_while_bars_stream() -> None:
    assert state.get("installed"), "install failed"
    before = {c: {"checksum": d["spec"]["template"]["metadata"]["annotations"].get("checksum/config"),
                  "pods": {p["metadata"]["uid"] for p in pods(NS, f"{COMPONENT}={c}")}}
              for c, d in deployments().items()}
    c0 = counts()
    t0 = time.monotonic()
    try:
        helm("upgrade", RELEASE, str(CHART), "-n", NS, *helm_values_args(),
             "--set", "config.progressInterval=15", "--wait", "--wait-for-jobs", "--timeout", "15m", timeout=1000)
    except KubeError as exc:
        fail_with_pods(f"helm upgrade failed: {exc}")
    wait_until("every workload rolled out", lambda: all_ready({"kafka", "postgresql", *workloads()}), 300)
    log(f"helm upgrade --wait: {time.monotonic() - t0:.0f}s")
    after = deployments()
    for comp, b in before.items():
        new = after[comp]["spec"]["template"]["metadata"]["annotations"].get("checksum/config")
        assert new and new != b["checksum"], f"{comp}: checksum/config unchanged ({new})"
        # Old pods may still be in their graceful shutdown (SHUTDOWN_TIMEOUT) when --wait returns.
        wait_until(f"every old {comp} pod gone", lambda comp=comp, b=b: not (
            {p["metadata"]["uid"] for p in pods(NS, f"{COMPONENT}={comp}")} & b["pods"]), 120)
        now = {p["metadata"]["uid"] for p in pods(NS, f"{COMPONENT}={comp}") if is_ready(p)}
        assert now, f"{comp}: no Ready pod after the upgrade"
    c1 = wait_until("bars after the upgrade", lambda: (c := counts())["price_bars"] > c0["price_bars"] and c, 180)
    log(f"upgrade: all {len(before)} Deployments rolled (new checksum/config, new pods); rows {c0} -> {c1}")


# ----------------------------------------------------------------- 6. pod deletions

@pytest.mark.parametrize("component", ["ingestor", "analytics"])
def test_delete_pod_while_bars_stream(component: str) -> None:
    assert state.get("installed"), "install failed"
    old = {p["metadata"]["uid"] for p in pods(NS, f"{COMPONENT}={component}")}
    c0 = counts()
    kubectl("delete", "pod", "-n", NS, "-l", f"{COMPONENT}={component}", "--wait=true", timeout=120)
    wait_until(f"a new Ready {component} pod", lambda: any(
        is_ready(p) and p["metadata"]["uid"] not in old for p in pods(NS, f"{COMPONENT}={component}")), 300)
    c1 = wait_until(f"rows growing after deleting {component}",
                    lambda: (c := counts())["indicators"] > c0["indicators"] and c["price_bars"] > c0["price_bars"] and c,
                    240)
    log(f"deleted {component}: rows {c0} -> {c1}")


# ----------------------------------------------------------------- 7. nothing lost

READ_TOPIC = r"""
import json, os, sys, time
from confluent_kafka import Consumer, KafkaError, TopicPartition
name = sys.argv[1]
topic = os.environ.get("TOPIC_PREFIX", "") + os.environ.get("TOPIC_" + name.upper(), name)
c = Consumer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"], "group.id": "stockpipe-cluster-test",
              "enable.auto.commit": False, "enable.partition.eof": False})
parts = sorted(c.list_topics(topic, timeout=30).topics[topic].partitions)
ends, assign = {}, []
for p in parts:
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
    ends[p] = hi
    if hi > lo:
        assign.append(TopicPartition(topic, p, lo))
c.assign(assign)
left = {tp.partition for tp in assign}
deadline = time.monotonic() + 300
w = sys.stdout.write
while left and time.monotonic() < deadline:
    m = c.poll(1.0)
    if m is None:
        continue
    if m.error():
        sys.exit(f"kafka error: {m.error()}")
    w(json.dumps([m.partition(), m.offset(), m.value().decode()]) + "\n")
    if m.offset() + 1 >= ends[m.partition()]:
        left.discard(m.partition())
c.close()
if left:
    sys.exit(f"partitions {sorted(left)} not read to their end within 300 s")
"""


def read_topic(name: str) -> list[tuple[int, int, dict]]:
    text = kubectl("exec", "-n", NS, pod_of("ingestor"), "--", "python", "-c", READ_TOPIC, name, timeout=400)
    rows = []
    for line in text.splitlines():
        part, off, value = json.loads(line)
        rows.append((part, off, json.loads(value)))
    return rows


def test_every_bar_exactly_once_after_upgrade_and_deletions() -> None:
    assert state.get("installed"), "install failed"
    producer = next(d["metadata"]["name"] for c, d in deployments().items() if c == "producer")
    kubectl("scale", "deployment", producer, "-n", NS, "--replicas=0")
    wait_until("the producer pod gone", lambda: not pods(NS, f"{COMPONENT}=producer"), 120)

    raw = read_topic("raw")
    first: dict[tuple, dict] = {}
    dupes = 0
    for _, _, bar in sorted(raw, key=lambda r: (r[0], r[1])):
        key = (bar["symbol"], bar["interval"], bar["ts"])
        if key in first:
            dupes += 1
        else:
            first[key] = bar
    n = len(first)
    log(f"raw: {len(raw)} messages, {n} distinct bars, {dupes} re-sent")
    assert n > 1000, f"only {n} bars published"

    # Drained: the ingestor has written every bar and every indicator message.
    wait_until(f"{n} rows in price_bars and indicators",
               lambda: (c := counts())["price_bars"] >= n and c["indicators"] >= n, 300, interval=3)
    c = counts()
    rows = sql("COPY (SELECT symbol, interval, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
               " open, high, low, close, volume FROM price_bars) TO STDOUT").splitlines()
    table = {}
    for r in rows:
        s, i, ts, o, h, lo, cl, v = r.split("\t")
        table[(s, i, ts)] = (float(o), float(h), float(lo), float(cl), int(v))
    assert len(table) == len(rows) == c["price_bars"]
    norm = {(s, i, ts.replace("+00:00", "Z")): b for (s, i, ts), b in first.items()}
    lost = sorted(set(norm) - set(table))
    extra = sorted(set(table) - set(norm))
    wrong = [k for k, b in norm.items() if k in table
             and table[k] != (b["open"], b["high"], b["low"], b["close"], b["volume"])]
    log(f"price_bars: {len(table)} rows; lost {len(lost)}, not published {len(extra)}, other values {len(wrong)}")
    assert not lost, f"{len(lost)} bars never reached price_bars, e.g. {lost[:3]}"
    assert not extra, f"{len(extra)} rows in price_bars that raw never had, e.g. {extra[:3]}"
    assert not wrong, f"{len(wrong)} rows differ from the first published bar, e.g. {wrong[:3]}"

    # Indicators: one row per bar, equal to a replay of raw through the analytics library.
    cols = ["rsi", "sma_short", "sma_long", "ema_short", "ema_long", "bb_upper", "bb_middle", "bb_lower",
            "macd", "macd_signal", "macd_hist", "volatility"]
    ind_rows = sql("COPY (SELECT symbol, interval, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                   f" close, {', '.join(cols)} FROM indicators) TO STDOUT").splitlines()
    ind = {}
    for r in ind_rows:
        f = r.split("\t")
        ind[(f[0], f[1], f[2])] = [None if x == "\\N" else float(x) for x in f[3:]]
    assert len(ind) == len(ind_rows) == c["indicators"]
    assert set(ind) == set(norm), (f"indicators rows: {len(ind)}, bars: {len(norm)}; missing "
                                   f"{sorted(set(norm) - set(ind))[:3]}, extra {sorted(set(ind) - set(norm))[:3]}")
    from stockpipe.analytics.indicators import IndicatorConfig, IndicatorState

    series: dict[tuple, list] = {}
    for k in sorted(norm, key=lambda k: (k[0], k[1], k[2])):
        series.setdefault(k[:2], []).append(k)
    mismatched = []
    for keys in series.values():
        st = IndicatorState(IndicatorConfig())
        for k in keys:
            want = [norm[k]["close"], *st.update(norm[k]["close"])]
            got = ind[k]
            if any((a is None) != (b is None) or (a is not None and not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9))
                   for a, b in zip(want, got, strict=True)):
                mismatched.append(k)
    log(f"indicators: {len(ind)} rows, one per bar; {len(mismatched)} differ from a replay of raw "
        f"({len(series)} series)")
    assert not mismatched, f"{len(mismatched)} indicator rows differ from a replay of raw, e.g. {mismatched[:3]}"
    print(f"nothing lost: {n} bars published, {len(table)} in price_bars, {len(ind)} indicator rows, "
          "0 lost, 0 duplicated")


# ----------------------------------------------------------------- 8. uninstall

def test_helm_uninstall_leaves_no_workload() -> None:
    helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "5m", timeout=400)

    def gone() -> bool:
        left = kubectl("get", "deployments,statefulsets,replicasets,pods,jobs,services,configmaps,secrets,"
                       "persistentvolumeclaims,poddisruptionbudgets,networkpolicies,serviceaccounts",
                       "-n", NS, "-o", "name").split()
        # What Kubernetes itself puts in every namespace.
        left = [x for x in left if x not in ("configmap/kube-root-ca.crt", "serviceaccount/default")]
        if left:
            log(f"still there: {left}")
        return not left

    # Helm deletes no hook resource on uninstall: a hook Job kept for its logs
    # (hook-delete-policy before-hook-creation only) outlives the release.
    wait_until("nothing of the release left in its namespace (a hook Job kept after success is left "
               "by helm uninstall: needs hook-delete-policy hook-succeeded or ttlSecondsAfterFinished)",
               gone, 120, interval=3)
    kubectl("delete", "namespace", NS, "--wait=true", timeout=300)
