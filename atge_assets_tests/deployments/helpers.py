import dagster as dg

from atge_assets.deployments.assets import (  # noqa: E402
    baseline,
    baseline_comparison,
    benchmark_timings,
    promotion,
    rollback,
    smoke_tests,
)
from atge_assets.deployments.partitions import deployments_partitions
from atge_assets.deployments.sensors import build_deployment_sensor
from atge_assets.notify.resources import NotifierResource

GRAPH = [benchmark_timings, baseline, baseline_comparison, smoke_tests, rollback, promotion]


def tick(instance, resources, cursor=None, **sensor_kw):
    """One real sensor evaluation; partitions it requests are added and the asset events it
    reports (the drift check) recorded, as the daemon would. `sensor_kw` go to
    build_deployment_sensor (tick_deadline_s, max_runs_per_tick, ...)."""
    sensor = build_deployment_sensor(interval_s=1, lookback_hours=1, **sensor_kw)
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"vercel": resources["vercel"],
                                             "history": resources["history"],
                                             "notifier": resources.get("notifier")
                                             or NotifierResource()})
    result = sensor(ctx)
    if isinstance(result, dg.SensorResult):
        for req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
    return result


def run_deployment(instance, resources, dep_id, selection=GRAPH):
    if not instance.has_dynamic_partition(deployments_partitions.name, dep_id):
        instance.add_dynamic_partitions(deployments_partitions.name, [dep_id])
    return dg.materialize(selection, partition_key=dep_id, resources=resources, instance=instance)


def metadata(result, asset_name):
    mats = result.asset_materializations_for_node(asset_name)
    assert mats, f"{asset_name} was not materialized"
    return {k: v.value for k, v in mats[-1].metadata.items()}
