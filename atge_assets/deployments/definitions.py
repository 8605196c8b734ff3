"""The deployments feature: sensor -> timings -> baseline -> comparison -> rollback, with smoke
tests and promotion, and the production drift check; the `benchmark` and `policy` resources (load and trends read `benchmark`)."""

import dagster as dg

from atge_assets.deployments import assets
from atge_assets.deployments.resources import BenchmarkResource, ReleasePolicyResource
from atge_assets.deployments.sensors import (
    build_deployment_sensor,
    build_releases_sensor,
)
from atge_assets.lib.definitions import protection_bypass


def benchmark_resource(settings) -> BenchmarkResource:
    d, s = settings.deployments, settings.shared
    return BenchmarkResource(samples=d.samples, warmup=d.warmup, max_samples=d.max_samples,
                             baseline_scale=s.latency_scale,
                             baseline_deployments=d.baseline_deployments,
                             allowed_hosts=list(s.allowed_hosts), suite_json=d.suite_json,
                             protection_bypass=protection_bypass(settings))


def defs(settings) -> dg.Definitions:
    d = settings.deployments
    return dg.Definitions(
        assets=dg.load_assets_from_modules([assets]),
        asset_checks=[assets.production_drift],
        jobs=[assets.benchmark_job, assets.releases_job],
        sensors=[build_deployment_sensor(settings.shared.sensor_interval_s, d.lookback_hours),
                 build_releases_sensor(settings.shared.sensor_interval_s)],
        resources={
            "benchmark": benchmark_resource(settings),
            "policy": ReleasePolicyResource(dry_run=settings.shared.dry_run,
                                            auto_promote=d.auto_promote, smoke_json=d.smoke_json),
        },
    )
