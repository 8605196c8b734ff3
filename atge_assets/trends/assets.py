"""Trend aggregates across deployments and days, with a chart per metric."""


import dagster as dg
import pandas as pd

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.deployments.resources import BenchmarkResource
from atge_assets.lib.charts import png_markdown
from atge_assets.lib.resources import HistoryResource
from atge_assets.trends import aggregates as trends


def _table(df, columns: list[str]) -> dg.TableMetadataValue:
    records = [
        dg.TableRecord({c: (None if v != v else (round(v, 3) if isinstance(v, float) else v))
                        for c, v in zip(columns, row)})
        for row in df[columns].itertuples(index=False)
    ]
    types = {c: ("string" if df[c].dtype == object else "float") for c in columns}
    return dg.MetadataValue.table(
        records, schema=dg.TableSchema(columns=[dg.TableColumn(c, types[c]) for c in columns]))


@dg.asset(
    group_name="trends",
    # By key: importing the asset would make this module define it a second time.
    deps=[dg.AssetKey("benchmark_timings")],
    kinds={"python", "pandas"},
    check_specs=[dg.AssetCheckSpec(
        "change_point_alert", asset="performance_trends",
        description="Warns when a metric shifted slower across deployments by more than its "
        "threshold, as a step or as a creep of small steps.")],
    description="Per metric, per day and per deployment: count, mean, p50, p95, min, max and the "
    "change against the previous window, with a chart per metric over deployments.",
)
def performance_trends(
    context: dg.AssetExecutionContext, history: HistoryResource, benchmark: BenchmarkResource
) -> dg.MaterializeResult:
    df = trends.frame(DeploymentHistory(history.engine()).sample_rows())
    daily = trends.by_day(df)
    per_dep = trends.by_deployment(df)
    metrics = sorted(df["metric"].unique()) if not df.empty else []
    context.log.info(f"trends over {df['deployment_id'].nunique() if not df.empty else 0} "
                     f"deployments, {len(df)} samples, metrics {metrics}")
    points = trends.change_points(per_dep) if not per_dep.empty else []
    suite = benchmark.suite()
    thresholds = {m.name: m.threshold for m in suite.metrics}
    slower = trends.alerts(points, thresholds)
    for p in points:
        context.log.info(f"change point in {p['metric']} at {p['deployment_id']}: {p['kind']} "
                         f"{p['change_pct']:+.1f}% (p={p['p_value']:.2g})")
    planned = {m.name: suite.static_baseline_ms(m.name) for m in suite.metrics}
    charts = [png_markdown(trends.chart_png(
        per_dep, m, [p["index"] for p in points if p["metric"] == m],
        baseline_ms=planned.get(m),
        limit_ms=planned[m] * (1 + thresholds[m]) if m in planned else None), m)
        for m in metrics]
    cols = ["count", "mean", "p50", "p95", "min", "max", "change_pct"]
    cp_frame = pd.DataFrame(points, columns=["metric", "deployment_id", "kind", "before_ms",
                                             "after_ms", "change_pct", "p_value"])
    alert_md = "\n".join(
        f"- **{p['metric']}** {p['kind']} {p['change_pct']:+.1f}% starting at `{p['deployment_id']}`"
        for p in slower) or "no shift slower than its threshold"
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(
        check_name="change_point_alert", passed=not slower, severity=dg.AssetCheckSeverity.WARN,
        metadata={"alerts": dg.MetadataValue.md(alert_md), "slower_shifts": len(slower)},
    )], metadata={
        "change_points": _table(cp_frame, list(cp_frame.columns)),
        "alerts": dg.MetadataValue.md(alert_md),
        "deployments": int(df["deployment_id"].nunique()) if not df.empty else 0,
        "samples": len(df),
        "by_day": _table(daily, ["metric", "day", *cols]),
        "by_deployment": _table(per_dep, ["metric", "deployment_id", "verdict", *cols]),
        "charts": dg.MetadataValue.md("\n\n".join(charts) or "no samples yet"),
        "slower_shifts": len(slower),
        # Top-level numbers (the newest deployment's) are what Dagster's Plots tab draws across
        # materializations: one line per metric, interactive, beside the PNGs.
        **trends.latest_numbers(per_dep),
    })


trends_job = dg.define_asset_job("performance_trends_job", selection=[performance_trends])
