"""The metrics intake sensor, and the self-healing sensor: acts on forecast breaches, only when
they persist.

Each materialization of `metric_forecasts` is one evaluation. A metric must alert (breach
expected within the horizon with a significant trend, or already past its threshold) on
`consecutive` evaluations in a row (streaks.py) before its actions go to the policy (actions.py:
cooldown, cap per hour, dry run) and then to the acting provider or the notifiers. A single noisy
point cannot get that far: the forecaster ignores it, and a second evaluation would have to agree.
"""

import time
from datetime import datetime, timezone

import dagster as dg
from dagster._utils.schedules import cron_string_iterator

from atge_assets.lib.resources import HistoryResource
from atge_assets.monitoring import actions as act
from atge_assets.monitoring import streaks as streaks_mod
from atge_assets.monitoring.assets import (
    forecast_metrics,
    healing_actions,
    healing_metadata,
    metric_forecasts,
    read_metrics,
    system_metrics,
)
from atge_assets.monitoring.history import MonitoringHistory
from atge_assets.monitoring.resources import MonitoringResource
from atge_assets.notify.resources import NotifierResource

# Evaluations read per tick; a sensor further behind skips to the newest (old ones are stale).
BATCH = 50

NO_PROVIDER = ("no acting provider: Vercel has no API to scale, restart or clear the cache of a "
               "deployment; set ATGE_HEALING_URL to one that has (the sandbox under `atge up`)")


def _forecasts(record) -> dict | None:
    mat = record.asset_materialization
    value = mat.metadata.get("forecasts") if mat is not None else None
    payload = getattr(value, "value", None)
    if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), dict) \
            or not isinstance(payload.get("now"), (int, float)):
        return None
    return payload


def _evaluation(record) -> str:
    # Reported by system_metrics_sensor, a forecast has no run: its event id names it instead.
    if record.run_id:
        return f"metric_forecasts run {record.run_id[:8]}"
    return f"metric_forecasts event {record.storage_id}"


def last_cron_tick(cron: str, now: float) -> float:
    """The newest moment at or before `now` that the cron expression names (UTC)."""
    return next(cron_string_iterator(now, cron, "UTC", ascending=False)).timestamp()


def build_system_metrics_sensor(cron: str = "* * * * *", running: bool = True,
                                interval_s: int = 15, clock=time.time):
    """The intake, without a run: reads the metrics and forecasts in the sensor, and reports both
    materializations (and the forecast check) as asset events. A run a minute filled the Runs
    list, where deployments' benchmark runs are what people look for, and queued behind them
    when they were busy; sensor ticks are serialized, so two intakes never overlap either."""

    @dg.sensor(
        name="system_metrics_sensor",
        minimum_interval_seconds=interval_s,
        default_status=(dg.DefaultSensorStatus.RUNNING if running
                        else dg.DefaultSensorStatus.STOPPED),
        description="Metrics intake and forecasts once per ATGE_METRICS_CRON tick (every "
        "minute), reported on system_metrics and metric_forecasts without a run. Starts "
        "stopped when no metrics source is configured.",
    )
    def system_metrics_sensor(context: dg.SensorEvaluationContext,
                              monitoring: MonitoringResource, history: HistoryResource):
        now = clock()
        tick = last_cron_tick(cron, now)
        done = float(context.cursor) if context.cursor else None
        if done is not None and done >= tick:
            return dg.SkipReason(f"intake for {_utc(tick)} done; waiting for the next cron tick")
        # A failing source fails the tick (shown on the sensor) and is tried again next time.
        intake = read_metrics(now, monitoring, history, context.log)
        forecasts, check = forecast_metrics(now, monitoring, history, context.log)
        return dg.SensorResult(cursor=str(tick), asset_events=[
            dg.AssetMaterialization(asset_key=system_metrics.key, metadata=intake),
            dg.AssetMaterialization(asset_key=metric_forecasts.key, metadata=forecasts),
            dg.AssetCheckEvaluation(asset_key=metric_forecasts.key, **check)])

    return system_metrics_sensor


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def build_self_healing_sensor(interval_s: int = 30):
    @dg.sensor(
        name="self_healing_sensor",
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates each metric_forecasts materialization; a metric alerting on two in "
        "a row gets its actions (scale, restart, clear cache, alert) within cooldowns and "
        "caps, or a dry-run record; every decision reported on healing_actions.",
    )
    def self_healing_sensor(context: dg.SensorEvaluationContext, monitoring: MonitoringResource,
                            history: HistoryResource, notifier: NotifierResource):
        after, streaks = streaks_mod.parse_cursor(context.cursor)
        # Newest first, then put in order: a sensor far behind (or new) starts near the present.
        records = list(reversed(context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=metric_forecasts.key, after_storage_id=after),
            limit=BATCH if after is not None else monitoring.consecutive).records))
        if not records:
            return dg.SkipReason("no new forecasts since the last evaluation")
        latest = None
        for rec in records:
            payload = _forecasts(rec)
            if payload is None:
                context.log.warning(f"forecast materialization {rec.storage_id} has no readable "
                                    "'forecasts' metadata; skipped")
                continue
            streaks_mod.count(streaks, payload)
            latest = (rec, payload)
        cursor = streaks_mod.cursor(records[-1].storage_id, streaks)
        if latest is None:
            return dg.SensorResult(cursor=cursor, skip_reason="no readable forecasts")
        rec, payload = latest
        target, now = str(payload.get("target")), time.time()
        if now - payload["now"] > monitoring.max_forecast_age_s:
            return dg.SensorResult(cursor=cursor, skip_reason=(
                f"the newest forecast is {now - payload['now']:.0f} s old (more than "
                f"{monitoring.max_forecast_age_s:g}): not acting on a stale picture"))
        due, why_not = streaks_mod.due(payload, streaks, monitoring.consecutive)
        if not due:
            return dg.SensorResult(cursor=cursor, skip_reason=why_not)

        store = MonitoringHistory(history.engine())
        client = monitoring.actions_client()
        performers: dict[str, act.Performer] = (
            {a: client.performer for a in client.SUPPORTED} if client else {})
        performers[act.ALERT] = act.alert_performer(
            lambda event: notifier.send(event, store.engine),
            {m: monitoring.unit(m) for m in payload["metrics"]})
        healer = act.Healer(monitoring.policy(), store, performers,
                            params=monitoring.action_params(), unsupported=NO_PROVIDER)
        written = []
        for metric, f in due.items():
            reason = act.why(metric, f, streaks[f"{target}/{metric}"], monitoring.unit(metric))
            for action in monitoring.actions_for(metric):
                record = healer.handle(target=target, metric=metric, action=action, forecast=f,
                                       reason=reason, now=time.time(),
                                       evaluation=_evaluation(rec))
                if record is None:
                    context.log.info(f"{action} for {metric}: still held back, as recorded")
                    continue
                written.append(record)
                context.log.info(f"{action} for {metric}: {record['outcome']}. {reason}. "
                                 f"{record['detail']}")
        if not written:
            return dg.SensorResult(cursor=cursor, skip_reason=(
                f"{', '.join(due)} still alerting; actions held back as already recorded"))
        return dg.SensorResult(cursor=cursor, asset_events=[dg.AssetMaterialization(
            asset_key=healing_actions.key,
            metadata=healing_metadata(written, store.healing_actions(limit=25)))])

    return self_healing_sensor
