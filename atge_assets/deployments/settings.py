"""The deployments' settings section: how each deployment is measured and what may be done
about it. Parsed from the environment mapping that `atge_assets/settings.py` hands over."""

from __future__ import annotations

from dataclasses import dataclass

from atge_assets.deployments.smoke import SmokeConfigError, specs_from_json
from atge_assets.deployments.suite import (
    DEFAULT_SUITE,
    Suite,
    SuiteError,
    metrics_from_json,
)
from atge_assets.lib.settings import (
    Env,
    SettingsError,
    SharedSettings,
    boolean,
    number,
    text,
)


@dataclass(frozen=True)
class DeploymentSettings:
    samples: int = 20
    warmup: int = 2
    max_samples: int = 240
    baseline_deployments: int = 3
    suite_json: str | None = None
    auto_promote: bool = True
    smoke_json: str | None = None
    lookback_hours: float = 24.0

    @classmethod
    def from_env(cls, env: Env, shared: SharedSettings) -> "DeploymentSettings":
        s = cls(
            samples=number(env, "ATGE_SAMPLES", 20, int, 3, 1000),
            warmup=number(env, "ATGE_WARMUP", 2, int, 0, 100),
            max_samples=number(env, "ATGE_MAX_SAMPLES", 240, int, 3, 10_000),
            baseline_deployments=number(env, "ATGE_BASELINE_DEPLOYMENTS", 3, int, 1, 100),
            suite_json=text(env, "ATGE_SUITE_JSON"),
            auto_promote=boolean(env, "ATGE_AUTO_PROMOTE", True),
            smoke_json=text(env, "ATGE_SMOKE_JSON"),
            lookback_hours=number(env, "ATGE_LOOKBACK_HOURS", 24.0, float, 0.0, 24.0 * 365),
        )
        # Malformed JSON stops the code location at load, not the first run an hour later.
        try:
            metrics = metrics_from_json(s.suite_json) if s.suite_json else DEFAULT_SUITE
            Suite(metrics, samples=s.samples, warmup=s.warmup,
                  baseline_scale=shared.latency_scale).validate()
        except SuiteError as exc:
            raise SettingsError(f"ATGE_SUITE_JSON: {exc}") from None
        if s.smoke_json:
            try:
                specs_from_json(s.smoke_json)
            except SmokeConfigError as exc:
                raise SettingsError(f"ATGE_SMOKE_JSON: {exc}") from None
        if s.max_samples < s.samples:
            raise SettingsError(f"ATGE_MAX_SAMPLES={s.max_samples} is below ATGE_SAMPLES="
                                f"{s.samples}")
        return s
