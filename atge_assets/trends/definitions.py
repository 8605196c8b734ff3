"""The trends feature: `performance_trends` and its schedule."""

import dagster as dg

from atge_assets.trends import assets
from atge_assets.trends.schedules import build_trends_schedule


def defs(settings) -> dg.Definitions:
    return dg.Definitions(assets=dg.load_assets_from_modules([assets]), jobs=[assets.trends_job],
                          schedules=[build_trends_schedule(settings.trends.cron)])
