"""The load feature: `load_test` (a graph of shards), its sensor and schedule, the `load`
resource."""

import dataclasses

import dagster as dg

from atge_assets.lib.definitions import protection_bypass
from atge_assets.load import assets
from atge_assets.load.resources import LoadTestResource
from atge_assets.load.schedules import build_load_schedule
from atge_assets.load.sensors import build_load_sensor


def load_resource(settings) -> LoadTestResource:
    return LoadTestResource(**dataclasses.asdict(settings.load),
                            allowed_hosts=list(settings.shared.allowed_hosts),
                            protection_bypass=protection_bypass(settings))


def defs(settings) -> dg.Definitions:
    s = settings.load
    return dg.Definitions(
        assets=dg.load_assets_from_modules([assets]), jobs=[assets.load_test_job],
        sensors=[build_load_sensor(s.trigger, settings.shared.sensor_interval_s)],
        schedules=[build_load_schedule(s.trigger, s.schedule_cron)],
        resources={"load": load_resource(settings)},
    )
