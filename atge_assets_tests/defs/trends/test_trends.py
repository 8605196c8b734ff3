import base64

import dagster as dg

from atge_assets.core import trends
from atge_assets.defs.deployments.assets import benchmark_timings
from atge_assets.defs.trends.assets import performance_trends
from atge_assets_tests.defs.deployments.helpers import metadata, run_deployment


def test_trends_over_deployments(sandbox, instance, resources):
    first = sandbox.state.world.production
    slower = sandbox.state.create(target="preview", slowdown=1.5).id
    for dep in (first, slower):
        assert run_deployment(instance, resources, dep, selection=[benchmark_timings]).success
    r = dg.materialize([performance_trends], resources={"history": resources["history"]},
                       instance=instance)
    md = metadata(r, "performance_trends")
    assert md["deployments"] == 2
    per_dep = [row.data for row in md["by_deployment"].records]
    e2e = [row for row in per_dep if row["metric"] == "end_to_end"]
    assert [row["deployment_id"] for row in e2e] == [first, slower]
    assert e2e[0]["change_pct"] is None
    assert 30 < e2e[1]["change_pct"] < 70  # 1.5x slower, seen as a change against the one before
    daily = [row.data for row in md["by_day"].records]
    assert {row["metric"] for row in daily} == {"data_collection", "ai_analysis", "database_query",
                                                "end_to_end"}
    assert sum(row["count"] for row in daily if row["metric"] == "end_to_end") == 24
    charts = md["charts"]
    assert charts.count("data:image/png;base64,") == 4
    png = base64.b64decode(charts.split("base64,")[1].split(")")[0])
    assert png.startswith(b"\x89PNG")


def test_trends_of_an_empty_history(resources, instance):
    r = dg.materialize([performance_trends], resources={"history": resources["history"]},
                       instance=instance)
    assert metadata(r, "performance_trends")["deployments"] == 0


def test_by_day_change_against_previous_day():
    rows = [dict(deployment_id="a", metric="m", value_ms=v, started_at=day * 86400.0 + i,
                 created_ms=1, target="production", verdict="pass")
            for day, v in ((0, 100.0), (0, 100.0), (1, 120.0), (1, 120.0)) for i in (0,)]
    daily = trends.by_day(trends.frame(rows))
    assert list(daily["day"]) == ["1970-01-01", "1970-01-02"]
    assert abs(daily["change_pct"].iloc[1] - 20.0) < 1e-9
