"""The deployments' history on SQLite and on the real Postgres server."""

import threading

import pytest

from atge_assets.lib.providers.base import Deployment


def dep(i: int, target="production", verdict=None) -> Deployment:
    return Deployment(f"dpl_{i}", f"https://d{i}.vercel.app", "READY", target, 1000 + i)


def sample_rows(metric="end_to_end", n=5, value=100.0):
    return [dict(metric=metric, seq=i, ok=True, value_ms=value + i, wall_ms=value + i,
                 started_at=1.0 + i, target="candidate") for i in range(n)]


def test_known_good_excludes_rolled_back_and_regressed(any_store):
    s = any_store
    for i in range(4):
        s.upsert_deployment(dep(i))
    s.upsert_deployment(dep(9, target="preview"))
    s.set_verdict("dpl_0", "pass")
    s.set_verdict("dpl_1", "improved")
    s.set_verdict("dpl_2", "regressed")
    s.set_verdict("dpl_9", "pass")
    s.claim_rollback("dpl_1", "dpl_0", "run")
    assert [d.id for d in s.known_good_production(10_000)] == ["dpl_0"]
    s.set_verdict("dpl_3", "pass")
    assert [d.id for d in s.known_good_production(10_000)] == ["dpl_3", "dpl_0"]
    assert [d.id for d in s.known_good_production(1003)] == ["dpl_0"]


def test_a_promoted_preview_is_a_rollback_target_from_when_it_went_live(any_store):
    s = any_store
    s.upsert_deployment(dep(1))
    s.upsert_deployment(dep(2, target="preview"))
    for d in ("dpl_1", "dpl_2"):
        s.set_verdict(d, "pass")
    assert [d.id for d in s.known_good_production(10**15)] == ["dpl_1"]  # never live
    s.claim_promotion("dpl_2", "run")
    assert [d.id for d in s.known_good_production(10**15)] == ["dpl_1"]  # not done yet
    s.finish_promotion("dpl_2")
    # Live most recently first, by when it went live (its promotion), not when it was built.
    assert [d.id for d in s.known_good_production(10**15)] == ["dpl_2", "dpl_1"]
    assert [d.id for d in s.known_good_production(10_000)] == ["dpl_1"]  # promoted after that


def test_latest_measurement_wins_and_rounds_extend_it(any_store):
    s = any_store
    s.upsert_deployment(dep(1))
    s.record_measurement("dpl_1", "r1", sample_rows(value=100), 0.0)
    s.record_measurement("dpl_1", "r2", sample_rows(value=200) + [
        dict(metric="end_to_end", seq=5, ok=False, value_ms=None, wall_ms=None, status=500,
             error="HTTP 500", started_at=9.0, target="candidate")], 0.0, reference_id="dpl_0")
    assert s.latest_samples("dpl_1")["end_to_end"] == [200, 201, 202, 203, 204, None]
    s.add_samples("dpl_1", [dict(r, seq=r["seq"] + 6) for r in sample_rows(value=300, n=2)])
    assert len(s.latest_samples("dpl_1")["end_to_end"]) == 8
    assert s.latest_reference("dpl_1") == "dpl_0"
    with pytest.raises(LookupError):
        s.add_samples("dpl_nope", sample_rows())


def test_one_rollback_claim_wins_under_concurrency(any_store):
    s = any_store
    s.upsert_deployment(dep(1))
    results = []
    barrier = threading.Barrier(8)

    def claim(i):
        barrier.wait()
        results.append(s.claim_rollback("dpl_1", "dpl_0", f"run{i}"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(None) == 1  # exactly one claim inserted
    assert len(s.table_rows("rollbacks")) == 1


def test_concurrent_writers_lose_nothing(any_store):
    s = any_store
    for i in range(4):
        s.upsert_deployment(dep(i))
    errors = []

    def write(i):
        try:
            for r in range(5):
                s.record_measurement(f"dpl_{i}", f"run{r}", sample_rows(n=10), 0.0)
                s.record_comparison(f"dpl_{i}", f"run{r}", [dict(
                    metric="end_to_end", verdict="pass", threshold=0.1,
                    baseline_source="static", current_ms=1.0)], "pass")
        except Exception as exc:  # surfaced below: a lost write must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(s.table_rows("samples")) == 4 * 5 * 10
    assert len(s.table_rows("einstein_performance_benchmarks")) == 4 * 5
