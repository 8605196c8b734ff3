"""Production drift: a person changes production in the sandbox's Vercel API, and the next real
sensor evaluation flags it (the `production_drift` check), announces it once to a loopback
receiver, and asks for a benchmark of a deployment that needs judging. Real HTTP, real Dagster,
real SQL; the classification itself is also checked alone (drift.classify)."""

import logging
import time

import dagster as dg
import httpx
import pytest

from atge_assets.deployments import drift
from atge_assets.deployments.assets import production_drift, releases
from atge_assets.notify.resources import NotifierResource
from atge_assets_tests.conftest import TOKEN, json_receiver
from atge_assets_tests.deployments.helpers import metadata, run_deployment, tick
from atge_assets_tests.deployments.hostile_api import hostile_api

CHECK = dg.AssetCheckKey(releases.key, drift.CHECK_NAME)


def by_hand(sandbox, action: str, dep_id: str) -> None:
    """What a person does in Vercel's dashboard, through the sandbox's copy of Vercel's API."""
    pid = sandbox.state.world.project_id
    path = {"promote": f"/v10/projects/{pid}/promote/{dep_id}",
            "rollback": f"/v1/projects/{pid}/rollback/{dep_id}"}[action]
    r = httpx.post(sandbox.base_url + path, headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201, r.text
    assert sandbox.state.world.production == dep_id


def check_state(instance) -> tuple[bool, str, dict]:
    record = instance.get_latest_asset_check_evaluation_record(CHECK)
    assert record is not None, "the drift check was never reported"
    evaluation = record.event.get_dagster_event().event_specific_data
    return (evaluation.passed, evaluation.description,
            {k: v.value for k, v in evaluation.metadata.items()})


def reported(result) -> list:
    return [e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)]


def drift_requests(result) -> list[dg.RunRequest]:
    return [r for r in (getattr(result, "run_requests", None) or [])
            if "atge/drift" in r.tags]


@pytest.fixture
def receiver():
    with json_receiver() as srv:
        yield srv


@pytest.fixture
def announced(resources, receiver):
    """The resources, with the notifier posting to the loopback receiver's webhook path: for the
    sensor's ticks (the graph's own runs announce through `resources`, which tells nobody)."""
    return dict(resources, notifier=NotifierResource(webhook_url=receiver.url + "/hook"))


def test_a_rolled_back_deployment_promoted_by_hand_is_flagged_announced_once_and_rejudged(
        sandbox, instance, resources, announced, receiver, store):
    first = sandbox.state.world.production
    assert metadata(run_deployment(instance, resources, first), "rollback")["decision"] == "kept"
    slow = sandbox.state.create(target="production", slowdown=1.6).id
    rb = metadata(run_deployment(instance, resources, slow), "rollback")
    assert rb["decision"] == "rolled_back" and rb["rollback_to"] == first

    r1 = tick(instance, announced)
    assert check_state(instance)[0] is True
    assert drift_requests(r1) == [] and receiver.got == []

    by_hand(sandbox, "promote", slow)
    r2 = tick(instance, announced, r1.cursor)
    passed, description, meta = check_state(instance)
    assert passed is False
    assert meta["status"] == drift.ROLLED_BACK and meta["live"] == slow
    assert meta["expected"] == first and "rolled it back" in description
    assert [m["json"]["kind"] for m in receiver.got] == ["drift"]
    event = receiver.got[0]["json"]
    assert event["deployment_id"] == slow and event["dedup_key"].startswith("atge-drift-")
    (req,) = drift_requests(r2)
    # Its first run was keyed by its id; the episode in the key lets Dagster run it again.
    assert req.partition_key == slow and req.run_key != slow and "drift" in req.run_key

    r3 = tick(instance, announced, r2.cursor)
    assert len(receiver.got) == 1  # one announcement per episode
    assert reported(r3) == []  # the check already says it; nothing new to report
    assert [r.run_key for r in drift_requests(r3)] == [req.run_key]  # the same run: deduplicated
    assert check_state(instance)[0] is False

    by_hand(sandbox, "rollback", first)
    r4 = tick(instance, announced, r3.cursor)
    passed, description, meta = check_state(instance)
    assert passed is True and meta["status"] == drift.IN_SYNC and meta["live"] == first
    assert drift_requests(r4) == []
    # The all-clear resolves exactly the incident that was raised.
    assert [m["json"]["kind"] for m in receiver.got] == ["drift", "recovery"]
    assert receiver.got[1]["json"]["dedup_key"] == event["dedup_key"]
    assert store.open_drift() is None

    # Promoted by hand again: a new episode, announced and re-judged afresh.
    by_hand(sandbox, "promote", slow)
    r5 = tick(instance, announced, r4.cursor)
    assert check_state(instance)[0] is False
    assert [m["json"]["kind"] for m in receiver.got] == ["drift", "recovery", "drift"]
    assert receiver.got[2]["json"]["dedup_key"] != event["dedup_key"]
    (again,) = drift_requests(r5)
    assert again.run_key != req.run_key


def test_a_never_judged_deployment_put_live_by_hand_is_benchmarked_then_cleared(
        sandbox, instance, resources, announced, receiver):
    old = sandbox.state.world.production  # never judged: the tool was installed after it
    new = sandbox.state.create(target="production").id
    assert metadata(run_deployment(instance, resources, new), "rollback")["decision"] == "kept"
    r1 = tick(instance, announced)
    assert check_state(instance)[0] is True

    by_hand(sandbox, "rollback", old)
    r2 = tick(instance, announced, r1.cursor)
    passed, description, meta = check_state(instance)
    assert passed is False and meta["status"] == drift.NEVER_JUDGED
    assert "never judged" in description
    (req,) = drift_requests(r2)
    assert req.partition_key == old and req.run_key != old
    assert old in instance.get_dynamic_partitions("deployments")
    assert [m["json"]["kind"] for m in receiver.got] == ["drift"]

    # The requested run judges it healthy: production changed by hand, to a known-good one.
    run = run_deployment(instance, resources, old)
    assert metadata(run, "baseline_comparison")["verdict"] in ("pass", "improved")
    r3 = tick(instance, announced, r2.cursor)
    passed, description, meta = check_state(instance)
    assert passed is True and meta["status"] == drift.CHANGED
    assert drift_requests(r3) == []
    assert [m["json"]["kind"] for m in receiver.got] == ["drift", "recovery"]

    # Executed by hand from the UI, the check asks the provider itself and agrees.
    result = dg.materialize([releases, production_drift], resources=announced, instance=instance)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["status"].value == drift.CHANGED


def test_a_new_production_deployment_awaiting_its_verdict_is_not_drift(
        sandbox, instance, resources, announced, receiver):
    first = sandbox.state.world.production
    run_deployment(instance, resources, first)
    fresh = sandbox.state.create(target="production").id
    r = tick(instance, announced)
    assert [q.partition_key for q in r.run_requests] == [fresh]  # the normal path judges it
    passed, _, meta = check_state(instance)
    assert passed is True and meta["status"] == drift.AWAITING
    assert receiver.got == []


def test_an_unanswered_production_question_leaves_the_tick_whole(instance, history_url, caplog,
                                                                 capsys):
    """The hostile API has no project route: the poll goes on, the check is left as it was, and
    the warning carries no token."""
    from atge_assets.lib.resources import HistoryResource, VercelResource

    caplog.set_level(logging.INFO)
    with hostile_api() as api:
        api.add("dpl_a", int(time.time() * 1000) - 1_000)
        res = {"vercel": VercelResource(token=TOKEN, project_id="prj_hostile", base_url=api.url),
               "history": HistoryResource(url=history_url)}
        r = tick(instance, res)
    assert [q.partition_key for q in r.run_requests] == ["dpl_a"]
    assert reported(r) == []
    logs = capsys.readouterr().err + caplog.text
    assert "live production not compared this tick" in logs
    assert TOKEN not in logs


# -- the classification alone -------------------------------------------------------------------

KEPT = drift.WentLive("dpl_good", 1_000, "created")


@pytest.mark.parametrize("live, status", [
    (drift.Live("dpl_good", known=True, target="production", decisions=("kept",)), drift.IN_SYNC),
    (drift.Live("dpl_new", target="production", created_ms=2_000), drift.AWAITING),
    (drift.Live("dpl_old", target="production", created_ms=500), drift.NEVER_JUDGED),
    (drift.Live("dpl_slow", known=True, target="production", created_ms=2_000,
                verdict="regressed", decisions=("skipped",)), drift.REGRESSED_LIVE),
    (drift.Live("dpl_pv", known=True, target="preview", created_ms=2_000, verdict="regressed",
                decisions=("promotion_blocked",)), drift.REGRESSED_LIVE),
    (drift.Live("dpl_pv", known=True, target="preview", created_ms=2_000, verdict="held",
                decisions=("promotion_held",)), drift.HELD_LIVE),
    (drift.Live("dpl_pv", known=True, target="preview", created_ms=2_000, verdict="held",
                decisions=("promotion_held", "promotion_rejected")), drift.REJECTED),
    (drift.Live("dpl_pv", known=True, target="preview", created_ms=2_000, verdict="pass",
                decisions=("promotion_awaiting_approval",)), drift.CHANGED),
    (drift.Live("dpl_rb", known=True, target="production", created_ms=2_000, verdict="regressed",
                verdict_at_ms=2_500, rolled_back_at_ms=3_000, decisions=("rolled_back",)),
     drift.ROLLED_BACK),
    # Judged again after its rollback and found healthy: a person's call that held up.
    (drift.Live("dpl_rb", known=True, target="production", created_ms=2_000, verdict="pass",
                verdict_at_ms=4_000, rolled_back_at_ms=3_000,
                decisions=("rolled_back", "skipped")), drift.CHANGED),
])
def test_classify(live, status):
    obs = drift.classify(live, KEPT)
    assert obs.status == status, obs.reason
    assert obs.flagged == (status in drift.FLAGGED)
    assert obs.live_id in obs.reason


def test_classify_without_history_or_production():
    assert drift.classify(drift.Live("dpl_x"), None).status == drift.NO_EXPECTATION
    assert drift.classify(None, KEPT).status == drift.NO_PRODUCTION
    # A rollback after the creation it undoes wins a tie.
    rollback = drift.WentLive("dpl_prev", 1_000, "rollback")
    assert drift.expected([KEPT, rollback]) == rollback


@pytest.mark.parametrize("release, status", [
    (("ACTIVE", "dpl_old", "dpl_good"), drift.ROLLING),
    (("ABORTED", "dpl_old", "dpl_good"), drift.RELEASE_ABORTED),
    # A release that does not explain the pair changes nothing: judged as any difference.
    (("ACTIVE", "dpl_other", "dpl_good"), drift.NEVER_JUDGED),
    (("COMPLETE", "dpl_old", "dpl_good"), drift.NEVER_JUDGED),
    (("ABORTED", "dpl_good", "dpl_old"), drift.NEVER_JUDGED),
])
def test_classify_beside_a_rolling_release(release, status):
    live = drift.Live("dpl_old", target="production", created_ms=500)
    obs = drift.classify(live, KEPT, release)
    assert obs.status == status, obs.reason
    assert obs.flagged == (status == drift.NEVER_JUDGED)


@pytest.mark.parametrize("first_judged, end", [(True, "complete"), (False, "abort")])
def test_a_rolling_release_in_progress_is_not_drift(sandbox, instance, resources, announced,
                                                    receiver, first_judged, end):
    """While a release is under way the old deployment stays live (it has the traffic the canary
    does not); the deployments graph may judge the canary meanwhile. Neither is drift: before
    the fix, this said "changed outside this tool" of a judged old deployment, and flagged (and
    re-benchmarked) one the tool had never judged."""
    st = sandbox.state
    first = st.world.production
    if first_judged:
        assert metadata(run_deployment(instance, resources, first), "rollback")[
            "decision"] == "kept"
    st.configure_rolling([{"targetPercentage": 5}, {"targetPercentage": 100}])
    canary = st.create(target="production").id
    assert st.world.production == first and st.world.rolling_release["state"] == "ACTIVE"

    r1 = tick(instance, announced)
    assert check_state(instance)[0] is True
    # The canary is judged by the deployments graph as any production deployment, and kept.
    assert metadata(run_deployment(instance, resources, canary), "rollback")["decision"] == "kept"
    assert st.world.production == first  # still mid-release: 5% to the canary
    r2 = tick(instance, announced, r1.cursor)
    passed, description, meta = check_state(instance)
    assert passed is True and meta["status"] == drift.ROLLING, description
    assert meta["live"] == first and canary in description
    assert drift_requests(r2) == [] and receiver.got == []

    if end == "complete":  # the canary is live, as expected
        st.complete_rolling(canary)
        status, live = drift.IN_SYNC, canary
    else:  # aborted (Vercel's rollback to the current deployment): the old one stays live
        st.rollback(first)
        status, live = drift.RELEASE_ABORTED, first
    r3 = tick(instance, announced, r2.cursor)
    passed, description, meta = check_state(instance)
    assert passed is True and (meta["status"], meta["live"]) == (status, live), description
    assert drift_requests(r3) == [] and receiver.got == []
