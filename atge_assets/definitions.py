"""The code location: settings read once, each feature's definitions merged."""

import dagster as dg

from atge_assets.abtest import definitions as abtest_defs
from atge_assets.deployments import definitions as deployments_defs
from atge_assets.lib import definitions as lib_defs
from atge_assets.load import definitions as load_defs
from atge_assets.monitoring import definitions as monitoring_defs
from atge_assets.notify import definitions as notify_defs
from atge_assets.rollouts import definitions as rollouts_defs
from atge_assets.settings import Settings
from atge_assets.trends import definitions as trends_defs

FEATURES = (lib_defs, deployments_defs, trends_defs, load_defs, abtest_defs, monitoring_defs,
            notify_defs, rollouts_defs)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    return dg.Definitions.merge(*(feature.defs(settings) for feature in FEATURES))


defs = build_definitions()
