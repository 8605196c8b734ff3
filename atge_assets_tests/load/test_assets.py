"""The load_test asset against the sandbox: real HTTP, real Dagster (in process and multiprocess),
real SQL. Small stages; nothing here asserts on a latency, which depends on the machine."""

import datetime
import logging
import os

import dagster as dg
import pytest

from atge_assets.deployments.partitions import deployments_partitions
from atge_assets.deployments.resources import BenchmarkResource
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets.load.assets import load_test, load_test_job
from atge_assets.load.capacity import Thresholds
from atge_assets.load.definitions import load_resource
from atge_assets.load.histogram import LatencyHistogram
from atge_assets.load.history import LoadHistory
from atge_assets.load.resources import LoadTestResource
from atge_assets.load.schedules import build_load_schedule
from atge_assets.load.sensors import build_load_sensor
from atge_assets.settings import Settings, SettingsError
from atge_assets_tests.conftest import TOKEN
from atge_assets_tests.deployments.helpers import metadata, run_deployment

SMALL = dict(stages=[5, 10, 20], stage_duration_s=1.0, ramp_up_s=0.2, pause_s=0.2)
CHECKS = {"avg_latency", "p95_latency", "error_rate", "throughput"}
# Limits no machine misses, so what follows a pass is tested without timing anything.
LOOSE = dict(max_avg_ms=1e7, max_p95_ms=1e7, min_throughput_ratio=0.0)


def with_load(resources, **settings):
    return dict(resources, load=LoadTestResource(**{**SMALL, **settings}))


def evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def messages(instance, run_id) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


def test_stages_are_measured_judged_and_recorded(sandbox, instance, resources, store):
    dep = sandbox.state.create(target="preview").id
    r = run_deployment(instance, with_load(resources, **LOOSE), dep, selection=[load_test])
    assert r.success
    md = metadata(r, "load_test")
    stages = [row.data for row in md["stages"].records]
    assert [s["users"] for s in stages] == [5, 10, 20]
    assert all(s["requests"] > 0 and s["errors"] == 0 for s in stages)
    assert all(s[k] is not None for s in stages for k in ("avg_ms", "p50_ms", "p95_ms", "p99_ms",
                                                          "max_ms", "rps"))
    assert "recommendation" in md["capacity"] and "knee" in md["capacity"]
    assert md["provider"] == "provider cannot scale: recommendation recorded"
    assert "provider cannot scale: recommendation recorded" in messages(instance, r.run_id)
    assert md["max_users_within_thresholds"] == 20 and md["desired_replicas"] == 1

    checks = evaluations(r)
    assert set(checks) == CHECKS
    assert all(e.passed for e in checks.values())
    for e in checks.values():
        assert {"worst", "stages", "failed_at_users"} <= set(e.metadata)
        assert e.partition == dep

    rows = LoadHistory(store.engine).load_tests_for(dep)
    assert [(x["stage"], x["users"], x["run_id"]) for x in rows] == [
        (0, 5, r.run_id), (1, 10, r.run_id), (2, 20, r.run_id)]
    for x, s in zip(rows, stages):
        assert x["requests"] == s["requests"]
        assert LatencyHistogram.decode(x["histogram"]).count == x["requests"]
        assert x["passed"] and x["desired_replicas"] == 1 and "replicas" in x["recommendation"]


def test_a_provider_that_can_scale_is_handed_the_recommendation(monkeypatch, resources):
    from atge_assets.lib.providers.vercel import VercelClient
    from atge_assets.load.assets import _hand_to_provider
    from atge_assets.load.capacity import capacity_report

    asked = []
    monkeypatch.setattr(VercelClient, "scale_replicas",
                        lambda self, dep, n: asked.append((dep, n)), raising=False)
    report = capacity_report([_result(100), _result(500, p95=900.0)], current_replicas=2,
                             target_load=1000, thresholds=Thresholds(max_avg_ms=1e9,
                                                                     max_p95_ms=800.0,
                                                                     min_rps_per_user=0.0))
    msg = _hand_to_provider(dg.build_op_context(), resources["vercel"], "dpl_x", report)
    assert asked == [("dpl_x", 20)] and "20 replicas" in msg  # ceil(2 x 1000 / 100)


def test_a_stage_aborted_on_an_error_spike_fails_the_error_check_whatever_its_overall_rate():
    from dataclasses import replace

    from atge_assets.load.assets import CHECKS as SPECS
    from atge_assets.load.assets import _evaluate

    error_check = next(c for c in SPECS if c.name == "error_rate")
    calm, spiked = _result(100), replace(_result(500), aborted="error rate 60% over the last 100")
    assert _evaluate(error_check, [calm], Thresholds(), 500).passed
    failed = _evaluate(error_check, [calm, spiked], Thresholds(), 500)
    assert not failed.passed and failed.metadata["failed_at_users"].value == "500"
    assert _evaluate(error_check, [calm, spiked], Thresholds(), 100).passed  # beyond the target


def _result(users, p95=100.0):
    from atge_assets.load.spec import LoadResult

    h = LatencyHistogram()
    for _ in range(90):
        h.record_ms(50.0)
    for _ in range(10):
        h.record_ms(p95)
    return LoadResult("closed", users, None, 100, 0, 1.0, 100.0, {"200": 100}, {}, None,
                      "duration", h)


def test_a_failing_deployment_fails_the_error_rate_check_without_blocking(
        sandbox, instance, resources, store):
    dep = sandbox.state.create(target="preview", errors=0.5).id
    # Two shards on the in-process executor: one step, its stages spread over two processes.
    r = run_deployment(instance, with_load(resources, stages=[5, 10], shards=2), dep,
                       selection=[load_test])
    assert r.success  # the checks warn; they do not stop the run
    md = metadata(r, "load_test")
    assert md["shards"] == 2 and "shard_runs" not in md
    check = evaluations(r)["error_rate"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["worst"].value > 0.2
    assert [x["passed"] for x in LoadHistory(store.engine).load_tests_for(dep)] == [False, False]
    assert not any(spec.blocking for spec in load_test.check_specs)


def test_a_host_not_allowed_is_refused_before_anything_is_sent(
        sandbox, instance, resources, store, caplog):
    # A provider at "localhost" vouches for localhost, not for the deployments' 127.0.0.1.
    port = sandbox.server_address[1]
    res = with_load(resources, allowed_hosts=["*.vercel.app"])
    res["vercel"] = VercelResource(token=TOKEN, project_id=sandbox.state.world.project_id,
                                   base_url=f"http://localhost:{port}")
    dep = sandbox.state.world.production
    caplog.set_level(logging.DEBUG, logger="atge_assets.sandbox.server")
    with pytest.raises(dg.Failure, match="not in the allowed hosts"):
        run_deployment(instance, res, dep, selection=[load_test])
    requests = [rec.getMessage() for rec in caplog.records if rec.name.endswith("sandbox.server")]
    assert requests and not [m for m in requests if "/d/" in m]  # the provider, never the app
    assert LoadHistory(store.engine).load_tests_for(dep) == []
    assert [d["decision"] for d in store.decisions_for(dep)] == ["refused"]


# -- shards over the multiprocess executor ---------------------------------------------------------
CAPPED = dict(stages=[4], stage_duration_s=30.0, ramp_up_s=0.0, max_requests_per_stage=40,
              **LOOSE)


def sharded_job():
    """load_test_job with resources from the environment: spawned step processes rebuild it."""
    env = os.environ
    return dg.Definitions(
        assets=[load_test], jobs=[load_test_job],
        resources={
            "vercel": VercelResource(token=TOKEN, project_id=env["ATGE_TEST_PROJECT"],
                                     base_url=env["ATGE_TEST_SANDBOX_URL"]),
            "history": HistoryResource(url=env["ATGE_TEST_HISTORY_URL"]),
            "benchmark": BenchmarkResource(baseline_scale=0.005),
            "load": LoadTestResource(**CAPPED, shards=2),
        },
    ).resolve_job_def("load_test_job")


def test_shards_in_separate_steps_merge_to_the_single_process_counts(
        sandbox, instance, resources, history_url, store, monkeypatch):
    dep = sandbox.state.create(target="preview").id
    single = run_deployment(instance, with_load(resources, **CAPPED), dep, selection=[load_test])
    one = metadata(single, "load_test")["stages"].records[0].data
    assert one["requests"] == 40 and one["errors"] == 0

    monkeypatch.setenv("ATGE_TEST_PROJECT", sandbox.state.world.project_id)
    monkeypatch.setenv("ATGE_TEST_SANDBOX_URL", sandbox.base_url)
    monkeypatch.setenv("ATGE_TEST_HISTORY_URL", history_url)
    result = dg.execute_job(dg.reconstructable(sharded_job), instance=instance,
                            tags={"dagster/partition": dep})
    assert result.success
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    assert {"load_test.run_load_shard[shard_0]", "load_test.run_load_shard[shard_1]"} <= steps
    md = {k: v.value for k, v in instance.get_latest_materialization_event(
        dg.AssetKey("load_test")).asset_materialization.metadata.items()}
    assert md["shards"] == 2
    merged = md["stages"].records[0].data
    parts = [row.data for row in md["shard_runs"].records]
    assert [p["users"] for p in parts] == [2, 2]
    assert merged["requests"] == sum(p["requests"] for p in parts) == one["requests"]
    assert merged["errors"] == one["errors"] == 0
    rows = LoadHistory(store.engine).load_tests_for(dep)
    assert [x["shards"] for x in rows] == [1, 2]
    assert [LatencyHistogram.decode(x["histogram"]).count for x in rows] == [40, 40]
    checks = {e.dagster_event.asset_check_evaluation_data.check_name for e in instance.all_logs(
        result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)}
    assert checks == CHECKS


# -- triggers --------------------------------------------------------------------------------------
@dg.op
def _noop():
    pass


@dg.job
def _finished_benchmark():
    _noop()


def test_after_benchmark_sensor_requests_only_passing_deployments(sandbox, instance, resources,
                                                                 store):
    from atge_assets.lib.providers.base import Deployment

    sensor = build_load_sensor("after_benchmark")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert build_load_sensor("manual").default_status == dg.DefaultSensorStatus.STOPPED

    def tick(dep_id, trigger="after_benchmark"):
        run = _finished_benchmark.execute_in_process(instance=instance,
                                                     tags={"dagster/partition": dep_id})
        ctx = dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_instance=instance, dagster_run=run.dagster_run,
            dagster_event=run.get_run_success_event(),
            resources={"load": LoadTestResource(trigger=trigger),
                       "history": resources["history"]})
        return sensor(ctx)

    for dep_id, verdict in (("dpl_good", "pass"), ("dpl_bad", "regressed")):
        store.upsert_deployment(Deployment(dep_id, "http://x", "READY", "preview", 1))
        store.set_verdict(dep_id, verdict)
    req = tick("dpl_good")
    assert isinstance(req, dg.RunRequest) and req.partition_key == "dpl_good"
    assert req.tags["atge/deployment"] == "dpl_good" and req.run_key.startswith("load:")
    assert "regressed" in tick("dpl_bad").skip_message
    assert "manual" in tick("dpl_good", trigger="manual").skip_message


def test_schedule_tests_the_live_production_deployment(sandbox, instance, resources):
    schedule = build_load_schedule("schedule", "0 4 * * *")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "0 4 * * *"
    live = sandbox.state.world.production

    def tick(trigger="schedule"):
        ctx = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime.datetime(2026, 1, 1, 4),
            resources={"vercel": resources["vercel"], "load": LoadTestResource(trigger=trigger)})
        return schedule(ctx)

    assert "not a partition yet" in tick().skip_message  # the deployment sensor adds them
    instance.add_dynamic_partitions(deployments_partitions.name, [live])
    req = tick()
    assert req.partition_key == live and req.tags["atge/trigger"] == "schedule"
    assert "manual" in tick("manual").skip_message


# -- settings --------------------------------------------------------------------------------------
def test_thresholds_are_the_plans_scaled_and_the_throughput_rule_is_littles_law():
    t = LoadTestResource(stage_duration_s=10, ramp_up_s=2).thresholds(0.005)
    assert (t.max_avg_ms, t.max_p95_ms, t.max_error_rate) == pytest.approx((150, 225, 0.01))
    # 80% of N / (0.15 s allowed average + 0 s think), users busy 90% of the stage on average.
    assert t.min_rps_per_user == pytest.approx(0.8 * 0.9 / 0.15)
    # The plan's own rule (0.8 req/s per user) when the allowed average plus think time is 1 s.
    plain = LoadTestResource(max_avg_ms=1000, ramp_up_s=0).thresholds(1.0)
    assert plain.min_rps_per_user == pytest.approx(Thresholds().min_rps_per_user)


def test_settings_from_env_name_the_variable():
    env = {"ATGE_ALLOWED_HOSTS": "a.example", "ATGE_HOME": "/x"}
    r = load_resource(Settings.from_env({**env, "ATGE_LOAD_STAGES": "10, 50",
                                         "ATGE_LOAD_SHARDS": "2",
                                         "ATGE_LOAD_TRIGGER": "after_benchmark"}))
    assert (r.stages, r.shards, r.trigger, r.allowed_hosts) == (
        [10, 50], 2, "after_benchmark", ["a.example"])
    assert load_resource(Settings.from_env(env)).stages == [100, 500, 1000]
    for bad, name in (({"ATGE_LOAD_STAGES": "many"}, "ATGE_LOAD_STAGES"),
                      ({"ATGE_LOAD_TRIGGER": "often"}, "ATGE_LOAD_TRIGGER"),
                      ({"ATGE_LOAD_SHARDS": "0"}, "ATGE_LOAD_SHARDS"),
                      ({"ATGE_LOAD_BODY": "{"}, "ATGE_LOAD_BODY"),
                      ({"ATGE_LOAD_CRON": "at three"}, "ATGE_LOAD_CRON")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**env, **bad})


def test_the_pieces_load_beside_the_code_location():
    from atge_assets.definitions import build_definitions

    defs = build_definitions(Settings.from_env({"ATGE_HOME": "/x"}))
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("load_test_job")
    assert job.executor_def.name == "multiprocess"
    assert defs.resolve_sensor_def("load_test_after_benchmark").default_status == \
        dg.DefaultSensorStatus.STOPPED
