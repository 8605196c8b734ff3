import dagster as dg

from atge_assets.trends.assets import trends_job


def build_trends_schedule(cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="performance_trends_schedule",
        job=trends_job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-aggregates the performance trends (hourly by default, ATGE_TRENDS_CRON).",
    )
