"""Release decisions beside the rollback: the promotion gate, and what each decision announces.

Plain Python; the `promotion` and `rollback` assets act on these answers and record them.
"""

from __future__ import annotations

from atge_assets import notify
from atge_assets.deployments.history import ACCEPTED, DeploymentHistory, DeploymentRow
from atge_assets.deployments.judge import HELD
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


def perf_alerts(suite: Suite, dep_id: str, rows, **event_fields) -> list[notify.Event]:
    """The plan's quick win: a metric above its absolute limit (e.g. end-to-end over 30 s, scaled
    like the static baselines) alerts whatever the comparison says. The same rows give the same
    alerts, which is how a later run finds the ones to resolve."""
    limits = {m.name: suite.static_baseline_ms(m.name) * (1 + m.threshold) for m in suite.metrics}
    return notify.perf_alert_events(
        dep_id, [{"metric": r["metric"], "value": r["current_ms"], "baseline": r["baseline_ms"],
                  "verdict": r["verdict"]} for r in rows], limits, **event_fields)


def release_events(store: DeploymentHistory, dep, action: str, rollback_to: str | None,
                   reason: str, suite: Suite, replaced_id: str | None, *, run_url: str,
                   run_id: str) -> list[notify.Event]:
    """A rollback pages; a held deployment asks a person; a healthy live deployment after a
    rollback resolves that page.

    Over-the-limit alerts are about a live deployment, so they resolve when it stops being live:
    rolled back, or replaced by a production deployment that is kept with no alert of its own.
    """
    metrics = store.latest_comparison_rows(dep.id)
    ids = dict(run_url=run_url, run_id=run_id)
    if action == "held":
        return [notify.held_event(dep.id, reason, metrics=metrics, deployment_url=dep.url, **ids)]
    if action == "rolled_back":
        gone = f"{dep.id} was rolled back to {rollback_to}"
        return [notify.rollback_event(dep.id, rollback_to, reason, metrics=metrics,
                                      deployment_url=dep.url, **ids)] + [
            notify.recovery_event(a, gone, **ids) for a in perf_alerts(suite, dep.id, metrics)]
    events = []
    if action == "kept" and dep.target == "production":
        last = store.last_decision("rolled_back")
        if last:
            incident = notify.rollback_event(last["deployment_id"], last["rollback_to"] or "")
            events.append(notify.recovery_event(incident, f"{dep.id} is live and healthy", **ids))
        if replaced_id and not perf_alerts(suite, dep.id, metrics):
            events += [notify.recovery_event(a, f"{dep.id} replaced it and is within its limits",
                                             **ids)
                       for a in perf_alerts(suite, replaced_id,
                                            store.latest_comparison_rows(replaced_id))]
    return events
