"""Parsing settings from an environment mapping, with errors that name the variable, and the
section every feature shares (where the history lives, which provider, which hosts).

Nothing here reads the process environment: `atge_assets/settings.py` hands each feature's
`settings.py` the mapping. Secrets are never parsed into settings; only whether they are set
is, so that the Dagster wiring can bind them with `dg.EnvVar`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from atge_assets.lib.providers.vercel import DEFAULT_BASE_URL

Env = Mapping[str, str]


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def text(env: Env, name: str, default: str | None = None) -> str | None:
    raw = env.get(name)
    return raw.strip() if raw and raw.strip() else default


def number(env: Env, name: str, default, cast, lo, hi):
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {cast.__name__}") from None
    if not (lo <= value <= hi):
        raise SettingsError(f"{name}={raw!r} must be between {lo} and {hi}")
    return value


def boolean(env: Env, name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be true or false")


def choice(env: Env, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def json_map(env: Env, name: str, value_ok: Callable[[Any], bool], what: str) -> dict:
    """A JSON object whose values pass `value_ok`; {} when unset."""
    raw = env.get(name)
    if not raw:
        return {}
    try:
        out = json.loads(raw)
    except ValueError:
        raise SettingsError(f"{name} is not valid JSON") from None
    if not isinstance(out, dict) or not all(isinstance(k, str) and value_ok(v)
                                            for k, v in out.items()):
        raise SettingsError(f"{name} must be a JSON object of {what}")
    return out


def cron(env: Env, name: str, default: str) -> str:
    """A cron expression (five fields, or @hourly / @daily / @weekly / @monthly), checked here
    so a typo stops the code location at load rather than the schedule at its first tick."""
    value = text(env, name, default)
    fields = value.split()
    ok = value in ("@hourly", "@daily", "@weekly", "@monthly") or (
        len(fields) == 5 and all(re.fullmatch(r"[0-9A-Za-z*/,?-]+", f) for f in fields))
    if not ok:
        raise SettingsError(f"{name}={value!r} is not a cron expression such as '0 * * * *'")
    return value


def allowed_hosts(env: Env) -> tuple[str, ...]:
    """ATGE_ALLOWED_HOSTS: comma-separated host patterns, blanks dropped."""
    return tuple(h.strip() for h in (env.get("ATGE_ALLOWED_HOSTS") or "").split(",") if h.strip())


def is_set(env: Env, name: str) -> bool:
    return bool((env.get(name) or "").strip())


@dataclass(frozen=True)
class SharedSettings:
    """What every feature needs: where local state and the history live, the provider, the
    hosts requests may go to, the sandbox under `atge up`, and the dry-run switch."""

    home: Path
    # A Postgres URL may hold a password: kept out of repr, and bound in the resource as a
    # dg.EnvVar of the variable it came from (`history_url_var`), so the UI shows its name only.
    history_url: str = field(repr=False)
    history_url_var: str | None = None
    vercel_api_url: str = DEFAULT_BASE_URL
    vercel_team_id: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    sandbox_url: str | None = None
    latency_scale: float = 1.0
    dry_run: bool = False
    sensor_interval_s: int = 10
    # Whether VERCEL_AUTOMATION_BYPASS_SECRET is set (the wiring binds it with dg.EnvVar).
    protection_bypass_set: bool = False
    # Which of VERCEL_TOKEN and VERCEL_PROJECT_ID are set (bound with dg.EnvVar, values unread).
    provider_set: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Env, home: Path) -> "SharedSettings":
        # One switch moves both Dagster and the history to Postgres: ATGE_DATABASE_URL.
        var = next((v for v in ("ATGE_HISTORY_URL", "ATGE_DATABASE_URL") if text(env, v)), None)
        return cls(
            home=home,
            history_url=text(env, var) if var else f"sqlite:///{home / 'history.sqlite'}",
            history_url_var=var,
            vercel_api_url=text(env, "VERCEL_API_URL", DEFAULT_BASE_URL),
            vercel_team_id=text(env, "VERCEL_TEAM_ID"),
            allowed_hosts=allowed_hosts(env),
            sandbox_url=(text(env, "ATGE_SANDBOX_URL") or "").rstrip("/") or None,
            latency_scale=number(env, "ATGE_LATENCY_SCALE", 1.0, float, 1e-6, 1000.0),
            dry_run=boolean(env, "ATGE_DRY_RUN", False),
            sensor_interval_s=number(env, "ATGE_SENSOR_INTERVAL_S", 10, int, 1, 86400),
            protection_bypass_set=is_set(env, "VERCEL_AUTOMATION_BYPASS_SECRET"),
            provider_set=frozenset(v for v in ("VERCEL_TOKEN", "VERCEL_PROJECT_ID")
                                   if is_set(env, v)),
        )
