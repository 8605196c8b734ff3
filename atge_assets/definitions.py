"""The code location: every domain's assets, sensors and schedules, resources from the env."""

import os

import dagster as dg

from atge_assets.abtest import assets as abtest_assets
from atge_assets.abtest.resources import ExperimentsResource
from atge_assets.abtest.sensors import build_ab_test_sensor
from atge_assets.deployments import assets as deployment_assets
from atge_assets.deployments import release_assets
from atge_assets.deployments.resources import BenchmarkResource, ReleasePolicyResource
from atge_assets.deployments.sensors import build_deployment_sensor
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets.load import assets as load_assets
from atge_assets.load.resources import LoadTestResource
from atge_assets.load.schedules import build_load_schedule
from atge_assets.load.sensors import build_load_sensor
from atge_assets.monitoring import assets as monitoring_assets
from atge_assets.monitoring.resources import MonitoringSettings
from atge_assets.monitoring.schedules import build_monitoring_schedule
from atge_assets.monitoring.sensors import build_self_healing_sensor
from atge_assets.notify.resources import notifier_from_env
from atge_assets.notify.sensors import run_failure_notifier
from atge_assets.settings import Settings
from atge_assets.trends import assets as trend_assets
from atge_assets.trends.schedules import build_trends_schedule


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    s = settings or Settings.from_env()
    load = LoadTestResource.from_env(s)  # ATGE_LOAD_*
    monitoring = MonitoringSettings.from_env(allowed_hosts=s.allowed_hosts, dry_run=s.dry_run)
    return dg.Definitions(
        # load_assets_from_modules skips AssetSpecs, so healing_actions is added by hand.
        assets=dg.load_assets_from_modules(
            [deployment_assets, release_assets, trend_assets, abtest_assets, load_assets,
             monitoring_assets]) + [monitoring_assets.healing_actions],
        jobs=[deployment_assets.benchmark_job, trend_assets.trends_job, abtest_assets.ab_test_job,
              load_assets.load_test_job, monitoring_assets.monitoring_job],
        sensors=[build_deployment_sensor(s.sensor_interval_s, s.lookback_hours),
                 run_failure_notifier, build_ab_test_sensor(s.ab_interval_s),
                 build_load_sensor(load.trigger, s.sensor_interval_s),
                 build_self_healing_sensor(monitoring.sensor_interval_s)],
        schedules=[build_trends_schedule(s.trends_cron),
                   build_load_schedule(load.trigger, load.schedule_cron),
                   build_monitoring_schedule(monitoring.cron, running=monitoring.source_configured)],
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
            "load": load,
            "monitoring": monitoring.resource,
            "policy": ReleasePolicyResource(dry_run=s.dry_run, auto_promote=s.auto_promote,
                                            smoke_json=s.smoke_json),
            "notifier": notifier_from_env(dict(os.environ)),
            "experiments": ExperimentsResource(
                experiments_file=s.experiments_file, sandbox_url=s.sandbox_url,
                results_csv=s.ab_results_csv, auto_promote=s.ab_auto_promote,
                promotion_url=s.ab_promotion_url,
            ),
        },
    )


defs = build_definitions()
