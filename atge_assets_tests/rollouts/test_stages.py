"""The stage decisions on their own: which stage waits for a verdict and what a verdict does."""

import pytest

from atge_assets.lib.providers.base import ReleaseStage, RollingRelease
from atge_assets.rollouts import stages

S = (ReleaseStage(0, 5, True, False), ReleaseStage(1, 25, True, False),
     ReleaseStage(2, 100, True, True))


def release(active=0, state="ACTIVE", advancement="manual-approval", canary="dpl_new"):
    return RollingRelease(state, advancement, "dpl_old", canary, S,
                          S[active] if state == "ACTIVE" else None,
                          S[active + 1] if state == "ACTIVE" and active < 2 else None)


@pytest.mark.parametrize("rr, why", [
    (None, "no rolling release"),
    (release(state="ABORTED"), "is ABORTED"),
    (RollingRelease("ACTIVE", "automatic", "dpl_old", "dpl_new", S,
                    ReleaseStage(0, 5, False, False), S[1]), "advances on its own"),
    (release(active=2), "is the final one"),
])
def test_no_stage_to_judge(rr, why):
    stage, reason = stages.stage_to_judge(rr)
    assert stage is None and why in reason


def test_an_automatic_release_with_an_approval_stage_is_judged():
    assert stages.stage_to_judge(release(advancement="automatic"))[0] == S[0]


@pytest.mark.parametrize("verdict, active, kind, nxt", [
    ("pass", 0, stages.APPROVE, 1), ("improved", 0, stages.APPROVE, 1),
    ("pass", 1, stages.COMPLETE, 2), ("regressed", 1, stages.ABORT, None),
    ("held", 0, stages.HOLD, None), ("inconclusive", 0, stages.HOLD, None),
])
def test_a_verdict_moves_the_release(verdict, active, kind, nxt):
    action = stages.decide(release(active), "dpl_new", active, verdict)
    assert (action.kind, action.next_index) == (kind, nxt)


def test_a_release_that_moved_on_is_left_alone():
    assert stages.decide(release(1), "dpl_new", 0, "regressed").kind == stages.SKIPPED
    assert stages.decide(release(canary="dpl_other"), "dpl_new", 0, "pass").kind == stages.SKIPPED
    assert "someone moved" in stages.decide(release(1), "dpl_new", 0, "pass").reason


def test_a_person_overrides_the_verdict():
    assert stages.decide(release(), "dpl_new", 0, None, "approve", "ana").reason == (
        "approved by ana: on to stage 1 (25%)")
    assert stages.decide(release(), "dpl_new", 0, "pass", "abort", "ana").kind == stages.ABORT
    with pytest.raises(ValueError):
        stages.person_decision("ship it")


def test_the_stage_key_and_the_observed_share():
    assert stages.stage_key("dpl_new", 1) == "dpl_new:stage-1"
    assert stages.observed_share([True, False, False, False]) == 0.25
    assert stages.observed_share([]) is None
