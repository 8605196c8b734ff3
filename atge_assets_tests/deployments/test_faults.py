"""Faults at the edges: targets that hang or refuse, a provider failing during the rollback."""

import json

from atge_assets.deployments.resources import BenchmarkResource
from atge_assets.deployments.suite import DEFAULT_SUITE, metrics_to_json
from atge_assets_tests.conftest import fault
from atge_assets_tests.deployments.helpers import metadata, run_deployment

SHORT_TIMEOUTS = json.loads(metrics_to_json(DEFAULT_SUITE))
for m in SHORT_TIMEOUTS:
    m["timeout_s"] = 0.5


def _short(resources):
    return dict(resources, benchmark=BenchmarkResource(
        samples=10, warmup=1, baseline_scale=0.005, max_samples=10,
        suite_json=json.dumps(SHORT_TIMEOUTS)))


def test_refusing_production_deployment_is_recorded_and_rolled_back(sandbox, instance, resources,
                                                                     store):
    res = _short(resources)
    first = sandbox.state.world.production
    run_deployment(instance, res, first)
    dead = sandbox.state.create(target="production", mode="refuse").id
    r = run_deployment(instance, res, dead)
    assert r.success
    t = metadata(r, "benchmark_timings")
    assert t["failed_samples"] == t["samples"] == 40
    samples = store.latest_samples(dead)
    assert all(v is None for vs in samples.values() for v in vs)
    cmp = metadata(r, "baseline_comparison")
    assert cmp["verdict"] == "regressed"
    assert "fail" in cmp["reasons"].lower()
    assert metadata(r, "rollback")["decision"] == "rolled_back"
    assert sandbox.state.world.production == first


def test_hanging_preview_gives_failed_samples_not_a_crash(sandbox, instance, resources, store):
    res = _short(resources)
    run_deployment(instance, res, sandbox.state.world.production)
    hung = sandbox.state.create(target="preview", mode="hang").id
    r = run_deployment(instance, res, hung)
    assert r.success
    rows = [row for row in store.table_rows("samples")
            if row["deployment_id"] == hung and row["target"] == "candidate"]
    assert len(rows) == 40 and all(not x["ok"] and "timeout" in x["error"] for x in rows)
    assert metadata(r, "baseline_comparison")["verdict"] in ("regressed", "inconclusive")
    assert metadata(r, "rollback")["decision"] == "skipped"  # a preview is never live


def test_provider_failing_during_rollback_still_rolls_back_once(sandbox, instance, resources):
    first = sandbox.state.world.production
    run_deployment(instance, resources, first)
    slow = sandbox.state.create(target="production", slowdown=1.4).id
    from atge_assets.deployments.assets import (
        baseline,
        baseline_comparison,
        benchmark_timings,
        rollback,
    )

    run_deployment(instance, resources, slow,
                   selection=[benchmark_timings, baseline, baseline_comparison])
    # The rollback call meets a 503, a 429, and then a lost answer after it took effect.
    sandbox.state.api_faults.extend([
        fault(200, body={"id": "prj", "targets": {"production": {"id": slow}}}),
        fault(503), fault(429, {"x-ratelimit-reset": "0"}), fault(504, after=True)])
    r = run_deployment(instance, resources, slow, selection=[rollback])
    assert metadata(r, "rollback")["decision"] == "rolled_back"
    assert [e["to"] for e in sandbox.state.status()["rollbacks"]] == [first]
