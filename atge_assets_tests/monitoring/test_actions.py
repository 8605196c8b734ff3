"""The action policy (cooldown per action and metric, cap per hour, dry run), the healer's records,
the acting provider's client against the sandbox, and the alert event."""

import httpx
import pytest

from atge_assets import notify
from atge_assets.lib.http import HostNotAllowed
from atge_assets.monitoring import actions as act

NOW = 1_790_000_000.0
FORECAST = {"status": "breach_expected", "method": "holt", "level": 72.0, "slope_per_minute": 0.5,
            "minutes_to_threshold": 16.0, "minutes_to_threshold_low": 9.0,
            "minutes_to_threshold_high": 25.0, "forecast": 87.0, "interval_low": 80.5,
            "interval_high": 93.5, "threshold": 80.0, "direction": "above",
            "horizon_minutes": 30.0, "n_points": 60, "breach_expected": True,
            "breached_now": False, "alert": True, "reasons": ["..."]}


def rec(ago, metric="cpu", action="scale", outcome="done", target="production"):
    return {"id": int(ago), "created_at": NOW - ago, "target": target, "metric": metric,
            "action": action, "outcome": outcome}


def decide(policy, history, metric="cpu", action="scale"):
    return policy.decide(target="production", metric=metric, action=action, now=NOW,
                         history=history)


def test_cooldown_is_per_action_and_metric():
    policy = act.ActionPolicy(cooldown_s={"scale": 600}, cap_per_hour={"scale": 10})
    d = decide(policy, [rec(300)])
    assert d.outcome == act.COOLDOWN and not d.act and "next allowed at" in d.reason
    assert decide(policy, [rec(601)]).outcome == act.EXECUTE
    assert decide(policy, [rec(300, metric="queue_depth")]).outcome == act.EXECUTE
    assert decide(policy, [rec(300, action="restart")]).outcome == act.EXECUTE
    assert decide(policy, [rec(300, target="dpl_other")]).outcome == act.EXECUTE
    # Held-back records are not actions: they start no cooldown.
    assert decide(policy, [rec(300, outcome=act.COOLDOWN)]).outcome == act.EXECUTE
    # A failed call is tried again sooner than a cooldown: the breach is still coming.
    assert decide(policy, [rec(130, outcome=act.FAILED)]).outcome == act.EXECUTE
    assert decide(policy, [rec(100, outcome=act.FAILED)]).outcome == act.COOLDOWN


def test_cap_per_hour_counts_every_metric_and_only_the_last_hour():
    policy = act.ActionPolicy(cooldown_s={"scale": 0}, cap_per_hour={"scale": 2})
    two = [rec(100, metric="cpu"), rec(200, metric="queue_depth")]
    d = decide(policy, two, metric="response_time_p95")
    assert d.outcome == act.CAPPED and "2 scale action(s)" in d.reason and "cap is 2" in d.reason
    assert decide(policy, [rec(100), rec(3700)]).outcome == act.EXECUTE
    # A dry run counts as the live action would: its record shows the cap as live would hit it.
    assert decide(policy, [rec(100, outcome=act.DRY_RUN)] * 2).outcome == act.CAPPED


def test_dry_run_decides_like_live_but_says_so():
    policy = act.ActionPolicy(dry_run=True)
    assert decide(policy, []).outcome == act.DRY_RUN
    assert decide(policy, [rec(10, outcome=act.DRY_RUN)]).outcome == act.COOLDOWN


def test_bad_policy_values_are_refused():
    with pytest.raises(ValueError, match="cooldown of 'scale'"):
        act.ActionPolicy(cooldown_s={"scale": -1})
    with pytest.raises(ValueError, match="cap per hour of 'alert'"):
        act.ActionPolicy(cap_per_hour={"alert": "many"})


class MemoryRecorder:
    def __init__(self):
        self.rows = []

    def healing_actions(self, *, target=None, since=None, limit=None):
        rows = [r for r in self.rows if (target is None or r["target"] == target)
                and (since is None or r["created_at"] >= since)]
        return sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)[:limit]

    def record_healing_action(self, **fields):
        self.rows.append(dict(fields, id=len(self.rows) + 1))
        return len(self.rows)

    def finish_healing_action(self, action_id, outcome, detail):
        self.rows[action_id - 1].update(outcome=outcome, detail=detail)


def healer(policy=None, performers=None):
    calls = []

    def scale(req):
        calls.append(req)
        return "scaled"

    recorder = MemoryRecorder()
    performers = {"scale": scale} if performers is None else performers
    return act.Healer(policy or act.ActionPolicy(), recorder, performers,
                      params={"scale": {"factor": 2}}), recorder, calls


def handle(h, now=NOW, action="scale", metric="cpu"):
    return h.handle(target="production", metric=metric, action=action, forecast=FORECAST,
                    reason="cpu forecast to cross 80", now=now, evaluation="run abc")


def test_healer_records_then_acts_and_keeps_the_why():
    h, recorder, calls = healer()
    record = handle(h)
    assert record["outcome"] == act.DONE and record["detail"] == "scaled"
    [req] = calls
    assert (req.target, req.metric, req.action, req.params) == ("production", "cpu", "scale",
                                                                {"factor": 2})
    assert req.record_id == record["id"] and req.forecast is FORECAST
    [row] = recorder.rows
    assert row["outcome"] == act.DONE and row["reason"] == "cpu forecast to cross 80"
    assert '"minutes_to_threshold": 16.0' in row["forecast"] and row["evaluation"] == "run abc"
    assert '"reasons"' not in row["forecast"]  # the summary, not the whole forecast


def test_cooldown_is_recorded_once_per_stretch_not_every_minute():
    h, recorder, calls = healer()
    handle(h)
    held = handle(h, now=NOW + 60)
    assert held["outcome"] == act.COOLDOWN and "cooldown" in held["detail"]
    assert handle(h, now=NOW + 120) is None and handle(h, now=NOW + 180) is None
    assert len(calls) == 1 and [r["outcome"] for r in recorder.rows] == ["done", "cooldown"]
    again = handle(h, now=NOW + 601)
    assert again["outcome"] == act.DONE and len(calls) == 2


def test_a_failing_provider_is_recorded_not_raised():
    def broken(req):
        raise act.ActionError("scale at sandbox: HTTP 503: busy")

    h, recorder, _ = healer(performers={"scale": broken})
    record = handle(h)
    assert record["outcome"] == act.FAILED and "HTTP 503: busy" in record["detail"]
    assert recorder.rows[0]["outcome"] == act.FAILED


def test_dry_run_records_and_calls_nothing():
    h, recorder, calls = healer(policy=act.ActionPolicy(dry_run=True))
    record = handle(h)
    assert record["outcome"] == act.DRY_RUN and record["dry_run"] is True and calls == []
    assert handle(h, now=NOW + 60)["outcome"] == act.COOLDOWN and calls == []


def test_an_action_nobody_can_perform_is_recorded_as_unsupported_once():
    h, recorder, _ = healer()
    first = handle(h, action="restart", metric="memory")
    assert first["outcome"] == act.UNSUPPORTED
    assert handle(h, now=NOW + 60, action="restart", metric="memory") is None


def test_why_says_when_and_how_sure():
    text = act.why("cpu", FORECAST, 2, "%")
    assert "cpu forecast to go above 80% in 16 min (9 to 25 min)" in text
    assert "holt level 72%" in text and "+0.5%/min" in text and "2 consecutive" in text
    breached = act.why("cpu", dict(FORECAST, breached_now=True, level=84.0), 3, "%")
    assert breached.startswith("cpu is already above 80%: recent median 84%")


def test_alert_event_is_one_incident_per_metric_and_one_message_per_record():
    e1 = act.alert_event("production", "error_rate", dict(FORECAST, threshold=5.0,
                                                          interval_high=7.0), "why", 11, "%")
    e2 = act.alert_event("production", "error_rate", dict(FORECAST, threshold=5.0,
                                                          interval_high=7.0), "why", 12, "%")
    assert e1.kind == notify.PERF_ALERT and e1.dedup_key == e2.dedup_key == \
        "atge-production-error_rate"
    assert e1.idempotency_key != e2.idempotency_key
    assert e1.title == "error_rate forecast to cross 5% on production in ~16 min"
    assert e1.reason == "why" and e1.metrics[0]["threshold"] == 5.0
    assert e1.metrics[0]["unit"] == "%"  # so the channels show 7%, not 7 ms
    # A metric that breaches by falling is not perf_alert_events' kind; it is built directly.
    low = act.alert_event("production", "free_memory", dict(FORECAST, direction="below",
                                                            threshold=10.0, interval_low=4.0),
                          "why", 13)
    assert low.kind == notify.PERF_ALERT and low.metrics[0]["value"] == 4.0


def test_alert_performer_reports_what_the_channels_did():
    req = act.ActionRequest("production", "error_rate", "alert", {}, "why", 1,
                            dict(FORECAST, threshold=5.0, interval_high=7.0))
    assert "recorded only" in act.alert_performer(lambda e: [])(req)
    ok = notify.DeliveryResult("webhook", "k", notify.SENT, attempts=1, http_status=200)
    assert "webhook: sent" in act.alert_performer(lambda e: [ok])(req)
    bad = notify.DeliveryResult("slack", "k", notify.FAILED, detail="HTTP 500")
    with pytest.raises(act.ActionError, match="no channel delivered"):
        act.alert_performer(lambda e: [bad])(req)


def test_actions_client_against_the_sandbox(sandbox):
    client = act.HttpActionsClient(sandbox.base_url, allowed_hosts=["127.0.0.1"])
    out = client.perform("scale", "production", {"factor": 2, "max_replicas": 2}, "because")
    assert out["replicas"] == 2
    req = act.ActionRequest("production", "cpu", "scale", {"factor": 2, "max_replicas": 2},
                            "because", 1, FORECAST)
    with pytest.raises(act.ActionError, match="HTTP 409: production already runs 2 replicas"):
        client.performer(req)
    assert "restart done by 127.0.0.1" in client.performer(
        act.ActionRequest("production", "memory", "restart", {}, "leak", 2, FORECAST))
    with pytest.raises(act.ActionError, match="cannot 'alert'"):
        client.perform("alert", "production")
    done = httpx.get(sandbox.base_url + "/_sandbox/metrics/actions").json()["actions"]
    assert [(a["action"], a["reason"]) for a in done] == [("scale", "because"),
                                                         ("restart", "leak")]
    with pytest.raises(HostNotAllowed):
        act.HttpActionsClient("http://10.0.0.8:8080", allowed_hosts=["127.0.0.1"])
