"""Per-deployment assets: timings -> baseline -> comparison -> rollback, with smoke tests beside
them and the promotion of healthy previews.

Smoke results are non-blocking checks on purpose: a failed blocking check would skip everything
downstream, the rollback included, and a broken production deployment is exactly when the
rollback must run; the rollback and promotion assets read the results from the history.

Data moves through the history store (not an IO manager), so every asset can be rerun alone and
every number stays queryable in SQL after the run.
"""


import dataclasses
import time
import warnings

import dagster as dg
import httpx

from atge_assets.deployments import compare as cmp
from atge_assets.deployments import drift
from atge_assets.deployments import judge as judge_mod
from atge_assets.deployments import release, sequential, smoke, targets
from atge_assets.deployments.history import ACCEPTED, DeploymentHistory
from atge_assets.deployments.partitions import deployments_partitions, verdict_may_come
from atge_assets.deployments.releases import COLUMNS, release_rows, summary
from atge_assets.deployments.resources import BenchmarkResource, ReleasePolicyResource
from atge_assets.deployments.smoke import DEFAULT_SMOKE, run_smoke, specs_from_json
from atge_assets.deployments.timing import CANDIDATE, REFERENCE, Sample, measure
from atge_assets.lib.providers.base import (
    Deployment,
    MalformedPayload,
    ProviderError,
)
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets.notify.resources import NotifierResource

GROUP = "deployments"


def _round(x, digits: int = 1):
    return None if x is None else round(x, digits)


def _fmt(x, pattern="{:.1f}") -> str:
    return "–" if x is None else pattern.format(x)


def _resolve(context, client, allowed: list[str], store, dep_id: str) -> Deployment:
    try:
        return targets.resolve(client, allowed, store, dep_id, context.run_id)
    except targets.NotBenchmarkable as exc:
        raise dg.Failure(str(exc)) from exc


def _recorded(store, dep_id: str):
    try:
        return targets.recorded(store, dep_id)
    except targets.UnknownDeployment as exc:
        raise dg.Failure(str(exc)) from exc


def _targets(context, vercel: VercelResource, benchmark: BenchmarkResource, store,
             reference_id: str | None = None, find_reference: bool = True
             ) -> tuple[Deployment, Deployment | None]:
    """The candidate and the production deployment to measure beside it, if there is one.

    The reference is what is live now, or, when the candidate itself is live, the last
    known-good production deployment (its URL still serves it). Without one, history decides.
    """
    with vercel.client() as client:
        allowed = client.allowed_hosts() + list(benchmark.allowed_hosts)
        dep = _resolve(context, client, allowed, store, context.partition_key)
        if reference_id is None and find_reference:
            try:
                reference_id = targets.reference_id(
                    client, store, dep,
                    in_flight=verdict_may_come(context, benchmark_job.name, MEASURE_WAIT_TRIES))
            except release.Wait as wait:
                context.log.info(f"{wait}; measuring in {MEASURE_WAIT_S} s")
                raise dg.RetryRequested(max_retries=MEASURE_WAIT_TRIES,
                                        seconds_to_wait=MEASURE_WAIT_S) from None
        if reference_id is None:
            return dep, None
        try:
            return dep, _resolve(context, client, allowed, store, reference_id)
        except dg.Failure as exc:
            context.log.warning(f"no interleaved reference ({exc.description}); "
                                "judging against history")
            return dep, None


@dg.asset(
    partitions_def=deployments_partitions,
    group_name=GROUP,
    kinds={"python"},
    description="Per metric: warm-up discarded, N timed samples of the deployment over HTTP, "
    "every failure recorded with its status or error.",
)
def benchmark_timings(
    context: dg.AssetExecutionContext,
    vercel: VercelResource,
    history: HistoryResource,
    benchmark: BenchmarkResource,
) -> dg.MaterializeResult:
    dep_id = context.partition_key
    suite = benchmark.suite()
    store = DeploymentHistory(history.engine())
    dep, ref = _targets(context, vercel, benchmark, store)
    context.log.info(
        f"benchmarking {dep_id} ({dep.target}) at {dep.url}: {len(suite.metrics)} metrics x "
        f"{suite.samples} samples after {suite.warmup} warm-up"
        + (f", interleaved with production {ref.id}" if ref else ", alone (no reference)"))
    started = time.time()
    done: dict[str, list[Sample]] = {}

    def progress(s: Sample) -> None:
        if s.target != CANDIDATE:
            return
        done.setdefault(s.metric, []).append(s)
        if len(done[s.metric]) == suite.samples:
            summary = cmp.summarize([x.value_ms for x in done[s.metric]])
            context.log.info(f"{s.metric}: p50 {_fmt(summary['p50'])} ms, "
                             f"{summary['errors']} failed of {summary['n']}")

    samples = measure(dep.url, suite, reference_url=ref.url if ref else None, on_sample=progress,
                      headers=benchmark.request_headers())
    store.record_measurement(dep_id, context.run_id, [s.as_dict() for s in samples], started,
                             reference_id=ref.id if ref else None)

    rows, plots = [], {}
    for spec in suite.metrics:
        for who in (CANDIDATE, REFERENCE):
            values = [s.value_ms for s in samples if s.metric == spec.name and s.target == who]
            if not values:
                continue
            summ = cmp.summarize(values)
            if who == CANDIDATE:
                # Top-level numbers are what Dagster's Plots tab draws across materializations.
                plots.update({f"{spec.name}_p50_ms": _round(summ["p50"]),
                              f"{spec.name}_p95_ms": _round(summ["p95"]),
                              f"{spec.name}_error_pct": round(100 * summ["errors"] / len(values),
                                                              1)})
            rows.append(dg.TableRecord({
                "metric": spec.name, "deployment": dep_id if who == CANDIDATE else ref.id,
                "role": who, "samples": summ["n"], "failed": summ["errors"],
                "p50_ms": summ["p50"], "p95_ms": summ["p95"], "mean_ms": summ["mean"],
                "min_ms": summ["min"], "max_ms": summ["max"],
            }))
    errors = sorted({s.error for s in samples if s.error})
    return dg.MaterializeResult(metadata={
        "deployment": dep_id,
        "reference": ref.id if ref else "",
        "target": dep.target,
        "url": dg.MetadataValue.url(dep.url),
        "samples": sum(1 for s in samples if s.target == CANDIDATE),
        "failed_samples": sum(1 for s in samples if not s.ok and s.target == CANDIDATE),
        "timings": dg.MetadataValue.table(rows, schema=_TIMINGS_SCHEMA),
        "errors_seen": dg.MetadataValue.md("\n".join(f"- {e}" for e in errors) or "none"),
        "seconds": round(time.time() - started, 2),
        **{k: v for k, v in plots.items() if v is not None},
    })


_TIMINGS_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("metric", "string"), dg.TableColumn("deployment", "string"),
    dg.TableColumn("role", "string"), dg.TableColumn("samples", "int"),
    dg.TableColumn("failed", "int"), dg.TableColumn("p50_ms", "float"),
    dg.TableColumn("p95_ms", "float"), dg.TableColumn("mean_ms", "float"),
    dg.TableColumn("min_ms", "float"), dg.TableColumn("max_ms", "float"),
])


@dg.asset(
    partitions_def=deployments_partitions,
    group_name=GROUP,
    deps=[benchmark_timings],
    kinds={"python"},
    description="Per metric, the samples to compare against: the production deployment measured "
    "in alternation in the same run; else earlier accepted production deployments; else the "
    "plan's static values (cold start). History is shown beside it as context.",
)
def baseline(
    context: dg.AssetExecutionContext, history: HistoryResource, benchmark: BenchmarkResource
) -> dg.MaterializeResult:
    dep_id = context.partition_key
    store = DeploymentHistory(history.engine())
    suite = benchmark.suite()
    dep = store.deployment(dep_id)
    if dep is None:
        raise dg.Failure(f"deployment {dep_id} has no timings yet: materialize benchmark_timings")
    good = store.known_good_production(dep.created_ms, benchmark.baseline_deployments)
    earlier = [(g.id, store.latest_samples(g.id)) for g in good]
    ref_id = store.latest_reference(dep_id)
    reference = (ref_id, store.latest_samples(dep_id, REFERENCE)) if ref_id else None
    per_metric = cmp.build_baseline(suite, earlier, reference)
    context_only = cmp.build_baseline(suite, earlier)  # what history alone would say
    store.record_baseline(dep_id, context.run_id, per_metric)
    rows = []
    for metric, b in per_metric.items():
        s = cmp.summarize(b["samples"])
        h = context_only[metric]
        rows.append(dg.TableRecord({
            "metric": metric, "source": b["source"], "samples": s["n"], "p50_ms": s["p50"],
            "p95_ms": s["p95"], "history_source": h["source"],
            "history_p50_ms": cmp.summarize(h["samples"])["p50"],
        }))
    sources = sorted({b["source"] for b in per_metric.values()})
    context.log.info(f"baseline for {dep_id}: {', '.join(sources)}")
    return dg.MaterializeResult(metadata={
        "source": ", ".join(sources),
        "cold_start": not good and not ref_id,
        "interleaved_with": ref_id or "",
        "baseline": dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=[
            dg.TableColumn("metric", "string"), dg.TableColumn("source", "string"),
            dg.TableColumn("samples", "int"), dg.TableColumn("p50_ms", "float"),
            dg.TableColumn("p95_ms", "float"), dg.TableColumn("history_source", "string"),
            dg.TableColumn("history_p50_ms", "float"),
        ])),
    })


@dg.asset(
    partitions_def=deployments_partitions,
    group_name=GROUP,
    deps=[benchmark_timings, baseline],
    kinds={"python"},
    description="Per metric: current, baseline, change %, threshold and the judge's verdict "
    "with its reasons.",
)
def baseline_comparison(
    context: dg.AssetExecutionContext,
    vercel: VercelResource,
    history: HistoryResource,
    benchmark: BenchmarkResource,
) -> dg.MaterializeResult:
    dep_id = context.partition_key
    store = DeploymentHistory(history.engine())
    suite = benchmark.suite()
    base = store.latest_baseline(dep_id)
    cand = store.latest_samples(dep_id)
    if not base or not cand:
        raise dg.Failure(f"deployment {dep_id}: baseline or timings missing; materialize them first")
    rounds: list[dict] = []
    dep = ref = None
    # Rounds of `samples` a side up to the budget: the looks the sequential design plans.
    looks = sequential.design(suite.samples, benchmark.max_samples).looks
    stopped_early = False
    while True:
        look = len(rounds) + 1
        rows = cmp.compare(suite, base, cand, look=look, looks=looks)
        unsure = [r["metric"] for r in rows if r["decision"] == sequential.MEASURE_MORE]
        n = min(len(cand.get(m, [])) for m in unsure) if unsure else 0
        rounds.append({"round": look, "samples": max(map(len, cand.values())),
                       "verdicts": ", ".join(f"{r['metric']}={r['verdict']}" for r in rows)})
        if not unsure:
            break
        # Inconclusive never decides by itself: measure those metrics again, then judge again.
        more_n = min(suite.samples, benchmark.max_samples - n)
        context.log.info(f"look {look} of {looks}: {unsure} undecided at {n} samples; "
                         f"measuring {more_n} more")
        if dep is None:
            ref_id = store.latest_reference(dep_id)
            dep, ref = _targets(context, vercel, benchmark, store, ref_id, find_reference=False)
            if ref_id and ref is None:
                context.log.warning("the reference is gone; cannot re-measure in alternation")
                stopped_early = True
                break
        more = measure(dep.url, dataclasses.replace(
            suite, metrics=tuple(m for m in suite.metrics if m.name in unsure), warmup=0,
            samples=more_n), reference_url=ref.url if ref else None, seq_start=n,
            headers=benchmark.request_headers())
        store.add_samples(dep_id, [x.as_dict() for x in more])
        cand = store.latest_samples(dep_id)
        if ref:
            fresh = store.latest_samples(dep_id, REFERENCE)
            base = {m: ({"source": b["source"], "samples": fresh[m]} if m in fresh else b)
                    for m, b in base.items()}
    # The last look, or no way to measure more: what is still open is for a person.
    overall = cmp.overall_verdict(rows)
    if stopped_early and overall == judge_mod.HELD:
        context.log.warning(f"{dep_id} held at look {len(rounds)} of {looks}: the reference "
                            "deployment is gone")
    store.record_comparison(dep_id, context.run_id, rows, overall)
    # Shown here; announced by the decision that follows (rollback, promotion), in its message.
    over = [m["metric"] for m in release.over_limits(suite, rows)]
    if over:
        context.log.warning(f"{dep_id}: above the absolute limit: {', '.join(over)}")
    head = cmp.summary(dep_id, overall, rows)
    # The judge's first reason starts with the verdict already: not said twice.
    lines = [f"**{head}**", ""] + [f"- `{r['metric']}` " + "; ".join(r["details"]["reasons"])
                                   for r in rows]
    table = []
    for r in rows:
        ch = r["change"]
        table.append(dg.TableRecord({
            "metric": r["metric"], "current_ms": _round(r["current_ms"]),
            "baseline_ms": _round(r["baseline_ms"]),
            "change_pct": None if ch is None else round(ch * 100, 1),
            "threshold_pct": round(r["threshold"] * 100, 1), "verdict": r["verdict"],
            "p_value": "" if r["p_value"] is None else f"{r['p_value']:.1e}",
            "baseline_source": r["baseline_source"],
        }))
        context.log.info(f"{r['metric']}: {r['verdict']} ({_fmt(ch and ch * 100, '{:+.1f}')}% "
                         f"vs {r['baseline_source']})")
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md(head),
        "verdict": overall,
        "comparison": dg.MetadataValue.table(table, schema=dg.TableSchema(columns=[
            dg.TableColumn("metric", "string"), dg.TableColumn("current_ms", "float"),
            dg.TableColumn("baseline_ms", "float"), dg.TableColumn("change_pct", "float"),
            dg.TableColumn("threshold_pct", "float"), dg.TableColumn("verdict", "string"),
            dg.TableColumn("p_value", "string"), dg.TableColumn("baseline_source", "string"),
        ])),
        "reasons": dg.MetadataValue.md("\n".join(lines)),
        "rounds": dg.MetadataValue.md("\n".join(
            f"{r['round']}. {r['samples']} samples: {r['verdicts']}" for r in rounds)),
        "over_limit": ", ".join(over) or "none",
        "max_change_pct": round(max((r["change"] * 100 for r in rows
                                     if r["change"] is not None), default=None) or 0.0, 1),
    })


# A reference's own run takes ~10 s: ask often, and measure with what is known after ~2 min.
MEASURE_WAIT_TRIES, MEASURE_WAIT_S = 60, 2
# How long a release decision waits for a verdict it depends on (another run's) before going
# ahead with what is known: 30 x 10 s.
WAIT_TRIES, WAIT_S = 30, 10


class PersonDecision(dg.Config):
    """A person's explicit decision: launch `rollback` (a held production deployment) or
    `promotion` (a held preview, or one awaiting approval) for its partition with
    `decision: accept` or `decision: reject`, and `by: <name>`."""

    decision: str = ""
    by: str = ""  # who decides, recorded with the decision; else the run's user tag if any


def _person_decision(config: PersonDecision, dep, **allowed) -> str:
    try:
        return release.person_decision(config.decision, dep.verdict, dep.id, **allowed)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None


def _approver(context: dg.AssetExecutionContext, config: PersonDecision) -> str:
    tags = context.run.tags
    return (config.by.strip()[:80] or tags.get("dagster/user") or tags.get("user")
            or f"a person (run {context.run_id[:8]})")


with warnings.catch_warnings():
    # Partitioned checks (a preview in the pinned Dagster, as load_test's): each deployment's page
    # shows its own results, and a failure stays on its partition whatever later deployments do
    # (see smoke.severity for the node's color).
    warnings.simplefilter("ignore", dg.PreviewWarning)
    SMOKE_CHECKS = [dg.AssetCheckSpec(f"smoke_{n}", asset="smoke_tests",
                                      partitions_def=deployments_partitions,
                                      description=f"the `{n}` endpoint answers, in shape and time")
                    for n in smoke.DEFAULT_NAMES]


@dg.asset(
    partitions_def=deployments_partitions,
    group_name=GROUP,
    kinds={"python"},
    check_specs=SMOKE_CHECKS,
    description="Smoke tests of the deployment's endpoints: status, JSON shape and time. A "
    "failure on production leads to a rollback; on a preview it blocks promotion.",
)
def smoke_tests(
    context: dg.AssetExecutionContext,
    vercel: VercelResource,
    history: HistoryResource,
    benchmark: BenchmarkResource,
    policy: ReleasePolicyResource,
):
    store = DeploymentHistory(history.engine())
    specs = specs_from_json(policy.smoke_json) if policy.smoke_json else DEFAULT_SMOKE
    dep, _ = _targets(context, vercel, benchmark, store, find_reference=False)
    results = [run_smoke(dep.url, s, scale=benchmark.baseline_scale,
                         headers=benchmark.request_headers()) for s in specs]
    store.record_smoke(dep.id, context.run_id, [r.as_dict() for r in results])
    failed = [r.name for r in results if not r.passed]
    for r in results:
        (context.log.info if r.passed else context.log.warning)(
            f"smoke {r.name}: {'passed' if r.passed else 'FAILED'}: {'; '.join(r.reasons)}")
    live = _is_live(context, vercel, dep)
    for kw in smoke.check_results(results, live):
        yield dg.AssetCheckResult(**dict(kw, severity=dg.AssetCheckSeverity[kw["severity"]]))
    yield dg.MaterializeResult(metadata={
        "passed": not failed,
        "failed": ", ".join(failed) or "none",
        "live_production": live,
        "results": dg.MetadataValue.table(
            [dg.TableRecord(r) for r in smoke.table_rows(results)], schema=dg.TableSchema(
                columns=[dg.TableColumn(c, t) for c, t in smoke.TABLE_COLUMNS])),
    })


def _is_live(context, vercel: VercelResource, dep: Deployment) -> bool:
    """Whether production serves `dep` now; unknown: live if a production deployment."""
    try:
        with vercel.client() as client:
            return client.production_deployment_id() == dep.id
    except (ProviderError, MalformedPayload, httpx.HTTPError) as exc:
        context.log.warning(f"could not read production: {type(exc).__name__}")
        return dep.target == "production"


@dg.asset(
    partitions_def=deployments_partitions,
    group_name=GROUP,
    deps=[baseline_comparison, smoke_tests],
    kinds={"python"},
    description="Promotes a preview to production when its smoke tests pass and it is no slower "
    "than production. With auto-promotion off, the run records the verdict and a person promotes "
    "by materializing this asset for the deployment.",
)
def promotion(
    context: dg.AssetExecutionContext,
    config: PersonDecision,
    vercel: VercelResource,
    history: HistoryResource,
    policy: ReleasePolicyResource,
    notifier: NotifierResource,
    benchmark: BenchmarkResource,
) -> dg.MaterializeResult:
    dep_id = context.partition_key
    store = DeploymentHistory(history.engine())
    dep = _recorded(store, dep_id)
    smoke = store.latest_smoke(dep_id)
    failed = sorted(n for n, r in smoke.items() if not r["passed"])
    # A person approves explicitly (config), not by launching the run: anyone who reaches the
    # webserver can launch one.
    person = _person_decision(config, dep, allowed=(judge_mod.HELD,) + ACCEPTED)
    with vercel.client() as client:
        live_id = client.production_deployment_id() if dep.target != "production" else None
        try:
            decision, reason = release.decide_promotion(
                store, dep, live_id, auto_promote=policy.auto_promote, person=person,
                approver=_approver(context, config),
                in_flight=verdict_may_come(context, benchmark_job.name, WAIT_TRIES))
        except release.Wait as wait:
            context.log.info(f"{wait}; asking again in {WAIT_S} s")
            raise dg.RetryRequested(max_retries=WAIT_TRIES, seconds_to_wait=WAIT_S) from None
        if person == "accept" and dep.target != "production":
            store.set_verdict(dep_id, judge_mod.ACCEPTED_BY_PERSON)
        decision, reason = release.act_promotion(store, client, dep_id, decision, reason,
                                                 context.run_id)
    if dep.target != "production":  # production deployments are the rollback's business
        store.record_decision(dep_id, context.run_id, decision if decision == "promoted"
                              else f"promotion_{decision}", reason)
    context.log.info(f"{dep_id}: promotion {decision}: {reason}")
    if dep.target != "production":
        _tag_run(context, dep.verdict, decision)
    deliveries = []
    if dep.target != "production":
        events = release.promotion_events(store, dep, decision, reason, benchmark.suite(),
                                          person=person, run_url=notifier.run_url(context.run_id),
                                          run_id=context.run_id)
        deliveries = [str(d) for e in events for d in notifier.send(e, store.engine)]
        for d in deliveries:
            context.log.info(f"notification: {d}")
    return dg.MaterializeResult(metadata={
        "decision": decision, "reason": reason, "verdict": dep.verdict or "",
        "smoke_failed": ", ".join(failed) or "none", "auto_promote": policy.auto_promote,
        "notifications": dg.MetadataValue.md("\n".join(f"- {d}" for d in deliveries) or "none"),
    })


@dg.asset(
    partitions_def=deployments_partitions,
    group_name=GROUP,
    deps=[baseline_comparison, smoke_tests],
    kinds={"python"},
    description="Rolls the project back to the last known-good production deployment when this "
    "one is live and regressed or failed its smoke tests. At most once per deployment; every "
    "decision recorded and announced.",
)
def rollback(
    context: dg.AssetExecutionContext,
    config: PersonDecision,
    vercel: VercelResource,
    history: HistoryResource,
    policy: ReleasePolicyResource,
    notifier: NotifierResource,
    benchmark: BenchmarkResource,
) -> dg.MaterializeResult:
    dep_id = context.partition_key
    store = DeploymentHistory(history.engine())
    dep = _recorded(store, dep_id)
    person = _person_decision(config, dep) if dep.target == "production" else ""
    good = store.known_good_production(dep.created_ms, 1)
    with vercel.client() as client:
        production = client.production_deployment_id()
        try:
            plan = release.decide_rollback(
                store, dep, production, dry_run=policy.dry_run, person=person,
                approver=_approver(context, config),
                in_flight=verdict_may_come(context, benchmark_job.name, WAIT_TRIES))
        except release.Wait as wait:
            # Runs run concurrently: an earlier verdict may name the right target. After
            # WAIT_TRIES the rollback goes ahead with what is known rather than never.
            context.log.info(f"{wait}; asking again in {WAIT_S} s")
            raise dg.RetryRequested(max_retries=WAIT_TRIES, seconds_to_wait=WAIT_S) from None
        if plan.action == "accepted":
            store.set_verdict(dep_id, judge_mod.ACCEPTED_BY_PERSON)
        action, plan = release.act_rollback(store, client, dep_id, plan, context.run_id,
                                            log=context.log.warning)
    store.record_decision(dep_id, context.run_id, action, plan.reason, plan.rollback_to)
    context.log.info(f"{dep_id}: {action}: {plan.reason}")
    if dep.target == "production":  # a preview's fate is the promotion's (see below)
        _tag_run(context, dep.verdict, action)
    # Announced after the decision is recorded: a failing channel cannot block or undo it.
    events = release.release_events(store, dep, action, plan.rollback_to, plan.reason,
                                    benchmark.suite(), good[0].id if good else None,
                                    run_url=notifier.run_url(context.run_id), run_id=context.run_id)
    deliveries = [str(d) for e in events for d in notifier.send(e, store.engine)]
    for d in deliveries:
        context.log.info(f"notification: {d}")
    return dg.MaterializeResult(metadata={
        "notifications": dg.MetadataValue.md("\n".join(f"- {d}" for d in deliveries) or "none"),
        "decision": action,
        "reason": plan.reason,
        "rollback_to": plan.rollback_to or "",
        "verdict": dep.verdict or "",
        "production_before": production or "",
        "dry_run": policy.dry_run,
    })


def _tag_run(context: dg.AssetExecutionContext, verdict: str | None, decision: str) -> None:
    """`atge/verdict` and `atge/decision` on the run, so the Runs list and its filters tell a
    rollback from a keep."""
    context.instance.add_run_tags(context.run_id, {"atge/verdict": verdict or "none",
                                                   "atge/decision": decision})


@dg.asset(
    group_name=GROUP,
    deps=[rollback, promotion],
    kinds={"python"},
    description="One row per deployment: created, target, verdict and per-metric change, the "
    "decision (rolled back, kept, promoted, blocked, skipped) and why, the deployment it rolled "
    "back to, links to the run and the deployment. Refreshed after every benchmark run.",
)
def releases(history: HistoryResource, notifier: NotifierResource) -> dg.MaterializeResult:
    rows = release_rows(DeploymentHistory(history.engine()).recent_deployments(),
                        notifier.run_url)
    head, counts = summary(rows)
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md(head),
        "releases": dg.MetadataValue.table(
            [dg.TableRecord(r) for r in rows],
            schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in COLUMNS])),
        "deployments": len(rows),
        **{f"{k}_count": v for k, v in sorted(counts.items())},
    })


@dg.asset_check(
    asset=releases,
    name=drift.CHECK_NAME,
    description="Production runs what this tool's history expects: not a deployment it rolled "
    "back, nor a regressed, held, rejected or never-judged one put live outside this tool. The "
    "deployment sensor reports it on every change; executing it asks the provider now.",
)
def production_drift(vercel: VercelResource, history: HistoryResource) -> dg.AssetCheckResult:
    store = DeploymentHistory(history.engine())
    with vercel.client() as client:
        try:
            obs = drift.observe(client, store)
        except (ProviderError, MalformedPayload, httpx.HTTPError, ValueError) as exc:
            # Unknown is not "in sync": a warning, and the sensor's next answer replaces it.
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN,
                description=f"could not read production: {client.redact(str(exc))[:500]}")
    return dg.AssetCheckResult(passed=not obs.flagged, severity=dg.AssetCheckSeverity.ERROR,
                               description=obs.reason, metadata=obs.metadata())


# The sensor reports the drift check as production changes; a refresh after every benchmark run
# need not ask the provider too.
releases_job = dg.define_asset_job("releases_job",
                                   selection=dg.AssetSelection.assets(releases).without_checks(),
                                   description="Refresh the releases table.")


benchmark_job = dg.define_asset_job(
    "benchmark_deployment",
    selection=dg.AssetSelection.assets(benchmark_timings, baseline, baseline_comparison, rollback,
                                       smoke_tests, promotion),
    partitions_def=deployments_partitions,
    # The steps run one after another anyway; one process saves a Python start-up per step.
    executor_def=dg.in_process_executor,
    description="Benchmark one deployment, compare it with its baseline, roll back on regression.",
)
