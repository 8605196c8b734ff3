"""The trends feature: `performance_trends`, its schedule and its first run at start-up."""

import dagster as dg

from atge_assets.trends import assets
from atge_assets.trends.schedules import build_trends_schedule
from atge_assets.trends.sensors import build_trends_first_run_sensor


def defs(settings) -> dg.Definitions:
    return dg.Definitions(assets=dg.load_assets_from_modules([assets]), jobs=[assets.trends_job],
                          schedules=[build_trends_schedule(settings.trends.cron)],
                          sensors=[build_trends_first_run_sensor()])
