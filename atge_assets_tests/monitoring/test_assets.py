"""Predictive monitoring and self-healing against the real sandbox, store and Dagster instance:
a ramp is caught and acted on before it crosses, a spiky flat metric is left alone, cooldowns,
caps and dry runs hold, alerts reach the notifiers, and bad sources fail clearly."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import numpy as np
import pytest

from atge_assets.monitoring import actions as act
from atge_assets.monitoring.assets import metric_forecasts
from atge_assets.monitoring.definitions import monitoring_resource
from atge_assets.monitoring.sensors import (
    NO_PROVIDER,
    build_self_healing_sensor,
    build_system_metrics_sensor,
)
from atge_assets.monitoring.streaks import parse_cursor
from atge_assets.notify.resources import NotifierResource
from atge_assets.settings import Settings, SettingsError
from atge_assets_tests.monitoring.helpers import (
    T,
    evaluate,
    metadata,
    resources,
    sandbox_actions,
    scenario,
    skip_message,
    tick,
)
from atge_assets_tests.monitoring.test_forecast import NOW, humps

CPU_RAMP = dict(metric="cpu", kind="ramp", base=50, slope_per_min=0.5, start=T - 2400)


def healing_events(result):
    return [e for e in (result.asset_events or []) if e.asset_key == dg.AssetKey("healing_actions")]


def test_ramp_is_caught_and_acted_on_before_it_crosses(sandbox, instance, history_url, store):
    res = resources(sandbox, history_url, charts=True)
    scenario(sandbox, **CPU_RAMP)  # 70% at T, +0.5 a minute: 80% about 20 minutes later

    first = evaluate(instance, res, T - 60)
    intake = metadata(first, "system_metrics")
    # Six hours backfilled from query_range: the forecasts judge each metric's swings by them.
    assert intake["samples_added"] == 6 * 360
    cpu = metadata(first, "metric_forecasts")["forecasts"]["metrics"]["cpu"]
    assert cpu["breach_expected"] and not cpu["breached_now"]
    s1 = tick(instance, res)
    assert "cpu 1/2" in skip_message(s1)  # one alerting forecast is not enough
    assert sandbox_actions(sandbox) == []

    second = evaluate(instance, res, T)
    forecasts = metadata(second, "metric_forecasts")
    cpu = forecasts["forecasts"]["metrics"]["cpu"]
    assert cpu["breach_expected"] and 5 < cpu["minutes_to_threshold"] < 30
    assert "![cpu](data:image/png;base64," in forecasts["charts"]
    assert [r.data["metric"] for r in forecasts["table"].records if r.data["alert"]] == ["cpu"]
    check = second.get_asset_check_evaluations()[0]
    assert check.check_name == "no_breach_forecast" and not check.passed
    s2 = tick(instance, res, s1.cursor)

    [done] = sandbox_actions(sandbox)
    assert (done["action"], done["metric"], done["replicas"]) == ("scale", "cpu", 2)
    assert "cpu forecast to go above 80%" in done["reason"]
    # Before it crossed: the last sample the sensor saw was still below the threshold.
    ts, vs = store.metric_series("production", "cpu", T - 300, T)
    assert max(vs) < 80
    [row] = store.healing_actions()
    assert (row["action"], row["outcome"], row["dry_run"]) == ("scale", act.DONE, False)
    assert "replicas now 2" in row["detail"] and "2 consecutive" in row["reason"]
    assert json.loads(row["forecast"])["breach_expected"] is True
    [event] = healing_events(s2)
    md = {k: v.value for k, v in event.metadata.items()}
    assert md["decided"].records[0].data["outcome"] == "done"
    assert "**scale** for cpu on production: done" in md["summary"]
    # The other five metrics are flat: nothing was done about them.
    assert {r["metric"] for r in store.healing_actions()} == {"cpu"}


def test_forecasts_start_after_the_last_action(sandbox, instance, history_url, store):
    """The ramp before a scale is not the system after it: it must not prompt a second scale."""
    res = resources(sandbox, history_url)
    scenario(sandbox, **CPU_RAMP)
    common = dict(target="production", metric="cpu", action="scale", dry_run=False, reason="r",
                  forecast="{}", params="{}", detail="", evaluation="test")
    store.record_healing_action(created_at=T - 1200, outcome=act.DRY_RUN, **common)
    store.record_healing_action(created_at=T - 300, outcome=act.DONE, **common)
    store.record_healing_action(created_at=T - 200, outcome=act.DONE,
                                **dict(common, action="alert"))  # alerts change nothing
    forecasts = metadata(evaluate(instance, res, T), "metric_forecasts")
    cpu = forecasts["forecasts"]["metrics"]["cpu"]
    assert cpu["status"] == "insufficient_data" and cpu["n_points"] == 5 and not cpu["alert"]
    assert "after the last action" in cpu["reasons"][-1]
    row = {r.data["metric"]: r.data for r in forecasts["table"].records}["cpu"]
    assert row["since_action"].startswith("2026-09-21T")  # T - 300, in UTC
    assert forecasts["forecasts"]["metrics"]["memory"]["n_points"] == 60


def test_spiky_flat_metric_is_left_alone(sandbox, instance, history_url, store):
    res = resources(sandbox, history_url)
    scenario(sandbox, metric="cpu", kind="spike", base=50, spike_p=0.1, spike_height=40,
             start=T - 86400)
    cursor = None
    for now in (T - 120, T - 60, T):
        result = evaluate(instance, res, now)
        assert not metadata(result, "metric_forecasts")["forecasts"]["metrics"]["cpu"]["alert"]
        assert result.get_asset_check_evaluations()[0].passed
        s = tick(instance, res, cursor)
        assert skip_message(s) == "no metric is forecast to cross its threshold"
        cursor = s.cursor
    _, vs = store.metric_series("production", "cpu", T - 3600, T)
    assert sum(v > 80 for v in vs) >= 3  # it did poke over the threshold, more than once
    assert sandbox_actions(sandbox) == [] and store.healing_actions() == []


def test_cooldown_and_cap_per_hour_are_respected(sandbox, instance, history_url, store):
    res = resources(sandbox, history_url, caps_per_hour={"scale": 1})
    scenario(sandbox, **CPU_RAMP)
    scenario(sandbox, metric="queue_depth", kind="ramp", base=6, slope_per_min=2,
             start=T - 2400)  # both scale; the cap allows one scale an hour
    evaluate(instance, res, T - 60)
    s = tick(instance, res)
    evaluate(instance, res, T)
    s = tick(instance, res, s.cursor)
    outcomes = {r["metric"]: r["outcome"] for r in store.healing_actions()}
    assert outcomes == {"cpu": act.DONE, "queue_depth": act.CAPPED}
    assert len(sandbox_actions(sandbox)) == 1

    evaluate(instance, res, T + 60)  # still ramping: cpu now waits for its cooldown
    s = tick(instance, res, s.cursor)
    rows = store.healing_actions()
    assert [(r["metric"], r["outcome"]) for r in rows[:1]] == [("cpu", act.COOLDOWN)]
    assert "next allowed at" in rows[0]["detail"]

    evaluate(instance, res, T + 120)  # the same hold-backs are not written again
    s = tick(instance, res, s.cursor)
    assert "held back as already recorded" in skip_message(s)
    assert len(store.healing_actions()) == 3 and len(sandbox_actions(sandbox)) == 1


def test_dry_run_records_but_does_not_call(sandbox, instance, history_url, store):
    res = resources(sandbox, history_url, dry_run=True)
    scenario(sandbox, metric="memory", kind="ramp", base=60, slope_per_min=0.4, start=T - 2400)
    evaluate(instance, res, T - 60)
    s = tick(instance, res)
    evaluate(instance, res, T)
    s = tick(instance, res, s.cursor)
    [row] = store.healing_actions()
    assert (row["metric"], row["action"], row["outcome"]) == ("memory", "restart", act.DRY_RUN)
    assert row["dry_run"] is True and "dry run" in row["detail"]
    assert sandbox_actions(sandbox) == []
    [event] = healing_events(s)
    assert "restart** for memory on production: dry_run" in event.metadata["summary"].value


class Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Hook.received
    server.shutdown()
    server.server_close()


def test_alerts_go_through_the_notifiers(sandbox, instance, history_url, store, webhook):
    url, received = webhook
    res = resources(sandbox, history_url, notifier=NotifierResource(webhook_url=url))
    scenario(sandbox, metric="error_rate", kind="ramp", base=1, slope_per_min=0.07,
             start=T - 2400)
    evaluate(instance, res, T - 60)
    s = tick(instance, res)
    evaluate(instance, res, T)
    tick(instance, res, s.cursor)
    [alert] = received
    assert alert["kind"] == "perf_alert" and alert["deployment_id"] == "production"
    assert alert["title"].startswith("error_rate forecast to cross 5% on production in ~")
    assert "error_rate forecast to go above 5%" in alert["reason"]
    assert alert["dedup_key"] == "atge-production-error_rate"
    [row] = store.healing_actions()
    assert row["outcome"] == act.DONE and "webhook: sent" in row["detail"]
    assert sandbox_actions(sandbox) == []  # an alert is not a provider action


def test_without_an_acting_provider_actions_are_recorded_as_unsupported(
        sandbox, instance, history_url, store):
    res = resources(sandbox, history_url, actions_url=None)
    scenario(sandbox, **CPU_RAMP)
    evaluate(instance, res, T - 60)
    s = tick(instance, res)
    evaluate(instance, res, T)
    tick(instance, res, s.cursor)
    [row] = store.healing_actions()
    assert row["outcome"] == act.UNSUPPORTED and row["detail"] == NO_PROVIDER
    assert "Vercel has no API to scale" in NO_PROVIDER


def test_stale_forecasts_are_not_acted_on(sandbox, instance, history_url, store):
    res = resources(sandbox, history_url, max_forecast_age_s=300)
    scenario(sandbox, **CPU_RAMP)
    evaluate(instance, res, T - 60)
    evaluate(instance, res, T)
    s = tick(instance, res)  # a fresh sensor looks at the newest two evaluations
    assert "not acting on a stale picture" in skip_message(s)
    assert store.healing_actions() == [] and sandbox_actions(sandbox) == []
    # ... and the cursor moved on: the same forecasts are not looked at again.
    assert skip_message(tick(instance, res, s.cursor)) == "no new forecasts since the last evaluation"


def test_cursor_garbage_starts_over():
    assert parse_cursor("{not json") == (None, {})
    assert parse_cursor('{"after": 7, "streaks": {"production/cpu": 1}}') == (
        7, {"production/cpu": 1})


def test_intake_from_the_targets_json_endpoint(sandbox, instance, history_url, store):
    res = resources(sandbox, history_url, source="json", url=sandbox.base_url + "/_sandbox/metrics")
    scenario(sandbox, metric="active_users", kind="flat", base=321, noise=0)
    result = evaluate(instance, res, T)
    md = metadata(result, "system_metrics")
    assert md["samples_added"] == 6 and md["source"].startswith("json http://127.0.0.1")
    latest = {r.data["metric"]: r.data["value"] for r in md["latest"].records}
    assert latest["active_users"] == 321
    # A single point is no trend: the forecasts say so rather than guess.
    f = metadata(result, "metric_forecasts")["forecasts"]["metrics"]["active_users"]
    assert f["status"] == "insufficient_data" and not f["alert"]


def test_the_same_minute_is_stored_once(sandbox, instance, history_url):
    res = resources(sandbox, history_url)
    for now, added in ((T, 2160), (T, 0), (T + 60, 6)):
        assert metadata(evaluate(instance, res, now, forecasts=False),
                        "system_metrics")["samples_added"] == added


def test_bad_sources_fail_the_intake_with_a_clear_error(sandbox, instance, history_url):
    res = resources(sandbox, history_url, url="http://10.1.2.3:9090")
    with pytest.raises(dg.Failure, match=r"metrics source: host '10.1.2.3' is not in the allowed"):
        evaluate(instance, res, T)
    res = resources(sandbox, history_url,
                    queries={m: "sum(rate(x[5m]))" for m in ("cpu", "memory", "response_time_p95",
                                                             "error_rate", "active_users",
                                                             "queue_depth")})
    with pytest.raises(dg.Failure, match=r"no metric could be read: cpu: prometheus at "
                                         r"127.0.0.1:\d+: query 'sum\(rate\(x\[5m\]\)\)': "
                                         r"prometheus refused it: bad_data"):
        evaluate(instance, res, T)
    # One bad query costs its metric only.
    res = resources(sandbox, history_url, queries={"cpu": "sum(rate(x[5m]))"})
    md = metadata(evaluate(instance, res, T, forecasts=False), "system_metrics")
    assert md["samples_added"] == 5 * 360 and "**cpu**: prometheus at" in md["errors"]


def test_the_intake_sensor_reports_the_minute_without_a_run(sandbox, instance, history_url,
                                                            store):
    """The intake in the sensor: both materializations and the check reach the instance as
    runless events (as the daemon stores them), the self-healing sensor acts on them as it does
    on a run's, one intake per cron tick, and no run is ever launched."""
    res = resources(sandbox, history_url)
    scenario(sandbox, **CPU_RAMP)
    clock = [T - 60 + 7.0]
    sensor = build_system_metrics_sensor("* * * * *", clock=lambda: clock[0])
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert build_system_metrics_sensor(running=False).default_status == \
        dg.DefaultSensorStatus.STOPPED

    def intake(cursor):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={k: res[k] for k in ("monitoring", "history")})
        result = sensor.evaluate_tick(ctx)
        assert not result.run_requests
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        return result

    first = intake(None)
    assert [e.asset_key.to_user_string() for e in first.asset_events] == [
        "system_metrics", "metric_forecasts", "metric_forecasts"]
    assert first.cursor == str(T - 60)
    clock[0] = T - 30  # the same minute: nothing read twice
    again = intake(first.cursor)
    assert not again.asset_events and "waiting for the next cron tick" in again.skip_message
    s1 = tick(instance, res)
    assert "cpu 1/2" in skip_message(s1)
    clock[0] = T + 5.0
    second = intake(again.cursor or first.cursor)
    intake_md = {k: v.value for k, v in second.asset_events[0].metadata.items()}
    assert intake_md["samples_added"] == 1 * 6
    check = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(metric_forecasts.key, "no_breach_forecast"))
    assert check is not None and not check.event.asset_check_evaluation.passed
    tick(instance, res, s1.cursor)
    [done] = sandbox_actions(sandbox)
    assert (done["action"], done["metric"]) == ("scale", "cpu")
    [row] = store.healing_actions()
    assert row["evaluation"].startswith("metric_forecasts event ")
    assert instance.get_runs() == []


def test_sensor_starts_running_and_settings_come_from_the_env():
    assert build_self_healing_sensor().default_status == dg.DefaultSensorStatus.RUNNING
    settings = Settings.from_env({"ATGE_SANDBOX_URL": "http://127.0.0.1:8787",
                                  "ATGE_DRY_RUN": "true",
                                  "ATGE_METRICS_THRESHOLDS_JSON": '{"cpu": 75}',
                                  "ATGE_HEALING_ACTIONS_JSON": '{"cpu": ["scale", "alert"]}'})
    m, r = settings.monitoring, monitoring_resource(settings)
    assert (r.url, r.actions_url, r.allowed_hosts) == ("http://127.0.0.1:8787",
                                                       "http://127.0.0.1:8787", ["127.0.0.1"])
    assert r.threshold_map()["cpu"] == 75 and r.threshold_map()["memory"] == 85
    assert r.actions_for("cpu") == ["scale", "alert"] and r.actions_for("memory") == ["restart"]
    assert r.dry_run and r.token is None  # ATGE_HEALING_DRY_RUN follows ATGE_DRY_RUN
    assert m.source_configured and m.cron == "* * * * *" and m.sensor_interval_s == 30
    assert not Settings.from_env({}).monitoring.source_configured
    with pytest.raises(SettingsError, match="ATGE_METRICS_URL: host 'prom.example'"):
        Settings.from_env({"ATGE_METRICS_URL": "http://prom.example:9090"})
    with pytest.raises(SettingsError, match="ATGE_HEALING_ACTIONS_JSON must be a JSON object"):
        Settings.from_env({"ATGE_HEALING_ACTIONS_JSON": '{"cpu": ["reboot"]}'})
    with pytest.raises(SettingsError, match="ATGE_FORECAST_HORIZON_MIN"):
        Settings.from_env({"ATGE_FORECAST_HORIZON_MIN": "soon"})


def forecasts_only(instance, res, now: float) -> dict:
    """metric_forecasts alone, over samples a test stored itself (no intake over them)."""
    result = dg.materialize([metric_forecasts], instance=instance, resources={
        k: res[k] for k in ("monitoring", "history")},
        run_config={"ops": {"metric_forecasts": {"config": {"now": now}}}})
    return metadata(result, "metric_forecasts")["forecasts"]["metrics"]


def test_forecasts_read_six_hours_of_swings_and_the_metrics_bounds(
        sandbox, instance, history_url, store):
    """The forecaster's context and bounds reach it from the asset: a CPU that swings 30 -> 66
    every 20 minutes, rising now, is no ramp once its 6 h show the swings (an hour alone reads
    it as one), and a memory percentage near 100 has its interval stop at 100."""
    t, y = humps(22)
    t = t - NOW + T
    memory = 99.0 + 0.05 * np.arange(len(t))[-73:] / 12 + np.sin(np.arange(73)) * 0.3
    store.record_metric_samples(
        [dict(target="humps", metric="cpu", value=float(v), timestamp=float(s), source="test")
         for s, v in zip(t, y)]
        + [dict(target="humps", metric="memory", value=float(min(v, 100.0)),
                timestamp=float(s), source="test") for s, v in zip(t, memory)])
    common = dict(target="humps", thresholds={"cpu": 70.0, "memory": 99.5})
    out = forecasts_only(instance, resources(sandbox, history_url, **common), T)
    cpu, mem = out["cpu"], out["memory"]
    assert not cpu["alert"] and "no steeper than the series' own swings" in cpu["reasons"][0]
    assert mem["status"] == "breached" and mem["interval_high"] <= 100.0
    assert mem["interval_low"] <= mem["forecast"] <= mem["interval_high"]
    hour_only = forecasts_only(instance, resources(sandbox, history_url, context_s=0, **common), T)
    assert hour_only["cpu"]["breach_expected"]  # the same hour without its history: a "ramp"


@pytest.mark.parametrize("options, ahead_s", [
    ({}, 180),  # the defaults: 45% rising 35/45 % a minute: 76% now, 80% five minutes later
    ({"base": 50, "slope_per_min": 0.5}, 1080),  # the README's: 70% now, 80% in 20 minutes
])
def test_the_readme_demo_scales_before_the_ramp_crosses(sandbox, instance, history_url, store,
                                                        options, ahead_s):
    """`atge sandbox metrics --scenario cpu=ramp --ago-minutes 40` on a running `atge up`: the
    intake has stored hours of a healthy CPU when the scenario rewrites the last 40 minutes into
    a ramp. Each intake reads the window again, so the forecast sees the ramp, not a step up it
    would call a level shift, and the scale comes before the crossing."""
    res = resources(sandbox, history_url)
    cursor = None
    for now in (T - 120, T - 60):  # the app is healthy: nothing to do
        evaluate(instance, res, now)
        cursor = tick(instance, res, cursor).cursor
    # What --ago-minutes 40 sends, on the test's clock.
    sc = scenario(sandbox, metric="cpu", kind="ramp", start=T - 2400, **options)
    crossing = sc["start"] + (80 - sc["base"]) / sc["slope_per_min"] * 60
    acted = None
    for now in (T + 60, T + 120, T + 180, T + 240):
        intake = metadata(evaluate(instance, res, now), "system_metrics")
        if now == T + 60:
            # The stored window now ramps from 40 minutes ago, as the sandbox's history does.
            assert intake["samples_replaced"] >= 35
            _, vs = store.metric_series("production", "cpu", T - 2400, T - 2100)
            _, late = store.metric_series("production", "cpu", T - 300, T)
            assert max(vs) < 60 < min(late)
        cursor = tick(instance, res, cursor).cursor
        if sandbox_actions(sandbox):
            acted = now
            break
    [done] = sandbox_actions(sandbox)
    assert (done["action"], done["metric"]) == ("scale", "cpu")
    # On its second forecast, before the level crosses (a noisy sample may poke over first: one
    # sample is no breach).
    assert acted == T + 120 and crossing - acted == pytest.approx(ahead_s)
