"""Release events (rollback, promotion, failed run, performance alert, held, production drift,
recovery; a rolling release's aborted or held stage as a rollback or a hold), each with the
idempotency key that makes it one message per channel however often a run is retried.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

# -- events ------------------------------------------------------------------------------------

ROLLBACK = "rollback"
PROMOTION = "promotion"
RUN_FAILED = "run_failed"
PERF_ALERT = "perf_alert"
RECOVERY = "recovery"
# A deployment the judge could not decide within its sample budget: a person decides.
HELD = "held"
# Production was changed outside this tool to a deployment it would not have put there.
DRIFT = "drift"
KINDS = (ROLLBACK, PROMOTION, RUN_FAILED, PERF_ALERT, RECOVERY, HELD, DRIFT)

# PagerDuty's four severities; Slack and the webhook show the same word.
SEVERITIES = ("critical", "error", "warning", "info")
_DEFAULT_SEVERITY = {ROLLBACK: "critical", RUN_FAILED: "error", PERF_ALERT: "warning",
                     PROMOTION: "info", RECOVERY: "info", HELD: "warning",
                     DRIFT: "error"}


@dataclass(frozen=True)
class Event:
    """One thing worth telling people about. Only kind, deployment id (or run id) and title are
    required; severity, dedup_key and idempotency_key get per-kind defaults.

    `metrics` items are mappings with `metric`, `value`, `baseline`, `change` (a fraction: 0.23 =
    23% slower), `verdict` and optionally `threshold`; the comparison rows' `current_ms` /
    `baseline_ms` are accepted as `value` / `baseline`. Values are milliseconds unless the metric
    names its `unit` ("%", "users", ...: see metrics_source.UNITS for the monitored metrics).
    `dedup_key` names the incident (PagerDuty resolves by it); `idempotency_key` names this
    message (the sent log skips it the second time).
    """

    kind: str
    deployment_id: str
    title: str
    metrics: Sequence[Mapping[str, Any]] = ()
    decision: str = ""
    reason: str = ""
    run_url: str | None = None
    run_id: str | None = None
    deployment_url: str | None = None
    severity: str = ""
    dedup_key: str = ""
    idempotency_key: str = ""
    occurred_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {KINDS}")
        if not self.deployment_id and not self.run_id:
            raise ValueError("an event needs a deployment_id or a run_id")
        severity = self.severity or _DEFAULT_SEVERITY[self.kind]
        if severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r} is not one of {SEVERITIES}")
        dedup = self.dedup_key or (f"atge-{self.deployment_id}" if self.deployment_id
                                   else f"atge-run-{self.run_id}")
        if self.idempotency_key:
            key = self.idempotency_key
        elif self.kind == RUN_FAILED:
            key = f"{RUN_FAILED}:{self.run_id or dedup}"  # every failed run is its own event
        else:
            key = f"{self.kind}:{dedup}"
        set_ = object.__setattr__  # frozen: defaults are filled in once, here
        set_(self, "severity", severity)
        set_(self, "dedup_key", dedup)
        set_(self, "idempotency_key", key)
        set_(self, "metrics", tuple(_metric(m) for m in self.metrics))

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "deployment_id": self.deployment_id, "title": self.title,
            "severity": self.severity, "decision": self.decision, "reason": self.reason,
            "metrics": [dict(m) for m in self.metrics], "run_id": self.run_id,
            "run_url": self.run_url, "deployment_url": self.deployment_url,
            "dedup_key": self.dedup_key, "idempotency_key": self.idempotency_key,
            "occurred_at": _iso(self.occurred_at),
        }


def _metric(m: Mapping[str, Any]) -> dict:
    if not isinstance(m, Mapping) or not m.get("metric"):
        raise ValueError("each metric needs at least a 'metric' name")
    out = {
        "metric": str(m["metric"]),
        "value": _num(m.get("value", m.get("current_ms"))),
        "baseline": _num(m.get("baseline", m.get("baseline_ms"))),
        "change": _num(m.get("change")),
        "verdict": str(m.get("verdict") or ""),
    }
    if m.get("threshold") is not None:
        out["threshold"] = _num(m["threshold"])
    if m.get("unit") is not None:
        out["unit"] = str(m["unit"])
    return out


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None  # NaN cannot go into JSON, and means "no value" here


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def rollback_event(deployment_id: str, rollback_to: str, reason: str = "", *,
                   metrics: Sequence[Mapping] = (), run_url: str | None = None,
                   run_id: str | None = None, deployment_url: str | None = None) -> Event:
    return Event(ROLLBACK, deployment_id, f"Rolled back {deployment_id}", metrics,
                 decision=f"production rolled back to {rollback_to}", reason=reason,
                 run_url=run_url, run_id=run_id, deployment_url=deployment_url)


def promotion_event(deployment_id: str, reason: str = "", *, metrics: Sequence[Mapping] = (),
                    run_url: str | None = None, run_id: str | None = None,
                    deployment_url: str | None = None) -> Event:
    return Event(PROMOTION, deployment_id, f"Promoted {deployment_id} to production", metrics,
                 decision="promoted to production", reason=reason, run_url=run_url,
                 run_id=run_id, deployment_url=deployment_url)


def held_event(deployment_id: str, reason: str = "", *, metrics: Sequence[Mapping] = (),
               run_url: str | None = None, run_id: str | None = None,
               deployment_url: str | None = None) -> Event:
    return Event(HELD, deployment_id, f"{deployment_id} held: a person decides", metrics,
                 decision="held: not promoted, not known-good, until a person decides",
                 reason=reason, run_url=run_url, run_id=run_id, deployment_url=deployment_url)


def drift_event(deployment_id: str, episode: int | str, expected_id: str | None,
                reason: str = "", *, action: str = "", deployment_url: str | None = None) -> Event:
    """Production runs `deployment_id` though this tool expects `expected_id`. One event per
    drift episode (its dedup_key names the episode), so a second tick of the same episode is a
    duplicate and the episode's end resolves exactly this incident."""
    return Event(DRIFT, deployment_id,
                 f"Production drift: {deployment_id} is live, {expected_id or 'none'} expected",
                 decision="production changed outside this tool" + (f"; {action}" if action
                                                                     else ""),
                 reason=reason, deployment_url=deployment_url,
                 dedup_key=f"atge-drift-{episode}")


def stage_event(canary_id: str, stage: int, target_pct: float, decision: str, current_id: str,
                reason: str = "", *, metrics: Sequence[Mapping] = (), run_url: str | None = None,
                run_id: str | None = None, deployment_url: str | None = None) -> Event:
    """A rolling release's stage `decision`: "aborted" (a rollback: the canary's traffic went
    back to `current_id`) or "held" (a person decides). On the canary's own incident, as its
    rollback or hold would be; one message per release aborted and per stage held."""
    where = f"stage {stage} ({target_pct:g}%)"
    if decision == "aborted":
        return Event(ROLLBACK, canary_id, f"Rolling release of {canary_id} aborted at {where}",
                     metrics, decision=f"release aborted: traffic back to {current_id}",
                     reason=reason, run_url=run_url, run_id=run_id,
                     deployment_url=deployment_url,
                     idempotency_key=f"{ROLLBACK}:rollout:{canary_id}")
    if decision == "held":
        return Event(HELD, canary_id, f"Rolling release of {canary_id} held at {where}",
                     metrics, decision=f"held at {where}: the canary keeps its share until a "
                     "person approves or aborts", reason=reason, run_url=run_url, run_id=run_id,
                     deployment_url=deployment_url,
                     idempotency_key=f"{HELD}:rollout:{canary_id}:stage-{stage}")
    raise ValueError(f"a stage is announced when aborted or held, not {decision!r}")


def run_failed_event(run_id: str, job_name: str, error: str = "", *, deployment_id: str = "",
                     run_url: str | None = None) -> Event:
    what = f" for {deployment_id}" if deployment_id else ""
    return Event(RUN_FAILED, deployment_id, f"Run of {job_name}{what} failed",
                 decision="not judged: the deployment was neither kept nor rolled back by this run"
                 if deployment_id else "run failed",
                 reason=error[:500], run_url=run_url, run_id=run_id)


def perf_alert_events(deployment_id: str, metrics: Iterable[Mapping],
                      thresholds: Mapping[str, float], *, run_url: str | None = None,
                      run_id: str | None = None, deployment_url: str | None = None) -> list[Event]:
    """One alert per metric whose value is above its absolute threshold (in the metric's unit, ms
    unless it names another), e.g. `{"e2e_ms": 30000}`. Each gets its own dedup_key, so each
    resolves on its own."""
    events = []
    for m in over_limit(metrics, thresholds):
        limit, unit = m["threshold"], m.get("unit")
        events.append(Event(
            PERF_ALERT, deployment_id,
            f"{m['metric']} is {amount(m['value'], unit)} on {deployment_id} "
            f"(limit {amount(limit, unit)})", [m],
            decision="alert: above the absolute limit", run_url=run_url, run_id=run_id,
            deployment_url=deployment_url, dedup_key=f"atge-{deployment_id}-{m['metric']}"))
    return events


def over_limit(metrics: Iterable[Mapping], thresholds: Mapping[str, float]) -> list[dict]:
    """The metrics whose value is above their absolute limit, each with its limit as
    `threshold`."""
    out = []
    for raw in metrics:
        m = _metric(raw)
        limit = thresholds.get(m["metric"])
        if limit is not None and m["value"] is not None and m["value"] > limit:
            out.append(dict(m, threshold=float(limit)))
    return out


def limits_alert_event(deployment_id: str, metrics: Iterable[Mapping],
                       thresholds: Mapping[str, float], *, run_url: str | None = None,
                       run_id: str | None = None,
                       deployment_url: str | None = None) -> Event | None:
    """One alert naming every metric of a deployment above its absolute limit, or None.

    It is the deployment's own incident (dedup_key `atge-<id>`, as its rollback or hold): a
    deployment is one message and one incident however many of its metrics breach."""
    over = over_limit(metrics, thresholds)
    if not over:
        return None
    names = ", ".join(m["metric"] for m in over)
    return Event(PERF_ALERT, deployment_id,
                 f"{names} above {'its limit' if len(over) == 1 else 'their limits'} "
                 f"on {deployment_id}", over, decision="alert: above the absolute limit",
                 run_url=run_url, run_id=run_id, deployment_url=deployment_url)


def recovery_event(of: Event, reason: str = "", *, run_url: str | None = None,
                   run_id: str | None = None, metrics: Sequence[Mapping] = (),
                   decision: str = "resolved") -> Event:
    """The all-clear for an earlier rollback or alert: same deployment, same dedup_key.
    `decision` says how it was resolved when a decision did it (a person's, on a hold)."""
    return Event(RECOVERY, of.deployment_id, f"Recovered: {of.title}", metrics,
                 decision=decision, reason=reason, run_url=run_url or of.run_url,
                 run_id=run_id, deployment_url=of.deployment_url, dedup_key=of.dedup_key)


def amount(v: float | None, unit: str | None = None) -> str:
    """A value as a person reads it: ms or s for timings, the unit for the rest."""
    if v is None:
        return "n/a"
    if unit is None or unit == "ms":  # no unit: a benchmark timing, and those are all ms
        return f"{v / 1000:.2f} s" if abs(v) >= 1000 else f"{v:.0f} ms"
    text = f"{v:.4g}" if abs(v) < 10_000 else f"{v:.0f}"  # never 1.2e+04 users
    # Percentages are taken as given: the monitored error rate and cpu are already in percent.
    return text + unit if unit in ("", "%") else f"{text} {unit}"
