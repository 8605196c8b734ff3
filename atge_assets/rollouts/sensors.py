"""The rollout sensor: each tick asks the provider for the project's rolling release and
launches one judgement per stage that waits for approval (run_key = canary and stage, so a stage
is judged once; a held one waits for a person). After each judgement the table is refreshed."""

import time

import dagster as dg
import httpx

from atge_assets.lib.providers.base import READY, MalformedPayload, ProviderError
from atge_assets.lib.resources import VercelResource
from atge_assets.rollouts import stages
from atge_assets.rollouts.assets import rollout_stage_job, rolling_releases_job
from atge_assets.rollouts.partitions import rollout_partitions


def build_rollout_sensor(interval_s: int = 10, enabled: bool = True,
                         tick_deadline_s: float = 40.0):
    @dg.sensor(
        name="rollout_sensor",
        job=rollout_stage_job,
        minimum_interval_seconds=interval_s,
        default_status=(dg.DefaultSensorStatus.RUNNING if enabled
                        else dg.DefaultSensorStatus.STOPPED),
        description="Polls the project's rolling release; one judgement run per stage waiting "
        "for approval (run_key = canary:stage).",
    )
    def rollout_sensor(context: dg.SensorEvaluationContext, vercel: VercelResource):
        if why := vercel.unconfigured():
            return dg.SkipReason(why)
        with vercel.client() as client:
            client.deadline = time.monotonic() + tick_deadline_s
            try:
                rr = client.rolling_release()
                stage, why = stages.stage_to_judge(rr)
                # A canary still building cannot be measured; its stage waits for the next tick.
                state = client.get_deployment(rr.canary_id).state if stage else READY
            except (ProviderError, MalformedPayload, httpx.HTTPError, ValueError) as exc:
                return dg.SkipReason(f"provider error: {client.redact(str(exc))}")
        if stage is None:
            return dg.SkipReason(why)
        if state != READY:
            return dg.SkipReason(f"canary {rr.canary_id} is {state}, not READY yet")
        key = stages.stage_key(rr.canary_id, stage.index)
        context.log.info(f"rolling release of {rr.canary_id}: stage {stage.index} "
                         f"({stage.target_percentage:g}%) waits for a verdict")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(
                run_key=key, partition_key=rr.canary_id,
                tags={"atge/canary": rr.canary_id, "atge/stage": str(stage.index),
                      "atge/current": rr.current_id or ""})],
            dynamic_partitions_requests=[rollout_partitions.build_add_request([rr.canary_id])],
        )

    return rollout_sensor


@dg.run_status_sensor(
    name="rolling_releases_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[rollout_stage_job],
    request_job=rolling_releases_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the rolling releases table after each judged stage.",
)
def rolling_releases_sensor(context: dg.RunStatusSensorContext):
    return dg.RunRequest(run_key=context.dagster_run.run_id)
