"""Tell people when a run fails: a failed benchmark may hide a regression."""

import dagster as dg

from atge_assets import notify
from atge_assets.lib.resources import HistoryResource
from atge_assets.notify.resources import NotifierResource


@dg.run_failure_sensor(
    name="run_failure_notifier",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends each failed run to the configured channels (once per run).",
)
def run_failure_notifier(context: dg.RunFailureSensorContext, notifier: NotifierResource,
                         history: HistoryResource):
    run = context.dagster_run
    event = notify.run_failed_event(
        run.run_id, run.job_name, context.failure_event.message or "",
        deployment_id=run.tags.get("dagster/partition", ""), run_url=notifier.run_url(run.run_id))
    for d in notifier.send(event, history.engine()):
        context.log.info(f"notification: {d}")
