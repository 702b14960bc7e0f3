"""Drive the real Kafka, PostgreSQL and service processes from tests and benchmarks.

The servers come from ``deploy/local/infra.sh`` (the same script ``make infra-up`` runs),
under their own state dir so a developer's ``make run`` is left alone. Each test gets a
:class:`Stack`: its own database (migrated) and its own topic prefix (topics created), so
tests never see each other's data.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "deploy" / "local" / "infra.sh"
# The test session's Kafka and PostgreSQL state (tests/conftest.py starts them there). Here,
# not in conftest.py: tests/cluster has a conftest.py too, and "from conftest import" would
# find whichever pytest loaded first.
TEST_STATE = Path(os.environ.get("STOCKPIPE_TEST_LOCAL_DIR", REPO / ".local" / "test"))


class InfraError(RuntimeError):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export K=V`` lines of an infra env file (values may be shell-quoted)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def infra(command: str, state_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, str]:
    """Run ``infra.sh COMMAND`` on ``state_dir``; after ``up`` return its env file."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "POSTGRES_DSN")}
    env["STOCKPIPE_LOCAL_DIR"] = str(state_dir)
    env.update(extra_env or {})
    proc = subprocess.run(["bash", str(INFRA), command], env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise InfraError(f"infra.sh {command} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return read_env_file(state_dir / "env") if command == "up" else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class ServiceProcess:
    """One ``python -m stockpipe.<service>`` process, its log in a file."""

    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                return http_get(self.port, "/readyz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout, what=f"{self.name} /readyz")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)


@dataclass
class Stack:
    """A private slice of the shared servers: one database, one topic prefix."""

    base_env: dict[str, str]
    workdir: Path
    database: str = field(default_factory=lambda: "t_" + uuid.uuid4().hex[:12])
    prefix: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:8] + ".")
    processes: list[ServiceProcess] = field(default_factory=list)

    @property
    def admin_dsn(self) -> str:
        return self.base_env["POSTGRES_DSN"]

    @property
    def dsn(self) -> str:
        return self.admin_dsn.rsplit("/", 1)[0] + "/" + self.database

    @property
    def bootstrap(self) -> str:
        return self.base_env["KAFKA_BOOTSTRAP_SERVERS"]

    def env(self, **overrides: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "KAFKA_", "TOPIC_"))}
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "POSTGRES_DSN": self.dsn,
            "TOPIC_PREFIX": self.prefix,
            "LOG_LEVEL": "info",
            "OPENBLAS_NUM_THREADS": "1",
        })
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    def topic(self, kind: str) -> str:
        return self.prefix + kind

    # -- set-up and tear-down
    def create(self) -> Stack:
        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.database}")
        conn.close()
        for module in ("stockpipe.common.migrate", "stockpipe.common.topics"):
            self.run_module(module, TOPIC_PARTITIONS="6")
        return self

    def destroy(self) -> None:
        for p in self.processes:
            p.kill()
        self._delete_topics()
        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        try:
            for attempt in range(10):
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
                    return
                except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ObjectInUse):
                    # An autovacuum worker (a superuser process) on the new database, which
                    # FORCE may not terminate as the app user: it is gone a moment later.
                    if attempt == 9:
                        raise
                    time.sleep(1.0)
        finally:
            conn.close()

    def _delete_topics(self) -> None:
        """Delete this stack's topics: a benchmark step writes gigabytes, and the servers
        outlive the stacks (left behind, one run of bench/analytics.py filled 46 GB)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(self.prefix)]
        for future in admin.delete_topics(names, operation_timeout=30).values() if names else ():
            try:
                future.result(60)
            except KafkaException as exc:  # already gone is fine; anything else is worth a line
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    print(f"harness: could not delete a topic of {self.prefix}: {exc}", file=sys.stderr)

    def run_module(self, module: str, *args: str, timeout: float = 120, **env: Any) -> subprocess.CompletedProcess:
        env.setdefault("HTTP_PORT", "0")  # any free port: 8000 may be taken by another process
        proc = subprocess.run([sys.executable, "-m", module, *args], env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    # -- services
    def start(self, service: str, *args: str, **env: Any) -> ServiceProcess:
        port = free_port()
        log = self.workdir / f"{service}-{len(self.processes)}.log"
        fh = log.open("wb")
        proc = subprocess.Popen([sys.executable, "-m", f"stockpipe.{service}", *args],
                                env=self.env(HTTP_PORT=port, **env), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        sp = ServiceProcess(service, proc, port, log)
        self.processes.append(sp)
        return sp

    # -- Kafka
    def produce(self, kind: str, values: Iterable[bytes | None], key: bytes | None = b"AAPL") -> int:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        n = 0
        for value in values:
            producer.produce(self.topic(kind), value, key)
            n += 1
            if n % 10_000 == 0:
                producer.poll(0)
        assert producer.flush(30) == 0
        return n

    def produce_keyed(self, kind: str, items: Iterable[tuple[bytes | None, bytes | None]], **conf: Any) -> int:
        """Produce ``(key, value)`` pairs in order (one key stays in one partition)."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                             **conf})
        n = 0
        for key, value in items:
            producer.produce(self.topic(kind), value, key)
            n += 1
            if n % 10_000 == 0:
                producer.poll(0)
        assert producer.flush(30) == 0
        return n

    def consume_all(self, kind: str, timeout: float = 10.0) -> list:
        """Every message on the topic (from the start to the current end), per partition in order."""
        from stockpipe.common.reader import BEGINNING, END, read_partitions
        from stockpipe.common.settings import CommonSettings

        settings = CommonSettings(kafka_bootstrap_servers=self.bootstrap, service_name="test")
        topic = self.topic(kind)
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "test-meta"})
        try:
            parts = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        finally:
            consumer.close()
        out: list = []
        read_partitions(settings, topic, {p: (BEGINNING, END) for p in parts}, out.append, timeout=timeout)
        return out

    def count(self, kind: str) -> int:
        """Messages on the topic so far: the sum of its partitions' high watermarks (cheap,
        asked of the broker; for waiting on a fast service, where consume_all is too slow)."""
        topic = self.topic(kind)
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "test-meta"})
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
        finally:
            consumer.close()

    # -- PostgreSQL
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def execute(self, sql: str, params: tuple = ()) -> None:
        """Run a statement and commit it."""
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, params)
        finally:
            conn.close()

    def scalar(self, sql: str, params: tuple = ()) -> Any:
        return self.query(sql, params)[0][0]


def bench_stack() -> Stack:
    """A fresh stack on the benchmarks' own servers (state in .local/bench, started if needed)."""
    state = REPO / ".local" / "bench"
    env = infra("up", state)
    workdir = state / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    return Stack(env, workdir).create()


def metrics_of(port: int) -> dict[tuple[str, tuple], float]:
    """The service's /metrics parsed: (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    code, body = http_get(port, "/metrics")
    assert code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


def json_body(body: bytes) -> dict:
    return json.loads(body.decode())
