import dagster as dg

from atge_assets.trends.assets import performance_trends, trends_job


def build_trends_first_run_sensor(interval_s: int = 30) -> dg.SensorDefinition:
    """The hourly schedule alone leaves `performance_trends` empty for up to an hour after a
    fresh start (`atge up` or `dagster dev` alike). This sensor asks for one run as soon as the
    daemon runs, then never again: it stays quiet once the asset has a materialization or the
    job has ever been run (a failed first attempt is left to the schedule rather than retried
    every tick into the Runs list)."""

    @dg.sensor(
        name="performance_trends_first_run",
        job=trends_job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs performance_trends once on a fresh instance, so trends exist from "
        "start-up; the hourly performance_trends_schedule does the rest.",
    )
    def performance_trends_first_run(context: dg.SensorEvaluationContext):
        if context.instance.get_latest_materialization_event(performance_trends.key):
            return dg.SkipReason("performance_trends is materialized; the schedule keeps it fresh")
        if context.instance.get_runs(filters=dg.RunsFilter(job_name=trends_job.name), limit=1):
            return dg.SkipReason(f"{trends_job.name} has run already; the schedule retries")
        return dg.RunRequest(run_key="first-run", tags={"atge/reason": "first-run"})

    return performance_trends_first_run
