"""Held deployments end to end on the sandbox: undecided within the budget, announced, not
known-good, and decided by a person in one step (accept or reject), who is recorded."""

import dagster as dg
import pytest

from atge_assets.deployments.assets import promotion, rollback
from atge_assets.deployments.resources import BenchmarkResource
from atge_assets.notify.resources import NotifierResource
from atge_assets_tests.conftest import json_receiver
from atge_assets_tests.deployments.helpers import metadata, run_deployment


def decide(instance, resources, dep_id, asset, decision, by=""):
    return dg.materialize([asset], partition_key=dep_id, resources=resources, instance=instance,
                          run_config={"ops": {asset.op.name: {"config": {
                              "decision": decision, "by": by}}}})


@pytest.fixture
def tiny_budget(resources):
    """Three samples a side and no more: the judge cannot decide (too few for the rank test),
    so the deployment is held at its one and only look, whatever the sandbox's noise."""
    return dict(resources, benchmark=BenchmarkResource(samples=3, max_samples=3, warmup=0,
                                                       baseline_scale=0.005))


def test_held_production_deployment_waits_for_a_person(sandbox, instance, resources, store,
                                                         tiny_budget):
    first = sandbox.state.world.production
    run_deployment(instance, resources, first)
    with json_receiver() as slack:
        res = dict(tiny_budget, notifier=NotifierResource(slack_webhook_url=slack.url + "/s"))
        held = sandbox.state.create(target="production").id
        r = run_deployment(instance, res, held)
        cmp = metadata(r, "baseline_comparison")
        assert cmp["verdict"] == "held"
        assert cmp["summary"].startswith(f"{held} is held for a person")
        rb = metadata(r, "rollback")
        assert rb["decision"] == "held" and "{decision: reject}" in rb["reason"]
        assert instance.get_run_by_id(r.run_id).tags["atge/decision"] == "held"
        # Announced once, with its numbers; a rerun does not announce it again.
        run_deployment(instance, res, held, selection=[rollback])
        said = [g["json"]["text"] for g in slack.got if held in g["json"].get("text", "")]
        assert len(said) == 1 and "held" in said[0]
    # Not known-good: a later regression could not roll back to it.
    assert [g.id for g in store.known_good_production(10**15, 5)] == [first]
    assert sandbox.state.world.production == held  # still live: nothing was decided for it

    # A person accepts it in one step; the decision and who made it are recorded.
    ok = decide(instance, resources, held, rollback, "accept", by="alice")
    md = metadata(ok, "rollback")
    assert md["decision"] == "accepted" and md["reason"].startswith("accepted by alice")
    assert store.deployment(held).verdict == "accepted"
    assert [g.id for g in store.known_good_production(10**15, 5)][0] == held

    # The next held one is rejected: rolled back to the deployment the person accepted.
    second = sandbox.state.create(target="production").id
    run_deployment(instance, tiny_budget, second)
    no = decide(instance, resources, second, rollback, "reject", by="bob")
    md = metadata(no, "rollback")
    assert md["decision"] == "rolled_back" and md["rollback_to"] == held
    assert md["reason"].startswith("rejected by bob")
    assert sandbox.state.world.production == held
    assert [d["decision"] for d in store.decisions_for(second)] == ["held", "rolled_back"]


def test_a_person_decision_is_refused_when_it_makes_no_sense(sandbox, instance, resources):
    first = sandbox.state.world.production
    run_deployment(instance, resources, first)
    with pytest.raises(dg.Failure, match="decision must be one of accept, reject, got 'maybe'"):
        decide(instance, resources, first, rollback, "maybe")
    # A healthy first deployment is accepted on its cold start: improved, or pass on a busy machine.
    with pytest.raises(dg.Failure, match=f"is for held or accepted deployments; {first} is "
                       "(improved|pass)$"):
        decide(instance, resources, first, rollback, "reject")
    assert sandbox.state.world.production == first


def test_held_preview_is_promoted_only_when_a_person_accepts(sandbox, instance, resources, store,
                                                             tiny_budget):
    run_deployment(instance, resources, sandbox.state.world.production)
    preview = sandbox.state.create(target="preview").id
    r = run_deployment(instance, tiny_budget, preview)
    md = metadata(r, "promotion")
    assert md["decision"] == "held" and "{decision: accept, by: <you>}" in md["reason"]
    assert sandbox.state.world.production != preview
    ok = decide(instance, resources, preview, promotion, "accept", by="carol")
    md = metadata(ok, "promotion")
    assert md["decision"] == "promoted" and md["reason"] == "approved by carol after being held"
    assert sandbox.state.world.production == preview
