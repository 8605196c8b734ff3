"""Settings of predictive monitoring and self-healing: where metrics come from, what a breach is,
what may be done about it, and who does it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

import dagster as dg

from atge_assets.lib.http import HostNotAllowed, check_url
from atge_assets.monitoring import actions as act
from atge_assets.monitoring.forecast import ABOVE, BELOW
from atge_assets.monitoring.metrics_source import (
    DEFAULT_THRESHOLDS,
    JSON,
    METRICS,
    PROMETHEUS,
    UNITS,
    JsonEndpointSource,
    PrometheusSource,
    default_queries,
)
from atge_assets.settings import SettingsError, _bool, _num


class MonitoringResource(dg.ConfigurableResource):
    """Predictive monitoring of one target, and what self-healing may do about it.

    Source: `source="prometheus"` reads `url`'s `/api/v1/query_range` with one PromQL query per
    metric (`queries`; default: the sandbox's `atge_*{target="<target>"}` names); `source="json"`
    reads `url` itself, the target's own `{"timestamp", "metrics": {...}}` endpoint. Under
    `atge up` both are the sandbox's. Only hosts in `allowed_hosts` are called.

    Forecasts: per metric a threshold (`thresholds` over the defaults: CPU 80%, memory 85%,
    response time p95 2000 ms, error rate 5%, active users 5000, queue depth 100) and a direction
    (`above` unless `directions` says `below`), over the last `window_s`, for the next
    `horizon_s` (30 min).

    Self-healing: a metric must alert on `consecutive` forecasts in a row before anything is done
    (as Prometheus's `for:`); then each of its `actions` (cpu: scale, memory: restart, response
    time: clear_cache, error rate and active users: alert, queue depth: scale) goes through the
    policy: `cooldowns_s` per action and metric, `caps_per_hour` per action, `dry_run`.
    `actions_url` is the acting provider (the sandbox: Vercel has no scale, restart or cache
    API); without it, only alerts can be acted on and the rest are recorded as unsupported.
    """

    source: str = PROMETHEUS
    url: str | None = None
    queries: dict[str, str] = {}
    target: str = "production"
    token: str | None = None  # bearer token for the Prometheus server, from an env var
    allowed_hosts: list[str] = []
    timeout_s: float = 10.0
    step_s: float = 60.0
    window_s: float = 3600.0
    horizon_s: float = 1800.0
    thresholds: dict[str, float] = {}
    directions: dict[str, str] = {}
    consecutive: int = 2
    actions: dict[str, list[str]] = {}
    actions_url: str | None = None
    dry_run: bool = False
    cooldowns_s: dict[str, float] = {}
    caps_per_hour: dict[str, int] = {}
    scale_factor: float = 2.0
    max_replicas: int = 10
    # Forecasts older than this are not acted on: the sensor was off, the world has moved on.
    max_forecast_age_s: float = 300.0
    retention_days: float = 14.0
    # A PNG per metric in every forecast materialization: ~25 KB a minute in the event log.
    charts: bool = True

    # -- what is watched -----------------------------------------------------------------------
    def threshold_map(self) -> dict[str, float]:
        return {**DEFAULT_THRESHOLDS, **self.thresholds}

    def metric_names(self) -> list[str]:
        names = self.threshold_map()
        return [m for m in METRICS if m in names] + sorted(set(names) - set(METRICS))

    def direction(self, metric: str) -> str:
        d = self.directions.get(metric, ABOVE)
        if d not in (ABOVE, BELOW):
            raise ValueError(f"directions[{metric!r}] must be {ABOVE!r} or {BELOW!r}, got {d!r}")
        return d

    def unit(self, metric: str) -> str:
        return UNITS.get(metric, "")

    def actions_for(self, metric: str) -> list[str]:
        chosen = {**act.DEFAULT_ACTIONS, **self.actions}.get(metric, [act.ALERT])
        bad = [a for a in chosen if a not in act.ACTIONS]
        if bad:
            raise ValueError(f"actions[{metric!r}]: unknown {bad}; known: {list(act.ACTIONS)}")
        return list(chosen)

    # -- clients -------------------------------------------------------------------------------
    def source_client(self) -> PrometheusSource | JsonEndpointSource:
        if not self.url:
            raise ValueError("no metrics source: set ATGE_METRICS_URL (a Prometheus server, or "
                             "the target's JSON metrics endpoint), or run under `atge up`")
        kw = dict(allowed_hosts=self.allowed_hosts, timeout_s=self.timeout_s)
        if self.source == PROMETHEUS:
            queries = {**default_queries(self.target, self.metric_names()), **self.queries}
            return PrometheusSource(self.url, queries, token=self.token, **kw)
        if self.source == JSON:
            return JsonEndpointSource(self.url, **kw)
        raise ValueError(f"source must be {PROMETHEUS!r} or {JSON!r}, got {self.source!r}")

    def policy(self) -> act.ActionPolicy:
        return act.ActionPolicy(
            cooldown_s={**act.DEFAULT_COOLDOWNS_S, **self.cooldowns_s},
            cap_per_hour={**act.DEFAULT_CAPS_PER_HOUR, **self.caps_per_hour},
            dry_run=self.dry_run)

    def actions_client(self) -> act.HttpActionsClient | None:
        if not self.actions_url:
            return None
        return act.HttpActionsClient(self.actions_url, allowed_hosts=self.allowed_hosts,
                                     timeout_s=self.timeout_s)

    def action_params(self) -> dict[str, dict]:
        return {act.SCALE: {"factor": self.scale_factor, "max_replicas": self.max_replicas}}


# -- from the environment ----------------------------------------------------------------------


def _json_map(env: Mapping[str, str], name: str, value_ok, what: str) -> dict:
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


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


@dataclass(frozen=True)
class MonitoringSettings:
    resource: MonitoringResource
    cron: str
    sensor_interval_s: int
    # The intake schedule starts RUNNING only when there is a source to read; without one it
    # would fail every minute.
    source_configured: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, allowed_hosts=(),
                 dry_run: bool = False) -> "MonitoringSettings":
        """Reads (all optional):
        ATGE_METRICS_SOURCE (prometheus | json), ATGE_METRICS_URL (default under `atge up`: the
        sandbox, `ATGE_SANDBOX_URL`), ATGE_METRICS_TARGET (production), ATGE_METRICS_QUERIES_JSON
        ({metric: PromQL}), ATGE_PROMETHEUS_TOKEN (as a dg.EnvVar), ATGE_METRICS_THRESHOLDS_JSON,
        ATGE_METRICS_DIRECTIONS_JSON, ATGE_FORECAST_HORIZON_MIN (30), ATGE_METRICS_CRON
        (every minute), ATGE_HEALING_URL (the acting provider; default the sandbox),
        ATGE_HEALING_ACTIONS_JSON ({metric: [actions]}), ATGE_HEALING_COOLDOWNS_JSON,
        ATGE_HEALING_CAPS_JSON, ATGE_HEALING_DRY_RUN (default ATGE_DRY_RUN),
        ATGE_HEALING_INTERVAL_S (30), ATGE_METRICS_CHARTS (true). Hosts: ATGE_ALLOWED_HOSTS plus
        the sandbox's.
        """
        env = os.environ if env is None else env
        sandbox = (env.get("ATGE_SANDBOX_URL") or "").rstrip("/")
        hosts = list(allowed_hosts) + ([urlsplit(sandbox).hostname] if sandbox else [])
        source = (env.get("ATGE_METRICS_SOURCE") or PROMETHEUS).strip().lower()
        if source not in (PROMETHEUS, JSON):
            raise SettingsError(f"ATGE_METRICS_SOURCE={source!r} must be prometheus or json")
        url = env.get("ATGE_METRICS_URL") or (
            (sandbox + "/_sandbox/metrics" if source == JSON else sandbox) if sandbox else None)
        actions_url = env.get("ATGE_HEALING_URL") or sandbox or None
        for name, u in (("ATGE_METRICS_URL", url), ("ATGE_HEALING_URL", actions_url)):
            if u:
                try:
                    check_url(u, hosts)
                except HostNotAllowed as exc:
                    raise SettingsError(f"{name}: {exc}; add the host to ATGE_ALLOWED_HOSTS") \
                        from None
        directions = _json_map(env, "ATGE_METRICS_DIRECTIONS_JSON",
                               lambda v: v in (ABOVE, BELOW), '"above" or "below"')
        acts = _json_map(env, "ATGE_HEALING_ACTIONS_JSON",
                         lambda v: isinstance(v, list) and all(a in act.ACTIONS for a in v),
                         f"lists of actions from {list(act.ACTIONS)}")
        resource = MonitoringResource(
            source=source, url=url, target=env.get("ATGE_METRICS_TARGET") or "production",
            queries=_json_map(env, "ATGE_METRICS_QUERIES_JSON",
                              lambda v: isinstance(v, str) and v.strip(), "PromQL strings"),
            token=dg.EnvVar("ATGE_PROMETHEUS_TOKEN") if env.get("ATGE_PROMETHEUS_TOKEN") else None,
            allowed_hosts=hosts,
            thresholds=_json_map(env, "ATGE_METRICS_THRESHOLDS_JSON",
                                 lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                                 "numbers"),
            directions=directions,
            horizon_s=60.0 * _num(env, "ATGE_FORECAST_HORIZON_MIN", 30.0, float, 1.0, 7 * 1440.0),
            actions=acts, actions_url=actions_url,
            cooldowns_s=_json_map(env, "ATGE_HEALING_COOLDOWNS_JSON", _is_num, "seconds >= 0"),
            caps_per_hour=_json_map(env, "ATGE_HEALING_CAPS_JSON",
                                    lambda v: _is_num(v) and v == int(v), "integers >= 0"),
            dry_run=_bool(env, "ATGE_HEALING_DRY_RUN", dry_run),
            charts=_bool(env, "ATGE_METRICS_CHARTS", True),
        )
        return cls(resource, env.get("ATGE_METRICS_CRON") or "* * * * *",
                   _num(env, "ATGE_HEALING_INTERVAL_S", 30, int, 1, 3600), bool(url))
