"""Chart and code cannot drift.

1. Settings (no servers): every setting a service reads (``describe`` of its settings class)
   gets a value from the chart, every variable the chart sets is one the service reads (a
   misspelt or retired name fails here), and the rendered values parse (no exit 2 in a pod).
   Same for the set-up jobs (topics, migrations).
2. Processes (real Kafka and PostgreSQL): each service whose package exists in the checkout
   starts with exactly the rendered environment of its Deployment (ConfigMaps and Secret
   resolved as the kubelet would) plus what the image sets, and serves the rendered liveness
   and readiness paths (200) and /metrics; SIGTERM ends it with 0. Swapped, and only these:
   the Kafka and PostgreSQL addresses/credentials for the test's own servers, TOPIC_PREFIX for
   the test's private topics, HTTP_PORT for a free port (the rendered port is checked against
   containerPort, the probes' named port and the Service's targetPort instead: many services
   share 8000 and other people's processes run on this machine), and PRODUCER_SOURCE=synthetic
   (tests talk to 127.0.0.1 only, never to Yahoo).

The services are found from the checkout (services/<name>/src/stockpipe/<name>/__main__.py),
so a service merged later is covered from its first commit on.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg2
import pytest
from helmchart import CHART, REPO, SERVICES, container_env, objects, one, pod_spec, render

from stockpipe.common.settings import CommonSettings, describe, load

from harness import free_port, http_get, wait_for

READONLY_SCRIPT = CHART / "files" / "scripts" / "readonly_role.py"
READONLY_SH = CHART / "files" / "scripts" / "readonly-role.sh"
# Fixed passwords: renders are then stable, and the values are known to the test.
VALUES = {"postgresql": {"password": "writer-pw", "readonlyRole": {"password": "reader-pw"}}}
# Settings the chart leaves to the code's default on purpose.
LEFT_TO_DEFAULT = {
    "POSTGRES_DSN": "the chart sets the POSTGRES_* parts instead",
    "KAFKA_SASL_MECHANISM": "only with kafka.sasl.mechanism (checked in test_sasl_settings_reach_every_service)",
    "KAFKA_SASL_USERNAME": "only with kafka.sasl.mechanism",
    "KAFKA_SASL_PASSWORD": "only with kafka.sasl.mechanism",
    "DASHBOARD_AUTH_PASSWORD": "from the Secret, only with dashboard.authPassword (optional key)",
    "NOTIFY_ENDPOINTS": "from the Secret (resolved only when the chart's Secret holds it)",
}
# Chart values that differ from the code's default on purpose (the reason is the value's
# comment in values.yaml).
CHART_OVERRIDES = {"FORECASTER_WORKERS"}
# What deploy/docker/Dockerfile's ENV gives every container (besides PATH and VIRTUAL_ENV).
IMAGE_ENV = {"PYTHONSAFEPATH": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
             "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def existing_services() -> list[str]:
    return [s for s in SERVICES if (REPO / "services" / s / "src" / "stockpipe" / s / "__main__.py").is_file()]


def settings_class(service: str) -> type:
    """The service's settings class: the CommonSettings subclass its settings module defines."""
    module = importlib.import_module(f"stockpipe.{service}.settings")
    found = [c for _, c in inspect.getmembers(module, inspect.isclass)
             if issubclass(c, CommonSettings) and c is not CommonSettings and c.__module__ == module.__name__]
    assert found, f"stockpipe.{service}.settings defines no CommonSettings subclass"
    if len(found) > 1:
        named = [c for c in found if c.__name__.lower() == f"{service}settings"]
        assert named, f"stockpipe.{service}.settings: which of {[c.__name__ for c in found]}?"
        return named[0]
    return found[0]


def rendered_env(service: str, values: dict | None = None) -> dict[str, str]:
    docs = render(values or VALUES)
    return container_env(docs, pod_spec(one(docs, "Deployment", f"t-stockpipe-{service}"))["containers"][0])


def _fields_of(cls: type) -> set[str]:
    return {var for var, _, _ in describe(cls)}


# -- 1. settings -----------------------------------------------------------------------------


def test_some_services_exist() -> None:
    assert {"producer", "ingestor", "analytics"} <= set(existing_services())


@pytest.mark.parametrize("service", existing_services())
def test_every_setting_has_a_value_in_the_chart(service: str) -> None:
    env = rendered_env(service)
    missing = sorted(_fields_of(settings_class(service)) - set(env) - set(LEFT_TO_DEFAULT))
    assert not missing, (f"the chart gives {service} no value for {missing}: add them to "
                         f"`{service}.config` in deploy/helm/stockpipe/values.yaml (with their defaults)")


@pytest.mark.parametrize("service", existing_services())
def test_every_variable_the_chart_sets_is_read(service: str) -> None:
    unknown = sorted(set(rendered_env(service)) - _fields_of(settings_class(service)))
    assert not unknown, f"the chart sets {unknown} for {service}, which its settings class does not read"


@pytest.mark.parametrize("service", existing_services())
def test_rendered_settings_parse(service: str) -> None:
    cls = settings_class(service)
    settings = load(cls, rendered_env(service))  # raises SettingsError (a pod's exit 2)
    assert settings.service_name == service
    # Chart values that restate a code default restate it exactly (a changed default in the
    # code would otherwise be silently overridden by a stale chart).
    values = CHART / "values.yaml"
    import yaml

    config = yaml.safe_load(values.read_text())[service]["config"]
    defaults = {var: default for var, default, _ in describe(cls)}
    parsed = load(cls, {k: str(v) for k, v in config.items()})
    baseline = load(cls, {})
    differ = [k for k in config if k not in CHART_OVERRIDES
              and getattr(parsed, _field(cls, k)) != getattr(baseline, _field(cls, k))]
    assert not differ, f"values.yaml {service}.config differs from the code's defaults: {[(k, config[k], defaults[k]) for k in differ]}"


def _field(cls: type, var: str) -> str:
    for f in dataclasses.fields(cls):
        if (f.metadata.get("env") or f.name.upper()) == var:
            return f.name
    raise KeyError(var)


def test_sasl_settings_reach_every_service() -> None:
    values = {**VALUES, "kafka": {"sasl": {"mechanism": "SCRAM-SHA-512", "username": "u", "password": "p"}}}
    for service in SERVICES:
        env = rendered_env(service, values)
        assert (env["KAFKA_SASL_MECHANISM"], env["KAFKA_SASL_USERNAME"], env["KAFKA_SASL_PASSWORD"]) == (
            "SCRAM-SHA-512", "u", "p"), service


def test_job_settings_are_read_and_parse() -> None:
    from stockpipe.common.topics import TopicSettings

    docs = render(VALUES)
    jobs = objects(docs, "Job")
    topics = next(j for n, j in jobs.items() if n.startswith("t-stockpipe-topics-"))
    env = container_env(docs, pod_spec(topics)["containers"][0])
    assert not set(env) - _fields_of(TopicSettings)
    assert load(TopicSettings, env).topic_partitions == 6
    migrate = pod_spec(one(docs, "Job", "t-stockpipe-migrate"))
    for c in migrate["initContainers"] + migrate["containers"]:
        env = container_env(docs, c)
        extra = set(env) - _fields_of(CommonSettings) - {"READONLY_ROLE", "READONLY_PASSWORD"}
        assert not extra, (c["name"], extra)
        load(CommonSettings, env)


@pytest.mark.parametrize("service", SERVICES)
def test_rendered_port_is_the_one_everything_points_at(service: str) -> None:
    docs = render(VALUES)
    dep = one(docs, "Deployment", f"t-stockpipe-{service}")
    c = pod_spec(dep)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert container_env(docs, c)["HTTP_PORT"] == str(ports["http"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in ("http", ports["http"])
    assert one(docs, "Service", f"t-stockpipe-{service}")["spec"]["ports"][0]["targetPort"] in ("http", ports["http"])


# -- 2. processes ----------------------------------------------------------------------------


def _pg_parts(dsn: str) -> dict[str, str]:
    u = urlsplit(dsn)
    return {"POSTGRES_HOST": u.hostname or "127.0.0.1", "POSTGRES_PORT": str(u.port or 5432),
            "POSTGRES_DB": u.path.lstrip("/"), "POSTGRES_USER": unquote(u.username or ""),
            "POSTGRES_PASSWORD": unquote(u.password or "")}


def _superuser(stack) -> psycopg2.extensions.connection:
    """The test cluster's superuser, over its unix socket (deploy/local/postgres.sh)."""
    sock = Path(os.environ.get("STOCKPIPE_TEST_LOCAL_DIR", REPO / ".local" / "test")) / "postgres" / "run"
    parts = _pg_parts(stack.dsn)
    return psycopg2.connect(host=str(sock), port=parts["POSTGRES_PORT"], user="postgres", dbname=parts["POSTGRES_DB"])


@pytest.fixture
def readonly_role(stack):
    """A unique read-only role made by the chart's readonly_role.py, as the migration Job runs
    it (with the writer's settings); the writer gets CREATEROLE, as the in-chart database's
    POSTGRES_USER has. Dropped afterwards (roles are cluster-wide)."""
    role = "ro_" + uuid.uuid4().hex[:10]
    admin = _superuser(stack)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("ALTER ROLE stockpipe CREATEROLE")
    env = {"PATH": os.environ["PATH"], **IMAGE_ENV, **_pg_parts(stack.dsn),
           "READONLY_ROLE": role, "READONLY_PASSWORD": "reader-pw"}
    proc = subprocess.run([sys.executable, "-c", READONLY_SCRIPT.read_text()], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield role
    with admin.cursor() as cur:
        cur.execute(f'DROP OWNED BY "{role}"')
        cur.execute(f'DROP ROLE "{role}"')
    admin.close()


@pytest.mark.integration
def test_readonly_role_reads_and_cannot_write(stack, readonly_role) -> None:
    parts = _pg_parts(stack.dsn)
    conn = psycopg2.connect(host=parts["POSTGRES_HOST"], port=parts["POSTGRES_PORT"], dbname=parts["POSTGRES_DB"],
                            user=readonly_role, password="reader-pw")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM price_bars")
            assert cur.fetchone()[0] == 0
            with pytest.raises(psycopg2.Error, match="read-only|permission denied"):
                cur.execute("INSERT INTO companies(symbol) VALUES ('X')")
        conn.rollback()
    finally:
        conn.close()
    # A table the writer creates later is readable too (default privileges).
    writer = psycopg2.connect(stack.dsn)
    with writer, writer.cursor() as cur:
        cur.execute("CREATE TABLE later_table (x int); INSERT INTO later_table VALUES (1)")
    writer.close()
    conn = psycopg2.connect(host=parts["POSTGRES_HOST"], port=parts["POSTGRES_PORT"], dbname=parts["POSTGRES_DB"],
                            user=readonly_role, password="reader-pw")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM later_table")
    conn.close()
    # Running it again (every upgrade) changes the password and nothing else.
    env = {"PATH": os.environ["PATH"], **IMAGE_ENV, **parts, "READONLY_ROLE": readonly_role, "READONLY_PASSWORD": "new-pw"}
    proc = subprocess.run([sys.executable, "-c", READONLY_SCRIPT.read_text()], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "altered role" in proc.stdout, proc.stdout + proc.stderr
    psycopg2.connect(host=parts["POSTGRES_HOST"], port=parts["POSTGRES_PORT"], dbname=parts["POSTGRES_DB"],
                     user=readonly_role, password="new-pw").close()


@pytest.mark.integration
def test_readonly_role_initdb_script(stack) -> None:
    """The in-chart PostgreSQL's first-start script (psql, as the image's entrypoint runs it)."""
    import shutil

    psql = shutil.which("psql")
    if not psql:
        pytest.fail("psql not found (make deps installs PostgreSQL)")
    role = "ro_" + uuid.uuid4().hex[:10]
    parts = _pg_parts(stack.dsn)
    admin = _superuser(stack)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("ALTER ROLE stockpipe CREATEROLE")
    env = {"PATH": os.environ["PATH"], "PGHOST": parts["POSTGRES_HOST"], "PGPORT": parts["POSTGRES_PORT"],
           "PGPASSWORD": parts["POSTGRES_PASSWORD"], "POSTGRES_USER": parts["POSTGRES_USER"],
           "POSTGRES_DB": parts["POSTGRES_DB"], "READONLY_ROLE": role, "READONLY_PASSWORD": "it's-secret"}
    try:
        proc = subprocess.run(["bash", str(READONLY_SH)], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        conn = psycopg2.connect(host=parts["POSTGRES_HOST"], port=parts["POSTGRES_PORT"], dbname=parts["POSTGRES_DB"],
                                user=role, password="it's-secret")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM alerts")
            cur.execute("SHOW default_transaction_read_only")
            assert cur.fetchone()[0] == "on"
        conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()


@pytest.mark.integration
def test_services_start_with_the_rendered_environment(stack, readonly_role, tmp_path) -> None:
    docs = render(VALUES)
    readonly_name = "stockpipe_readonly"
    procs = {}
    try:
        for service in existing_services():
            c = pod_spec(one(docs, "Deployment", f"t-stockpipe-{service}"))["containers"][0]
            env = container_env(docs, c)
            swapped = {**_pg_parts(stack.dsn), "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                       "TOPIC_PREFIX": stack.prefix, "HTTP_PORT": str(free_port())}
            if env["POSTGRES_USER"] == readonly_name:  # the dashboard: its own read-only role
                swapped.update(POSTGRES_USER=readonly_role, POSTGRES_PASSWORD="reader-pw")
                if env.get("DASHBOARD_DB_ROLE") == readonly_name:  # its sessions run as that role too
                    swapped["DASHBOARD_DB_ROLE"] = readonly_role
            if service == "producer":
                swapped["PRODUCER_SOURCE"] = "synthetic"
            assert set(swapped) <= set(env) | {"POSTGRES_PASSWORD"}, sorted(set(swapped) - set(env))
            env.update(swapped)
            full = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **IMAGE_ENV, **env}
            log = (tmp_path / f"{service}.log").open("wb")
            module = c.get("command", [None, "-m", f"stockpipe.{service}"])[2]
            proc = subprocess.Popen([sys.executable, "-m", module], env=full, cwd=tmp_path,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs[service] = (proc, int(env["HTTP_PORT"]), c, tmp_path / f"{service}.log")

        for service, (proc, port, c, log) in procs.items():
            for probe in ("livenessProbe", "readinessProbe"):
                path = c[probe]["httpGet"]["path"]

                def ok(path=path, proc=proc, port=port, log=log, service=service) -> bool:
                    if proc.poll() is not None:
                        raise AssertionError(f"{service} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
                    try:
                        return http_get(port, path, timeout=2)[0] == 200
                    except OSError:
                        return False

                wait_for(ok, 90, what=f"{service} GET {path} == 200")
            status, body = http_get(port, "/metrics")
            assert status == 200 and b"stockpipe_" in body, service

        # SIGTERM within SHUTDOWN_TIMEOUT (the pods get terminationGracePeriodSeconds beyond it).
        grace = float(container_env(docs, procs[next(iter(procs))][2])["SHUTDOWN_TIMEOUT"])
        for service, (proc, _, _, log) in procs.items():
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(grace + 10)
            assert code == 0, f"{service} exited {code} on SIGTERM:\n{log.read_text()[-3000:]}"
            assert time.monotonic() - t0 < grace + 5
    finally:
        for proc, *_ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
