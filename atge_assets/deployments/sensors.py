"""The deployment sensor: each new READY deployment becomes a partition and one run.

The cursor and every decision on what the provider answered live in `deployments/cursor.py`
(plain Python); here the tick talks to the provider within its deadline and hands Dagster the
result. Runs are keyed by deployment id, so Dagster itself refuses a second run for the same
deployment, across daemon restarts.
"""


import time

import dagster as dg
import httpx

from atge_assets.deployments import cursor as cursor_mod
from atge_assets.deployments.assets import benchmark_job, releases_job
from atge_assets.deployments.cursor import MAX_PENDING
from atge_assets.deployments.history import DeploymentHistory
from atge_assets.deployments.partitions import deployments_partitions
from atge_assets.deployments.webhook_intake import IntakeQueue
from atge_assets.lib.providers.base import (
    DeadlineExceeded,
    Deployment,
    MalformedPayload,
    ProviderError,
    is_deployment_id,
)
from atge_assets.lib.providers.vercel import VercelClient
from atge_assets.lib.resources import HistoryResource, VercelResource

__all__ = ["MAX_PENDING", "build_deployment_sensor", "parse_cursor"]


def parse_cursor(raw: str | None, lookback_hours: float) -> tuple[int, list[str], list[int]]:
    """(since, pending deployment ids, webhook intake entries to acknowledge)."""
    now_ms = int(time.time() * 1000)
    c = cursor_mod.parse(raw, now_ms - int(lookback_hours * 3_600_000), now_ms)
    return c.since, c.pending, c.acks


def build_deployment_sensor(interval_s: int = 10, lookback_hours: float = 24.0, *,
                            tick_deadline_s: float = 40.0, max_runs_per_tick: int = 50,
                            max_pending_tries: int = 5):
    """`tick_deadline_s` must stay well under the code server's own deadline for a sensor
    evaluation (60 s by default), or a slow provider turns into an unreachable code location."""

    @dg.sensor(
        name="deployment_sensor",
        job=benchmark_job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Polls the provider; one partition and one benchmark run per new READY "
        "deployment (run_key = deployment id).",
    )
    def deployment_sensor(
        context: dg.SensorEvaluationContext, vercel: VercelResource, history: HistoryResource
    ):
        deadline = time.monotonic() + tick_deadline_s
        now_ms = int(time.time() * 1000)
        cur = cursor_mod.parse(context.cursor, now_ms - int(lookback_hours * 3_600_000), now_ms)
        # Deployments announced by Vercel's webhook are picked up now rather than at the next
        # poll. An entry is acknowledged one tick later, once the cursor that named it (and the
        # run requests made with it) are stored: a crash in between re-reads it, and run_key
        # makes the re-read harmless.
        intake = IntakeQueue(history.engine())
        intake.ack(cur.acks)
        entries = intake.pending(MAX_PENDING)
        with vercel.client() as client:
            client.deadline = deadline
            try:
                page = client.list_deployments(since_ms=cur.since)
            except (ProviderError, MalformedPayload, httpx.HTTPError, ValueError) as exc:
                # Keep the old cursor: the next tick asks again from the same point.
                return dg.SkipReason(f"provider error, cursor kept: {client.redact(str(exc))}")
            listed, malformed = _secret_free(client, page.deployments, page.malformed)
            listed_ids = {d.id for d in listed}
            to_check = [i for i in dict.fromkeys(cur.pending + [e.deployment_id for e in entries])
                        if i not in listed_ids and is_deployment_id(i)]
            checks = _check_by_id(client, to_check)
            clean, malformed = _secret_free(client, list(checks.fetched.values()), malformed)
            checks.fetched = {k: d for k, d in checks.fetched.items() if d in clean}

        plan = cursor_mod.plan_tick(
            cur, listed=listed, malformed=malformed,
            fetched=checks.fetched, refused=checks.refused, gone=checks.gone,
            unchecked=checks.unchecked,
            intake=[(e.id, e.deployment_id) for e in entries],
            known=_known_partitions(context), now_ms=now_ms,
            max_runs=max_runs_per_tick, max_tries=max_pending_tries)

        for dep_id in plan.gone:
            context.log.warning(f"pending deployment {dep_id} is gone; forgetting it")
        _record(context, history, client, plan.rejections)
        if plan.not_recorded:
            context.log.warning(f"{plan.not_recorded} more rejected entries; recorded on the "
                                "next ticks")
        if plan.deferred:
            context.log.info(f"{plan.deferred} READY deployments wait for the next ticks "
                             f"(at most {max_runs_per_tick} runs a tick)")
        if checks.stopped:
            context.log.warning(checks.stopped)
        cursor = plan.cursor.dumps()
        if not plan.requests:
            reason = checks.stopped or (f"no new READY deployment ({plan.building} still "
                                        "building)")
            return dg.SensorResult(cursor=cursor, skip_reason=reason)
        new = plan.requests
        context.log.info("new deployments: " + ", ".join(f"{d.id} ({d.target})" for d in new))
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=d.id, partition_key=d.id,
                              tags={"atge/deployment": d.id, "atge/target": d.target})
                for d in new
            ],
            dynamic_partitions_requests=[deployments_partitions.build_add_request([d.id for d in new])],
            cursor=cursor,
        )

    return deployment_sensor


class _Checks:
    """What re-checking ids by GET found (see cursor.plan_tick for each field)."""

    def __init__(self):
        self.fetched: dict[str, Deployment] = {}
        self.refused: dict[str, str] = {}
        self.gone: set[str] = set()
        self.unchecked: set[str] = set()
        self.stopped = ""  # why the tick stopped asking, if it did


def _check_by_id(client: VercelClient, ids: list[str]) -> _Checks:
    out = _Checks()
    for n, dep_id in enumerate(ids):
        try:
            out.fetched[dep_id] = client.get_deployment(dep_id)
        except ProviderError as exc:
            status = exc.status
            if status == 404:
                out.gone.add(dep_id)
            elif status is not None and 400 <= status < 500 and status != 429:
                out.refused[dep_id] = client.redact(str(exc))
            elif isinstance(exc, DeadlineExceeded) or status == 429:
                # Every further call would meet the same wall: stop, keep the rest for later.
                out.unchecked.update(ids[n:])
                out.stopped = (f"stopped after {n} of {len(ids)} pending checks, the rest "
                               f"next tick: {client.redact(str(exc))}")
                break
            else:
                out.unchecked.add(dep_id)  # 5xx or unreachable: this one waits, others go on
        except MalformedPayload as exc:
            out.refused[dep_id] = client.redact(str(exc))
        except httpx.HTTPError:
            out.unchecked.add(dep_id)
    return out


def _secret_free(client: VercelClient, deps: list[Deployment],
                 malformed: list[str]) -> tuple[list[Deployment], list[str]]:
    """Entries that would carry the token (or a configured secret) into partition keys, run tags
    and logs are refused like malformed ones; a hostile API can echo what we send it."""
    ok, bad = [], list(malformed)
    for dep in deps:
        if client.redact(dep.id) != dep.id or client.redact(dep.url) != dep.url:
            bad.append(f"deployment {client.redact(dep.id)!r:.140} carries a secret")
        else:
            ok.append(dep)
    return ok, bad


def _known_partitions(context: dg.SensorEvaluationContext) -> set[str]:
    # One query for all, not one per entry: a backlog of thousands is checked every tick.
    return set(context.instance.get_dynamic_partitions(deployments_partitions.name))


def _record(context: dg.SensorEvaluationContext, history: HistoryResource, client: VercelClient,
            rejections: list[tuple[str, str]]) -> None:
    by_source: dict[str, list[str]] = {}
    for source, detail in rejections:
        detail = client.redact(detail)
        context.log.warning(f"rejected ({source}): {detail}")
        by_source.setdefault(source, []).append(detail)
    store = DeploymentHistory(history.engine())
    for source, details in by_source.items():
        store.record_rejected(source, details)


def build_releases_sensor(interval_s: int = 10) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name="releases_after_decision",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[benchmark_job],
        request_job=releases_job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Refreshes the releases table after every benchmark run, so it shows each "
        "decision as soon as it is made.",
    )
    def releases_after_decision(context: dg.RunStatusSensorContext):
        # One refresh per benchmark run; the run key makes a re-evaluated tick harmless.
        return dg.RunRequest(run_key=f"releases:{context.dagster_run.run_id}")

    return releases_after_decision
