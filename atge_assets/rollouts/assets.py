"""Rolling releases: each stage of a production deployment's rollout judged against the release's
current deployment, then approved, completed, aborted or held (`rollout_stage`, one
materialization per stage), and one table of every stage's verdict (`rolling_releases`)."""

import time

import dagster as dg

from atge_assets import notify
from atge_assets.deployments.resources import BenchmarkResource
from atge_assets.lib.http import HostNotAllowed, check_url
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets.notify.resources import NotifierResource
from atge_assets.rollouts import canary as canary_mod
from atge_assets.rollouts import stages
from atge_assets.rollouts.partitions import rollout_partitions
from atge_assets.rollouts.resources import RolloutResource

GROUP = "rollouts"


class StageDecision(dg.Config):
    """A person's decision about a held stage: launch `rollout_stage` for the canary with
    `decision: approve` or `decision: abort`; nothing is measured then."""

    decision: str = ""
    by: str = ""


def _pct(x) -> float | None:
    return None if x is None else round(x * 100, 1)


def _measure(context, client, benchmark: BenchmarkResource, rollout: RolloutResource, rr):
    """The stage's verdict, its comparison rows and the traffic seen on the production domain."""
    allowed = client.allowed_hosts() + list(benchmark.allowed_hosts)
    try:
        canary = canary_mod.resolve(client, allowed, rr.canary_id)
        current = canary_mod.resolve(client, allowed, rr.current_id)
    except canary_mod.NotMeasurable as exc:
        raise dg.Failure(str(exc)) from exc
    suite = benchmark.suite()
    context.log.info(f"stage {rr.active.index} ({rr.active.target_percentage:g}%): measuring "
                     f"canary {canary.id} against {current.id}, {suite.samples} samples a side")
    result = canary_mod.judge_stage(canary.url, current.url, current.id, suite,
                                    benchmark.max_samples, headers=benchmark.request_headers(),
                                    log=context.log.info)
    served, failed = [], 0
    if rollout.production_url and rollout.canary_header and rollout.traffic_samples:
        try:
            check_url(rollout.production_url, allowed)
            served, failed = canary_mod.probe_traffic(
                rollout.production_url, rollout.traffic_samples, rollout.canary_header,
                headers=benchmark.request_headers())
        except HostNotAllowed as exc:
            context.log.warning(f"no traffic probe: {exc}")
    return result, served, failed, canary.url


def _announce(context, notifier: NotifierResource, history: HistoryResource, done: str,
              stage, rr, result, reason: str, canary_url: str | None) -> list[str]:
    """An aborted release or a held stage goes to the channels, once (the sent log): a re-run
    of the same stage stays quiet. Approvals and completions are routine and stay in the UI."""
    if done not in ("aborted", "held") or stage is None:
        return []
    metrics = [{"metric": r["metric"], "value": r["current_ms"], "baseline": r["baseline_ms"],
                "change": r.get("change"), "verdict": r["verdict"]}
               for r in (result.rows if result else [])]
    event = notify.stage_event(rr.canary_id, stage.index, stage.target_percentage, done,
                               rr.current_id or "", reason, metrics=metrics,
                               run_url=notifier.run_url(context.run_id), run_id=context.run_id,
                               deployment_url=canary_url)
    deliveries = [str(d) for d in notifier.send(event, history.engine())]
    for line in deliveries:
        context.log.info(f"notification: {line}")
    return deliveries


def _act(client, action: stages.Action, rr, dry_run: bool) -> str:
    """Carry the action out; what was done, as the table says it."""
    if action.kind in (stages.HOLD, stages.SKIPPED):
        return {"hold": "held", "skipped": "skipped"}[action.kind]
    if dry_run:
        return f"would_{action.kind}"
    if action.kind == stages.APPROVE:
        client.approve_stage(rr.canary_id, action.next_index)
        return "approved"
    if action.kind == stages.COMPLETE:
        client.complete_rolling_release(rr.canary_id)
        return "completed"
    client.abort_rolling_release(rr.canary_id, rr.current_id)
    return "aborted"


@dg.asset(
    partitions_def=rollout_partitions,
    group_name=GROUP,
    kinds={"python"},
    description="One stage of a rolling release: the canary measured in alternation with the "
    "release's current deployment and judged look by look; a pass approves the next stage (or "
    "completes the release), a regression aborts it (Vercel's instant rollback), an undecided "
    "verdict holds the stage for a person. Each materialization is one stage.",
)
def rollout_stage(
    context: dg.AssetExecutionContext,
    config: StageDecision,
    vercel: VercelResource,
    benchmark: BenchmarkResource,
    rollout: RolloutResource,
    notifier: NotifierResource,
    history: HistoryResource,
) -> dg.MaterializeResult:
    canary_id = context.partition_key
    try:
        person = stages.person_decision(config.decision)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None
    approver = (config.by.strip()[:80] or context.run.tags.get("dagster/user")
                or f"a person (run {context.run_id[:8]})")
    started = time.time()
    result, served, failed, canary_url = None, [], 0, None
    with vercel.client() as client:
        rr = client.rolling_release()
        stage, why = stages.stage_to_judge(rr, canary_id)
        if stage is not None and not person:
            result, served, failed, canary_url = _measure(context, client, benchmark, rollout, rr)
            # Measuring takes a while: a person may have moved the release on meanwhile.
            rr = client.rolling_release()
        action = (stages.decide(rr, canary_id, stage.index, result.verdict if result else None,
                                person, approver)
                  if stage is not None else stages.Action(stages.SKIPPED, why))
        done = _act(client, action, rr, rollout.dry_run)
    (context.log.warning if done in ("aborted", "held") else context.log.info)(
        f"{canary_id}: {done}: {action.reason}")
    deliveries = _announce(context, notifier, history, done, stage, rr, result, action.reason,
                           canary_url)
    context.instance.add_run_tags(context.run_id, {"atge/decision": done,
                                                   "atge/verdict": result.verdict if result
                                                   else (person or "none")})
    share = stages.observed_share(served)
    rows = result.rows if result else []
    return dg.MaterializeResult(metadata={
        "stage": stage.index if stage else -1,
        "target_pct": stage.target_percentage if stage else 0.0,
        "observed_canary_pct": _pct(share) if share is not None else -1.0,
        "traffic": dg.MetadataValue.md(
            f"{sum(served)} of {len(served)} requests to the production domain answered by the "
            f"canary ({failed} failed); the stage sends it {stage.target_percentage:g}%"
            if served and stage else "not observed (set ATGE_ROLLOUT_PRODUCTION_URL and "
            "ATGE_ROLLOUT_CANARY_HEADER)"),
        "verdict": result.verdict if result else "",
        "decision": done,
        "reason": action.reason,
        "canary": canary_id,
        "current": rr.current_id if rr and rr.current_id else "",
        "samples": result.samples if result else 0,
        "comparison": dg.MetadataValue.table(
            [dg.TableRecord({
                "metric": r["metric"], "verdict": r["verdict"],
                "change_pct": None if r["change"] is None else round(r["change"] * 100, 1),
                "canary_ms": None if r["current_ms"] is None else round(r["current_ms"], 1),
                "current_ms": None if r["baseline_ms"] is None else round(r["baseline_ms"], 1),
                "threshold_pct": round(r["threshold"] * 100, 1)}) for r in rows],
            schema=dg.TableSchema(columns=[
                dg.TableColumn("metric", "string"), dg.TableColumn("verdict", "string"),
                dg.TableColumn("change_pct", "float"), dg.TableColumn("canary_ms", "float"),
                dg.TableColumn("current_ms", "float"), dg.TableColumn("threshold_pct", "float"),
            ])),
        "rounds": dg.MetadataValue.md("\n".join(
            f"{r['round']}. {r['samples']} samples: {r['verdicts']}"
            for r in (result.rounds if result else [])) or "none"),
        "notifications": dg.MetadataValue.md("\n".join(f"- {d}" for d in deliveries)
                                             or "none"),
        "seconds": round(time.time() - started, 2),
    })


STAGE_COLUMNS = ("canary", "stage", "target_pct", "observed_canary_pct", "verdict", "decision",
                 "reason", "current", "run")


@dg.asset(
    group_name=GROUP,
    deps=[rollout_stage],
    kinds={"python"},
    description="Every judged stage of every rolling release, newest first: the stage and its "
    "share of traffic, the verdict, what was done (approved, completed, aborted, held) and why.",
)
def rolling_releases(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    records = context.instance.fetch_materializations(rollout_stage.key, limit=500).records
    rows = []
    for rec in records:
        md = {k: v.value for k, v in rec.asset_materialization.metadata.items()}
        if md.get("decision") == "skipped":
            continue
        rows.append({c: str(md.get(c, "")) for c in STAGE_COLUMNS if c != "run"}
                    | {"run": rec.run_id})
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["decision"]] = counts.get(r["decision"], 0) + 1
    return dg.MaterializeResult(metadata={
        "stages": dg.MetadataValue.table(
            [dg.TableRecord(r) for r in rows],
            schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in STAGE_COLUMNS])),
        "judged_stages": len(rows),
        **{f"{k}_count": v for k, v in sorted(counts.items())},
    })


rollout_stage_job = dg.define_asset_job(
    "rollout_stage_job", selection=[rollout_stage], partitions_def=rollout_partitions,
    executor_def=dg.in_process_executor,
    description="Judge the active stage of a rolling release and approve, abort or hold it.")
rolling_releases_job = dg.define_asset_job("rolling_releases_job", selection=[rolling_releases],
                                           description="Refresh the rolling releases table.")
