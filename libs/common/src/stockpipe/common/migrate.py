"""Apply the database migrations in ``db/migrations`` (``python -m stockpipe.common.migrate``).

Migrations are plain SQL files applied by yoyo-migrations, which records what it applied and
applies each file in its own transaction. Safe to run twice (nothing left to do the second
time) and from two processes at once (a Helm job and ``make db-migrate``): a PostgreSQL
advisory lock serialises whole runs, including yoyo's creation of its own bookkeeping tables,
which its row lock does not cover.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import psycopg2
from yoyo import get_backend, read_migrations

from stockpipe.common.lifecycle import run_main
from stockpipe.common.logs import configure
from stockpipe.common.settings import CommonSettings, load

__all__ = ["migrate", "default_migrations_dir"]

logger = logging.getLogger("stockpipe.common.migrate")  # not __main__ under python -m

# Any fixed 64-bit number: it names "stockpipe migrations" among advisory locks.
_LOCK_ID = 0x5370_6970_654D_6967


def default_migrations_dir() -> Path:
    """``$MIGRATIONS_DIR``, else ``db/migrations`` of the source tree this module sits in."""
    if os.environ.get("MIGRATIONS_DIR"):
        return Path(os.environ["MIGRATIONS_DIR"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "db" / "migrations"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no db/migrations found: set MIGRATIONS_DIR")


def migrate(dsn: str, directory: Path) -> list[str]:
    """Apply pending migrations; return the ids applied (empty when up to date)."""
    migrations = read_migrations(str(directory))
    guard = psycopg2.connect(dsn)
    try:
        with guard.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        backend = get_backend(dsn if "://" in dsn else _url(dsn))
        try:
            with backend.lock():
                pending = backend.to_apply(migrations)
                backend.apply_migrations(pending)
            return [m.id for m in pending]
        finally:
            backend.connection.close()
    finally:
        guard.close()  # closing the session releases the advisory lock


def _url(dsn: str) -> str:
    # yoyo wants a URL; build one from a key=value DSN.
    parts = psycopg2.extensions.parse_dsn(dsn)
    from urllib.parse import quote

    auth = quote(parts.get("user", ""), safe="")
    if parts.get("password"):
        auth += ":" + quote(parts["password"], safe="")
    host = parts.get("host", "localhost")
    return f"postgresql://{auth}@{host}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="migrations directory")
    args = parser.parse_args()
    settings = load(CommonSettings)
    configure(settings.log_level, settings.log_format, "migrate")
    directory = args.dir or default_migrations_dir()
    applied = migrate(settings.dsn(), directory)
    logger.info("migrations applied: %s", ", ".join(applied) if applied else "none (up to date)")
    return 0


if __name__ == "__main__":
    run_main(main)
