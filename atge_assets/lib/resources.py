"""Resources shared by every domain: the deployment provider and the history store."""


import threading

import dagster as dg
import sqlalchemy as sa

from atge_assets.lib.history.engine import open_history
from atge_assets.lib.providers.vercel import DEFAULT_BASE_URL, VercelClient

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


class VercelResource(dg.ConfigurableResource):
    """Vercel's REST API (or the sandbox's copy of it) for one project.

    The token only ever comes from an environment variable (`dg.EnvVar("VERCEL_TOKEN")`), and
    goes only into the Authorization header.
    """

    token: str
    project_id: str
    base_url: str = DEFAULT_BASE_URL
    team_id: str | None = None
    timeout_s: float = 10.0

    def client(self) -> VercelClient:
        return VercelClient(self.token, self.project_id, base_url=self.base_url,
                            team_id=self.team_id, timeout_s=self.timeout_s)


class HistoryResource(dg.ConfigurableResource):
    """The benchmark history: a SQLAlchemy URL (SQLite file by default, or Postgres)."""

    url: str

    def engine(self) -> sa.Engine:
        """The migrated engine; each feature reads and writes through its own history class
        (`DeploymentHistory(history.engine())`, ...)."""
        # One engine per URL and process: engines pool connections and are thread-safe.
        with _engines_lock:
            if self.url not in _engines:
                _engines[self.url] = open_history(self.url)
            return _engines[self.url]
