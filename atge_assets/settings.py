"""Settings read from the environment, validated once, with errors that name the variable.

Secrets are not here: the Vercel token reaches the resource only as `dg.EnvVar("VERCEL_TOKEN")`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from atge_assets.lib.providers.vercel import DEFAULT_BASE_URL


class SettingsError(ValueError):
    pass


def atge_home() -> Path:
    """Where local state lives: `$ATGE_HOME`, else `.atge/` in the working directory (gitignored)."""
    return Path(os.environ.get("ATGE_HOME") or Path.cwd() / ".atge").resolve()


def _num(env, name: str, default, cast, lo, hi):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {cast.__name__}") from None
    if not (lo <= value <= hi):
        raise SettingsError(f"{name}={raw!r} must be between {lo} and {hi}")
    return value


def _bool(env, name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be true or false")


@dataclass(frozen=True)
class Settings:
    history_url: str
    vercel_api_url: str = DEFAULT_BASE_URL
    vercel_team_id: str | None = None
    allowed_hosts: list[str] = field(default_factory=list)
    samples: int = 10
    warmup: int = 2
    baseline_scale: float = 1.0
    baseline_deployments: int = 3
    suite_json: str | None = None
    dry_run: bool = False
    auto_promote: bool = True
    smoke_json: str | None = None
    sensor_interval_s: int = 10
    lookback_hours: float = 24.0
    trends_cron: str = "0 * * * *"
    sandbox_url: str | None = None
    experiments_file: str | None = None
    ab_results_csv: str | None = None
    ab_auto_promote: bool = True
    ab_promotion_url: str | None = None
    ab_interval_s: int = 900

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("ATGE_HOME") or atge_home())
        hosts = [h.strip() for h in (env.get("ATGE_ALLOWED_HOSTS") or "").split(",") if h.strip()]
        return cls(
            # One switch moves both Dagster and the history to Postgres: ATGE_DATABASE_URL.
            history_url=env.get("ATGE_HISTORY_URL") or env.get("ATGE_DATABASE_URL")
            or f"sqlite:///{home / 'history.sqlite'}",
            vercel_api_url=env.get("VERCEL_API_URL") or DEFAULT_BASE_URL,
            vercel_team_id=env.get("VERCEL_TEAM_ID") or None,
            allowed_hosts=hosts,
            samples=_num(env, "ATGE_SAMPLES", 10, int, 3, 1000),
            warmup=_num(env, "ATGE_WARMUP", 2, int, 0, 100),
            baseline_scale=_num(env, "ATGE_LATENCY_SCALE", 1.0, float, 1e-6, 1000.0),
            baseline_deployments=_num(env, "ATGE_BASELINE_DEPLOYMENTS", 3, int, 1, 100),
            suite_json=env.get("ATGE_SUITE_JSON") or None,
            dry_run=_bool(env, "ATGE_DRY_RUN", False),
            auto_promote=_bool(env, "ATGE_AUTO_PROMOTE", True),
            smoke_json=env.get("ATGE_SMOKE_JSON") or None,
            sensor_interval_s=_num(env, "ATGE_SENSOR_INTERVAL_S", 10, int, 1, 86400),
            lookback_hours=_num(env, "ATGE_LOOKBACK_HOURS", 24.0, float, 0.0, 24.0 * 365),
            trends_cron=env.get("ATGE_TRENDS_CRON") or "0 * * * *",
            sandbox_url=env.get("ATGE_SANDBOX_URL") or None,
            experiments_file=env.get("ATGE_EXPERIMENTS_FILE") or None,
            ab_results_csv=env.get("ATGE_AB_RESULTS_CSV") or None,
            ab_auto_promote=_bool(env, "ATGE_AB_AUTO_PROMOTE", True),
            ab_promotion_url=env.get("ATGE_AB_PROMOTION_URL") or None,
            ab_interval_s=_num(env, "ATGE_AB_INTERVAL_S", 900, int, 10, 86400),
        )
