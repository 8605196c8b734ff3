"""Self-healing actions: what may be done, when, and the record of what was done and why. Pure.

The rules, and why each:
- A cooldown per (target, metric, action): an action needs minutes to show in the metric, and
  until then the forecast over the last hour still sees the ramp that prompted it. Without a
  cooldown the same forecast would scale again every minute.
- A cap per action and hour, across metrics: a flapping metric or a wrong threshold must not
  restart the app every cooldown, all night.
- A failed call waits `retry_after_failure_s` (short), not the whole cooldown: the provider was
  down, the breach is still coming. It is not retried at once either: a scale whose answer was
  lost may have happened, and scaling twice is worse than trying again in two minutes.
- Dry-run decides, counts and records exactly as a live run would, and calls nothing, so its
  record shows what live mode would have done, cooldowns included.
- Held-back decisions (cooldown, cap, no provider) are recorded once per stretch, not once a
  minute: the record says why nothing happened without burying the actions.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

import httpx

from atge_assets import notify
from atge_assets.lib.http import check_url

SCALE, RESTART, CLEAR_CACHE, ALERT = "scale", "restart", "clear_cache", "alert"
ACTIONS = (SCALE, RESTART, CLEAR_CACHE, ALERT)

DEFAULT_ACTIONS = {"cpu": [SCALE], "memory": [RESTART], "response_time_p95": [CLEAR_CACHE],
                   "error_rate": [ALERT], "active_users": [ALERT], "queue_depth": [SCALE]}
DEFAULT_COOLDOWNS_S = {SCALE: 600.0, RESTART: 1800.0, CLEAR_CACHE: 600.0, ALERT: 1800.0}
DEFAULT_CAPS_PER_HOUR = {SCALE: 4, RESTART: 2, CLEAR_CACHE: 4, ALERT: 6}

# Outcomes of a record. The first four are attempts: they start cooldowns and count toward caps.
PENDING, DONE, FAILED, DRY_RUN = "pending", "done", "failed", "dry_run"
COOLDOWN, CAPPED, UNSUPPORTED = "cooldown", "capped", "unsupported"
ATTEMPTS = (PENDING, DONE, FAILED, DRY_RUN)
HELD_BACK = (COOLDOWN, CAPPED, UNSUPPORTED)
EXECUTE = "execute"

FORECAST_FIELDS = ("status", "method", "level", "slope_per_minute", "minutes_to_threshold",
                   "minutes_to_threshold_low", "minutes_to_threshold_high", "forecast",
                   "interval_low", "interval_high", "threshold", "direction", "horizon_minutes",
                   "n_points", "breach_expected", "breached_now")


@dataclass(frozen=True)
class Decision:
    outcome: str  # EXECUTE, DRY_RUN, COOLDOWN or CAPPED
    reason: str

    @property
    def act(self) -> bool:
        return self.outcome in (EXECUTE, DRY_RUN)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


@dataclass(frozen=True)
class ActionPolicy:
    cooldown_s: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_COOLDOWNS_S))
    cap_per_hour: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_CAPS_PER_HOUR))
    dry_run: bool = False
    retry_after_failure_s: float = 120.0
    default_cooldown_s: float = 900.0
    default_cap_per_hour: int = 4

    def __post_init__(self) -> None:
        for name, table in (("cooldown", self.cooldown_s), ("cap per hour", self.cap_per_hour)):
            for action, v in table.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                    raise ValueError(f"{name} of {action!r} must be a number >= 0, got {v!r}")

    def decide(self, *, target: str, metric: str, action: str, now: float,
               history: Iterable[Mapping[str, Any]]) -> Decision:
        """May `action` be taken on `target` for `metric` now, given the records in `history`
        (at least the last hour's and the longest cooldown's)?"""
        attempts = [r for r in history if r["target"] == target and r["action"] == action
                    and r["outcome"] in ATTEMPTS and r["created_at"] <= now]
        mine = [r for r in attempts if r["metric"] == metric]
        if mine:
            last = max(mine, key=lambda r: r["created_at"])
            wait = (self.retry_after_failure_s if last["outcome"] == FAILED
                    else self.cooldown_s.get(action, self.default_cooldown_s))
            if now - last["created_at"] < wait:
                return Decision(COOLDOWN, (
                    f"cooldown: {action} for {metric} was {last['outcome']} at "
                    f"{_clock(last['created_at'])}; next allowed at "
                    f"{_clock(last['created_at'] + wait)} ({wait:g} s)"))
        cap = int(self.cap_per_hour.get(action, self.default_cap_per_hour))
        hour = [r for r in attempts if r["created_at"] > now - 3600]
        if len(hour) >= cap:
            return Decision(CAPPED, f"cap: {len(hour)} {action} action(s) on {target} in the "
                                    f"last hour, the cap is {cap}")
        return Decision(DRY_RUN if self.dry_run else EXECUTE,
                        "dry run: recorded, not called" if self.dry_run else "allowed")


def forecast_summary(forecast: Mapping[str, Any]) -> dict:
    return {k: forecast.get(k) for k in FORECAST_FIELDS if k in forecast}


def why(metric: str, forecast: Mapping[str, Any], streak: int, unit: str = "") -> str:
    """One sentence on what the forecast says, for the record and the alert."""
    thr = forecast.get("threshold")
    past = "above" if forecast.get("direction", "above") == "above" else "below"
    seen = f"alerting on {streak} consecutive forecasts"
    if forecast.get("breached_now"):
        return (f"{metric} is already {past} {thr:g}{unit}: recent median "
                f"{forecast.get('level', float('nan')):.4g}{unit}; {seen}")
    mtt, lo, hi = (forecast.get(k) for k in ("minutes_to_threshold", "minutes_to_threshold_low",
                                              "minutes_to_threshold_high"))
    span = (f"{lo:.0f} to {hi:.0f} min" if lo is not None and hi is not None
            else f"from {lo:.0f} min" if lo is not None else "interval open")
    when = f"in {mtt:.0f} min ({span})" if mtt is not None else f"({span})"
    return (f"{metric} forecast to go {past} {thr:g}{unit} {when}: {forecast.get('method')} "
            f"level {forecast.get('level', float('nan')):.4g}{unit}, "
            f"{forecast.get('slope_per_minute', float('nan')):+.3g}{unit}/min, within the "
            f"{forecast.get('horizon_minutes', 0):g}-min horizon; {seen}")


class Recorder(Protocol):
    """Where records live (MonitoringHistory implements it)."""

    def healing_actions(self, *, target: str | None = None, since: float | None = None,
                        limit: int | None = None) -> list[dict]: ...

    def record_healing_action(self, **fields) -> int: ...

    def finish_healing_action(self, action_id: int, outcome: str, detail: str) -> None: ...


@dataclass(frozen=True)
class ActionRequest:
    """What a performer is asked to do, and why."""

    target: str
    metric: str
    action: str
    params: dict
    reason: str
    record_id: int
    forecast: Mapping[str, Any]


# Does the action; returns a line saying what was done, raises when it was not.
Performer = Callable[[ActionRequest], str]


class Healer:
    """Decide with the policy, write the record, then act through a performer."""

    def __init__(self, policy: ActionPolicy, recorder: Recorder,
                 performers: Mapping[str, Performer], params: Mapping[str, dict] | None = None,
                 unsupported: str = "no acting provider for this action"):
        self.policy, self.recorder, self.performers = policy, recorder, performers
        self.params = params or {}
        self.unsupported = unsupported

    def handle(self, *, target: str, metric: str, action: str, forecast: Mapping[str, Any],
               reason: str, now: float, evaluation: str = "") -> dict | None:
        """Returns the record written, or None when it would repeat the hold-back recorded last."""
        lookback = max([3600.0, self.policy.default_cooldown_s, *self.policy.cooldown_s.values()])
        history = self.recorder.healing_actions(target=target, since=now - lookback)
        decision = self.policy.decide(target=target, metric=metric, action=action, now=now,
                                      history=history)
        outcome = decision.outcome
        if decision.act and action not in self.performers:
            outcome, decision = UNSUPPORTED, Decision(UNSUPPORTED, self.unsupported)
        if outcome in HELD_BACK:
            last = max((r for r in history if (r["metric"], r["action"]) == (metric, action)),
                       key=lambda r: (r["created_at"], r["id"]), default=None)
            if last is not None and last["outcome"] == outcome:
                return None
        params = dict(self.params.get(action, {}))
        record = dict(created_at=now, target=target, metric=metric, action=action,
                      outcome=PENDING if outcome == EXECUTE else outcome,
                      dry_run=self.policy.dry_run, reason=reason,
                      forecast=json.dumps(forecast_summary(forecast)), params=json.dumps(params),
                      detail="" if outcome == EXECUTE else decision.reason, evaluation=evaluation)
        record["id"] = self.recorder.record_healing_action(**record)
        if outcome != EXECUTE:
            return record
        request = ActionRequest(target, metric, action, params, reason, record["id"], forecast)
        try:
            detail, final = self.performers[action](request), DONE
        except Exception as exc:  # recorded, never raised: one failed action must not stop others
            detail, final = f"{type(exc).__name__}: {exc}"[:1000], FAILED
        self.recorder.finish_healing_action(record["id"], final, detail)
        return dict(record, outcome=final, detail=detail)


# -- the acting provider -----------------------------------------------------------------------


class ActionError(RuntimeError):
    pass


class HttpActionsClient:
    """The acting provider: `POST {base}/_sandbox/metrics/actions {action, target, ...}`.

    Vercel has no API to add replicas, restart instances or drop a cache of a serverless
    deployment (it scales functions by itself), so under `atge up` the sandbox is the acting
    provider. A real one (a Kubernetes scale subresource, an ECS service update) would implement
    the same `perform`. One call, no retries: see the module docstring.
    """

    PATH = "/_sandbox/metrics/actions"
    SUPPORTED = (SCALE, RESTART, CLEAR_CACHE)

    def __init__(self, base_url: str, *, allowed_hosts: Iterable[str], timeout_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = check_url(base_url.rstrip("/") + self.PATH, allowed_hosts)
        self.host = urlsplit(self.url).netloc
        self.timeout_s = timeout_s
        self._transport = transport

    def perform(self, action: str, target: str, params: Mapping[str, Any] | None = None,
                reason: str = "") -> dict:
        if action not in self.SUPPORTED:
            raise ActionError(f"the provider at {self.host} cannot {action!r}")
        body = {"action": action, "target": target, "reason": reason[:500], **(params or {})}
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout_s), follow_redirects=False,
                              transport=self._transport) as client:
                resp = client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise ActionError(f"{action} at {self.host}: {type(exc).__name__}: {exc}") from None
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code >= 400 or not isinstance(payload, dict):
            msg = payload.get("error") if isinstance(payload, dict) else resp.text[:200]
            raise ActionError(f"{action} at {self.host}: HTTP {resp.status_code}: {msg}")
        return payload

    def performer(self, req: ActionRequest) -> str:
        out = self.perform(req.action, req.target, dict(req.params, metric=req.metric), req.reason)
        extra = f", replicas now {out['replicas']}" if "replicas" in out else ""
        return f"{req.action} done by {self.host} (action {out.get('id', '?')}{extra})"


# -- alerts ------------------------------------------------------------------------------------


def alert_event(target: str, metric: str, forecast: Mapping[str, Any], reason: str,
                record_id: int, unit: str = "") -> notify.Event:
    """The perf alert for a forecast breach.

    `perf_alert_events` alerts on a value past an absolute limit; a forecast alert is about a
    value to come, so it is given the far end of the forecast's interval (past the limit whenever
    the breach is expected) or the recent level (when already past). A metric that breaches by
    falling is not what that helper knows, so its event is built here directly.
    The idempotency key names this record: the sent log would otherwise mute every later
    incident of the same metric for good; the dedup key stays per metric, one incident each.
    """
    thr = float(forecast["threshold"])
    above = forecast.get("direction", "above") == "above"
    value = forecast.get("level") if forecast.get("breached_now") else forecast.get(
        "interval_high" if above else "interval_low")
    mtt = forecast.get("minutes_to_threshold")
    title = (f"{metric} is past {thr:g}{unit} on {target}" if forecast.get("breached_now") else
             f"{metric} forecast to cross {thr:g}{unit} on {target}"
             + (f" in ~{mtt:.0f} min" if mtt is not None else ""))
    events = notify.perf_alert_events(
        target, [{"metric": metric, "value": value, "unit": unit}], {metric: thr}) if above else []
    dedup = f"atge-{target}-{metric}"
    event = events[0] if events else notify.Event(
        notify.PERF_ALERT, target, title,
        [{"metric": metric, "value": value, "threshold": thr, "unit": unit}], dedup_key=dedup)
    return dataclasses.replace(event, title=title, reason=reason,
                               decision="alert: breach forecast by predictive monitoring",
                               idempotency_key=f"{notify.PERF_ALERT}:{dedup}:heal-{record_id}")


def alert_performer(send: Callable[[notify.Event], Sequence[notify.DeliveryResult]],
                    units: Mapping[str, str] | None = None) -> Performer:
    """ALERT through the notifiers: `send(event)` delivers to every configured channel and
    returns what happened (the release domain's NotifierResource.send, or `notify.dispatch`)."""

    def run(req: ActionRequest) -> str:
        event = alert_event(req.target, req.metric, req.forecast, req.reason, req.record_id,
                            (units or {}).get(req.metric, ""))
        results = list(send(event))
        if not results:
            return ("no notifier configured (ATGE_SLACK_WEBHOOK_URL, ATGE_PAGERDUTY_ROUTING_KEY, "
                    "ATGE_NOTIFY_WEBHOOK_URL): recorded only")
        text = "; ".join(str(r) for r in results)
        if not any(r.status in (notify.SENT, notify.DUPLICATE) for r in results):
            raise ActionError(f"no channel delivered the alert: {text}")
        return text

    return run
