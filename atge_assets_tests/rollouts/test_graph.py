"""Rolling releases end to end against the sandbox: the real sensor, real Dagster
materializations of each stage, real HTTP to the canary, the current deployment and the
production domain, and the sandbox's release moving (or not) as Vercel's would."""

import dagster as dg
import pytest

from atge_assets.deployments.resources import BenchmarkResource
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets.notify.resources import NotifierResource
from atge_assets.rollouts.assets import rolling_releases, rollout_stage
from atge_assets.rollouts.partitions import rollout_partitions
from atge_assets.rollouts.resources import RolloutResource
from atge_assets.rollouts.sensors import build_rollout_sensor
from atge_assets.sandbox.server import CANARY_HEADER
from atge_assets_tests.conftest import TOKEN, json_receiver
from atge_assets_tests.deployments.helpers import metadata

STAGES = [{"targetPercentage": 5}, {"targetPercentage": 25}, {"targetPercentage": 100}]


@pytest.fixture
def slack():
    with json_receiver() as receiver:
        yield receiver


def said(slack, canary) -> list[str]:
    return [g["json"]["text"] for g in slack.got if canary in g["json"].get("text", "")]


@pytest.fixture
def rollout_resources(sandbox, history_url, slack):
    return {
        "notifier": NotifierResource(slack_webhook_url=slack.url + "/s"),
        "history": HistoryResource(url=history_url),
        "vercel": VercelResource(token=TOKEN, project_id=sandbox.state.world.project_id,
                                 base_url=sandbox.base_url),
        "benchmark": BenchmarkResource(samples=12, warmup=1, baseline_scale=0.005),
        "rollout": RolloutResource(production_url=f"{sandbox.base_url}/p",
                                   canary_header=CANARY_HEADER, traffic_samples=40),
    }


def tick(instance, resources):
    sensor = build_rollout_sensor(interval_s=1)
    result = sensor(dg.build_sensor_context(instance=instance,
                                            resources={"vercel": resources["vercel"]}))
    if isinstance(result, dg.SensorResult):
        for req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result


def judge(instance, resources, canary, config=None):
    if not instance.has_dynamic_partition(rollout_partitions.name, canary):
        instance.add_dynamic_partitions(rollout_partitions.name, [canary])
    return dg.materialize([rollout_stage], partition_key=canary, resources=resources,
                          instance=instance,
                          run_config={"ops": {"rollout_stage": {"config": config}}} if config
                          else None)


def requested(result) -> list[str]:
    return [r.run_key for r in result.run_requests] if isinstance(result, dg.SensorResult) else []


def test_a_healthy_canary_is_approved_stage_by_stage_until_complete(
        sandbox, instance, rollout_resources, slack):
    st = sandbox.state
    assert "no rolling release" in tick(instance, rollout_resources).skip_message
    st.configure_rolling(STAGES, canary_header=True)
    first = st.world.production
    canary = st.create(target="production").id
    assert st.world.production == first  # a release is under way: the canary only gets 5%

    assert requested(tick(instance, rollout_resources)) == [f"{canary}:stage-0"]
    md = metadata(judge(instance, rollout_resources, canary), "rollout_stage")
    assert md["verdict"] in ("pass", "improved"), md["reason"]
    assert (md["stage"], md["target_pct"], md["decision"]) == (0, 5.0, "approved")
    assert md["current"] == first and "on to stage 1 (25%)" in md["reason"]
    # 40 new visitors at 5%: the canary answered a few of them, never most.
    assert 0 <= md["observed_canary_pct"] < 30 and "of 40 requests" in md["traffic"]
    rows = {r.data["metric"]: r.data for r in md["comparison"].records}
    assert rows["end_to_end"]["current_ms"] > 0 and abs(rows["end_to_end"]["change_pct"]) < 15
    assert st.world.rolling_release["stage"] == 1

    assert requested(tick(instance, rollout_resources)) == [f"{canary}:stage-1"]
    md = metadata(judge(instance, rollout_resources, canary), "rollout_stage")
    assert (md["stage"], md["target_pct"], md["decision"]) == (1, 25.0, "completed"), md["reason"]
    assert st.world.rolling_release["state"] == "COMPLETE" and st.world.production == canary
    assert "COMPLETE" in tick(instance, rollout_resources).skip_message
    assert st.status()["rollbacks"] == []

    table = metadata(dg.materialize([rolling_releases], instance=instance), "rolling_releases")
    stages = [(r.data["stage"], r.data["decision"]) for r in table["stages"].records]
    assert stages == [("1", "completed"), ("0", "approved")]
    assert table["judged_stages"] == 2 and table["approved_count"] == 1
    assert said(slack, canary) == []  # approvals and completions are routine: not announced


def test_a_canary_30_percent_slower_is_aborted_at_its_first_stage(
        sandbox, instance, rollout_resources, slack):
    st = sandbox.state
    st.configure_rolling(STAGES, canary_header=True)
    first = st.world.production
    slow = st.create(target="production", slowdown=1.3).id

    assert requested(tick(instance, rollout_resources)) == [f"{slow}:stage-0"]
    md = metadata(judge(instance, rollout_resources, slow), "rollout_stage")
    assert md["verdict"] == "regressed" and md["decision"] == "aborted", md["reason"]
    assert md["reason"] == f"the canary regressed at stage 0 (5%): rolled back to {first}"
    rows = {r.data["metric"]: r.data for r in md["comparison"].records}
    assert rows["end_to_end"]["verdict"] == "regressed"
    assert 15 < rows["end_to_end"]["change_pct"] < 50
    assert st.world.rolling_release["state"] == "ABORTED" and st.world.production == first
    assert [(e["from"], e["to"]) for e in st.status()["rollbacks"]] == [(slow, first)]
    # Aborted: nothing waits, and judging the stage again does nothing twice.
    assert "ABORTED" in tick(instance, rollout_resources).skip_message
    again = metadata(judge(instance, rollout_resources, slow), "rollout_stage")
    assert again["decision"] == "skipped" and len(st.status()["rollbacks"]) == 1
    # One message for the decision, with the numbers behind it.
    (text,) = said(slack, slow)
    assert f"Rolling release of {slow} aborted at stage 0 (5%)" in text
    assert f"traffic back to {first}" in text and "end_to_end" in text


def test_a_held_stage_is_announced_once_and_a_person_decides(sandbox, instance,
                                                             rollout_resources, slack):
    """Three samples a side and no more: the judge cannot decide, so the stage is held."""
    st = sandbox.state
    st.configure_rolling(STAGES)
    canary = st.create(target="production").id
    tiny = dict(rollout_resources, benchmark=BenchmarkResource(
        samples=3, max_samples=3, warmup=0, baseline_scale=0.005))
    md = metadata(judge(instance, tiny, canary), "rollout_stage")
    assert (md["verdict"], md["decision"]) == ("held", "held"), md["reason"]
    assert st.world.rolling_release["stage"] == 0 and "slack: sent" in md["notifications"]
    again = metadata(judge(instance, tiny, canary), "rollout_stage")
    assert again["decision"] == "held" and "slack: duplicate" in again["notifications"]
    (text,) = said(slack, canary)
    assert f"Rolling release of {canary} held at stage 0 (5%)" in text
    md = metadata(judge(instance, tiny, canary, {"decision": "abort", "by": "ana"}),
                  "rollout_stage")
    assert md["decision"] == "aborted" and md["reason"].startswith("aborted by ana")
    assert len(said(slack, canary)) == 2 and "aborted at stage 0" in said(slack, canary)[1]


def test_a_person_decides_a_stage_without_measuring(sandbox, instance, rollout_resources):
    st = sandbox.state
    st.configure_rolling(STAGES)
    canary = st.create(target="production").id
    md = metadata(judge(instance, rollout_resources, canary,
                        {"decision": "approve", "by": "ana"}), "rollout_stage")
    assert (md["decision"], md["samples"]) == ("approved", 0)
    assert md["reason"] == "approved by ana: on to stage 1 (25%)"
    md = metadata(judge(instance, rollout_resources, canary, {"decision": "abort"}),
                  "rollout_stage")
    assert md["decision"] == "aborted" and st.world.rolling_release["state"] == "ABORTED"
    with pytest.raises(dg.Failure, match="decision must be one of approve, abort"):
        judge(instance, rollout_resources, canary, {"decision": "maybe"})


def test_dry_run_records_what_it_would_do(sandbox, instance, rollout_resources):
    st = sandbox.state
    st.configure_rolling(STAGES)
    canary = st.create(target="production").id
    resources = dict(rollout_resources, rollout=RolloutResource(dry_run=True))
    md = metadata(judge(instance, resources, canary, {"decision": "abort"}), "rollout_stage")
    assert md["decision"] == "would_abort"
    assert st.world.rolling_release["state"] == "ACTIVE" and not st.status()["rollbacks"]


def test_a_building_canary_waits(sandbox, instance, rollout_resources):
    sandbox.state.configure_rolling(STAGES)
    canary = sandbox.state.create(target="production", build_s=600).id
    assert tick(instance, rollout_resources).skip_message == (
        f"canary {canary} is BUILDING, not READY yet")
