import dagster as dg

from atge_assets.deployments.partitions import deployments_partitions
from atge_assets.lib.providers.base import MalformedPayload, ProviderError
from atge_assets.lib.resources import VercelResource
from atge_assets.load.assets import load_test_job
from atge_assets.load.resources import LoadTestResource


def build_load_schedule(trigger: str = "manual", cron: str = "0 3 * * *"):
    @dg.schedule(
        name="load_test_schedule",
        job=load_test_job,
        cron_schedule=cron,
        default_status=(dg.DefaultScheduleStatus.RUNNING if trigger == "schedule"
                        else dg.DefaultScheduleStatus.STOPPED),
        description="Load-tests the live production deployment (LoadTestResource.trigger = "
        "schedule; cron ATGE_LOAD_CRON).",
    )
    def load_test_schedule(context: dg.ScheduleEvaluationContext, vercel: VercelResource,
                           load: LoadTestResource):
        if load.trigger != "schedule":
            return dg.SkipReason(f"load test trigger is {load.trigger!r}, not schedule")
        if why := vercel.unconfigured():
            return dg.SkipReason(why)
        try:
            with vercel.client() as client:
                live = client.production_deployment_id()
        except (ProviderError, MalformedPayload) as exc:
            return dg.SkipReason(f"provider error: {exc}")
        if not live:
            return dg.SkipReason("no production deployment")
        if not context.instance.has_dynamic_partition(deployments_partitions.name, live):
            # Partitions come from the deployment sensor, which has not seen this one yet.
            return dg.SkipReason(f"production deployment {live} is not a partition yet")
        return dg.RunRequest(
            run_key=f"load:{live}:{context.scheduled_execution_time.isoformat()}",
            partition_key=live,
            tags={"atge/deployment": live, "atge/trigger": "schedule"})

    return load_test_schedule
