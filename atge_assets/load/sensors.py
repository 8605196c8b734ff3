"""What starts a load test besides the UI: a passing benchmark run, or the schedule (schedules.py).

Both are defined whatever `LoadTestResource.trigger` says, start RUNNING only when it names them,
and skip with the reason when it does not, so the resource is the one switch.
"""

import dagster as dg

from atge_assets.deployments.assets import benchmark_job
from atge_assets.deployments.history import ACCEPTED, DeploymentHistory
from atge_assets.lib.resources import HistoryResource
from atge_assets.load.assets import load_test_job
from atge_assets.load.resources import LoadTestResource


def build_load_sensor(trigger: str = "manual", interval_s: int = 30):
    @dg.run_status_sensor(
        name="load_test_after_benchmark",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[benchmark_job],
        request_job=load_test_job,
        minimum_interval_seconds=interval_s,
        default_status=(dg.DefaultSensorStatus.RUNNING if trigger == "after_benchmark"
                        else dg.DefaultSensorStatus.STOPPED),
        description="One load test per benchmark run that finished with a passing verdict "
        "(LoadTestResource.trigger = after_benchmark).",
    )
    def load_test_after_benchmark(context: dg.RunStatusSensorContext, load: LoadTestResource,
                                  history: HistoryResource):
        if load.trigger != "after_benchmark":
            return dg.SkipReason(f"load test trigger is {load.trigger!r}, not after_benchmark")
        run = context.dagster_run
        dep_id = run.tags.get("dagster/partition")
        if not dep_id:
            return dg.SkipReason(f"run {run.run_id} has no deployment partition")
        # The store holds the verdict the run reached, whatever its assets' metadata looks like.
        row = DeploymentHistory(history.engine()).deployment(dep_id)
        verdict = row.verdict if row else None
        if verdict not in ACCEPTED:
            return dg.SkipReason(f"{dep_id}: verdict {verdict!r}, not a passing benchmark")
        context.log.info(f"{dep_id} passed its benchmark ({verdict}): requesting a load test")
        # The deployment tag queues it behind any other run of the same deployment.
        return dg.RunRequest(run_key=f"load:{run.run_id}", partition_key=dep_id,
                             tags={"atge/deployment": dep_id, "atge/trigger": "after_benchmark"})

    return load_test_after_benchmark
