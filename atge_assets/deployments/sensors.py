"""The deployment sensor: each new READY deployment becomes a partition and one run.

The cursor and every decision on what the provider answered live in `deployments/cursor.py`
(plain Python); here the tick talks to the provider within its deadline and hands Dagster the
result. Runs are keyed by deployment id, so Dagster itself refuses a second run for the same
deployment, across daemon restarts.

Each tick also asks which deployment is live and compares it with what the history expects
(deployments/drift.py): the `production_drift` check on `releases` is reported when its answer
changes, a drift episode is announced once, and a live deployment nobody judged (or one this
tool rolled back) is benchmarked once per episode.
"""


import time

import dagster as dg
import httpx

from atge_assets import notify
from atge_assets.deployments import cursor as cursor_mod
from atge_assets.deployments import drift
from atge_assets.deployments.assets import benchmark_job, releases, releases_job
from atge_assets.deployments.cursor import MAX_PENDING
from atge_assets.deployments.history import DeploymentHistory
from atge_assets.deployments.partitions import deployments_partitions, run_in_flight
from atge_assets.deployments.webhook_intake import IntakeQueue
from atge_assets.lib.providers.base import (
    DeadlineExceeded,
    Deployment,
    MalformedPayload,
    ProviderError,
    is_deployment_id,
)
from atge_assets.lib.http import RetryPolicy
from atge_assets.lib.providers.vercel import VercelClient
from atge_assets.lib.redaction import redact
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets.notify.resources import NotifierResource

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
        "deployment (run_key = deployment id). Compares the live production deployment with the "
        "one the history expects: reports the `production_drift` check, announces a drift once "
        "and benchmarks a drifted deployment nobody judged.",
    )
    def deployment_sensor(
        context: dg.SensorEvaluationContext, vercel: VercelResource, history: HistoryResource,
        notifier: NotifierResource,
    ):
        if why := vercel.unconfigured():
            return dg.SkipReason(why)
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
            store = DeploymentHistory(history.engine())
            observed, unobserved = None, checks.stopped
            if not unobserved:  # a rate limit or the deadline stops every further call too
                observed, unobserved = _observe(client, store,
                                                {d.id: d for d in listed + clean})

        known = _known_partitions(context)
        plan = cursor_mod.plan_tick(
            cur, listed=listed, malformed=malformed,
            fetched=checks.fetched, refused=checks.refused, gone=checks.gone,
            unchecked=checks.unchecked,
            intake=[(e.id, e.deployment_id) for e in entries],
            known=known, now_ms=now_ms,
            max_runs=max_runs_per_tick, max_tries=max_pending_tries)

        for dep_id in plan.gone:
            context.log.warning(f"pending deployment {dep_id} is gone; forgetting it")
        _record(context, store, client, plan.rejections)
        if plan.not_recorded:
            context.log.warning(f"{plan.not_recorded} more rejected entries; recorded on the "
                                "next ticks")
        if plan.deferred:
            context.log.info(f"{plan.deferred} READY deployments wait for the next ticks "
                             f"(at most {max_runs_per_tick} runs a tick)")
        if checks.stopped:
            context.log.warning(checks.stopped)
        elif unobserved:
            context.log.warning(f"live production not compared this tick: {unobserved}")
        new = plan.requests
        watch = _watch(context, store, notifier, observed, plan.cursor.drift,
                       known=known | {d.id for d in new}, deadline=deadline)
        plan.cursor.drift = watch.key
        cursor = plan.cursor.dumps()
        if not new and not watch.requests:
            reason = checks.stopped or (f"no new READY deployment ({plan.building} still "
                                        "building)")
            return dg.SensorResult(cursor=cursor, skip_reason=reason, asset_events=watch.events)
        if new:
            context.log.info("new deployments: " + ", ".join(f"{d.id} ({d.target})" for d in new))
        added = [d.id for d in new] + watch.partitions
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=d.id, partition_key=d.id,
                              tags={"atge/deployment": d.id, "atge/target": d.target})
                for d in new
            ] + watch.requests,
            dynamic_partitions_requests=[deployments_partitions.build_add_request(added)]
            if added else [],
            cursor=cursor,
            asset_events=watch.events,
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


def _record(context: dg.SensorEvaluationContext, store: DeploymentHistory, client: VercelClient,
            rejections: list[tuple[str, str]]) -> None:
    by_source: dict[str, list[str]] = {}
    for source, detail in rejections:
        detail = client.redact(detail)
        context.log.warning(f"rejected ({source}): {detail}")
        by_source.setdefault(source, []).append(detail)
    for source, details in by_source.items():
        store.record_rejected(source, details)


# -- production drift ----------------------------------------------------------------------------

# Below this much of the tick left, announcements wait for the next tick rather than risk it.
MIN_NOTIFY_S = 3.0


def _observe(client: VercelClient, store: DeploymentHistory,
             seen: dict[str, Deployment]) -> tuple[drift.Observation | None, str]:
    """(observation, "") or (None, why not, redacted): a provider that does not answer leaves
    the check and the episode as they are."""
    try:
        return drift.observe(client, store, seen), ""
    except (ProviderError, MalformedPayload, httpx.HTTPError, ValueError) as exc:
        return None, client.redact(f"{type(exc).__name__}: {exc}")[:500]


class _Watch:
    """What the drift comparison adds to a tick."""

    def __init__(self, key: str):
        self.key = key  # what the check last reported (the cursor's `drift`)
        self.events: list[dg.AssetCheckEvaluation] = []
        self.requests: list[dg.RunRequest] = []
        self.partitions: list[str] = []


def _watch(context: dg.SensorEvaluationContext, store: DeploymentHistory,
           notifier: NotifierResource, obs: drift.Observation | None, last_key: str, *,
           known: set[str], deadline: float) -> _Watch:
    out = _Watch(last_key)
    if obs is None:
        return out
    episode = store.open_drift()
    if obs.flagged:
        if episode and episode["live_id"] != obs.live_id:
            _resolve(context, store, notifier, episode, f"production moved on to {obs.live_id}",
                     deadline)
            episode = None
        if episode is None:
            episode = store.start_drift(obs.live_id, obs.expected_id, obs.status, obs.reason)
            context.log.warning(f"production drift (episode {episode['id']}): {obs.reason}")
        if episode["announced_at"] is None:
            _announce(context, store, notifier, episode, obs, deadline)
        if obs.rejudge and _needs_run(context, store, obs.live_id, episode):
            out.requests.append(dg.RunRequest(
                # The episode in the key: a deployment judged (or rolled back) before is judged
                # again when it comes back, once per episode, however many ticks see it.
                run_key=f"{obs.live_id}:drift-{episode['id']}-{int(episode['started_at'])}",
                partition_key=obs.live_id,
                tags={"atge/deployment": obs.live_id, "atge/target": "production",
                      "atge/drift": str(episode["id"])}))
            if obs.live_id not in known:
                out.partitions.append(obs.live_id)
    elif episode and _resolve(context, store, notifier, episode, obs.reason, deadline):
        context.log.info(f"production drift (episode {episode['id']}) over: {obs.reason}")
    if obs.key() != last_key:
        meta = obs.metadata()
        if obs.flagged:
            meta.update(episode=episode["id"], since=_iso(episode["started_at"]))
        out.events.append(dg.AssetCheckEvaluation(
            asset_key=releases.key, check_name=drift.CHECK_NAME, passed=not obs.flagged,
            severity=dg.AssetCheckSeverity.ERROR, description=obs.reason, metadata=meta))
        out.key = obs.key()
    return out


def _needs_run(context: dg.SensorEvaluationContext, store: DeploymentHistory, dep_id: str,
               episode: dict) -> bool:
    """Not once a verdict came in after the episode began, nor while a run of it is under way
    (its first run, say, when a person promoted it before that run finished)."""
    facts = store.live_facts(dep_id)
    if facts and facts["verdict_at_ms"] and facts["verdict_at_ms"] >= episode["started_at"] * 1000:
        return False
    return not run_in_flight(context.instance, benchmark_job.name, dep_id)


def _announce(context, store: DeploymentHistory, notifier: NotifierResource, episode: dict,
              obs: drift.Observation, deadline: float) -> None:
    action = "benchmarking it" if obs.rejudge else "a person decides"
    event = notify.drift_event(obs.live_id, episode["id"], obs.expected_id, obs.reason,
                               action=action)
    results = _send(notifier, event, store, deadline)
    if results is None:
        context.log.info("drift announcement waits for the next tick: no time left in this one")
        return
    for r in results:
        context.log.info(f"notification: {r}")
    # A channel that failed everywhere is tried again next tick; the sent log keeps the others
    # from hearing it twice.
    if not results or any(r.ok for r in results):
        store.mark_drift_announced(episode["id"])


def _resolve(context, store: DeploymentHistory, notifier: NotifierResource, episode: dict,
             why: str, deadline: float) -> bool:
    """End the episode, first telling whoever heard of it (PagerDuty resolves the incident).
    False when there was no time to tell: the episode stays open for the next tick."""
    if episode["announced_at"] is not None:
        incident = notify.drift_event(episode["live_id"], episode["id"], episode["expected_id"],
                                      episode["reason"])
        results = _send(notifier, notify.recovery_event(incident, why), store, deadline)
        if results is None:
            return False
        for r in results:
            context.log.info(f"notification: {r}")
    store.end_drift(episode["id"])
    return True


def _send(notifier: NotifierResource, event: notify.Event, store: DeploymentHistory,
          deadline: float) -> list[notify.DeliveryResult] | None:
    """The notifier's channels and sent log, with retries cut to what is left of the tick (the
    resource's own policy may sleep a minute); None when too little is left."""
    budget = deadline - time.monotonic() - 1.0
    if budget < MIN_NOTIFY_S:
        return None
    channels = dict(slack_webhook_url=notifier.slack_webhook_url,
                    pagerduty_routing_key=notifier.pagerduty_routing_key,
                    pagerduty_events_url=notifier.pagerduty_events_url,
                    webhook_url=notifier.webhook_url, webhook_secret=notifier.webhook_secret)
    try:
        notifiers = notify.build_notifiers(
            **channels, sent_log=notify.SqlSentLog(store.engine), timeout_s=min(5.0, budget / 3),
            retry=RetryPolicy(max_attempts=2, max_delay_s=budget / 4,
                              max_total_wait_s=budget / 4))
    except Exception as exc:  # a bad channel setting is reported, never raised into the tick
        return [notify.DeliveryResult("config", event.idempotency_key, notify.FAILED,
                                      detail=redact(str(exc), [v for v in channels.values()
                                                               if v]))]
    return notify.dispatch(event, notifiers)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


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
