"""The per-deployment graph end to end against the sandbox: real HTTP, real Dagster, real SQL."""

import dagster as dg
import pytest

from atge_assets.deployments.assets import releases, rollback
from atge_assets_tests.conftest import TOKEN
from atge_assets_tests.deployments.helpers import metadata, run_deployment


def test_slow_production_deployment_is_rolled_back_and_healthy_one_kept(
        sandbox, instance, resources, store):
    first = sandbox.state.world.production
    r0 = run_deployment(instance, resources, first)
    assert r0.success
    assert metadata(r0, "baseline")["cold_start"] is True
    # The sandbox's healthy app runs at 80% of the plan's budgets: faster than its static values,
    # "improved" when all four metrics are beyond -10%; end-to-end is wall-clock, and a busy
    # machine's HTTP overhead can keep it within the threshold ("pass"). Both are accepted.
    assert metadata(r0, "baseline_comparison")["verdict"] in ("improved", "pass")
    assert metadata(r0, "rollback")["decision"] == "kept"

    healthy = sandbox.state.create(target="production").id
    r1 = run_deployment(instance, resources, healthy)
    assert metadata(r1, "baseline")["source"] == f"interleaved:{first}"
    # Per-metric numbers at the top level, which Dagster's Plots tab draws over materializations.
    timings = metadata(r1, "benchmark_timings")
    assert all(isinstance(timings[f"{m}_{k}"], float) for m in ("end_to_end", "ai_analysis")
               for k in ("p50_ms", "p95_ms", "error_pct"))
    assert timings["end_to_end_error_pct"] == 0.0
    assert timings["end_to_end_p95_ms"] >= timings["end_to_end_p50_ms"] > 0
    assert metadata(r1, "baseline_comparison")["verdict"] in ("pass", "improved")
    assert metadata(r1, "rollback")["decision"] == "kept"
    assert sandbox.state.world.production == healthy

    slow = sandbox.state.create(target="production", slowdown=1.3).id
    r2 = run_deployment(instance, resources, slow)
    cmp = metadata(r2, "baseline_comparison")
    assert cmp["verdict"] == "regressed"
    rows = {row.data["metric"]: row.data for row in cmp["comparison"].records}
    assert rows["end_to_end"]["verdict"] == "regressed"
    assert 15 < rows["end_to_end"]["change_pct"] < 50
    rb = metadata(r2, "rollback")
    assert rb["decision"] == "rolled_back" and rb["rollback_to"] == healthy
    # What happened and why, in words and the metrics' own numbers, said once.
    assert cmp["summary"].startswith(f"{slow} regressed: ") and "ms vs" in cmp["summary"]
    assert "regressed: regressed" not in cmp["reasons"]
    assert rb["reason"].startswith("regressed beyond the threshold: ")
    assert "end_to_end +" in rb["reason"] and " ms vs " in rb["reason"]
    assert rows["end_to_end"]["p_value"].count("e-") == 1  # 1.2e-05: two digits
    assert rows["end_to_end"]["current_ms"] == round(rows["end_to_end"]["current_ms"], 1)
    st = sandbox.state.status()
    assert st["production"] == healthy
    assert st["rollbacks"] == [dict(st["rollbacks"][0], **{"from": slow, "to": healthy})]

    # A rerun never rolls back twice.
    again = run_deployment(instance, resources, slow, selection=[rollback])
    assert metadata(again, "rollback")["decision"] == "skipped"
    assert len(sandbox.state.status()["rollbacks"]) == 1
    decisions = [d["decision"] for d in store.decisions_for(slow)]
    assert decisions == ["rolled_back", "skipped"]
    # The plan's table carries a row per metric and deployment.
    plan_rows = store.table_rows("einstein_performance_benchmarks")
    assert len(plan_rows) == 12
    assert {r["passed"] for r in plan_rows if r["deployment_id"] == slow} >= {False}
    # The Runs list tells a rollback from a keep by the runs' tags.
    tags = {r.run_id: instance.get_run_by_id(r.run_id).tags for r in (r1, r2)}
    assert tags[r2.run_id]["atge/decision"] == "rolled_back"
    assert tags[r2.run_id]["atge/verdict"] == "regressed"
    assert tags[r1.run_id]["atge/decision"] == "kept"
    # One table tells every deployment's fate, newest first.
    table = dg.materialize([releases], resources=resources, instance=instance)
    md = metadata(table, "releases")
    by_id = {row.data["deployment"]: row.data for row in md["releases"].records}
    assert [row.data["deployment"] for row in md["releases"].records] == [slow, healthy, first]
    assert by_id[slow]["decision"] == "skipped"  # the rerun's decision is the newest
    assert by_id[healthy]["decision"] == "kept" and by_id[first]["decision"] == "kept"
    assert "end_to_end +" in by_id[slow]["changes"]
    assert by_id[slow]["changes"].split(", ")[0].endswith(" regressed")  # regressed ones first
    assert by_id[slow]["run"].endswith(f"/runs/{again.run_id}")
    assert md["deployments"] == 3 and md["kept_count"] == 2
    assert md["summary"].startswith("3 deployments: ")


def test_regressed_preview_is_not_rolled_back(sandbox, instance, resources):
    run_deployment(instance, resources, sandbox.state.world.production)
    preview = sandbox.state.create(target="preview", slowdown=1.5).id
    r = run_deployment(instance, resources, preview)
    assert metadata(r, "baseline_comparison")["verdict"] == "regressed"
    rb = metadata(r, "rollback")
    assert rb["decision"] == "skipped" and "preview" in rb["reason"]
    assert sandbox.state.status()["rollbacks"] == []
    # A preview's fate is the promotion gate's.
    assert instance.get_run_by_id(r.run_id).tags["atge/decision"] == "blocked"


def test_dry_run_records_but_does_not_call(sandbox, instance, resources):
    from atge_assets.deployments.resources import ReleasePolicyResource

    run_deployment(instance, resources, sandbox.state.world.production)
    slow = sandbox.state.create(target="production", slowdown=1.4).id
    r = run_deployment(instance, dict(resources, policy=ReleasePolicyResource(dry_run=True)), slow)
    assert metadata(r, "rollback")["decision"] == "would_roll_back"
    assert sandbox.state.world.production == slow
    assert sandbox.state.status()["rollbacks"] == []


def test_deployment_on_a_host_not_allowed_is_refused_and_recorded(
        sandbox, instance, resources, store):
    from atge_assets.deployments.resources import BenchmarkResource
    from atge_assets.lib.resources import VercelResource

    # The provider vouches for its own host; a provider at "localhost" does not vouch for 127.0.0.1.
    port = sandbox.server_address[1]
    res = dict(resources, vercel=VercelResource(
        token=TOKEN, project_id=sandbox.state.world.project_id,
        base_url=f"http://localhost:{port}"),
        benchmark=BenchmarkResource(samples=3, warmup=0, allowed_hosts=["*.vercel.app"]))
    dep = sandbox.state.world.production
    with pytest.raises(dg.Failure, match="not in the allowed hosts"):
        run_deployment(instance, res, dep)
    assert [d["decision"] for d in store.decisions_for(dep)] == ["refused"]
    assert store.latest_samples(dep) == {}


def test_token_never_reaches_the_event_log(sandbox, instance, resources):
    run_deployment(instance, resources, sandbox.state.world.production)
    records = instance.get_event_records(dg.EventRecordsFilter(
        event_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
    assert records
    for rec in instance.all_logs(records[0].event_log_entry.run_id):
        assert TOKEN not in str(rec.to_json() if hasattr(rec, "to_json") else rec)
