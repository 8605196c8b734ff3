"""The release gate: smoke tests beside every deployment, and promotion of healthy previews.

Smoke results are non-blocking checks on purpose: a failed blocking check would skip everything
downstream, the rollback included, and a broken production deployment is exactly when the
rollback must run. The rollback and promotion assets read the results from the history store.
"""

import dagster as dg

from atge_assets import notify
from atge_assets.deployments.assets import (
    _targets,
    baseline_comparison,
    recorded_deployment,
)
from atge_assets.deployments.history import ACCEPTED, DeploymentHistory
from atge_assets.deployments.partitions import deployments_partitions
from atge_assets.deployments.resources import BenchmarkResource, ReleasePolicyResource
from atge_assets.deployments.smoke import DEFAULT_SMOKE, run_smoke, specs_from_json
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets.notify.resources import NotifierResource

SMOKE_NAMES = [s.name for s in DEFAULT_SMOKE]


@dg.asset(
    partitions_def=deployments_partitions,
    group_name="deployments",
    kinds={"python"},
    check_specs=[dg.AssetCheckSpec(f"smoke_{n}", asset="smoke_tests",
                                   description=f"the `{n}` endpoint answers, in shape and in time")
                 for n in SMOKE_NAMES],
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
    results = [run_smoke(dep.url, s, scale=benchmark.baseline_scale) for s in specs]
    store.record_smoke(dep.id, context.run_id, [r.as_dict() for r in results])
    failed = [r.name for r in results if not r.passed]
    for r in results:
        (context.log.info if r.passed else context.log.warning)(
            f"smoke {r.name}: {'passed' if r.passed else 'FAILED'}: {'; '.join(r.reasons)}")
    by_name = {r.name: r for r in results}
    # Checks are declared for the default names; a custom suite reports its own in metadata.
    for name in SMOKE_NAMES:
        r = by_name.get(name)
        yield dg.AssetCheckResult(
            check_name=f"smoke_{name}", passed=r.passed if r else True,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"status": r.status if r and r.status is not None else -1,
                      "ms": round(r.ms, 1) if r and r.ms is not None else -1.0,
                      "limit_ms": round(r.limit_ms, 1) if r else -1.0,
                      "reasons": "; ".join(r.reasons) if r else "not in the configured suite"})
    yield dg.MaterializeResult(metadata={
        "passed": not failed,
        "failed": ", ".join(failed) or "none",
        "results": dg.MetadataValue.table(
            [dg.TableRecord({"name": r.name, "passed": r.passed, "status": r.status,
                             "ms": r.ms, "limit_ms": r.limit_ms, "reasons": "; ".join(r.reasons)})
             for r in results],
            schema=dg.TableSchema(columns=[
                dg.TableColumn("name", "string"), dg.TableColumn("passed", "bool"),
                dg.TableColumn("status", "int"), dg.TableColumn("ms", "float"),
                dg.TableColumn("limit_ms", "float"), dg.TableColumn("reasons", "string")])),
    })


@dg.asset(
    partitions_def=deployments_partitions,
    group_name="deployments",
    deps=[baseline_comparison, smoke_tests],
    kinds={"python"},
    description="Promotes a preview to production when its smoke tests pass and it is no slower "
    "than production. With auto-promotion off, the run records the verdict and a person promotes "
    "by materializing this asset for the deployment.",
)
def promotion(
    context: dg.AssetExecutionContext,
    vercel: VercelResource,
    history: HistoryResource,
    policy: ReleasePolicyResource,
    notifier: NotifierResource,
) -> dg.MaterializeResult:
    dep_id = context.partition_key
    store = DeploymentHistory(history.engine())
    dep = recorded_deployment(store, dep_id)
    smoke = store.latest_smoke(dep_id)
    failed = sorted(n for n, r in smoke.items() if not r["passed"])
    # A run the sensor launched is automatic; one a person launched from the UI is an approval.
    manual = "dagster/sensor_name" not in context.run.tags
    existing = store.promotion_for(dep_id)
    if dep.target == "production":
        decision, reason = "skipped", "already a production deployment"
    elif existing and existing["status"] == "done":
        decision, reason = "skipped", "already promoted"
    elif not smoke:
        decision, reason = "blocked", "no smoke test results"
    elif failed:
        decision, reason = "blocked", f"smoke tests failed: {', '.join(failed)}"
    elif dep.verdict not in ACCEPTED:
        decision, reason = "blocked", f"benchmark verdict is {dep.verdict}"
    elif not policy.auto_promote and not manual:
        decision, reason = "awaiting_approval", ("passed; auto-promotion is off: materialize "
                                                 "`promotion` for this deployment to promote")
    elif existing is None and store.claim_promotion(dep_id, context.run_id) is not None:
        decision, reason = "skipped", "another run claimed this promotion first"
    else:
        with vercel.client() as client:
            client.promote(dep_id)  # raises after retries: the claim stays pending for a retry
        store.finish_promotion(dep_id)
        decision = "promoted"
        reason = ("approved by a person" if manual and not policy.auto_promote
                  else "smoke tests passed and no slower than production")
    if dep.target != "production":  # production deployments are the rollback's business
        store.record_decision(dep_id, context.run_id, decision if decision == "promoted"
                              else f"promotion_{decision}", reason)
    context.log.info(f"{dep_id}: promotion {decision}: {reason}")
    deliveries = []
    if decision == "promoted":
        event = notify.promotion_event(dep_id, reason, run_url=notifier.run_url(context.run_id),
                                       run_id=context.run_id, deployment_url=dep.url)
        deliveries = [str(d) for d in notifier.send(event, store.engine)]
        for d in deliveries:
            context.log.info(f"notification: {d}")
    return dg.MaterializeResult(metadata={
        "decision": decision, "reason": reason, "verdict": dep.verdict or "",
        "smoke_failed": ", ".join(failed) or "none", "auto_promote": policy.auto_promote,
        "notifications": dg.MetadataValue.md("\n".join(f"- {d}" for d in deliveries) or "none"),
    })
