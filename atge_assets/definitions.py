"""The code location: assets, the deployment sensor, the trends schedule, resources from the env."""

import dagster as dg

from atge_assets.defs.deployments import assets as deployment_assets
from atge_assets.defs.deployments.resources import BenchmarkResource, ReleasePolicyResource
from atge_assets.defs.deployments.sensors import build_deployment_sensor
from atge_assets.defs.resources import HistoryResource, VercelResource
from atge_assets.defs.trends import assets as trend_assets
from atge_assets.defs.trends.schedules import build_trends_schedule
from atge_assets.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    s = settings or Settings.from_env()
    return dg.Definitions(
        assets=dg.load_assets_from_modules([deployment_assets, trend_assets]),
        jobs=[deployment_assets.benchmark_job, trend_assets.trends_job],
        sensors=[build_deployment_sensor(s.sensor_interval_s, s.lookback_hours)],
        schedules=[build_trends_schedule(s.trends_cron)],
        resources={
            "vercel": VercelResource(
                token=dg.EnvVar("VERCEL_TOKEN"),
                project_id=dg.EnvVar("VERCEL_PROJECT_ID"),
                base_url=s.vercel_api_url,
                team_id=s.vercel_team_id,
            ),
            "history": HistoryResource(url=s.history_url),
            "benchmark": BenchmarkResource(
                samples=s.samples, warmup=s.warmup, baseline_scale=s.baseline_scale,
                baseline_deployments=s.baseline_deployments, allowed_hosts=s.allowed_hosts,
                suite_json=s.suite_json,
            ),
            "policy": ReleasePolicyResource(dry_run=s.dry_run),
        },
    )


defs = build_definitions()
