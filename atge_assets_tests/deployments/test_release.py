"""The release gate end to end on the sandbox: smoke checks, promotion, notifications."""

import dataclasses
import json

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter

from atge_assets.deployments.assets import promotion, rollback
from atge_assets.deployments.resources import BenchmarkResource, ReleasePolicyResource
from atge_assets.deployments.suite import DEFAULT_SUITE, metrics_to_json
from atge_assets.lib.providers.base import Deployment
from atge_assets.notify.resources import NotifierResource
from atge_assets_tests.conftest import json_receiver
from atge_assets_tests.deployments.helpers import GRAPH, metadata
from atge_assets_tests.notify.contracts import assert_block_kit, assert_events_v2

SENSOR_TAGS = {"dagster/sensor_name": "deployment_sensor"}


@pytest.fixture
def receiver():
    """Records what notifiers post (Slack, PagerDuty alike)."""
    with json_receiver() as srv:
        yield srv


def run(instance, resources, dep_id, tags=None, selection=GRAPH):
    if not instance.has_dynamic_partition("deployments", dep_id):
        instance.add_dynamic_partitions("deployments", [dep_id])
    return dg.materialize(selection, partition_key=dep_id, resources=resources,
                          instance=instance, tags=tags or SENSOR_TAGS)


def checks(result):
    evals = result.get_asset_check_evaluations()
    return {e.check_name: e.passed for e in evals}


def latest_check(instance, name, partition):
    """(passed, severity) of the newest result of smoke check `name` on one partition."""
    key = dg.AssetCheckKey(dg.AssetKey("smoke_tests"), name)
    rec = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [key], partition_filter=PartitionKeyFilter(key=partition))[key]
    ev = rec.event.dagster_event.asset_check_evaluation_data
    assert ev.partition == partition
    return ev.passed, ev.severity.value


def test_healthy_preview_is_smoke_tested_and_promoted_once(sandbox, instance, resources, store):
    run(instance, resources, sandbox.state.world.production)
    preview = sandbox.state.create(target="preview").id
    r = run(instance, resources, preview)
    assert checks(r) == {"smoke_health": True, "smoke_analyze": True, "smoke_trade_history": True}
    assert metadata(r, "promotion")["decision"] == "promoted"
    assert sandbox.state.world.production == preview
    again = run(instance, resources, preview, selection=[promotion])
    assert metadata(again, "promotion")["decision"] == "skipped"
    assert len(sandbox.state.status()["promotions"]) == 1


def test_failing_preview_is_blocked(sandbox, instance, resources, store):
    first = sandbox.state.world.production
    run(instance, resources, first)
    broken = sandbox.state.create(target="preview", errors=1.0).id
    r = run(instance, resources, broken)
    assert checks(r) == {"smoke_health": True, "smoke_analyze": False,
                         "smoke_trade_history": False}
    md = metadata(r, "promotion")
    assert md["decision"] == "blocked" and "smoke tests failed" in md["reason"]
    assert sandbox.state.world.production == first
    assert "promotion_blocked" in [d["decision"] for d in store.decisions_for(broken)]
    # Each result is recorded on its deployment's partition: the next deployment's pass does
    # not hide this failure, and a preview's failure is a warning (production is unaffected).
    healthy = sandbox.state.create(target="preview").id
    assert all(checks(run(instance, resources, healthy)).values())
    assert latest_check(instance, "smoke_analyze", broken) == (False, "WARN")
    assert latest_check(instance, "smoke_analyze", healthy) == (True, "WARN")
    assert latest_check(instance, "smoke_health", broken) == (True, "WARN")


def test_manual_promotion_when_auto_is_off(sandbox, instance, resources):
    res = dict(resources, policy=ReleasePolicyResource(auto_promote=False))
    first = sandbox.state.world.production
    run(instance, res, first)
    preview = sandbox.state.create(target="preview").id
    r = run(instance, res, preview)
    assert metadata(r, "promotion")["decision"] == "awaiting_approval"
    assert sandbox.state.world.production == first
    # Launching `promotion` from the UI is not an approval by itself (anyone who reaches the
    # webserver can launch a run) ...
    m = run(instance, res, preview, tags={"origin": "ui"}, selection=[promotion])
    assert metadata(m, "promotion")["decision"] == "awaiting_approval"
    assert "{decision: accept, by: <you>}" in metadata(m, "promotion")["reason"]
    # ... an explicit decision in its config is, and who made it is recorded.
    ok = dg.materialize([promotion], partition_key=preview, resources=res, instance=instance,
                        run_config={"ops": {"promotion": {"config": {"decision": "accept",
                                                                      "by": "erin"}}}})
    assert metadata(ok, "promotion")["decision"] == "promoted"
    assert metadata(ok, "promotion")["reason"] == "approved by erin"
    assert sandbox.state.world.production == preview


def test_failed_smoke_on_production_rolls_back(sandbox, instance, resources, store):
    first = sandbox.state.world.production
    run(instance, resources, first)
    bad = sandbox.state.create(target="production").id
    smoke = json.dumps([{"name": "health", "path": "/api/health",
                         "expect_keys": ["database"], "max_ms": 2000}])
    r = run(instance, dict(resources, policy=ReleasePolicyResource(smoke_json=smoke)), bad)
    assert checks(r)["smoke_health"] is False
    # Live production failing is what a red node means.
    assert latest_check(instance, "smoke_health", bad) == (False, "ERROR")
    assert latest_check(instance, "smoke_health", first) == (True, "WARN")
    rb = metadata(r, "rollback")
    assert rb["decision"] == "rolled_back" and "smoke tests failed: health" in rb["reason"]
    assert sandbox.state.world.production == first


@dg.op
def _provider_timed_out():
    raise RuntimeError("the provider timed out")


def test_a_rollback_does_not_wait_for_a_verdict_no_run_will_give(sandbox, instance, resources,
                                                                 store):
    first = sandbox.state.world.production
    run(instance, resources, first)
    # A production deployment whose run recorded it, then failed for good (this instance does not
    # retry runs): no verdict will come. Waiting on it held every later rollback 5 minutes.
    orphan = sandbox.state.create(target="production")
    store.upsert_deployment(Deployment(orphan.id, "https://orphan.example", "READY", "production",
                                       orphan.created_ms))
    dg.GraphDefinition(name="benchmark_deployment", node_defs=[_provider_timed_out]).to_job() \
        .execute_in_process(instance=instance, raise_on_error=False,
                            tags={"dagster/partition": orphan.id})
    slow = sandbox.state.create(target="production", slowdown=1.6).id
    r = run(instance, resources, slow)
    assert metadata(r, "rollback")["decision"] == "rolled_back"
    assert sandbox.state.world.production == first
    assert not [e for e in r.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_one_regressed_deployment_is_one_message_and_one_incident(sandbox, instance, resources,
                                                                   receiver):
    res = dict(resources, notifier=NotifierResource(
        slack_webhook_url=receiver.url + "/slack", pagerduty_routing_key=ROUTING_KEY,
        pagerduty_events_url=receiver.url + "/pd", dagster_url="http://ui.example"))
    first = sandbox.state.world.production
    run(instance, res, first)
    receiver.got.clear()
    slow = sandbox.state.create(target="production", slowdown=1.6).id
    r = run(instance, res, slow)
    assert metadata(r, "rollback")["decision"] == "rolled_back"
    slack, pd = _sent(receiver, "/slack"), _sent(receiver, "/pd")
    # One Slack message, the rollback, naming every metric of the suite; the ones above their
    # absolute limit (at 1.6x of the sandbox's 24 s, end-to-end at least) say so in it.
    (msg,) = slack
    assert slow in msg["text"] and "olled back" in msg["text"]
    fields = " ".join(f["text"] for b in msg["blocks"] for f in b.get("fields", []))
    for metric in ("data_collection", "ai_analysis", "database_query", "end_to_end"):
        assert f"*{metric}*" in fields
    assert "limit" in next(f["text"] for f in msg["blocks"][1]["fields"]
                           if f["text"].startswith("*end_to_end*"))
    assert "http://ui.example/runs/" in json.dumps(msg)
    # One PagerDuty incident: the decision's, critical.
    (trig,) = pd
    assert trig["event_action"] == "trigger" and trig["dedup_key"] == f"atge-{slow}"
    assert trig["payload"]["severity"] == "critical"
    # A rerun of the rollback sends nothing more.
    run(instance, res, slow, selection=[GRAPH[4]])
    assert len(receiver.got) == 2
    # The next healthy production deployment resolves it: one follow-up, one resolve.
    healthy = sandbox.state.create(target="production").id
    run(instance, res, healthy)
    (follow_up,) = _sent(receiver, "/slack")[1:]
    assert "Recovered" in follow_up["text"] and slow in follow_up["text"]
    assert _sent(receiver, "/pd")[1:] == [{"routing_key": ROUTING_KEY, "event_action": "resolve",
                                           "dedup_key": f"atge-{slow}"}]
    # ...and a later one does not resolve it again.
    run(instance, res, sandbox.state.create(target="production").id)
    assert len(receiver.got) == 4
    for m in _sent(receiver, "/slack"):
        assert_block_kit(m)
    for p in _sent(receiver, "/pd"):
        assert_events_v2(p)


def _channels(receiver):
    return NotifierResource(slack_webhook_url=receiver.url + "/slack",
                            pagerduty_routing_key=ROUTING_KEY,
                            pagerduty_events_url=receiver.url + "/pd")


# Three samples a side and no more: too few for the rank test, so held at its only look.
TINY = BenchmarkResource(samples=3, max_samples=3, warmup=0, baseline_scale=0.005)


def test_a_hold_is_one_incident_that_the_persons_acceptance_resolves(sandbox, instance,
                                                                      resources, receiver):
    res = dict(resources, notifier=_channels(receiver))
    run(instance, res, sandbox.state.world.production)
    receiver.got.clear()
    tiny = dict(res, benchmark=TINY)
    held = sandbox.state.create(target="production").id
    assert metadata(run(instance, tiny, held), "rollback")["decision"] == "held"
    (asked,) = _sent(receiver, "/slack")
    assert "held" in asked["text"]
    (page,) = _sent(receiver, "/pd")
    assert (page["event_action"], page["dedup_key"]) == ("trigger", f"atge-{held}")
    dg.materialize([rollback], partition_key=held, resources=res, instance=instance,
                   run_config={"ops": {"rollback": {"config": {"decision": "accept",
                                                               "by": "alice"}}}})
    (answer,) = _sent(receiver, "/slack")[1:]
    assert "Recovered" in answer["text"] and held in answer["text"]
    assert "accepted by alice" in json.dumps(answer["blocks"])
    assert _sent(receiver, "/pd")[1:] == [{"routing_key": ROUTING_KEY, "event_action": "resolve",
                                           "dedup_key": f"atge-{held}"}]
    for m in _sent(receiver, "/slack"):
        assert_block_kit(m)
    for p in _sent(receiver, "/pd"):
        assert_events_v2(p)


ROUTING_KEY = "R0UTINGKEYtest000000000000000032"  # PagerDuty's keys are 32 characters


def _sent(receiver, path: str) -> list[dict]:
    return [g["json"] for g in receiver.got if g["path"] == path]


def test_a_failing_channel_never_blocks_the_rollback(sandbox, instance, resources):
    res = dict(resources, notifier=NotifierResource(slack_webhook_url="http://127.0.0.1:9/x"))
    run(instance, res, sandbox.state.world.production)
    slow = sandbox.state.create(target="production", slowdown=1.4).id
    r = run(instance, res, slow)
    md = metadata(r, "rollback")
    assert md["decision"] == "rolled_back" and "failed" in md["notifications"]


def test_a_preview_promoted_above_its_limits_is_one_message(sandbox, instance, resources,
                                                            receiver):
    res = dict(resources, notifier=_channels(receiver))
    run(instance, res, sandbox.state.world.production)
    receiver.got.clear()
    # A plan whose end-to-end limit (15 s x 1.1, scaled) is below what the sandbox serves (24 s):
    # no slower than production, so promoted, and above its absolute limit.
    strict = metrics_to_json(tuple(dataclasses.replace(m, baseline_ms=15_000)
                                   if m.name == "end_to_end" else m for m in DEFAULT_SUITE))
    res = dict(res, benchmark=BenchmarkResource(samples=12, warmup=1, baseline_scale=0.005,
                                                suite_json=strict))
    preview = sandbox.state.create(target="preview").id
    r = run(instance, res, preview)
    assert metadata(r, "baseline_comparison")["over_limit"] == "end_to_end"
    assert metadata(r, "promotion")["decision"] == "promoted"
    # One message for the one decision: the promotion, saying which metric is above its limit
    # and naming the others; it pages (on the deployment's incident) as the alert did.
    (msg,) = _sent(receiver, "/slack")
    assert msg["text"].startswith(f":warning: Promoted {preview}: end_to_end above its limit")
    fields = " ".join(f["text"] for b in msg["blocks"] for f in b.get("fields", []))
    assert "*data_collection*" in fields and "(limit " in fields
    (page,) = _sent(receiver, "/pd")
    assert (page["event_action"], page["dedup_key"]) == ("trigger", f"atge-{preview}")
    assert_block_kit(msg)
    assert_events_v2(page)


def test_accepting_a_held_preview_resolves_its_incident(sandbox, instance, resources, receiver):
    res = dict(resources, notifier=_channels(receiver))
    run(instance, res, sandbox.state.world.production)
    receiver.got.clear()
    tiny = dict(res, benchmark=TINY)
    preview = sandbox.state.create(target="preview").id
    assert metadata(run(instance, tiny, preview), "promotion")["decision"] == "held"
    (page,) = _sent(receiver, "/pd")
    assert (page["event_action"], page["dedup_key"]) == ("trigger", f"atge-{preview}")
    ok = dg.materialize([promotion], partition_key=preview, resources=res, instance=instance,
                        run_config={"ops": {"promotion": {"config": {"decision": "accept",
                                                                      "by": "carol"}}}})
    assert metadata(ok, "promotion")["decision"] == "promoted"
    # The person's decision is one follow-up on the hold's incident, saying what it did.
    (asked, answer) = _sent(receiver, "/slack")
    assert "held" in asked["text"]
    assert "Recovered" in answer["text"] and "accepted: promoted to production" in answer["text"]
    assert "approved by carol after being held" in json.dumps(answer["blocks"])
    assert _sent(receiver, "/pd")[1:] == [{"routing_key": ROUTING_KEY, "event_action": "resolve",
                                           "dedup_key": f"atge-{preview}"}]
    assert_block_kit(answer)
