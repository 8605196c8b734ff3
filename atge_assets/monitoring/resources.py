"""Settings of predictive monitoring and self-healing: where metrics come from, what a breach is,
what may be done about it, and who does it."""

from __future__ import annotations

import dagster as dg

from atge_assets.monitoring import actions as act
from atge_assets.monitoring.forecast import ABOVE, BELOW, CONTEXT_S
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


class MonitoringResource(dg.ConfigurableResource):
    """Predictive monitoring of one target, and what self-healing may do about it.

    Source: `source="prometheus"` reads `url`'s `/api/v1/query_range` with one PromQL query per
    metric (`queries`; default: the sandbox's `atge_*{target="<target>"}` names); `source="json"`
    reads `url` itself, the target's own `{"timestamp", "metrics": {...}}` endpoint. Under
    `atge up` both are the sandbox's. Only hosts in `allowed_hosts` are called.

    Forecasts: per metric a threshold (`thresholds` over the defaults: CPU 80%, memory 85%,
    response time p95 2000 ms, error rate 5%, active users 5000, queue depth 100) and a direction
    (`above` unless `directions` says `below`), over the last `window_s`, for the next
    `horizon_s` (30 min), judged against the metric's own swings over `context_s` (6 h) and
    within its bounds (a percentage 0-100, the other known metrics non-negative).

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
    # How steeply each metric swings while nothing breaches (recurring humps, a wandering plateau)
    # is read from this much history before now; a trend must be steeper to count.
    context_s: float = CONTEXT_S
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

    def bounds(self, metric: str) -> tuple[float | None, float | None] | None:
        """What the metric cannot leave: a percentage 0-100, a count, a duration or users 0 and
        up. A metric of one's own (a custom threshold) is left to the forecaster, which takes it
        as non-negative when no value seen was negative."""
        unit = UNITS.get(metric)
        if unit is None:
            return None
        return (0.0, 100.0) if unit == "%" else (0.0, None)

    def history_s(self) -> float:
        """The history a forecast reads, and so the intake's first backfill: the window it fits
        and the context it judges swings by."""
        return max(self.window_s, self.context_s)

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
