"""The rollouts feature: rolling releases driven stage by stage from benchmarks (sensor ->
`rollout_stage` -> approve / complete / abort / hold, and the `rolling_releases` table). It
measures with the deployments' `benchmark` resource and acts through the shared `vercel` one."""

import dagster as dg

from atge_assets.rollouts import assets
from atge_assets.rollouts.resources import RolloutResource
from atge_assets.rollouts.sensors import build_rollout_sensor, rolling_releases_sensor


def defs(settings) -> dg.Definitions:
    r = settings.rollouts
    return dg.Definitions(
        assets=[assets.rollout_stage, assets.rolling_releases],
        jobs=[assets.rollout_stage_job, assets.rolling_releases_job],
        sensors=[build_rollout_sensor(settings.shared.sensor_interval_s, r.enabled),
                 rolling_releases_sensor],
        resources={"rollout": RolloutResource(
            production_url=r.production_url, canary_header=r.canary_header,
            traffic_samples=r.traffic_samples, dry_run=settings.shared.dry_run)},
    )
