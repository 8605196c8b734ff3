"""The promotion gate's decisions as plain logic: order, smoke, verdict, approval."""

from atge_assets.deployments.history import DeploymentRow
from atge_assets.deployments.release import PROMOTE, promotion_decision

SMOKE_OK = {"health": {"passed": True}}


def row(i: int, target="preview", verdict="pass") -> DeploymentRow:
    return DeploymentRow(f"dpl_{i}", f"https://d{i}.vercel.app", target, "READY", 1000 + i, verdict)


def decide(dep, live=None, **kw):
    return promotion_decision(dep, kw.pop("smoke", SMOKE_OK), kw.pop("existing", None),
                              auto_promote=kw.pop("auto_promote", True),
                              live=live, person=kw.pop("person", ""),
                              approver=kw.pop("approver", ""))


def test_a_preview_older_than_the_live_production_deployment_is_never_promoted():
    decision, reason = decide(row(1), live=row(2, "production"))
    assert decision == "skipped" and "older than the live production deployment dpl_2" in reason
    # Newer than what is live: promoted; unknown live deployment: the other rules decide.
    assert decide(row(3), live=row(2, "production"))[0] == PROMOTE
    assert decide(row(3), live=None)[0] == PROMOTE


def test_the_gate_blocks_for_smoke_and_verdict_and_waits_for_approval():
    assert decide(row(3), smoke={"health": {"passed": False}})[0] == "blocked"
    assert decide(row(3), smoke={})[0] == "blocked"
    assert decide(row(3, verdict="inconclusive"))[0] == "blocked"
    assert decide(row(3), auto_promote=False)[0] == "awaiting_approval"
    # Launching the asset is no approval; an explicit decision is, and names who made it.
    assert decide(row(3), auto_promote=False)[0] == "awaiting_approval"
    assert decide(row(3), auto_promote=False, person="accept", approver="dana") == (
        PROMOTE, "approved by dana")
    assert decide(row(3), auto_promote=False, person="reject", approver="dana")[0] == "rejected"
    assert decide(row(3, "production"))[0] == "skipped"
    assert decide(row(3), existing={"status": "done"})[0] == "skipped"


def test_the_promotion_gate_sends_one_message_per_decision(store):
    """promotion_events on the real history: which one message each decision sends."""
    from atge_assets import notify
    from atge_assets.deployments.release import promotion_events
    from atge_assets.deployments.suite import Suite
    from atge_assets.lib.providers.base import Deployment

    suite = Suite(baseline_scale=0.005)  # end-to-end limit 165 ms
    store.upsert_deployment(Deployment("dpl_p", "https://p.vercel.app", "READY", "preview", 1))

    def judged(verdict, e2e_ms):
        rows = [{"metric": m.name, "verdict": verdict, "current_ms": 1.0, "baseline_ms": 1.0,
                 "change": 0.0, "threshold": 0.1, "p_value": None, "baseline_source": "x"}
                for m in suite.metrics if m.name != "end_to_end"]
        rows.append(dict(rows[0], metric="end_to_end", current_ms=e2e_ms))
        store.record_comparison("dpl_p", f"run-{verdict}-{e2e_ms}", rows, verdict)
        store.set_verdict("dpl_p", verdict)
        return store.deployment("dpl_p")

    def events(dep, decision, person=""):
        return promotion_events(store, dep, decision, "why", suite, person=person,
                                run_url="http://ui/runs/r", run_id="r")

    ok = judged("pass", 100.0)
    assert [e.kind for e in events(ok, "promoted")] == [notify.PROMOTION]
    assert events(ok, "awaiting_approval") == events(ok, "blocked") == []
    over = judged("pass", 200.0)
    (alert,) = events(over, "promoted")
    assert alert.kind == notify.PERF_ALERT and alert.title.startswith("Promoted dpl_p: end_to_end")
    assert len(alert.metrics) == 4 and alert.dedup_key == "atge-dpl_p"
    assert [e.kind for e in events(over, "blocked")] == [notify.PERF_ALERT]
    held = judged("held", 100.0)
    assert [e.kind for e in events(held, "held")] == [notify.HELD]
    # A person's decision on a held preview answers its incident, whatever the gate did next.
    for decision, person, says in (("promoted", "accept", "accepted: promoted to production"),
                                   ("rejected", "reject", "rejected: never promoted"),
                                   ("skipped", "accept", "accepted: skipped")):
        (answer,) = events(held, decision, person)
        assert (answer.kind, answer.decision, answer.dedup_key) == (
            notify.RECOVERY, says, "atge-dpl_p")
