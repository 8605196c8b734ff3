"""Resources shared by every domain: the deployment provider and the history store."""


import threading

import dagster as dg
import sqlalchemy as sa

from atge_assets.lib.history.engine import open_history
from atge_assets.lib.providers.base import ProviderError
from atge_assets.lib.providers.vercel import DEFAULT_BASE_URL, VercelClient



class ProviderNotConfigured(ProviderError):
    """The provider's token or project is not set: a run that needs it stops with this line."""


_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


class VercelResource(dg.ConfigurableResource):
    """Vercel's REST API (or the sandbox's copy of it) for one project.

    The token only ever comes from an environment variable (`dg.EnvVar("VERCEL_TOKEN")`), and
    goes only into the Authorization header. Unset (a fresh `dagster dev` with no environment), the
    sensors skip with `unconfigured()` as their reason instead of failing every tick.
    """

    token: str | None = None
    project_id: str | None = None
    base_url: str = DEFAULT_BASE_URL
    team_id: str | None = None
    timeout_s: float = 10.0

    def unconfigured(self) -> str | None:
        """Why there is no provider to ask (a variable not set), or None."""
        unset = [n for n, v in (("VERCEL_TOKEN", self.token),
                                ("VERCEL_PROJECT_ID", self.project_id)) if not v]
        return (f"no deployment provider: {' and '.join(unset)} not set (`atge up` runs the "
                "sandbox; see the README's configuration)") if unset else None

    def client(self) -> VercelClient:
        if why := self.unconfigured():
            raise ProviderNotConfigured(why)
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
