"""Which notifications went out: the keys of delivered events, in memory or in the history
database (shared by every process), so a retried run does not announce anything twice.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from atge_assets.lib.history.engine import make_engine
from atge_assets.lib.history.migrations import migrate
from atge_assets.lib.history.schema import md
from atge_assets.lib.history.schema import notifications_sent as _sent

# -- the sent log ------------------------------------------------------------------------------


class SentLog(Protocol):
    def already_sent(self, key: str) -> bool: ...

    def mark_sent(self, key: str) -> None: ...


class MemorySentLog:
    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def already_sent(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def mark_sent(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)


class SqlSentLog:
    """The sent log in a SQL table (SQLite file or Postgres): survives restarts, shared by the
    daemon's sensors and the run workers. Pass the history store's engine to share its database."""

    def __init__(self, url_or_engine: "str | sa.Engine"):
        self._own = isinstance(url_or_engine, str)
        self.engine = make_engine(url_or_engine) if self._own else url_or_engine
        migrate(self.engine, md)

    def already_sent(self, key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_sent.c.key).where(_sent.c.key == _db_key(key))
                                ).first() is not None

    def mark_sent(self, key: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(_sent.insert().values(key=_db_key(key), sent_at=time.time()))
        except IntegrityError:  # recorded by a concurrent sender: same fact
            pass

    def dispose(self) -> None:
        if self._own:
            self.engine.dispose()


def _db_key(key: str) -> str:
    # Metric names make keys unbounded; a digest keeps them unique and within the column.
    return key if len(key) <= 200 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
