import dagster as dg

# One partition per deployment id; the deployment sensor adds them as deployments become READY.
deployments_partitions = dg.DynamicPartitionsDefinition(name="deployments")

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
             dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def run_in_flight(instance: dg.DagsterInstance, job_name: str, dep_id: str) -> bool:
    """Whether a run of `job_name` for the deployment's partition is queued or running."""
    return bool(instance.get_runs(filters=dg.RunsFilter(
        job_name=job_name, statuses=IN_FLIGHT, tags={"dagster/partition": dep_id}), limit=1))
