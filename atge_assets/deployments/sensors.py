"""The deployment sensor: each new READY deployment becomes a partition and one run.

Cursor (small JSON): `since` = the newest creation time seen, `pending` = deployments seen while
still building, re-checked by id until they are READY or dead. Runs are keyed by deployment id, so
Dagster itself refuses a second run for the same deployment, across daemon restarts.
"""


import json
import time

import dagster as dg
import httpx

from atge_assets.deployments.assets import benchmark_job
from atge_assets.deployments.history import DeploymentHistory
from atge_assets.deployments.partitions import deployments_partitions
from atge_assets.deployments.webhook_intake import IntakeQueue
from atge_assets.lib.providers.base import (
    READY,
    TERMINAL_NOT_READY,
    Deployment,
    MalformedPayload,
    ProviderError,
)
from atge_assets.lib.resources import HistoryResource, VercelResource

MAX_PENDING = 200


def parse_cursor(raw: str | None, lookback_hours: float) -> tuple[int, list[str], list[int]]:
    """(since, pending deployment ids, webhook intake entries to acknowledge)."""
    default_since = int((time.time() - lookback_hours * 3600) * 1000)
    if not raw:
        return default_since, [], []
    try:
        c = json.loads(raw)
        since = int(c.get("since", default_since))
        pending = [str(p) for p in c.get("pending", [])][:MAX_PENDING]
        acks = [int(i) for i in c.get("ack", [])][:MAX_PENDING]
        return since, pending, acks
    except (ValueError, TypeError, AttributeError):
        # A cursor we cannot read must not wedge the sensor: fall back to the lookback window.
        return default_since, [], []


def build_deployment_sensor(interval_s: int = 10, lookback_hours: float = 24.0):
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
        since, pending, acks = parse_cursor(context.cursor, lookback_hours)
        # Deployments announced by Vercel's webhook are picked up now rather than at the next
        # poll. An entry is acknowledged one tick later, once the cursor that named it (and the
        # run requests made with it) are stored: a crash in between re-reads it, and run_key
        # makes the re-read harmless.
        intake = IntakeQueue(history.engine())
        intake.ack(acks)
        entries = intake.pending(MAX_PENDING)
        seen: dict[str, Deployment] = {}
        try:
            with vercel.client() as client:
                page = client.list_deployments(since_ms=since)
                for dep in page.deployments:
                    seen[dep.id] = dep
                for dep_id in pending + [e.deployment_id for e in entries]:
                    if dep_id not in seen:
                        try:
                            seen[dep_id] = client.get_deployment(dep_id)
                        except ProviderError as exc:
                            if exc.status == 404:
                                context.log.warning(f"pending deployment {dep_id} is gone; "
                                                    "forgetting it")
                                continue
                            raise
        except (ProviderError, MalformedPayload, httpx.HTTPError, ValueError) as exc:
            # Keep the old cursor: the next tick asks again from the same point.
            return dg.SkipReason(f"provider error, cursor kept: {exc}")
        for msg in page.malformed:
            context.log.warning(f"skipped a malformed deployment entry: {msg}")
        DeploymentHistory(history.engine()).record_rejected("provider.list_deployments", page.malformed)

        new: list[Deployment] = []
        still_pending: list[str] = []
        for dep in sorted(seen.values(), key=lambda d: d.created_ms):
            if dep.state == READY:
                if not context.instance.has_dynamic_partition(deployments_partitions.name, dep.id):
                    new.append(dep)
            elif dep.state not in TERMINAL_NOT_READY:
                still_pending.append(dep.id)
        new_since = max([since] + [d.created_ms for d in page.deployments])
        cursor = json.dumps({"since": new_since, "pending": still_pending[-MAX_PENDING:],
                             "ack": [e.id for e in entries]})
        if not new:
            return dg.SensorResult(
                cursor=cursor,
                skip_reason=f"no new READY deployment ({len(still_pending)} still building)",
            )
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
