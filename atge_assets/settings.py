"""Settings: the one place that reads the process environment.

Each feature declares its own section (`<feature>/settings.py`, a frozen dataclass parsed from
the environment mapping handed to it); this module composes them once, at code-location load, so
every bad value stops the load with a message that names the variable. Secrets are not here:
the Vercel token, the notification channels and the Prometheus token reach their resources only
as `dg.EnvVar`, and settings record no more than whether each is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from atge_assets.abtest.settings import AbtestSettings
from atge_assets.deployments.settings import DeploymentSettings
from atge_assets.lib.settings import SettingsError, SharedSettings
from atge_assets.load.settings import LoadSettings
from atge_assets.monitoring.settings import MonitoringSettings
from atge_assets.notify.settings import NotifySettings
from atge_assets.rollouts.settings import RolloutSettings
from atge_assets.trends.settings import TrendsSettings

__all__ = ["Settings", "SettingsError", "atge_home"]


def atge_home(env: Mapping[str, str] | None = None) -> Path:
    """Where local state lives: `$ATGE_HOME`, else `.atge/` in the working directory (gitignored)."""
    env = os.environ if env is None else env
    return Path(env.get("ATGE_HOME") or Path.cwd() / ".atge").resolve()


@dataclass(frozen=True)
class Settings:
    shared: SharedSettings
    deployments: DeploymentSettings
    trends: TrendsSettings
    load: LoadSettings
    abtest: AbtestSettings
    monitoring: MonitoringSettings
    notify: NotifySettings
    rollouts: RolloutSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        shared = SharedSettings.from_env(env, atge_home(env))
        return cls(
            shared=shared,
            deployments=DeploymentSettings.from_env(env, shared),
            trends=TrendsSettings.from_env(env, shared),
            load=LoadSettings.from_env(env, shared),
            abtest=AbtestSettings.from_env(env, shared),
            monitoring=MonitoringSettings.from_env(env, shared),
            notify=NotifySettings.from_env(env, shared),
            rollouts=RolloutSettings.from_env(env, shared),
        )
