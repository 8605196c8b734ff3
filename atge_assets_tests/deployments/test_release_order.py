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
