"""The release gate end to end on the sandbox: smoke checks, promotion, notifications."""

import json

import dagster as dg
import pytest

from atge_assets.deployments.assets import promotion
from atge_assets.deployments.resources import ReleasePolicyResource
from atge_assets.notify.resources import NotifierResource
from atge_assets_tests.conftest import json_receiver
from atge_assets_tests.deployments.helpers import GRAPH, metadata

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
    rb = metadata(r, "rollback")
    assert rb["decision"] == "rolled_back" and "smoke tests failed: health" in rb["reason"]
    assert sandbox.state.world.production == first


def test_rollback_is_announced_on_slack_and_pagerduty(sandbox, instance, resources, receiver):
    res = dict(resources, notifier=NotifierResource(
        slack_webhook_url=receiver.url + "/slack", pagerduty_routing_key="rk_test",
        pagerduty_events_url=receiver.url + "/pd", dagster_url="http://ui.example"))
    first = sandbox.state.world.production
    run(instance, res, first)
    slow = sandbox.state.create(target="production", slowdown=1.4).id
    r = run(instance, res, slow)
    assert metadata(r, "rollback")["decision"] == "rolled_back"
    slack = [g["json"] for g in receiver.got if g["path"] == "/slack"]
    pd = [g["json"] for g in receiver.got if g["path"] == "/pd"]
    assert len([m for m in slack if slow in m["text"] and "olled back" in m["text"]]) == 1
    assert any(b.get("type") == "header" for b in slack[-1]["blocks"])
    assert "http://ui.example/runs/" in json.dumps(slack[-1])
    trig = [p for p in pd if p["event_action"] == "trigger" and p["dedup_key"] == f"atge-{slow}"]
    assert len(trig) == 1 and trig[0]["payload"]["severity"] == "critical"
    # The plan's quick win: each metric above its absolute limit pages on its own key.
    alerts = {p["dedup_key"] for p in pd if p["event_action"] == "trigger"} - {f"atge-{slow}"}
    assert f"atge-{slow}-end_to_end" in alerts
    # Those are about a live deployment: rolled back, it no longer is, so they resolve at once.
    resolved = [p["dedup_key"] for p in pd if p["event_action"] == "resolve"]
    assert sorted(resolved) == sorted(alerts)
    # A rerun of the rollback sends nothing more.
    run(instance, res, slow, selection=[GRAPH[4]])
    assert len([g for g in receiver.got if g["path"] == "/slack" and slow in
                g["json"]["text"] and "olled back" in g["json"]["text"]]) == 1
    # The next healthy production deployment resolves the page.
    healthy = sandbox.state.create(target="production").id
    run(instance, res, healthy)
    resolves = [g["json"] for g in receiver.got if g["path"] == "/pd"
                and g["json"]["event_action"] == "resolve"]
    assert [p["dedup_key"] for p in resolves] == resolved + [trig[0]["dedup_key"]]


def test_a_failing_channel_never_blocks_the_rollback(sandbox, instance, resources):
    res = dict(resources, notifier=NotifierResource(slack_webhook_url="http://127.0.0.1:9/x"))
    run(instance, res, sandbox.state.world.production)
    slow = sandbox.state.create(target="production", slowdown=1.4).id
    r = run(instance, res, slow)
    md = metadata(r, "rollback")
    assert md["decision"] == "rolled_back" and "failed" in md["notifications"]
