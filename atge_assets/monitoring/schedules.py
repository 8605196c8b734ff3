import dagster as dg

from atge_assets.monitoring.assets import monitoring_job

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
             dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def build_monitoring_schedule(cron: str = "* * * * *", running: bool = True
                              ) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="system_metrics_schedule",
        job=monitoring_job,
        cron_schedule=cron,
        default_status=(dg.DefaultScheduleStatus.RUNNING if running
                        else dg.DefaultScheduleStatus.STOPPED),
        description="Metrics intake and forecasts, once a minute (ATGE_METRICS_CRON). Starts "
        "stopped when no metrics source is configured.",
    )
    def system_metrics_schedule(context: dg.ScheduleEvaluationContext):
        # One intake at a time: when runs queue up behind benchmarks, a pile of minute runs would
        # only read the same samples; the next intake after this one asks for what it missed.
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=monitoring_job.name, statuses=IN_FLIGHT), limit=1)
        if busy:
            return dg.SkipReason(f"run {busy[0].run_id[:8]} of {monitoring_job.name} is still "
                                 f"{busy[0].status.value.lower()}")
        return dg.RunRequest()

    return system_metrics_schedule
