"""What to do at a stage of a rolling release: which stage waits for a verdict, and what the
verdict makes of it. Plain Python over the provider's `RollingRelease`.

A stage is judged when the release is ACTIVE, rolls out by manual approval (or the active stage
asks for it), and is not the final one (at 100% there is nothing left to approve). A passing
verdict approves the next stage, or completes the release when the next one is the last; a
regression aborts it, which on Vercel is an instant rollback to the release's current
deployment; a verdict held at the sample budget leaves the stage to a person, who decides in
Vercel's dashboard or by re-materializing the stage with a decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from atge_assets.deployments.judge import ACCEPTED_BY_PERSON, HELD, IMPROVED, PASS, REGRESSED
from atge_assets.lib.providers.base import ACTIVE, MANUAL_APPROVAL, ReleaseStage, RollingRelease

APPROVE, COMPLETE, ABORT, HOLD, SKIPPED = "approve", "complete", "abort", "hold", "skipped"
PERSON_DECISIONS = ("approve", "abort")


@dataclass(frozen=True)
class Action:
    kind: str  # approve, complete, abort, hold or skipped
    reason: str
    next_index: int | None = None  # the stage an approval moves to


def stage_key(canary_id: str, index: int) -> str:
    """The run key of one stage's judgement: Dagster launches it once."""
    return f"{canary_id}:stage-{index}"


def stage_to_judge(rr: RollingRelease | None, canary_id: str | None = None
                   ) -> tuple[ReleaseStage | None, str]:
    """(the stage awaiting a verdict, "") or (None, why there is none)."""
    if rr is None:
        return None, "no rolling release on the project"
    if canary_id is not None and rr.canary_id != canary_id:
        return None, f"the rolling release is now for {rr.canary_id}, not {canary_id}"
    if rr.state != ACTIVE:
        return None, f"the rolling release of {rr.canary_id} is {rr.state}"
    if rr.active is None or rr.canary_id is None or rr.current_id is None:
        return None, "the rolling release has no active stage, canary or current deployment"
    if rr.advancement != MANUAL_APPROVAL and not rr.active.require_approval:
        return None, (f"stage {rr.active.index} advances on its own ({rr.advancement}): "
                      "nothing to approve")
    if rr.active.is_final or rr.next is None:
        return None, f"stage {rr.active.index} is the final one"
    return rr.active, ""


def person_decision(value: str) -> str:
    """The config's `decision`: "" (none), approve or abort. ValueError otherwise."""
    value = (value or "").strip().lower()
    if value and value not in PERSON_DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(PERSON_DECISIONS)}, got {value!r}")
    return value


def decide(rr: RollingRelease | None, canary_id: str, stage_index: int, verdict: str | None,
           person: str = "", approver: str = "") -> Action:
    """What the stage's verdict (or a person's decision) does to the release as it is now:
    a release that moved on while the canary was measured is left alone."""
    stage, why = stage_to_judge(rr, canary_id)
    if stage is None:
        return Action(SKIPPED, why)
    if stage.index != stage_index:
        return Action(SKIPPED, f"stage {stage.index} is active now, not {stage_index}: "
                      "someone moved the release on")
    where = f"stage {stage.index} ({stage.target_percentage:g}%)"
    if person == "abort" or (not person and verdict == REGRESSED):
        who = f"aborted by {approver}" if person else "the canary regressed"
        return Action(ABORT, f"{who} at {where}: rolled back to {rr.current_id}")
    if not person and verdict == HELD:
        return Action(HOLD, f"held at {where} for a person: undecided within the sample budget. "
                      "Approve or abort in Vercel, or materialize `rollout_stage` for "
                      f"{canary_id} with config {{decision: approve}} or {{decision: abort}}")
    if not person and verdict not in (PASS, IMPROVED, ACCEPTED_BY_PERSON):
        return Action(HOLD, f"verdict {verdict} at {where}: left to a person")
    who = f"approved by {approver}" if person else f"the canary passed at {where}"
    nxt = rr.next
    if nxt.is_final:
        return Action(COMPLETE, f"{who}: completing the release ({nxt.target_percentage:g}%)",
                      nxt.index)
    return Action(APPROVE, f"{who}: on to stage {nxt.index} ({nxt.target_percentage:g}%)",
                  nxt.index)


def observed_share(served_by_canary: list[bool]) -> float | None:
    """The share of probe requests the canary answered, None without any."""
    return sum(served_by_canary) / len(served_by_canary) if served_by_canary else None
