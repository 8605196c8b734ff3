"""Release decisions beside the rollback: the promotion gate, and what each decision announces.

Plain Python; the `promotion` and `rollback` assets act on these answers and record them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from atge_assets import notify
from atge_assets.deployments import compare as cmp
from atge_assets.deployments.history import ACCEPTED, DeploymentHistory, DeploymentRow
from atge_assets.deployments.judge import ACCEPTED_BY_PERSON, HELD, REGRESSED
from atge_assets.deployments.suite import Suite
from atge_assets.notify.events import limits_alert_event, over_limit

PROMOTE = "promote"
# What a person may decide about a held deployment, as config of `rollback` (production) or
# `promotion` (preview): accept lets it through and makes it known-good; reject rolls it back
# (production) or never promotes it (preview).
PERSON_DECISIONS = ("accept", "reject")


def person_decision(value: str, verdict: str | None, dep_id: str,
                    allowed: tuple[str, ...] = (HELD, ACCEPTED_BY_PERSON)) -> str:
    """The config's `decision`, checked: "" (no decision), accept or reject. Raises ValueError
    with one line for anything else, or for a deployment whose verdict is not in `allowed` (held,
    for a rollback; also passed, for a promotion awaiting approval)."""
    value = (value or "").strip().lower()
    if not value:
        return ""
    if value not in PERSON_DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(PERSON_DECISIONS)}, got {value!r}")
    if verdict not in allowed:
        raise ValueError(f"decision {value!r} is for {' or '.join(allowed)} deployments; "
                         f"{dep_id} is {verdict or 'not judged'}")
    return value


def promotion_decision(dep: DeploymentRow, smoke: dict[str, dict], existing: dict | None, *,
                       auto_promote: bool, live: DeploymentRow | None = None, person: str = "",
                       approver: str = "") -> tuple[str, str]:
    """(decision, reason) for a deployment: `promote`, or `skipped`, `blocked`, `held`,
    `rejected` or `awaiting_approval` and why. `live` is the production deployment serving now,
    as the history knows it; `person` is a person's explicit decision (see person_decision):
    launching the asset is not an approval by itself; `approver` is who decided."""
    failed = sorted(n for n, r in smoke.items() if not r["passed"])
    if dep.target == "production":
        return "skipped", "already a production deployment"
    if existing and existing["status"] == "done":
        return "skipped", "already promoted"
    if live is not None and live.id != dep.id and live.created_ms > dep.created_ms \
            and live.verdict != REGRESSED:
        # Promoting it would put older code live over a newer production deployment, which would
        # then be "no longer production" and never judged. A newer one that regressed is on its
        # way out (its rollback would return to something older than this preview): no guard.
        return "skipped", f"older than the live production deployment {live.id}"
    if not smoke:
        return "blocked", "no smoke test results"
    if failed:
        return "blocked", f"smoke tests failed: {', '.join(failed)}"
    if person == "reject":
        return "rejected", f"rejected by {approver}: never promoted"
    held = dep.verdict == HELD
    if held and person != "accept":
        return "held", ("held for a person: undecided within the sample budget. To decide, "
                        f"materialize `promotion` for {dep.id} with config {{decision: accept, "
                        "by: <you>} (promote) or {decision: reject}")
    if not held and dep.verdict not in ACCEPTED:
        return "blocked", f"benchmark verdict is {dep.verdict}"
    if person == "accept":
        return PROMOTE, f"approved by {approver}" + (" after being held" if held else "")
    if not auto_promote:
        return "awaiting_approval", (f"passed; auto-promotion is off: materialize `promotion` "
                                     f"for {dep.id} with config {{decision: accept, by: <you>}} "
                                     "to promote")
    return PROMOTE, "smoke tests passed and no slower than production"


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


def release_events(store: DeploymentHistory, dep, action: str, rollback_to: str | None,
                   reason: str, suite: Suite, replaced_id: str | None, *, run_url: str,
                   run_id: str) -> list[notify.Event]:
    """At most one message per decision, naming every metric (with its limit when it is above
    it), on the deployment's own incident (dedup_key `atge-<id>`): a rollback pages, a hold asks a
    person, a person's acceptance resolves the hold, any other decision on a production
    deployment above its absolute limits is the over-the-limit alert. A healthy production
    deployment that is kept resolves the last rollback's incident, and the over-the-limit alert
    of the deployment it replaced; each resolution is sent once (the sent log), however many
    deployments follow.
    """
    rows = store.latest_comparison_rows(dep.id)
    metrics = _with_limits(suite, rows)
    ids = {"run_url": run_url, "run_id": run_id}
    if action == "held":
        return [notify.held_event(dep.id, reason, metrics=metrics, deployment_url=dep.url, **ids)]
    if action == "rolled_back":
        return [notify.rollback_event(dep.id, rollback_to, reason, metrics=metrics,
                                      deployment_url=dep.url, **ids)]
    if action == "accepted":
        return [_hold_resolved(dep.id, reason, "accepted: kept in production", ids)]
    events = []
    if dep.target == "production" and store.rollback_for(dep.id) is None:
        # Kept (or not rolled back: dry run, no known-good target) above its limits: the alert
        # is this decision's message; the comparison leaves it to the decision.
        alert = perf_alert(suite, dep.id, rows, deployment_url=dep.url, **ids)
        events += [alert] if alert else []
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


def promotion_events(store: DeploymentHistory, dep, decision: str, reason: str, suite: Suite,
                     *, person: str, run_url: str, run_id: str) -> list[notify.Event]:
    """The promotion gate's one message, naming every metric (with its limit when above it).
    Promoted: the promotion, or the over-the-limit alert saying it was promoted (it pages, and
    the production deployment that replaces it resolves it). Held: asks a person. A person's
    decision on a held preview answers the hold's incident: resolved, unless promoted above its
    limits (the alert updates the same incident). Any other decision: the over-the-limit alert
    if it is above its limits, else nothing."""
    rows = store.latest_comparison_rows(dep.id)
    metrics = _with_limits(suite, rows)
    ids = {"run_url": run_url, "run_id": run_id, "deployment_url": dep.url}
    alert = perf_alert(suite, dep.id, rows, **ids)
    if decision == "held":
        return [notify.held_event(dep.id, reason, metrics=metrics, **ids)]
    if decision == "promoted" and alert:
        return [dataclasses.replace(
            alert, title=f"Promoted {dep.id}: {alert.title.removesuffix(f' on {dep.id}')}",
            decision="promoted to production above the absolute limit", reason=reason,
            metrics=metrics)]
    if person and dep.verdict == HELD:  # answered, whatever followed (blocked, skipped too)
        outcome = {"promoted": "promoted to production", "rejected": "never promoted"}.get(
            decision, decision.replace("_", " "))
        return [_hold_resolved(dep.id, reason, f"{person}ed: {outcome}",
                               {k: ids[k] for k in ("run_url", "run_id")}, metrics)]
    if decision == "promoted":
        return [notify.promotion_event(dep.id, reason, metrics=metrics, **ids)]
    return [alert] if alert else []


def _hold_resolved(dep_id: str, reason: str, decision: str, ids: dict,
                   metrics=()) -> notify.Event:
    """The answer to a hold's incident (same dedup_key): the person's words say how."""
    hold = notify.Event(notify.HELD, dep_id, f"{dep_id} was held for a person")
    return notify.recovery_event(hold, reason, decision=decision, metrics=metrics, **ids)


def over_limits(suite: Suite, rows) -> list[dict]:
    """The comparison's metrics above their absolute limit, each with it as `threshold`."""
    return over_limit(_as_metrics(rows), limits(suite))


def _with_limits(suite: Suite, rows) -> list[dict]:
    """The comparison's metrics, those above their absolute limit carrying it as `threshold`."""
    over = {m["metric"]: m["threshold"] for m in over_limits(suite, rows)}
    return [dict(m, threshold=over[m["metric"]]) if m["metric"] in over else m
            for m in _as_metrics(rows)]


class Wait(Exception):
    """Decide later: a verdict this decision depends on is not known yet (runs run concurrently).
    The message says whose."""


def pending_verdicts(store: DeploymentHistory, before_ms: int, newest_good: DeploymentRow | None,
                     exclude: str, in_flight: Callable[[str], bool]) -> list[str]:
    """Production deployments created before `before_ms`, still unjudged, newer than the newest
    accepted one (`newest_good`), and whose verdict may still come (`in_flight`): once judged,
    one of them may be the newest accepted."""
    newer = newest_good.created_ms if newest_good else -1
    return [w.id for w in store.unjudged_production_before(before_ms)
            if w.id != exclude and w.created_ms > newer and in_flight(w.id)]


def decide_rollback(store: DeploymentHistory, dep: DeploymentRow, production_id: str | None, *,
                    dry_run: bool, person: str = "", approver: str = "",
                    in_flight: Callable[[str], bool] = lambda dep_id: True) -> cmp.RollbackPlan:
    """What the rollback asset does for `dep`, with `production_id` live now. Raises Wait while
    an earlier production deployment's verdict is pending and `in_flight` says one may still come
    (the assets: a run of it is in flight, and this run has not waited long enough): it may be
    the newest accepted one, the right target (Vercel's instant rollback returns to what was live
    before). Otherwise it decides with what is known."""
    good = store.known_good_production(dep.created_ms, 1)
    rows = store.latest_comparison_rows(dep.id)
    existing = store.rollback_for(dep.id)
    plan = cmp.plan_rollback(
        deployment_id=dep.id, verdict=dep.verdict, target=dep.target, production_id=production_id,
        known_good_id=good[0].id if good else None, existing=existing, dry_run=dry_run,
        smoke_failed=sorted(n for n, r in store.latest_smoke(dep.id).items() if not r["passed"]),
        regressed_metrics=cmp.regressed_metrics(rows), held_metrics=cmp.held_metrics(rows),
        person=person, approver=approver)
    wants_target = plan.action in ("rollback", "would_roll_back") and existing is None or (
        plan.action == "skipped" and "no known-good" in plan.reason)
    if wants_target:
        waiting = pending_verdicts(store, dep.created_ms, good[0] if good else None, dep.id,
                                   in_flight)
        if waiting:
            raise Wait(f"waiting for the verdict of {', '.join(waiting)} before choosing where "
                       "to roll back")
    return plan


def act_rollback(store: DeploymentHistory, client, dep_id: str, plan: cmp.RollbackPlan,
                 run_id: str, log=None) -> tuple[str, cmp.RollbackPlan]:
    """Carry a plan out: (the decision to record, the plan it ended with). The claim row comes
    before the provider call, so exactly one run owns a rollback and a retry finishes it."""
    action = plan.action
    if action == "rollback":
        existing = store.rollback_for(dep_id)
        if existing is None and store.claim_rollback(dep_id, plan.rollback_to, run_id) is not None:
            return "skipped", cmp.RollbackPlan("skipped", "another run claimed this rollback first")
        if log:
            log(f"rolling {dep_id} back to {plan.rollback_to}: {plan.reason}")
        client.rollback(plan.rollback_to)  # raises after retries: the claim stays pending
        store.finish_rollback(dep_id)
        return "rolled_back", plan
    if action == "finish":
        store.finish_rollback(dep_id)
        return "rolled_back", plan
    return action, plan


def decide_promotion(store: DeploymentHistory, dep: DeploymentRow, live_id: str | None, *,
                     auto_promote: bool, person: str = "", approver: str = "",
                     in_flight: Callable[[str], bool] = lambda dep_id: True) -> tuple[str, str]:
    """promotion_decision with what the history knows. A preview is never promoted over a newer
    accepted deployment that went live (a rollback would return to that one); it waits (raises
    Wait) for the verdicts of newer production deployments that may still come (`in_flight`, as
    for decide_rollback), since whether it is the newest accepted deployment depends on them."""
    live = store.deployment(live_id) if live_id else None
    if dep.target != "production" and dep.verdict in ACCEPTED and person != "reject":
        newer = pending_verdicts(store, 2**62, dep, dep.id, in_flight)
        if newer:
            raise Wait(f"waiting for the verdict of the newer production deployment "
                       f"{', '.join(newer)}")
        good = store.known_good_production(2**62, 1)
        if good and good[0].id != dep.id and good[0].created_ms > dep.created_ms:
            return "skipped", f"older than {good[0].id}, a newer accepted deployment that went live"
    return promotion_decision(dep, store.latest_smoke(dep.id), store.promotion_for(dep.id),
                              auto_promote=auto_promote, live=live, person=person,
                              approver=approver)


def act_promotion(store: DeploymentHistory, client, dep_id: str, decision: str,
                  reason: str, run_id: str) -> tuple[str, str]:
    """Promote when the decision says so, at most once (a claim row before the provider call)."""
    if decision != PROMOTE:
        return decision, reason
    existing = store.promotion_for(dep_id)
    if existing is None and store.claim_promotion(dep_id, run_id) is not None:
        return "skipped", "another run claimed this promotion first"
    client.promote(dep_id)  # raises after retries: the claim stays pending
    store.finish_promotion(dep_id)
    return "promoted", reason
