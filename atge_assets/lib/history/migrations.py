"""Versioned, idempotent schema migrations for the history tables (SQLite and Postgres).

Plain versioned steps rather than Alembic: the history often shares a Postgres database with
Dagster's own storage, which already owns an `alembic_version` table, and a few tables do not
need a migration framework's script directory. The rules:
- a fresh database gets the current schema in one `create_all` and is stamped with the newest
  version (as `alembic stamp head` would);
- an older database gets each step it has not had, in order, with its stamp;
- on Postgres an advisory lock serialises migrators, so N processes starting at once are safe;
  on SQLite the file lock does it, and a loser of the race simply retries.
To change the schema: edit the tables in schema.py AND append a step here that brings an existing
database to the same shape.
"""

from __future__ import annotations

import time
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from atge_assets.lib.history.schema import md

VERSION_TABLE = "atge_schema_version"
_LOCK_KEY = 0x61746765  # "atge"

def _tables(*names: str) -> Callable[[sa.Connection], None]:
    """A step that adds these tables of schema.py as they are declared there (if missing: some
    were created by their own module before they joined the migrations)."""
    def step(conn: sa.Connection) -> None:
        for name in names:
            md.tables[name].create(conn, checkfirst=True)
    return step


# (version, description, step). Version 1 is the first schema (all tables but the A/B results).
MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (2, "einstein_ab_test_results", _tables("einstein_ab_test_results")),
    (3, "system_metrics and healing_actions", _tables("system_metrics", "healing_actions")),
    (4, "ab_promotions", _tables("ab_promotions")),
    (5, "load_tests", _tables("load_tests")),
    (6, "smoke_results and promotions", _tables("smoke_results", "promotions")),
    (7, "vercel_webhook_queue", _tables("vercel_webhook_queue")),
    (8, "notifications_sent", _tables("notifications_sent")),
    (9, "production_drift", _tables("production_drift")),
]


def head() -> int:
    return max([1] + [v for v, _, _ in MIGRATIONS])


def current_version(conn: sa.Connection) -> int | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT max(version) FROM {VERSION_TABLE}")).scalar()


def migrate(engine: sa.Engine, metadata: sa.MetaData, attempts: int = 5) -> int:
    """Bring the database to the newest schema; return the version it is at."""
    for attempt in range(attempts):
        try:
            return _migrate_once(engine, metadata)
        except DBAPIError:
            # Another process created a table between our look and our create: look again.
            if attempt + 1 == attempts:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _migrate_once(engine: sa.Engine, metadata: sa.MetaData) -> int:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        version = current_version(conn)
        if version is None:
            conn.execute(sa.text(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
                "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at FLOAT NOT NULL)"))
            metadata.create_all(conn, checkfirst=True)
            for v in sorted({1, *(v for v, _, _ in MIGRATIONS)}):
                _stamp(conn, v, "current schema created")
            return head()
        # Every step not yet applied, in order: steps can land out of order across branches,
        # and each is idempotent (checkfirst), so a gap below the newest stamp is filled too.
        applied = set(conn.execute(sa.text(f"SELECT version FROM {VERSION_TABLE}")).scalars())
        for v, description, step in sorted(MIGRATIONS, key=lambda m: m[0]):
            if v not in applied:
                step(conn)
                _stamp(conn, v, description)
                applied.add(v)
        return max(applied)


def _stamp(conn: sa.Connection, version: int, description: str) -> None:
    conn.execute(sa.text(f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) "
                         "VALUES (:v, :d, :t)"), {"v": version, "d": description, "t": time.time()})
