"""The load tests' settings section (ATGE_LOAD_*): what triggers a test, its stages and request,
and the plan's thresholds. The fields are the `LoadTestResource`'s own."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from atge_assets.lib.settings import (
    Env,
    SettingsError,
    SharedSettings,
    cron,
    number,
    text,
)
from atge_assets.load.spec import DEFAULT_STAGES, MAX_SHARDS, MAX_USERS

TRIGGERS = ("manual", "after_benchmark", "schedule")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class LoadSettings:
    trigger: str = "manual"
    schedule_cron: str = "0 3 * * *"
    stages: list[int] = field(default_factory=lambda: list(DEFAULT_STAGES))
    stage_duration_s: float = 10.0
    ramp_up_s: float = 2.0
    think_time_s: float = 0.0
    path: str = "/api/einstein/analyze"
    method: str = "POST"
    body_json: str | None = '{"symbol": "BTC"}'
    timeout_s: float = 60.0
    shards: int = 1
    max_avg_ms: float = 30_000.0
    max_p95_ms: float = 45_000.0
    max_error_rate: float = 0.01
    current_replicas: int = 1
    target_users: int | None = None

    @classmethod
    def from_env(cls, env: Env, shared: SharedSettings) -> "LoadSettings":
        trigger = (env.get("ATGE_LOAD_TRIGGER") or "manual").strip().lower()
        if trigger not in TRIGGERS:
            raise SettingsError(f"ATGE_LOAD_TRIGGER={trigger!r} must be one of {TRIGGERS}")
        raw = env.get("ATGE_LOAD_STAGES") or ",".join(map(str, DEFAULT_STAGES))
        try:
            stages = [int(x) for x in raw.split(",") if x.strip()]
        except ValueError:
            raise SettingsError(f"ATGE_LOAD_STAGES={raw!r} is not a comma-separated list of "
                                "user counts") from None
        if not stages or not all(1 <= u <= MAX_USERS for u in stages):
            raise SettingsError(f"ATGE_LOAD_STAGES={raw!r}: each stage must be 1..{MAX_USERS}")
        duration = number(env, "ATGE_LOAD_STAGE_S", 10.0, float, 0.1, 3600.0)
        body = env.get("ATGE_LOAD_BODY", '{"symbol": "BTC"}') or None
        if body is not None:
            try:
                json.loads(body)
            except json.JSONDecodeError:
                raise SettingsError(f"ATGE_LOAD_BODY={body!r} is not JSON") from None
        path = text(env, "ATGE_LOAD_PATH", "/api/einstein/analyze")
        if not path.startswith("/"):
            raise SettingsError(f"ATGE_LOAD_PATH={path!r} must start with /")
        method = (env.get("ATGE_LOAD_METHOD") or "POST").upper()
        if method not in METHODS:
            raise SettingsError(f"ATGE_LOAD_METHOD={method!r} is not a supported HTTP method")
        return cls(
            trigger=trigger,
            schedule_cron=cron(env, "ATGE_LOAD_CRON", "0 3 * * *"),
            stages=stages,
            stage_duration_s=duration,
            ramp_up_s=number(env, "ATGE_LOAD_RAMP_UP_S", min(2.0, duration), float, 0.0,
                             duration),
            think_time_s=number(env, "ATGE_LOAD_THINK_S", 0.0, float, 0.0, 3600.0),
            path=path, method=method, body_json=body,
            timeout_s=number(env, "ATGE_LOAD_TIMEOUT_S", 60.0, float, 0.1, 600.0),
            shards=number(env, "ATGE_LOAD_SHARDS", 1, int, 1, MAX_SHARDS),
            max_avg_ms=number(env, "ATGE_LOAD_MAX_AVG_MS", 30_000.0, float, 1.0, 3_600_000.0),
            max_p95_ms=number(env, "ATGE_LOAD_MAX_P95_MS", 45_000.0, float, 1.0, 3_600_000.0),
            max_error_rate=number(env, "ATGE_LOAD_MAX_ERROR_RATE", 0.01, float, 0.0, 1.0),
            current_replicas=number(env, "ATGE_LOAD_REPLICAS", 1, int, 1, 10_000),
            target_users=number(env, "ATGE_LOAD_TARGET_USERS", None, int, 1, MAX_USERS),
        )
