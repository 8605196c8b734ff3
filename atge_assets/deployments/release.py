"""Release decisions beside the rollback: the promotion gate, and what each decision announces.

Plain Python; the `promotion` and `rollback` assets act on these answers and record them.
"""

from __future__ import annotations

from atge_assets import notify
from atge_assets.deployments import compare as cmp
from atge_assets.deployments.history import ACCEPTED, DeploymentHistory, DeploymentRow
from atge_assets.deployments.judge import HELD, REGRESSED
from atge_assets.notify.events import limits_alert_event, over_limit
from atge_assets.deployments.suite import Suite

PROMOTE = "promote"
# What a person may decide about a held deployment, as config of `rollback` (production) or
# `promotion` (preview): accept lets it through and makes it known-good; reject rolls it back
# (production) or never promotes it (preview).
PERSON_DECISIONS = ("accept", "reject")


def person_decision(value: str, verdict: str | None, dep_id: str) -> str:
    """The config's `decision`, checked: "" (no decision), accept or reject. Raises ValueError
    with one line for anything else, or for a decision about a deployment that is not held."""
    value = (value or "").strip().lower()
    if not value:
        return ""
    if value not in PERSON_DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(PERSON_DECISIONS)}, got {value!r}")
    if verdict not in (HELD, "accepted"):
        raise ValueError(f"decision {value!r} is for held deployments; {dep_id} is "
                         f"{verdict or 'not judged'}")
    return value


def promotion_decision(dep: DeploymentRow, smoke: dict[str, dict], existing: dict | None, *,
                       auto_promote: bool, manual: bool,
                       live: DeploymentRow | None = None, person: str = "",
                       approver: str = "") -> tuple[str, str]:
    """(decision, reason) for a deployment: `promote`, or `skipped`, `blocked`, `held`,
    `rejected` or `awaiting_approval` and why. A run a person launched (`manual`) is an approval.
    `live` is the production deployment serving now, as the history knows it; `person` is a
    person's decision about a held preview (see person_decision), `approver` who made it."""
    failed = sorted(n for n, r in smoke.items() if not r["passed"])
    if dep.target == "production":
        return "skipped", "already a production deployment"
    if existing and existing["status"] == "done":
        return "skipped", "already promoted"
    if live is not None and live.id != dep.id and live.created_ms > dep.created_ms:
        # Promoting it would put older code live over newer production deployments, which would
        # then be "no longer production" and never judged.
        return "skipped", f"older than the live production deployment {live.id}"
    if not smoke:
        return "blocked", "no smoke test results"
    if failed:
        return "blocked", f"smoke tests failed: {', '.join(failed)}"
    if person == "reject":
        return "rejected", f"rejected by {approver}: held, never promoted"
    if dep.verdict == HELD and person != "accept":
        return "held", ("held for a person: undecided within the sample budget. To decide, "
                        f"materialize `promotion` for {dep.id} with config {{decision: accept}} "
                        "(promote) or {decision: reject}")
    if person == "accept":
        return PROMOTE, f"accepted by {approver} after being held"
    if dep.verdict not in ACCEPTED:
        return "blocked", f"benchmark verdict is {dep.verdict}"
    if not auto_promote and not manual:
        return "awaiting_approval", ("passed; auto-promotion is off: materialize `promotion` for "
                                     "this deployment to promote")
    return PROMOTE, ("approved by a person" if manual and not auto_promote
                     else "smoke tests passed and no slower than production")


def limits(suite: Suite) -> dict[str, float]:
    """The plan's quick win: each metric's absolute limit (e.g. end-to-end over 30 s), scaled like
    the static baselines."""
    return {m.name: suite.static_baseline_ms(m.name) * (1 + m.threshold) for m in suite.metrics}


def _as_metrics(rows) -> list[dict]:
    return [{"metric": r["metric"], "value": r["current_ms"], "baseline": r["baseline_ms"],
             "change": r.get("change"), "verdict": r["verdict"]} for r in rows]


def perf_alert(suite: Suite, dep_id: str, rows, **event_fields) -> notify.Event | None:
    """The one alert naming every metric of the deployment above its absolute limit, or None.
    The same rows give the same alert, which is how a later run finds the one to resolve."""
    return limits_alert_event(dep_id, _as_metrics(rows), limits(suite), **event_fields)


def perf_alerts(suite: Suite, dep_id: str, rows, **event_fields) -> list[notify.Event]:
    """What the comparison announces as soon as it is made: the over-the-limit alert, unless its
    verdict leads to a decision that is announced by itself and names those metrics (regressed:
    the rollback; undecided: the hold). One deployment, one message."""
    if cmp.overall_verdict(rows, final=True) in (REGRESSED, HELD):
        return []
    alert = perf_alert(suite, dep_id, rows, **event_fields)
    return [alert] if alert else []


def release_events(store: DeploymentHistory, dep, action: str, rollback_to: str | None,
                   reason: str, suite: Suite, replaced_id: str | None, *, run_url: str,
                   run_id: str) -> list[notify.Event]:
    """At most one message per decision, naming every metric (with its limit when it is above
    it), on the deployment's own incident (dedup_key `atge-<id>`): a rollback pages, a hold asks a
    person, a person's acceptance resolves the hold. A healthy production deployment that is kept
    resolves the last rollback's incident, and the over-the-limit alert of the deployment it
    replaced; each resolution is sent once (the sent log), however many deployments follow.
    """
    rows = store.latest_comparison_rows(dep.id)
    metrics = _with_limits(suite, rows)
    ids = dict(run_url=run_url, run_id=run_id)
    if action == "held":
        return [notify.held_event(dep.id, reason, metrics=metrics, deployment_url=dep.url, **ids)]
    if action == "rolled_back":
        return [notify.rollback_event(dep.id, rollback_to, reason, metrics=metrics,
                                      deployment_url=dep.url, **ids)]
    if action == "accepted":
        # The hold's incident (same dedup_key) is answered: the person's words say how.
        hold = notify.Event(notify.HELD, dep.id, f"{dep.id} was held for a person")
        return [notify.recovery_event(hold, reason, **ids)]
    if action in ("skipped", "would_roll_back") and dep.verdict == REGRESSED \
            and dep.target == "production" and store.rollback_for(dep.id) is None:
        # Regressed and never rolled back (dry run, no known-good target): the comparison left
        # its over-the-limit alert to this decision, and nothing else will send it.
        alert = perf_alert(suite, dep.id, rows, deployment_url=dep.url, **ids)
        return [alert] if alert else []
    events = []
    if action == "kept" and dep.target == "production":
        last = store.last_decision("rolled_back")
        if last:
            incident = notify.rollback_event(last["deployment_id"], last["rollback_to"] or "")
            events.append(notify.recovery_event(incident, f"{dep.id} is live and healthy", **ids))
        replaced = perf_alert(suite, replaced_id, store.latest_comparison_rows(replaced_id)) \
            if replaced_id else None
        if replaced and not perf_alert(suite, dep.id, rows):
            events.append(notify.recovery_event(
                replaced, f"{dep.id} replaced it and is within its limits", **ids))
    return events


def _with_limits(suite: Suite, rows) -> list[dict]:
    """The comparison's metrics, those above their absolute limit carrying it as `threshold`."""
    over = {m["metric"]: m["threshold"] for m in over_limit(_as_metrics(rows), limits(suite))}
    return [dict(m, threshold=over[m["metric"]]) if m["metric"] in over else m
            for m in _as_metrics(rows)]
