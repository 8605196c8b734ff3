"""The abtest feature: results -> analysis -> promotion per experiment, its sensor, the
`experiments` resource."""

import dagster as dg

from atge_assets.abtest import assets
from atge_assets.abtest.resources import ExperimentsResource
from atge_assets.abtest.sensors import build_ab_test_sensor


def defs(settings) -> dg.Definitions:
    s = settings.abtest
    return dg.Definitions(
        assets=dg.load_assets_from_modules([assets]), jobs=[assets.ab_test_job],
        sensors=[build_ab_test_sensor(s.interval_s)],
        resources={"experiments": ExperimentsResource(
            experiments_file=s.experiments_file, sandbox_url=settings.shared.sandbox_url,
            results_csv=s.results_csv, auto_promote=s.auto_promote,
            promotion_url=s.promotion_url)},
    )
