"""The monitoring feature: metrics -> forecasts -> healing actions, the intake sensor, the
self-healing sensor, the `monitoring` resource."""

import dagster as dg

from atge_assets.monitoring import assets
from atge_assets.monitoring.resources import MonitoringResource
from atge_assets.monitoring.sensors import build_self_healing_sensor, build_system_metrics_sensor


def monitoring_resource(settings) -> MonitoringResource:
    m = settings.monitoring
    token = dg.EnvVar("ATGE_PROMETHEUS_TOKEN") if m.prometheus_token_set else None
    return MonitoringResource(**m.resource_fields(), token=token)


def defs(settings) -> dg.Definitions:
    m = settings.monitoring
    return dg.Definitions(
        # load_assets_from_modules skips AssetSpecs, so healing_actions is added by hand.
        assets=dg.load_assets_from_modules([assets]) + [assets.healing_actions],
        sensors=[build_self_healing_sensor(m.sensor_interval_s),
                 build_system_metrics_sensor(m.cron, running=m.source_configured)],
        resources={"monitoring": monitoring_resource(settings)},
    )
