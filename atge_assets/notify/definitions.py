"""The notify feature: the `notifier` resource every decision announces through, and the
failed-run sensor. Each channel's secret is bound with `dg.EnvVar` only when it is set
(`EnvVar` fails on a missing variable)."""

import dagster as dg

from atge_assets.notify.resources import NotifierResource
from atge_assets.notify.sensors import run_failure_notifier
from atge_assets.notify.settings import SECRETS


def notifier_resource(settings) -> NotifierResource:
    n = settings.notify
    secrets = {f: dg.EnvVar(var) for f, var in SECRETS.items() if f in n.secrets_set}
    return NotifierResource(**secrets, pagerduty_events_url=n.pagerduty_events_url,
                            dagster_url=n.dagster_url)


def defs(settings) -> dg.Definitions:
    return dg.Definitions(sensors=[run_failure_notifier],
                          resources={"notifier": notifier_resource(settings)})
