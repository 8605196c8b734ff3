"""Runs the A/B graph for every configured experiment, every 15 minutes by default.

A sensor rather than a schedule: experiments are dynamic partitions, and a schedule cannot add
partitions (in Dagster 1.13 it returns run requests only), while a sensor adds the new
experiments and requests their runs in one evaluation. The analysis re-evaluates its always-valid
test after every signal of the history (abtest/analysis.py), so the interval changes how soon a
decision shows, never the decision.
"""

import time

import dagster as dg

from atge_assets.abtest.assets import ab_test_job, experiments_partitions
from atge_assets.abtest.config import ConfigError
from atge_assets.abtest.history import AbtestHistory
from atge_assets.abtest.resources import ExperimentsResource, SourceError
from atge_assets.lib.resources import HistoryResource


def build_ab_test_sensor(interval_s: int = 900) -> dg.SensorDefinition:
    @dg.sensor(
        name="ab_test_sensor",
        job=ab_test_job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Every ATGE_AB_INTERVAL_S (900 s): one run per configured experiment "
        "(results intake, analysis, promotion); new experiments get a partition; experiments "
        "whose winner was promoted are left alone.",
    )
    def ab_test_sensor(context: dg.SensorEvaluationContext, experiments: ExperimentsResource,
                       history: HistoryResource):
        try:
            keys = [c.experiment for c in experiments.configs()]
        except (SourceError, ConfigError) as exc:
            return dg.SkipReason(f"experiments unavailable from {experiments.config_source()}: "
                                 f"{exc}"[:1000])
        store = AbtestHistory(history.engine())
        promoted = {k for k in keys
                    if any(p["status"] == "done" for p in store.ab_promotions_of(k))}
        new = [k for k in keys
               if not context.instance.has_dynamic_partition(experiments_partitions.name, k)]
        # One run per experiment and interval, even if the daemon evaluates a tick twice.
        slot = int(time.time() // interval_s)
        runs = [dg.RunRequest(partition_key=k, run_key=f"{k}@{slot}")
                for k in keys if k not in promoted]
        if promoted:
            context.log.info(f"promoted already, not re-run: {', '.join(sorted(promoted))}")
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[experiments_partitions.build_add_request(new)]
            if new else [],
            skip_reason=None if runs else "every experiment's winner is promoted",
        )

    return ab_test_sensor
