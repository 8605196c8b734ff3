"""Trend aggregates across deployments and days, with a chart per metric."""


import dagster as dg

from atge_assets.core import trends
from atge_assets.defs.deployments.assets import benchmark_timings
from atge_assets.defs.resources import HistoryResource


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
    deps=[benchmark_timings],
    kinds={"python", "pandas"},
    description="Per metric, per day and per deployment: count, mean, p50, p95, min, max and the "
    "change against the previous window, with a chart per metric over deployments.",
)
def performance_trends(context: dg.AssetExecutionContext, history: HistoryResource
                       ) -> dg.MaterializeResult:
    df = trends.frame(history.store().sample_rows())
    daily = trends.by_day(df)
    per_dep = trends.by_deployment(df)
    metrics = sorted(df["metric"].unique()) if not df.empty else []
    context.log.info(f"trends over {df['deployment_id'].nunique() if not df.empty else 0} "
                     f"deployments, {len(df)} samples, metrics {metrics}")
    charts = [trends.png_markdown(trends.chart_png(per_dep, m), m) for m in metrics]
    cols = ["count", "mean", "p50", "p95", "min", "max", "change_pct"]
    return dg.MaterializeResult(metadata={
        "deployments": int(df["deployment_id"].nunique()) if not df.empty else 0,
        "samples": len(df),
        "by_day": _table(daily, ["metric", "day", *cols]),
        "by_deployment": _table(per_dep, ["metric", "deployment_id", "verdict", *cols]),
        "charts": dg.MetadataValue.md("\n\n".join(charts) or "no samples yet"),
    })


trends_job = dg.define_asset_job("performance_trends_job", selection=[performance_trends])
