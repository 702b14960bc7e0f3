"""Typed, frozen settings built once from the environment.

A service declares a frozen dataclass that extends :class:`CommonSettings`; each field reads
the environment variable of its upper-cased name (or ``env=`` when it differs) and is parsed
by its annotation: ``int``, ``float``, ``bool``, ``str``, :class:`Secret`, ``tuple[str, ...]``
(comma separated) or ``Literal[...]``. Constraints live next to the field::

    @dataclass(frozen=True, kw_only=True)
    class IngestorSettings(CommonSettings):
        batch_size: int = setting(5000, ge=1, help="max messages per database write")

    settings = load(IngestorSettings)          # raises SettingsError naming the variable

Tests build settings objects directly: ``IngestorSettings(batch_size=10)``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

from stockpipe.common.errors import SettingsError
from stockpipe.common.messages import DEFAULT_CLOCK_SKEW_TOLERANCE, set_clock_skew_tolerance

__all__ = [
    "Secret",
    "setting",
    "load",
    "describe",
    "CommonSettings",
    "TOPIC_KINDS",
]


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def setting(
    default: Any = dataclasses.MISSING,
    *,
    env: str | None = None,
    help: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    pattern: str | None = None,
) -> Any:
    """A settings field: its default, environment variable, constraints and help line."""
    meta = {"env": env, "help": help, "ge": ge, "gt": gt, "le": le, "pattern": pattern}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata=meta)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(var: str, raw: str, hint: Any, meta: Mapping[str, Any]) -> Any:
    shown = "***" if hint is Secret else raw
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail(expected: str) -> typing.NoReturn:
        raise SettingsError(var, shown, expected)

    if hint is Secret:
        value: Any = Secret(raw)
    elif hint is bool:
        low = raw.strip().lower()
        if low not in _TRUE | _FALSE:
            fail("a boolean (true/false, 1/0, yes/no, on/off)")
        value = low in _TRUE
    elif hint is int:
        try:
            value = int(raw.strip())
        except ValueError:
            fail("an integer")
    elif hint is float:
        try:
            value = float(raw.strip())
        except ValueError:
            fail("a number")
        if value != value or value in (float("inf"), float("-inf")):
            fail("a finite number")
    elif hint is str:
        value = raw.strip()
    elif origin is Literal:
        value = raw.strip().lower() if all(isinstance(a, str) and a == a.lower() for a in args) else raw.strip()
        if value not in args:
            fail("one of " + ", ".join(str(a) for a in args))
    elif origin is tuple and args[-1] is Ellipsis and args[0] is str:
        value = tuple(part.strip() for part in raw.split(",") if part.strip())
        if meta.get("pattern"):
            bad = [v for v in value if not re.fullmatch(meta["pattern"], v)]
            if bad:
                fail(f"a comma-separated list of values matching {meta['pattern']} ({bad[0]!r} does not)")
        return value
    else:  # pragma: no cover - a bug in a settings class
        raise TypeError(f"unsupported settings type {hint!r} for {var}")

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("ge") is not None and value < meta["ge"]:
            fail(f"a number >= {meta['ge']:g}")
        if meta.get("gt") is not None and value <= meta["gt"]:
            fail(f"a number > {meta['gt']:g}")
        if meta.get("le") is not None and value > meta["le"]:
            fail(f"a number <= {meta['le']:g}")
    if isinstance(value, str) and meta.get("pattern") and not re.fullmatch(meta["pattern"], value):
        fail(f"a value matching {meta['pattern']}")
    return value


def _env_name(f: dataclasses.Field) -> str:
    return f.metadata.get("env") or f.name.upper()


T = TypeVar("T")


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from the environment; unset or empty variables keep their defaults.

    Raises :class:`SettingsError` (one line: variable, value, what is expected). For a
    :class:`CommonSettings`, also sets the process's clock-skew tolerance of message decoding
    (:func:`stockpipe.common.messages.set_clock_skew_tolerance`) from ``CLOCK_SKEW_TOLERANCE``.
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls, include_extras=False)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = _env_name(f)
        raw = environ.get(var)
        if raw is None or raw.strip() == "":
            continue
        values[f.name] = _parse(var, raw, hints[f.name], f.metadata)
    # A settings class checks combinations in __post_init__ and raises SettingsError naming
    # the variable; anything else it raises is a bug and shows its traceback.
    settings = cls(**values)
    if isinstance(settings, CommonSettings):
        # Decoding everywhere in the process checks times against this tolerance.
        set_clock_skew_tolerance(settings.clock_skew_tolerance)
    return settings


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, help) for every field: the README's configuration table."""
    rows = []
    for f in dataclasses.fields(cls):
        default = "" if f.default is dataclasses.MISSING else f.default
        if isinstance(default, tuple):
            default = ",".join(default)
        if isinstance(default, Secret):
            default = "(secret)" if default else ""
        rows.append((_env_name(f), str(default), f.metadata.get("help", "")))
    return rows


TOPIC_KINDS = ("raw", "indicators", "alerts", "forecasts", "dlq")

_SERVICE_NAME = r"^[a-z][a-z0-9-]{0,62}$"


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    """What every service reads: Kafka, PostgreSQL, topics, HTTP, logging."""

    service_name: str = setting("stockpipe", help="name in logs, client ids and consumer groups", pattern=_SERVICE_NAME)
    kafka_bootstrap_servers: str = setting("127.0.0.1:9092", help="Kafka bootstrap servers, host:port[,host:port]",
                                           pattern=r"^[^,\s]+:\d+(,[^,\s]+:\d+)*$")
    kafka_security_protocol: Literal["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"] = setting(
        "plaintext", help="Kafka security.protocol")
    kafka_sasl_mechanism: str = setting("", help="Kafka SASL mechanism (PLAIN, SCRAM-SHA-512, ...), when SASL is used")
    kafka_sasl_username: str = setting("", help="Kafka SASL user name")
    kafka_sasl_password: Secret = setting(Secret(""), help="Kafka SASL password")
    kafka_compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = setting(
        "lz4", help="compression of the messages the services publish (librdkafka compression.type)")
    topic_prefix: str = setting("", help="prefix put before every topic name (e.g. 'prod.')",
                                pattern=r"^[A-Za-z0-9._-]{0,100}$")
    topic_raw: str = setting("raw", help="topic of raw OHLCV bars", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    topic_indicators: str = setting("indicators", help="topic of indicator values", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    topic_alerts: str = setting("alerts", help="topic of alerts", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    topic_forecasts: str = setting("forecasts", help="topic of forecasts", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    topic_dlq: str = setting("dlq", help="dead-letter topic", pattern=r"^[A-Za-z0-9._-]{1,200}$")

    postgres_dsn: Secret = setting(Secret(""), help="full PostgreSQL DSN; overrides the POSTGRES_* parts")
    postgres_host: str = setting("127.0.0.1", help="PostgreSQL host")
    postgres_port: int = setting(5432, ge=1, le=65535, help="PostgreSQL port")
    postgres_db: str = setting("stockpipe", help="PostgreSQL database")
    postgres_user: str = setting("stockpipe", help="PostgreSQL user")
    postgres_password: Secret = setting(Secret(""), help="PostgreSQL password")
    postgres_connect_timeout: int = setting(5, ge=1, help="seconds to wait for a PostgreSQL connection")

    http_port: int = setting(8000, ge=0, le=65535, help="port of /metrics, /healthz, /readyz (0 = pick a free one)")
    http_host: str = setting("0.0.0.0", help="address the HTTP endpoints bind to")
    liveness_timeout: float = setting(60.0, gt=0, help="seconds without a main-loop heartbeat before /healthz fails")
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", help="log level")
    log_format: Literal["text", "json"] = setting("text", help="log line format")
    shutdown_timeout: float = setting(10.0, gt=0, help="seconds SIGTERM may take before exit")
    progress_interval: float = setting(30.0, ge=0, help="seconds between progress lines in the log (0 = none)")
    # A bar's ts may be one interval ahead of the wall clock (its interval still running) plus
    # this much, for clocks that disagree; a forecast's made_at this much. See messages.py.
    clock_skew_tolerance: float = setting(DEFAULT_CLOCK_SKEW_TOLERANCE, ge=0, le=86_400,
                                          help="seconds a message's time may be ahead of this host's clock "
                                               "(beyond one interval for bars)")

    def topic(self, kind: str) -> str:
        """Full topic name for ``kind`` in :data:`TOPIC_KINDS`, prefix included."""
        return self.topic_prefix + getattr(self, f"topic_{kind}")

    def dsn(self) -> str:
        """The PostgreSQL DSN (secret: never log it)."""
        if self.postgres_dsn:
            dsn = self.postgres_dsn.get()
            if urlsplit(dsn).scheme not in ("postgres", "postgresql") and "=" not in dsn:
                raise SettingsError("POSTGRES_DSN", "***", "a postgresql:// URL or key=value DSN")
            return dsn
        auth = quote(self.postgres_user, safe="")
        if self.postgres_password:
            auth += ":" + quote(self.postgres_password.get(), safe="")
        return f"postgresql://{auth}@{self.postgres_host}:{self.postgres_port}/{quote(self.postgres_db, safe='')}"

    def kafka_config(self) -> dict[str, Any]:
        """librdkafka settings shared by producers, consumers and the admin client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "client.id": self.service_name,
            "security.protocol": self.kafka_security_protocol,
            # librdkafka's own lines through Python logging: same format, same masking.
            "logger": logging.getLogger("librdkafka"),
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password.get()
        return conf

    def safe_view(self) -> dict[str, Any]:
        """The settings as a dict fit for a log line: secrets masked."""
        return {f.name: getattr(self, f.name) if not isinstance(getattr(self, f.name), Secret)
                else repr(getattr(self, f.name)) for f in dataclasses.fields(self)}
