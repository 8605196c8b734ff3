"""The A/B graph against the real sandbox: intake, analysis, promotion, the sensor."""

import csv
import json

import dagster as dg
import httpx
import pytest

from atge_assets.abtest import assets as ab
from atge_assets.abtest.config import DEFAULT_EXPERIMENT, default_config
from atge_assets.abtest.intake import CSV_COLUMNS
from atge_assets.abtest.resources import ExperimentsResource
from atge_assets.abtest.sensors import build_ab_test_sensor
from atge_assets.abtest.simulate import simulate_results
from atge_assets.lib.resources import HistoryResource
from atge_assets.notify.resources import NotifierResource
from atge_assets_tests.deployments.helpers import metadata
from atge_assets_tests.notify.test_channels import receiver  # noqa: F401 (a fixture)

GRAPH = [ab.ab_test_results, ab.ab_test_analysis, ab.ab_test_promotion]
LIFT = {"gpt51-high": 0.50, "gpt51-medium": 0.65}
SAME = {"gpt51-high": 0.55, "gpt51-medium": 0.55}


def create(sandbox, key, rates, minutes, seed=11):
    """An experiment whose first `minutes` x 600 signals already happened (10 more a second)."""
    r = httpx.post(f"{sandbox.base_url}/_sandbox/experiments", json={
        "key": key, "true_win_rates": rates, "signals_per_minute": 600,
        "backfill_minutes": minutes, "seed": seed})
    assert r.status_code == 201, r.text


def experiment(sandbox, key) -> dict:
    return httpx.get(f"{sandbox.base_url}/_sandbox/experiments/{key}").json()


def resources(history_url, notifier=None, **kw):
    return {"experiments": ExperimentsResource(**kw), "history": HistoryResource(url=history_url),
            "notifier": notifier or NotifierResource()}


def run(instance, res, key, selection=GRAPH, **kw):
    if not instance.has_dynamic_partition(ab.experiments_partitions.name, key):
        instance.add_dynamic_partitions(ab.experiments_partitions.name, [key])
    return dg.materialize(selection, partition_key=key, resources=res, instance=instance, **kw)


def test_a_strong_lift_is_promoted_once_and_announced_once(sandbox, instance, history_url, store,
                                                           receiver):
    create(sandbox, "lift", LIFT, minutes=5)
    res = resources(history_url, NotifierResource(webhook_url=receiver.url("/hook")),
                    sandbox_url=sandbox.base_url)
    r = run(instance, res, "lift")
    intake = metadata(r, "ab_test_results")
    assert intake["rows_inserted"] >= 3000 and intake["bad_row_count"] == 0
    md = metadata(r, "ab_test_analysis")
    assert md["status"] == "winner" and md["winner"] == "gpt51-medium"
    assert "Winner: `gpt51-medium`" in md["decision"] and "promotion: automatic" in md["decision"]
    rows = {row.data["variant"]: row.data for row in md["variants"].records}
    assert rows["gpt51-high"]["role"] == "control" and rows["gpt51-medium"]["traffic_pct"] == 20
    assert 55 < rows["gpt51-medium"]["win_rate_pct"] < 75
    assert {"signals", "avg_analysis_s", "avg_confidence", "avg_profit_loss"} \
        <= set(rows["gpt51-high"])
    test = md["tests"].records[0].data
    assert test["sequential"].startswith("better after") and test["guardrails"] == "passed"
    assert test["chance_to_win_pct"] > 99 and test["p_always_valid"] < 0.025
    assert " to " in test["ci_95_pts"]
    promo = metadata(r, "ab_test_promotion")
    assert promo["decision"] == "promoted"
    assert promo["split"] == {"gpt51-high": 0.0, "gpt51-medium": 100.0}
    exp = experiment(sandbox, "lift")
    assert len(exp["splits"]) == 1 and exp["splits"][0]["winner"] == "gpt51-medium"
    assert exp["split"] == {"gpt51-high": 0.0, "gpt51-medium": 100.0} and exp["status"] == "ended"
    assert store.ab_promotion("lift", "gpt51-medium")["status"] == "done"
    [note] = receiver.bodies()
    assert note["kind"] == "promotion" and "experiment variant gpt51-medium" in note["title"]

    again = run(instance, res, "lift")  # the next scheduled run: same verdict, nothing repeated
    assert metadata(again, "ab_test_analysis")["winner"] == "gpt51-medium"
    assert metadata(again, "ab_test_promotion")["decision"] == "already_promoted"
    assert len(experiment(sandbox, "lift")["splits"]) == 1
    assert len(receiver.requests) == 1


def test_an_a_a_experiment_promotes_nothing(sandbox, instance, history_url, store):
    create(sandbox, "same", SAME, minutes=7)
    r = run(instance, resources(history_url, sandbox_url=sandbox.base_url), "same")
    md = metadata(r, "ab_test_analysis")
    assert md["status"] == "no_winner" and md["winner"] == "" and md["final"] is True
    assert metadata(r, "ab_test_promotion")["decision"] == "no_promotion"
    assert experiment(sandbox, "same")["splits"] == []
    assert store.ab_promotions_of("same") == []


def test_with_auto_promotion_off_the_winner_waits_for_a_person(sandbox, instance, history_url,
                                                               store):
    create(sandbox, "manual", LIFT, minutes=5)
    res = resources(history_url, sandbox_url=sandbox.base_url, auto_promote=False)
    r = run(instance, res, "manual")
    assert "auto-promotion is off" in metadata(r, "ab_test_analysis")["decision"]
    promo = metadata(r, "ab_test_promotion")
    assert promo["decision"] == "awaiting_manual_promotion"
    assert "awaiting manual promotion" in promo["reason"]
    assert store.ab_promotion("manual", "gpt51-medium")["status"] == "awaiting"
    assert experiment(sandbox, "manual")["splits"] == []
    # The person: materialize this one asset with the flag.
    r = run(instance, res, "manual", selection=[ab.ab_test_promotion],
            run_config=ab.MANUAL_RUN_CONFIG)
    assert metadata(r, "ab_test_promotion")["decision"] == "promoted"
    assert len(experiment(sandbox, "manual")["splits"]) == 1
    assert store.ab_promotion("manual", "gpt51-medium")["status"] == "done"


def test_a_failing_hook_fails_the_run_and_the_next_run_retries(sandbox, instance, history_url,
                                                               store, receiver):
    create(sandbox, "hooked", LIFT, minutes=5)
    receiver.answer((400, {}, "no such flag"), path="/flags/hooked/split")
    res = resources(history_url, sandbox_url=sandbox.base_url,
                    promotion_url=receiver.url("/flags/{experiment}/split"))
    r = run(instance, res, "hooked", raise_on_error=False)
    assert not r.success
    assert store.ab_promotion("hooked", "gpt51-medium")["status"] == "failed"
    r = run(instance, res, "hooked", selection=[ab.ab_test_promotion])
    assert metadata(r, "ab_test_promotion")["decision"] == "promoted"
    bodies = receiver.bodies()
    assert len(bodies) == 2 and bodies[1]["split"] == {"gpt51-high": 0.0, "gpt51-medium": 100.0}
    assert bodies[1]["experiment"] == "hooked" and bodies[1]["winner"] == "gpt51-medium"


def test_bad_csv_rows_are_reported_and_kept_out(tmp_path, instance, history_url, store):
    good = simulate_results(default_config(), 300, 0.5, seed=4)
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for row in good:
            w.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
        base = [DEFAULT_EXPERIMENT, "gpt51-high", "x1", "12.5", "0.7", "win", "10", "1767225600"]
        w.writerow(base[:2] + ["x1"] + base[3:4] + ["85"] + base[5:])  # a percentage
        w.writerow(base[:1] + ["gpt4"] + ["x2"] + base[3:])  # unknown variant
        w.writerow(base[:2] + ["x3"] + base[3:7] + ["1767225600000"])  # milliseconds
        w.writerow(base[:2] + ["x4", "12.5"])  # short line
    res = resources(history_url, results_csv=str(path))
    r = run(instance, res, DEFAULT_EXPERIMENT, selection=GRAPH[:2])
    md = metadata(r, "ab_test_results")
    # The percentage in a file of fractions is blanked and noted: confidence decides nothing.
    assert md["rows_inserted"] == 301 and md["bad_row_count"] == 3
    assert md["rows_with_notes"] == 1 and md["confidence_scale"] == "0-1"
    reasons = {row.data["line"]: row.data["reason"] for row in md["bad_rows"].records}
    assert sorted(reasons) == [303, 304, 305]
    assert "unknown variant_id 'gpt4'" in reasons[303]
    assert "milliseconds" in reasons[304] and "expected 8 fields" in reasons[305]
    checks = {c.check_name: c.passed for c in r.get_asset_check_evaluations()}
    assert checks == {"results_valid": False, "sample_ratio": True}
    assert metadata(r, "ab_test_analysis")["resolved_signals"] == 1 + sum(
        row["outcome"] in ("win", "loss") for row in good)
    assert [r["confidence"] for r in store.ab_results(DEFAULT_EXPERIMENT)
            if r["signal_id"] == "x1"] == [None]
    again = metadata(run(instance, res, DEFAULT_EXPERIMENT, selection=GRAPH[:1]),
                     "ab_test_results")
    assert again["rows_inserted"] == 0 and again["rows_already_stored"] == 301
    assert len(store.ab_results(DEFAULT_EXPERIMENT)) == 301


def test_the_sensor_adds_experiments_and_skips_promoted_ones(sandbox, instance, history_url,
                                                             store):
    create(sandbox, "fresh", SAME, minutes=1)
    res = resources(history_url, sandbox_url=sandbox.base_url)
    sensor = build_ab_test_sensor(interval_s=60)

    def tick():
        ctx = dg.build_sensor_context(instance=instance, resources=res)
        return sensor(ctx)

    result = tick()
    [add] = result.dynamic_partitions_requests
    assert sorted(add.partition_keys) == [DEFAULT_EXPERIMENT, "fresh"]
    assert sorted(r.partition_key for r in result.run_requests) == [DEFAULT_EXPERIMENT, "fresh"]
    instance.add_dynamic_partitions(ab.experiments_partitions.name, list(add.partition_keys))
    store.claim_ab_promotion("fresh", "gpt51-medium", {}, "test", "run")
    store.finish_ab_promotion("fresh", "gpt51-medium", "done")
    result = tick()
    assert not result.dynamic_partitions_requests
    assert [r.partition_key for r in result.run_requests] == [DEFAULT_EXPERIMENT]
    down = resources(history_url, sandbox_url="http://127.0.0.1:9")
    skipped = sensor(dg.build_sensor_context(instance=instance, resources=down))
    assert isinstance(skipped, dg.SkipReason) and "experiments unavailable" in skipped.skip_message


def test_configs_from_a_file(tmp_path):
    one = default_config("a").to_dict()
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps({"experiments": [one, {**one, "experiment": "b"}]}))
    assert [c.experiment for c in ExperimentsResource(experiments_file=str(path)).configs()] \
        == ["a", "b"]
    path.write_text(json.dumps([one, one]))
    with pytest.raises(ValueError, match="'a' is configured more than once"):
        ExperimentsResource(experiments_file=str(path)).configs()
    assert [c.experiment for c in ExperimentsResource().configs()] == [DEFAULT_EXPERIMENT]


def test_the_pieces_load_as_one_code_location(history_url):
    defs = dg.Definitions(
        assets=dg.load_assets_from_modules([ab]), jobs=[ab.ab_test_job],
        sensors=[build_ab_test_sensor()], resources=resources(history_url))
    dg.Definitions.validate_loadable(defs)
    sensor = defs.resolve_sensor_def("ab_test_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 900
