"""Predictive monitoring: the metrics intake, a forecast per metric with its chart, and the record
of self-healing actions (reported by `self_healing_sensor`, see sensors.py)."""

import time
from datetime import datetime, timezone

import dagster as dg

from atge_assets.lib.charts import png_markdown
from atge_assets.lib.http import HostNotAllowed
from atge_assets.lib.resources import HistoryResource
from atge_assets.monitoring import actions as act
from atge_assets.monitoring.charts import forecast_chart_png
from atge_assets.monitoring.forecast import forecast
from atge_assets.monitoring.history import MonitoringHistory
from atge_assets.monitoring.metrics_source import MetricsSourceError
from atge_assets.monitoring.resources import MonitoringResource


class MonitorConfig(dg.Config):
    """`now`: the moment to read and forecast for (unix s). Unset: the run's own clock. Set by
    tests and catch-up runs, so both assets of a run agree on it."""

    now: float | None = None


def _now(config: MonitorConfig) -> float:
    return time.time() if config.now is None else float(config.now)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(
        timespec="seconds")


def _table(rows: list[dict], columns: list[str]) -> dg.TableMetadataValue:
    def kind(c):
        vals = [r.get(c) for r in rows if r.get(c) is not None]
        if vals and all(isinstance(v, bool) for v in vals):
            return "bool"
        if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return "float"
        return "string"

    def cell(v):
        return round(v, 3) if isinstance(v, float) else v

    return dg.MetadataValue.table(
        [dg.TableRecord({c: cell(r.get(c)) for c in columns}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, kind(c)) for c in columns]))


@dg.asset(
    group_name="monitoring",
    kinds={"python", "prometheus"},
    description="Once a minute: CPU, memory, response time p95, error rate, active users and queue "
    "depth of the watched target, from Prometheus's query_range (missed minutes are asked for "
    "again; a first intake reads the 6 h the forecasts judge swings by) or the target's own JSON "
    "metrics endpoint, stored in the history database. Reported by system_metrics_sensor "
    "without a run (materializing it from the UI does the same intake in a run).",
)
def system_metrics(context: dg.AssetExecutionContext, config: MonitorConfig,
                   monitoring: MonitoringResource, history: HistoryResource
                   ) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=read_metrics(_now(config), monitoring, history,
                                                      context.log))


def read_metrics(now: float, monitoring: MonitoringResource, history: HistoryResource,
                 log) -> dict:
    """One intake at `now`: stores the samples, returns the `system_metrics` metadata. Shared by
    the asset (a run from the UI) and system_metrics_sensor (the minute intake, without a run)."""
    store, metrics = MonitoringHistory(history.engine()), monitoring.metric_names()
    try:
        with monitoring.source_client() as source:
            since = store.last_metric_timestamps(monitoring.target, source.kind)
            # The window is read again each minute: what it holds now is what gets forecast,
            # even where the source changed it after it was first read.
            got = source.collect(metrics, now, since, monitoring.step_s, monitoring.history_s(),
                                 revisit_s=monitoring.window_s)
            where = f"{source.kind} {source.url}"
    except (MetricsSourceError, HostNotAllowed, ValueError) as exc:
        raise dg.Failure(description=f"metrics source: {exc}") from None
    rows = [dict(target=monitoring.target, metric=p.metric, value=p.value, timestamp=p.timestamp,
                 source=source.kind) for p in got.points]
    replaced = store.replace_metric_values(rows)
    added = store.record_metric_samples(rows)
    pruned = store.prune_metric_samples(now - monitoring.retention_days * 86400)
    for metric, err in got.errors.items():
        log.warning(f"{metric}: {err}")
    if got.errors and len(got.errors) == len(metrics):
        raise dg.Failure(description="no metric could be read: " + "; ".join(
            f"{m}: {e}" for m, e in got.errors.items()))
    thresholds = monitoring.threshold_map()
    latest = []
    for m in metrics:
        mine = [p for p in got.points if p.metric == m]
        last = max(mine, key=lambda p: p.timestamp) if mine else None
        latest.append({"metric": m, "value": last.value if last else None,
                       "unit": monitoring.unit(m), "threshold": thresholds[m],
                       "at": _iso(last.timestamp) if last else None, "new_samples": len(mine),
                       "note": got.errors.get(m) or ("no samples" if m in got.empty else "")})
    log.info(f"{added} new samples from {where}, {replaced} changed since read "
             f"({len(got.errors)} metric(s) failed)")
    return {
        "source": where, "target": monitoring.target, "samples_added": added,
        "samples_replaced": replaced,
        "samples_pruned": pruned, "latest": _table(latest, list(latest[0]) if latest else []),
        "errors": dg.MetadataValue.md("\n".join(f"- **{m}**: {e}" for m, e in got.errors.items())
                                      or "none"),
        "now": dg.MetadataValue.timestamp(now),
    }


FORECAST_COLUMNS = ["metric", "status", "alert", "method", "level", "slope_per_minute",
                    "minutes_to_threshold", "earliest_min", "latest_min", "forecast",
                    "interval_low", "interval_high", "threshold", "unit", "n_points",
                    "since_action"]


def last_actions(store, target: str, now: float, window_s: float) -> dict[str, float]:
    """Per metric, when an action last changed it (scale, restart, clear_cache: done, before
    `now`). Its forecast starts there: samples from before describe a system that is gone, and a
    ramp the action already dealt with would otherwise prompt it again once the cooldown ends.
    Until ten minutes of new samples exist the metric has no forecast, so no second action."""
    out: dict[str, float] = {}
    for r in store.healing_actions(target=target, since=now - window_s):
        if r["outcome"] == act.DONE and r["action"] != act.ALERT and r["created_at"] <= now:
            out[r["metric"]] = max(out.get(r["metric"], 0.0), r["created_at"])
    return out


@dg.asset(
    group_name="monitoring",
    deps=[system_metrics],
    kinds={"python", "numpy"},
    check_specs=[dg.AssetCheckSpec(
        "no_breach_forecast", asset="metric_forecasts",
        description="Warns while a metric is forecast to cross its threshold within the horizon "
        "(trend significant) or is already past it.")],
    description="Per metric: a robust forecast of its level (a flat-then-ramp hinge, Holt or an "
    "accelerating curve, whichever forecast the recent past better) over the last hour, or since "
    "the last action on it, within the metric's bounds; a trend counts only if steeper than the "
    "metric's own swings over the last 6 h. The slope, the time to threshold with its interval "
    "and whether a breach is expected within the horizon; a chart per metric. "
    "self_healing_sensor acts on these.",
)
def metric_forecasts(context: dg.AssetExecutionContext, config: MonitorConfig,
                     monitoring: MonitoringResource, history: HistoryResource
                     ) -> dg.MaterializeResult:
    metadata, check = forecast_metrics(_now(config), monitoring, history, context.log)
    return dg.MaterializeResult(metadata=metadata, check_results=[dg.AssetCheckResult(**check)])


def forecast_metrics(now: float, monitoring: MonitoringResource, history: HistoryResource,
                     log) -> tuple[dict, dict]:
    """The forecasts at `now`: the `metric_forecasts` metadata and its check's fields (an
    AssetCheckResult in a run, an AssetCheckEvaluation from system_metrics_sensor)."""
    store = MonitoringHistory(history.engine())
    thresholds, target = monitoring.threshold_map(), monitoring.target
    acted = last_actions(store, target, now, monitoring.window_s)
    out, rows, charts = {}, [], []
    for m in monitoring.metric_names():
        since = max(now - monitoring.history_s(), acted.get(m, float("-inf")))
        ts, vs = store.metric_series(target, m, since, now)
        f = forecast(ts, vs, thresholds[m], monitoring.horizon_s, direction=monitoring.direction(m),
                     now=now, window_s=monitoring.window_s, context_s=monitoring.context_s,
                     bounds=monitoring.bounds(m))
        out[m] = f.as_dict()
        if m in acted:
            out[m]["reasons"].append(f"samples from {_iso(acted[m])} on, after the last action")
        log.info(f"{m}: {f.reasons[0]}")
        rows.append({"metric": m, "status": f.status, "alert": f.alert, "method": f.method,
                     "level": f.level, "slope_per_minute": f.slope_per_minute,
                     "minutes_to_threshold": f.minutes_to_threshold,
                     "earliest_min": f.minutes_to_threshold_low,
                     "latest_min": f.minutes_to_threshold_high, "forecast": f.forecast,
                     "interval_low": f.interval_low, "interval_high": f.interval_high,
                     "threshold": f.threshold, "unit": monitoring.unit(m), "n_points": f.n_points,
                     "since_action": _iso(acted.get(m))})
        if monitoring.charts:
            # The window fitted, not the whole context: the ramp must be visible at a glance.
            start = now - monitoring.window_s
            shown = [(t, v) for t, v in zip(ts, vs) if t > start]
            png = forecast_chart_png(m, monitoring.unit(m), [t for t, _ in shown],
                                     [v for _, v in shown], f, now)
            charts.append(png_markdown(png, m))
    alerting = [m for m, f in out.items() if f["alert"]]
    alert_md = "\n".join(f"- **{m}**: {out[m]['reasons'][0]}" for m in alerting) or \
        "no metric is forecast to cross its threshold within the horizon"
    payload = {"target": target, "now": now, "horizon_minutes": monitoring.horizon_s / 60,
               "metrics": out}
    metadata = {
        "forecasts": dg.MetadataValue.json(payload),
        "table": _table(rows, FORECAST_COLUMNS),
        "alerts": dg.MetadataValue.md(alert_md),
        "alerting": len(alerting),
        "charts": dg.MetadataValue.md("\n\n".join(charts) or "charts off"),
        "now": dg.MetadataValue.timestamp(now),
    }
    check = dict(check_name="no_breach_forecast", passed=not alerting,
                 severity=dg.AssetCheckSeverity.WARN,
                 metadata={"alerts": dg.MetadataValue.md(alert_md), "alerting": len(alerting)})
    return metadata, check


healing_actions = dg.AssetSpec(
    "healing_actions",
    group_name="monitoring",
    deps=[metric_forecasts],
    kinds={"python"},
    description="Every self-healing decision: what was done (scale, restart, clear_cache, alert), "
    "would have been done (dry run) or held back (cooldown, cap, no provider), with why. "
    "Reported by self_healing_sensor when it decides, not materialized by a run: acting from "
    "the sensor spares the run queue, where benchmark runs may be waiting, minutes that a "
    "coming breach does not have. The same records are in the history table healing_actions.",
)

RECORD_COLUMNS = ["id", "at", "target", "metric", "action", "outcome", "reason", "detail",
                  "evaluation"]


def healing_metadata(written: list[dict], recent: list[dict]) -> dict:
    def row(r):
        return dict(r, at=_iso(r["created_at"]))

    counts: dict[str, int] = {}
    for r in recent:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    return {
        "decided": _table([row(r) for r in written], RECORD_COLUMNS),
        "recent": _table([row(r) for r in recent], RECORD_COLUMNS),
        "summary": dg.MetadataValue.md("\n".join(
            f"- **{r['action']}** for {r['metric']} on {r['target']}: {r['outcome']}. "
            f"{r['reason']}" + (f" ({r['detail']})" if r.get("detail") else "")
            for r in written)),
        "outcomes_in_recent": dg.MetadataValue.json(counts),
    }
