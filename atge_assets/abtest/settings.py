"""The A/B tests' settings section: where experiments and results come from, and how a winner
is promoted (see `ExperimentsResource`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from atge_assets.lib.settings import (
    Env,
    SettingsError,
    SharedSettings,
    boolean,
    number,
    text,
)


@dataclass(frozen=True)
class AbtestSettings:
    experiments_file: str | None = None
    results_csv: str | None = None
    auto_promote: bool = True
    promotion_url: str | None = None
    interval_s: int = 900

    @classmethod
    def from_env(cls, env: Env, shared: SharedSettings) -> "AbtestSettings":
        s = cls(
            experiments_file=text(env, "ATGE_EXPERIMENTS_FILE"),
            results_csv=text(env, "ATGE_AB_RESULTS_CSV"),
            auto_promote=boolean(env, "ATGE_AB_AUTO_PROMOTE", True),
            promotion_url=text(env, "ATGE_AB_PROMOTION_URL"),
            interval_s=number(env, "ATGE_AB_INTERVAL_S", 900, int, 10, 86400),
        )
        if s.experiments_file and not Path(s.experiments_file).is_file():
            raise SettingsError(f"ATGE_EXPERIMENTS_FILE={s.experiments_file!r} is not a file")
        if s.promotion_url and not s.promotion_url.startswith(("http://", "https://")):
            raise SettingsError(f"ATGE_AB_PROMOTION_URL={s.promotion_url!r} is not an http(s) URL")
        return s
