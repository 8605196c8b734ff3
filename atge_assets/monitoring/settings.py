"""The monitoring settings section: where metrics come from, what a breach is, what self-healing
may do about it and who does it. Parsed from the environment mapping (all optional):

ATGE_METRICS_SOURCE (prometheus | json), ATGE_METRICS_URL (default under `atge up`: the sandbox),
ATGE_METRICS_TARGET (production), ATGE_METRICS_QUERIES_JSON ({metric: PromQL}),
ATGE_PROMETHEUS_TOKEN (a secret: only whether it is set is read here),
ATGE_METRICS_THRESHOLDS_JSON, ATGE_METRICS_DIRECTIONS_JSON, ATGE_FORECAST_HORIZON_MIN (30),
ATGE_METRICS_CRON (every minute), ATGE_HEALING_URL (the acting provider; default the sandbox),
ATGE_HEALING_ACTIONS_JSON ({metric: [actions]}), ATGE_HEALING_COOLDOWNS_JSON,
ATGE_HEALING_CAPS_JSON, ATGE_HEALING_DRY_RUN (default ATGE_DRY_RUN), ATGE_HEALING_INTERVAL_S (30),
ATGE_METRICS_CHARTS (true). Hosts: ATGE_ALLOWED_HOSTS plus the sandbox's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from atge_assets.lib.http import HostNotAllowed, check_url
from atge_assets.lib.settings import (
    Env,
    SettingsError,
    SharedSettings,
    boolean,
    choice,
    cron,
    is_set,
    json_map,
    number,
    text,
)
from atge_assets.monitoring import actions as act
from atge_assets.monitoring.forecast import ABOVE, BELOW
from atge_assets.monitoring.metrics_source import JSON, PROMETHEUS


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


@dataclass(frozen=True)
class MonitoringSettings:
    source: str = PROMETHEUS
    url: str | None = None
    target: str = "production"
    queries: dict[str, str] = field(default_factory=dict)
    prometheus_token_set: bool = False
    allowed_hosts: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)
    horizon_s: float = 1800.0
    actions: dict[str, list[str]] = field(default_factory=dict)
    actions_url: str | None = None
    cooldowns_s: dict[str, float] = field(default_factory=dict)
    caps_per_hour: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    charts: bool = True
    cron: str = "* * * * *"
    sensor_interval_s: int = 30

    @property
    def source_configured(self) -> bool:
        """The intake sensor starts RUNNING only when there is a source to read; without one
        it would fail every minute."""
        return bool(self.url)

    def resource_fields(self) -> dict:
        """The `MonitoringResource`'s fields (the token is bound by the wiring, as a dg.EnvVar)."""
        return dict(source=self.source, url=self.url, target=self.target, queries=self.queries,
                    allowed_hosts=list(self.allowed_hosts), thresholds=self.thresholds,
                    directions=self.directions, horizon_s=self.horizon_s, actions=self.actions,
                    actions_url=self.actions_url, cooldowns_s=self.cooldowns_s,
                    caps_per_hour=self.caps_per_hour, dry_run=self.dry_run, charts=self.charts)

    @classmethod
    def from_env(cls, env: Env, shared: SharedSettings) -> "MonitoringSettings":
        sandbox = shared.sandbox_url or ""
        hosts = tuple(shared.allowed_hosts) + ((urlsplit(sandbox).hostname,) if sandbox else ())
        source = choice(env, "ATGE_METRICS_SOURCE", PROMETHEUS, (PROMETHEUS, JSON))
        url = text(env, "ATGE_METRICS_URL") or (
            (sandbox + "/_sandbox/metrics" if source == JSON else sandbox) if sandbox else None)
        actions_url = text(env, "ATGE_HEALING_URL") or sandbox or None
        for name, u in (("ATGE_METRICS_URL", url), ("ATGE_HEALING_URL", actions_url)):
            if u:
                try:
                    check_url(u, hosts)
                except HostNotAllowed as exc:
                    raise SettingsError(f"{name}: {exc}; add the host to ATGE_ALLOWED_HOSTS") \
                        from None
        return cls(
            source=source, url=url, target=text(env, "ATGE_METRICS_TARGET", "production"),
            queries=json_map(env, "ATGE_METRICS_QUERIES_JSON",
                             lambda v: isinstance(v, str) and v.strip(), "PromQL strings"),
            prometheus_token_set=is_set(env, "ATGE_PROMETHEUS_TOKEN"),
            allowed_hosts=hosts,
            thresholds=json_map(env, "ATGE_METRICS_THRESHOLDS_JSON",
                                lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                                "numbers"),
            directions=json_map(env, "ATGE_METRICS_DIRECTIONS_JSON",
                                lambda v: v in (ABOVE, BELOW), '"above" or "below"'),
            horizon_s=60.0 * number(env, "ATGE_FORECAST_HORIZON_MIN", 30.0, float, 1.0,
                                    7 * 1440.0),
            actions=json_map(env, "ATGE_HEALING_ACTIONS_JSON",
                             lambda v: isinstance(v, list) and all(a in act.ACTIONS for a in v),
                             f"lists of actions from {list(act.ACTIONS)}"),
            actions_url=actions_url,
            cooldowns_s=json_map(env, "ATGE_HEALING_COOLDOWNS_JSON", _is_num, "seconds >= 0"),
            caps_per_hour=json_map(env, "ATGE_HEALING_CAPS_JSON",
                                   lambda v: _is_num(v) and v == int(v), "integers >= 0"),
            dry_run=boolean(env, "ATGE_HEALING_DRY_RUN", shared.dry_run),
            charts=boolean(env, "ATGE_METRICS_CHARTS", True),
            cron=cron(env, "ATGE_METRICS_CRON", "* * * * *"),
            sensor_interval_s=number(env, "ATGE_HEALING_INTERVAL_S", 30, int, 1, 3600),
        )
