"""Every message a decision sends is one Slack Block Kit message and one PagerDuty Events v2
event that those services accept: checked with slack-sdk's models and a schema written from
PagerDuty's documentation (contracts.py), on what the channels render."""

import pytest
from slack_sdk.errors import SlackObjectFormationError

from atge_assets import notify as nt
from atge_assets.notify.events import limits_alert_event
from atge_assets_tests.notify.contracts import assert_block_kit, assert_events_v2

ROUTING_KEY = "R0UTINGKEYmessages00000000000032"
RUN = {"run_url": "http://127.0.0.1:3000/runs/0f1e2d3c-aaaa", "run_id": "0f1e2d3c-aaaa-bbbb",
       "deployment_url": "https://atge-x.vercel.app"}
SUITE = [  # the default suite at atge up's scale, 1.3x slower; end to end over its limit
    {"metric": "data_collection", "value": 64.1, "baseline": 49.5, "change": 0.295,
     "verdict": "regressed"},
    {"metric": "ai_analysis", "value": 96.0, "baseline": 76.2, "change": 0.26,
     "verdict": "regressed"},
    {"metric": "database_query", "value": 12.9, "baseline": 10.1, "change": 0.277,
     "verdict": "regressed"},
    {"metric": "end_to_end", "value": 201.5, "baseline": 155.0, "change": 0.3,
     "verdict": "regressed", "threshold": 165.0},
]
LIMITS = {"data_collection": 55.0, "ai_analysis": 82.5, "database_query": 11.0,
          "end_to_end": 165.0}


def _events():
    rollback = nt.rollback_event("dpl_slow", "dpl_good", "regressed beyond the threshold: "
                                 "end_to_end +30.0% (201.5 ms vs 155.0 ms) <& more>",
                                 metrics=SUITE, **RUN)
    many = [{"metric": f"metric_{i}", "value": 10.0 * i, "baseline": 9.0 * i, "change": 0.11,
             "verdict": "regressed"} for i in range(1, 16)]
    return {
        "rollback": rollback,
        "rollback, 15 metrics, long reason": nt.rollback_event(
            "dpl_slow", "dpl_good", "x" * 5000, metrics=many, **RUN),
        "hold": nt.held_event("dpl_unsure", "held for a person", metrics=SUITE, **RUN),
        "promotion": nt.promotion_event("dpl_preview", "smoke tests passed", **RUN),
        "run failed": nt.run_failed_event("0f1e2d3c-aaaa-bbbb", "benchmark_deployment",
                                          "boom " * 300, deployment_id="dpl_x",
                                          run_url=RUN["run_url"]),
        "over the limits": limits_alert_event("dpl_slow", SUITE, LIMITS, **RUN),
        "resolution": nt.recovery_event(rollback, "dpl_next is live and healthy",
                                        run_url=RUN["run_url"], run_id=RUN["run_id"]),
        "no links": nt.rollback_event("dpl_bare", "dpl_good"),
    }


@pytest.mark.parametrize("name", list(_events()))
def test_every_message_is_valid_block_kit_and_events_v2(name):
    event = _events()[name]
    assert_block_kit(nt.SlackNotifier("https://hooks.slack.com/services/T/B/x").render(event))
    body = nt.PagerDutyNotifier(ROUTING_KEY).render(event)
    if body is not None:  # PagerDuty carries what pages and what resolves a page, nothing else
        assert_events_v2(body)


def test_a_deployment_over_its_limits_is_one_alert_naming_every_metric():
    alert = limits_alert_event("dpl_slow", SUITE, LIMITS)
    assert [m["metric"] for m in alert.metrics] == [
        "data_collection", "ai_analysis", "database_query", "end_to_end"]
    assert alert.dedup_key == "atge-dpl_slow"  # the deployment's incident, as its rollback's
    assert alert.metrics[3]["threshold"] == 165.0
    assert limits_alert_event("dpl_ok", SUITE, {"end_to_end": 300.0}) is None


def test_a_decision_and_its_resolution_are_one_pagerduty_incident():
    pd = nt.PagerDutyNotifier(ROUTING_KEY)
    rollback = _events()["rollback"]
    trigger, resolve = pd.render(rollback), pd.render(nt.recovery_event(rollback, "healthy"))
    assert trigger["dedup_key"] == resolve["dedup_key"] == "atge-dpl_slow"
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    names = [m["metric"] for m in trigger["payload"]["custom_details"]["metrics"]]
    assert names == [m["metric"] for m in SUITE]


def test_a_decision_names_each_metric_with_its_baseline_and_its_limit():
    msg = nt.SlackNotifier("https://hooks.slack.com/services/T/B/x").render(_events()["rollback"])
    fields = [f["text"] for f in msg["blocks"][1]["fields"]]
    assert "*end_to_end*\n202 ms (limit 165 ms) vs 155 ms (+30.0%) · regressed" in fields
    assert "*database_query*\n13 ms vs 10 ms (+27.7%) · regressed" in fields


# The checks themselves, on planted faults: a check that stopped seeing would pass anything.

@pytest.mark.parametrize("fault", ["long header", "unknown field", "11 fields", "no text"])
def test_the_block_kit_check_refuses_what_slack_refuses(fault):
    msg = nt.SlackNotifier("https://hooks.slack.com/services/T/B/x").render(_events()["rollback"])
    header, section = msg["blocks"][0], msg["blocks"][1]
    if fault == "long header":
        header["text"]["text"] = "x" * 151
    elif fault == "unknown field":
        header["txt"] = "typo"
    elif fault == "11 fields":
        section["fields"] = section["fields"][:1] * 11
    else:
        msg["text"] = ""
    with pytest.raises((AssertionError, SlackObjectFormationError)):
        assert_block_kit(msg)


@pytest.mark.parametrize("fault", ["severity", "resolve without key", "trigger without payload",
                                   "short routing key", "unknown field", "bad timestamp"])
def test_the_events_v2_check_refuses_what_pagerduty_refuses(fault):
    body = nt.PagerDutyNotifier(ROUTING_KEY).render(_events()["rollback"])
    if fault == "severity":
        body["payload"]["severity"] = "fatal"
    elif fault == "resolve without key":
        body = {"routing_key": ROUTING_KEY, "event_action": "resolve"}
    elif fault == "trigger without payload":
        del body["payload"]
    elif fault == "short routing key":
        body["routing_key"] = "rk_test"
    elif fault == "unknown field":
        body["payload"]["sumary"] = "typo"
    else:
        body["payload"]["timestamp"] = "yesterday"
    with pytest.raises(AssertionError, match="not an Events API v2 event"):
        assert_events_v2(body)
