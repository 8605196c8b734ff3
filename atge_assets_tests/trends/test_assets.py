import base64

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from atge_assets.deployments.assets import benchmark_timings
from atge_assets.trends import aggregates as trends
from atge_assets.trends.assets import performance_trends, trends_job
from atge_assets.trends.sensors import build_trends_first_run_sensor
from atge_assets_tests.deployments.helpers import metadata, run_deployment


def test_trends_over_deployments(sandbox, instance, resources):
    first = sandbox.state.world.production
    slower = sandbox.state.create(target="preview", slowdown=1.5).id
    for dep in (first, slower):
        assert run_deployment(instance, resources, dep, selection=[benchmark_timings]).success
    r = dg.materialize([performance_trends], resources=_res(resources),
                       instance=instance)
    md = metadata(r, "performance_trends")
    assert md["deployments"] == 2
    per_dep = [row.data for row in md["by_deployment"].records]
    e2e = [row for row in per_dep if row["metric"] == "end_to_end"]
    assert [row["deployment_id"] for row in e2e] == [first, slower]
    assert e2e[0]["change_pct"] is None
    assert 30 < e2e[1]["change_pct"] < 70  # 1.5x slower, seen as a change against the one before
    # The newest deployment's numbers at the top level, for Dagster's Plots tab.
    assert abs(md["end_to_end_p50_ms"] - e2e[1]["p50"]) < 0.051
    assert abs(md["end_to_end_change_pct"] - e2e[1]["change_pct"]) < 0.051
    assert {f"{m}_p95_ms" for m in ("data_collection", "ai_analysis", "database_query")} <= set(md)
    daily = [row.data for row in md["by_day"].records]
    assert {row["metric"] for row in daily} == {"data_collection", "ai_analysis", "database_query",
                                                "end_to_end"}
    assert sum(row["count"] for row in daily if row["metric"] == "end_to_end") == 24
    charts = md["charts"]
    assert charts.count("data:image/png;base64,") == 4
    png = base64.b64decode(charts.split("base64,")[1].split(")")[0])
    assert png.startswith(b"\x89PNG")


def test_trends_of_an_empty_history(resources, instance):
    r = dg.materialize([performance_trends], resources=_res(resources),
                       instance=instance)
    assert metadata(r, "performance_trends")["deployments"] == 0


def _res(resources):
    return {"history": resources["history"], "benchmark": resources["benchmark"]}


def _history(store, p50s):
    """Deployments with the given end-to-end levels, written as the timings asset writes them."""
    import random

    from atge_assets.lib.providers.base import Deployment

    rng = random.Random(5)
    ids = []
    for i, level in enumerate(p50s):
        dep_id = f"dpl_{i:03d}"
        store.upsert_deployment(Deployment(dep_id, f"https://{i}.vercel.app", "READY",
                                           "production", 1_000 + i))
        store.record_measurement(dep_id, "run", [
            dict(metric="end_to_end", seq=j, ok=True, value_ms=level * rng.lognormvariate(0, 0.03),
                 started_at=1_700_000_000.0 + i * 3600 + j) for j in range(10)], 0.0)
        ids.append(dep_id)
    return ids


def _check(result):
    evals = result.get_asset_check_evaluations()
    assert [e.check_name for e in evals] == ["change_point_alert"]
    return evals[0]


def test_step_and_creep_are_alerted_and_tied_to_their_deployment(store, resources, instance):
    levels = [100.0] * 10 + [125.0] * 10 + [125.0 * 1.04 ** k for k in range(1, 9)] + [171.0] * 8
    ids = _history(store, levels)
    r = dg.materialize([performance_trends], resources=_res(resources), instance=instance)
    md = metadata(r, "performance_trends")
    points = [row.data for row in md["change_points"].records]
    step = [p for p in points if p["kind"] == "step"]
    creep = [p for p in points if p["kind"] == "creep"]
    assert step and step[0]["deployment_id"] in ids[9:12] and 15 < step[0]["change_pct"] < 35
    assert creep and creep[0]["deployment_id"] in ids[19:24]
    check = _check(r)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert ids[10] in check.metadata["alerts"].value or step[0]["deployment_id"] in \
        check.metadata["alerts"].value


def test_one_off_spike_is_not_a_change_point(store, resources, instance):
    _history(store, [100.0] * 12 + [180.0] + [100.0] * 12)
    r = dg.materialize([performance_trends], resources=_res(resources), instance=instance)
    assert metadata(r, "performance_trends")["change_points"].records == []
    assert _check(r).passed


def test_by_day_change_against_previous_day():
    rows = [dict(deployment_id="a", metric="m", value_ms=v, started_at=day * 86400.0 + i,
                 created_ms=1, target="production", verdict="pass")
            for day, v in ((0, 100.0), (0, 100.0), (1, 120.0), (1, 120.0)) for i in (0,)]
    daily = trends.by_day(trends.frame(rows))
    assert list(daily["day"]) == ["1970-01-01", "1970-01-02"]
    assert abs(daily["change_pct"].iloc[1] - 20.0) < 1e-9


def test_trends_run_once_at_start_up(resources, instance):
    """A fresh instance gets one trends run at once, not at the first hourly tick; after that
    the sensor leaves it to the schedule, whatever the first run did."""
    sensor = build_trends_first_run_sensor()
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    def tick():
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance))

    [request] = tick().run_requests
    assert request.run_key == "first-run"
    assert sensor.job_name == trends_job.name
    dg.materialize([performance_trends], resources=_res(resources), instance=instance)
    later = tick()
    assert not later.run_requests and "is materialized" in later.skip_message


def test_a_failed_first_trends_run_is_not_retried_by_the_sensor(instance):

    instance.add_run(DagsterRun(job_name=trends_job.name, run_id="b" * 36,
                                status=DagsterRunStatus.FAILURE))
    data = build_trends_first_run_sensor().evaluate_tick(dg.build_sensor_context(instance=instance))
    assert not data.run_requests and "has run already" in data.skip_message
