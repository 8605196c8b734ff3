"""Tell people when a run fails: a failed benchmark may hide a regression."""

import dagster as dg

from atge_assets import notify
from atge_assets.lib.resources import HistoryResource
from atge_assets.notify.resources import NotifierResource


@dg.run_failure_sensor(
    name="run_failure_notifier",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends each failed run to the configured channels, once: a run the instance "
    "will retry is announced only if its last retry fails too.",
)
def run_failure_notifier(context: dg.RunFailureSensorContext, notifier: NotifierResource,
                         history: HistoryResource):
    run = context.dagster_run
    if will_be_retried(context.instance, run.tags):
        context.log.info(f"run {run.run_id} failed and will be retried: not announced")
        return
    event = notify.run_failed_event(
        run.run_id, run.job_name, context.failure_event.message or "",
        deployment_id=run.tags.get("dagster/partition", ""), run_url=notifier.run_url(run.run_id))
    for d in notifier.send(event, history.engine()):
        context.log.info(f"notification: {d}")


def will_be_retried(instance: dg.DagsterInstance, tags: dict) -> bool:
    """Whether the daemon will launch a retry of this failed run (dagster.yaml `run_retries`,
    or the run's own `dagster/max_retries`): one failing deployment must not page once per try.
    A "false" in Dagster's own `dagster/will_retry` on the failed run settles it: it also knows
    `retry_on_asset_or_op_failure` and a retry that failed to launch."""
    if str(tags.get("dagster/will_retry", "")).lower() == "false":
        return False
    if not instance.run_retries_enabled:
        return False
    try:
        attempt = int(tags.get("dagster/retry_number", 0))
        limit = int(tags.get("dagster/max_retries", instance.run_retries_max_retries))
    except ValueError:
        return False
    return attempt < limit
