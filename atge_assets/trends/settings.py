"""The trends' settings section: when the aggregates are refreshed."""

from __future__ import annotations

from dataclasses import dataclass

from atge_assets.lib.settings import Env, SharedSettings, cron


@dataclass(frozen=True)
class TrendsSettings:
    cron: str = "0 * * * *"

    @classmethod
    def from_env(cls, env: Env, shared: SharedSettings) -> "TrendsSettings":
        return cls(cron=cron(env, "ATGE_TRENDS_CRON", "0 * * * *"))
