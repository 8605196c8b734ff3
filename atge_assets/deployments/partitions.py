import dagster as dg

from atge_assets.notify.sensors import will_be_retried

# One partition per deployment id; the deployment sensor adds them as deployments become READY.
deployments_partitions = dg.DynamicPartitionsDefinition(name="deployments")

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
             dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def run_in_flight(instance: dg.DagsterInstance, job_name: str, dep_id: str) -> bool:
    """Whether a run of `job_name` for the deployment's partition is queued or running, or its
    newest run failed and the instance will retry it (dagster.yaml `run_retries`): between the
    two runs a retry is on its way."""
    tags = {"dagster/partition": dep_id}
    if instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT, tags=tags),
                         limit=1):
        return True
    newest = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, tags=tags), limit=1)
    return bool(newest) and newest[0].status == dg.DagsterRunStatus.FAILURE \
        and will_be_retried(instance, newest[0].tags)


def verdict_may_come(context, job_name: str, tries: int):
    """For a run of `job_name` deciding something: whose pending verdict is worth waiting for. One
    a run of it in flight may still give, while this run has retries left; a run that ended without
    a verdict gives none, and waiting on it would only delay the decision."""
    return lambda dep_id: context.retry_number < tries and run_in_flight(
        context.instance, job_name, dep_id)
