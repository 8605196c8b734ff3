"""The history database: one engine factory for every process that opens it (runs, the daemon's
sensors, the webhook intake), so they agree on the driver and on how a shared SQLite file is
locked and synced; and the base each feature's history class builds on."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from atge_assets.lib.history.migrations import migrate
from atge_assets.lib.history.schema import md


def make_engine(url: str) -> sa.Engine:
    """An engine on the history database. Every process that opens it (runs, the daemon's
    sensors, the webhook intake) goes through here, so they agree on the driver and on how a
    shared SQLite file is locked and synced."""
    url = _with_driver(url)
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _with_driver(url: str) -> str:
    # SQLAlchemy 2.1 reads bare postgresql:// as psycopg 3; say which driver we ship.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the webserver read while a run writes; the busy timeout rides out short locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # FULL fsyncs the WAL on every commit: an acknowledged write (a webhook answered 202, say)
    # survives a power cut.
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def open_history(url: str) -> sa.Engine:
    """An engine on the history database at `url`, migrated to the newest schema."""
    engine = make_engine(url)
    migrate(engine, md)
    return engine


class History:
    """A feature's view of the history database: built on an engine that `open_history` made
    (shared, as the Dagster resource does), or on a URL (migrated here)."""

    def __init__(self, url_or_engine: "str | sa.Engine"):
        if isinstance(url_or_engine, sa.Engine):
            self.engine = url_or_engine
        else:
            self.engine = make_engine(url_or_engine)
            self.schema_version = migrate(self.engine, md)

    def dispose(self) -> None:
        self.engine.dispose()

    def table_rows(self, table: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(md.tables[table]))]
