"""The rollouts' settings section: whether rolling releases are driven, and where the traffic a
stage really sends the canary can be observed. Parsed from the mapping `atge_assets/settings.py`
hands over."""

from __future__ import annotations

from dataclasses import dataclass

from atge_assets.lib.settings import Env, SharedSettings, boolean, number, text


@dataclass(frozen=True)
class RolloutSettings:
    enabled: bool = True
    # The production domain as visitors reach it (https://atge.example.com): sampled at each
    # stage to see the share of requests the canary really serves. Unset: no traffic probe.
    production_url: str | None = None
    # The response header that marks a request the canary served (Vercel's rolling-release
    # `canaryResponseHeader` option); without it the probe cannot tell the two apart.
    canary_header: str | None = None
    traffic_samples: int = 40

    @classmethod
    def from_env(cls, env: Env, shared: SharedSettings) -> "RolloutSettings":
        return cls(
            enabled=boolean(env, "ATGE_ROLLOUTS", True),
            production_url=(text(env, "ATGE_ROLLOUT_PRODUCTION_URL") or "").rstrip("/") or None,
            canary_header=(text(env, "ATGE_ROLLOUT_CANARY_HEADER") or "").lower() or None,
            traffic_samples=number(env, "ATGE_ROLLOUT_TRAFFIC_SAMPLES", 40, int, 0, 10_000),
        )
