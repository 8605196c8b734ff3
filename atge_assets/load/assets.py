"""The load test of one deployment: stages of concurrent users, judged, capacity reported.

A graph-backed asset, so Dagster's executor can spread the load: `plan_load_test` resolves the
deployment (READY, on an allowed host) and fans out one `run_load_shard` step per shard; each
runs every stage for its share of the users; `judge_load_test` merges the shards' histograms
exactly, judges the plan's thresholds (one asset check each, never blocking), reports capacity and
records every stage in the history store. The checks are emitted by that last op, so they are
judged on exactly the merged numbers the materialization shows.

Shards are only a load of N users if they run at the same time. Each waits until every shard's
step has started (their STEP_START events, which every executor writes to the instance) and all
begin one second after the last start; stage i starts `i x (stage duration + pause)` after that.
A shard that could not start (an executor running fewer steps at once than there are shards)
fails the run instead of spreading the load over time. On the in-process executor the steps run
one after another, so there a single shard step spreads its stages over processes itself.
"""

import time
import warnings
from dataclasses import dataclass
from typing import Callable

import dagster as dg

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.deployments.partitions import deployments_partitions
from atge_assets.deployments.resources import BenchmarkResource
from atge_assets.deployments.targets import NotBenchmarkable, resolve
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets.load.capacity import CapacityReport, Thresholds, capacity_report
from atge_assets.load.engine import run_stage
from atge_assets.load.history import LoadHistory
from atge_assets.load.resources import LoadTestResource
from atge_assets.load.spec import MAX_SHARDS, LoadResult, merge

GROUP = "load"
ASSET = dg.AssetKey("load_test")
_START_MARGIN_S = 1.0  # longer than a shard's poll interval, so every shard sees the same start


@dataclass(frozen=True)
class _Check:
    name: str
    severity: dg.AssetCheckSeverity
    description: str
    value: Callable[[LoadResult], float | None]
    limit: Callable[[Thresholds, LoadResult], float]
    at_least: bool = False  # a floor (throughput) rather than a ceiling
    # An abort is the engine's own error-spike verdict: a low overall rate must not hide it.
    fails_on_abort: bool = False


CHECKS = (
    _Check("avg_latency", dg.AssetCheckSeverity.WARN,
           "Average response time at every stage up to the target load within the plan's 30 s "
           "(scaled like the benchmark's static baselines).",
           lambda r: r.avg_ms, lambda t, r: t.max_avg_ms),
    _Check("p95_latency", dg.AssetCheckSeverity.WARN,
           "p95 response time at every stage up to the target load within the plan's 45 s "
           "(scaled).",
           lambda r: r.p95_ms, lambda t, r: t.max_p95_ms),
    _Check("error_rate", dg.AssetCheckSeverity.ERROR,
           "Failed requests (transport errors and HTTP >= 400) at most 1% at every stage up to "
           "the target load, and no stage aborted on an error spike.",
           lambda r: r.error_rate if r.requests else None, lambda t, r: t.max_error_rate,
           fails_on_abort=True),
    _Check("throughput", dg.AssetCheckSeverity.WARN,
           "Throughput at every stage up to the target load at least 80% of what its users send "
           "when answers take the allowed average (LoadTestResource.thresholds).",
           lambda r: r.rps if r.requests else None,
           lambda t, r: (t.min_rps_per_user * r.users if r.rate is None
                         else t.min_rate_ratio * r.rate),
           at_least=True),
)

with warnings.catch_warnings():
    # Check results per deployment need partitioned check specs, a preview feature in the pinned
    # Dagster; without them the UI would show the latest deployment's verdict on every partition.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    CHECK_SPECS = [dg.AssetCheckSpec(c.name, asset=ASSET, description=c.description,
                                     partitions_def=deployments_partitions) for c in CHECKS]
_CHECK_OUTPUTS = [s.get_python_identifier() for s in CHECK_SPECS]


# -- plan ------------------------------------------------------------------------------------------
def _steps_run_one_at_a_time(context: dg.OpExecutionContext) -> bool:
    # `in_process`, and `execute_in_process_executor` under dg.materialize / execute_in_process.
    if "in_process" in context.job_def.executor_def.name:
        return True
    # The default executor runs in process when the run config says so.
    return "in_process" in ((context.run_config.get("execution") or {}).get("config") or {})


@dg.op(out=dg.DynamicOut(dict), description="Resolves the deployment (READY, on an allowed host) "
       "and splits every stage's users into shards.")
def plan_load_test(context: dg.OpExecutionContext, vercel: VercelResource,
                   history: HistoryResource, load: LoadTestResource):
    store = DeploymentHistory(history.engine())
    with vercel.client() as client:
        allowed = client.allowed_hosts() + list(load.allowed_hosts)
        try:
            dep = resolve(client, allowed, store, context.partition_key, context.run_id)
        except NotBenchmarkable as exc:
            raise dg.Failure(str(exc)) from exc
    try:
        specs = load.stage_specs(dep.url.rstrip("/") + load.path)
    except ValueError as exc:
        raise dg.Failure(f"load test settings rejected: {exc}") from exc
    # Every shard needs at least one user (and one request) in every stage.
    n = min([load.shards] + [s.users for s in specs]
            + [s.max_requests for s in specs if s.max_requests is not None])
    steps, processes = n, 1
    if _steps_run_one_at_a_time(context) and n > 1:
        steps, processes = 1, n
        context.log.info(f"the executor runs steps one after another: one step, {n} processes")
    context.log.info(f"load-testing {dep.id} at {specs[0].url}: stages {[s.users for s in specs]} "
                     f"users x {load.stage_duration_s:g} s, {steps} shard step(s)")
    slot_s = load.stage_duration_s + load.pause_s
    for i in range(steps):
        yield dg.DynamicOutput({
            "index": i, "of": steps, "processes": processes, "allowed": allowed,
            "specs": [s.shard(steps)[i] for s in specs], "slot_s": slot_s,
            "start_timeout_s": load.shard_start_timeout_s,
        }, mapping_key=f"shard_{i}")


# -- shards ----------------------------------------------------------------------------------------
def _start_together(context: dg.OpExecutionContext, of: int, timeout_s: float) -> float:
    """The common start time of `of` shard steps: just after the last of them started."""
    if of == 1:
        return time.time()
    prefix = f"{context.op_handle}["
    deadline = time.monotonic() + timeout_s
    while True:
        started: dict[str, float] = {}
        for e in context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.STEP_START):
            if (e.step_key or "").startswith(prefix):
                started[e.step_key] = max(started.get(e.step_key, 0.0), e.timestamp)
        if len(started) >= of:
            return max(started.values()) + _START_MARGIN_S
        if time.monotonic() > deadline:
            raise dg.Failure(
                f"only {len(started)} of {of} load shards started within {timeout_s:g} s: the "
                f"executor does not run them side by side (does it run {of} steps at once?), "
                "and a load spread over time is not the load it claims")
        time.sleep(0.2)


@dg.op(description="Runs every stage for this shard's share of the users, in step with the "
       "other shards.")
def run_load_shard(context: dg.OpExecutionContext, shard: dict) -> dict:
    t0 = _start_together(context, shard["of"], shard["start_timeout_s"])
    stages = []
    for i, spec in enumerate(shard["specs"]):
        late = time.time() - (t0 + i * shard["slot_s"])
        if late < 0:
            time.sleep(-late)
        try:
            r = run_stage(spec, allowed_hosts=shard["allowed"], processes=shard["processes"])
        except ValueError as exc:  # HostNotAllowed is one: raised before anything is sent
            raise dg.Failure(f"load stage of {spec.users} users refused: {exc}") from exc
        stages.append(dict(r.to_dict(histogram=True), late_s=round(max(late, 0.0), 3)))
        context.log.info(f"shard {shard['index']}: {r.users} users: {r.requests} requests, "
                         f"{r.errors} errors, {r.rps:.1f} req/s, p95 {r.p95_ms} ms")
        if r.aborted:
            context.log.warning(f"stage aborted ({r.aborted}); heavier stages skipped")
            break
    return {"index": shard["index"], "t0": t0, "stages": stages}


# -- judge -----------------------------------------------------------------------------------------
def merge_shards(parts: list[dict]) -> tuple[list[LoadResult], list[dict]]:
    """Per stage, the shards' results merged; and one row per stage and shard, for the record.

    Stages not every shard ran (one aborted earlier) are left out: they were lighter than claimed.
    """
    parts = sorted(parts, key=lambda p: p["index"])
    t0 = parts[0]["t0"]
    if any(abs(p["t0"] - t0) > 1e-3 for p in parts):
        raise dg.Failure("the load shards did not start together (a re-execution that reused "
                         "some shards' results?): materialize the whole asset again")
    merged, rows = [], []
    for i in range(min(len(p["stages"]) for p in parts)):
        results = [LoadResult.from_dict(p["stages"][i]) for p in parts]
        merged.append(merge(results))
        rows += [{"stage": i, "shard": p["index"], "users": r.users, "requests": r.requests,
                  "errors": r.errors, "rps": round(r.rps, 2),
                  "start_offset_s": round(r.started_at - t0, 3),
                  "late_s": p["stages"][i]["late_s"]} for p, r in zip(parts, results)]
    return merged, rows


def _evaluate(check: _Check, stages: list[LoadResult], t: Thresholds, target: float
              ) -> dg.AssetCheckResult:
    rows, failed = [], []
    for r in stages:
        if r.load > target:
            continue
        value, limit = check.value(r), check.limit(t, r)
        ok = value is not None and (value >= limit if check.at_least else value <= limit)
        ok = ok and not (check.fails_on_abort and r.aborted)
        if not ok:
            failed.append(r.load)
        rows.append(dg.TableRecord({"users": int(r.load), "value": value,
                                    "limit": round(limit, 6), "passed": ok}))
    values = [row.data["value"] for row in rows if row.data["value"] is not None]
    worst = (min(values) if check.at_least else max(values)) if values else None
    return dg.AssetCheckResult(
        check_name=check.name, asset_key=ASSET, passed=bool(rows) and not failed,
        severity=check.severity,
        description=(f"failed at {', '.join(f'{x:g}' for x in failed)} users" if failed
                     else f"met at every stage up to {target:g} users"),
        metadata={
            "worst": worst, "limit_at_heaviest": rows[-1].data["limit"] if rows else None,
            "failed_at_users": ", ".join(f"{x:g}" for x in failed) or "none",
            "stages": dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=[
                dg.TableColumn("users", "int"), dg.TableColumn("value", "float"),
                dg.TableColumn("limit", "float"), dg.TableColumn("passed", "bool")])),
        })


def _hand_to_provider(context, vercel: VercelResource, dep_id: str,
                      report: CapacityReport) -> str:
    """Give the recommendation to a provider that can act on it (one with `scale_replicas`)."""
    if report.desired_replicas is None:
        return "no recommendation to hand over: no stage met the thresholds"
    with vercel.client() as client:
        scale = getattr(client, "scale_replicas", None)
        if scale is None:
            # Vercel scales functions itself and its API has no replica count to set.
            msg = "provider cannot scale: recommendation recorded"
        else:
            scale(dep_id, report.desired_replicas)
            msg = f"provider asked to run {report.desired_replicas} replicas"
    context.log.info(msg)
    return msg


_STAGES_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("users", "int"), dg.TableColumn("requests", "int"),
    dg.TableColumn("errors", "int"), dg.TableColumn("error_rate_pct", "float"),
    dg.TableColumn("rps", "float"), dg.TableColumn("avg_ms", "float"),
    dg.TableColumn("p50_ms", "float"), dg.TableColumn("p95_ms", "float"),
    dg.TableColumn("p99_ms", "float"), dg.TableColumn("max_ms", "float"),
    dg.TableColumn("passed", "bool"), dg.TableColumn("failures", "string"),
])
_SHARDS_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("stage", "int"), dg.TableColumn("shard", "int"), dg.TableColumn("users", "int"),
    dg.TableColumn("requests", "int"), dg.TableColumn("errors", "int"),
    dg.TableColumn("rps", "float"), dg.TableColumn("start_offset_s", "float"),
    dg.TableColumn("late_s", "float"),
])


def _capacity_md(dep_id: str, report: CapacityReport, t: Thresholds, scale: float,
                 provider: str) -> str:
    held = (f"held **{report.max_passing_load:g} users** within the thresholds"
            if report.max_passing_load is not None else "met the thresholds at **no** stage")
    knee = (f"knee at {report.knee_load:g} users: {report.knee_reason}" if report.knee_load
            else "no knee: p95 grew no faster than throughput")
    return "\n".join([
        f"**{dep_id}** {held}; {knee}.", "",
        f"- recommendation: {report.recommendation}",
        f"- desired replicas: {report.desired_replicas if report.desired_replicas else '–'} "
        f"(HPA rule; now {report.current_replicas})",
        f"- provider: {provider}",
        f"- thresholds (latency scale x{scale:g}): average <= {t.max_avg_ms:g} ms, "
        f"p95 <= {t.max_p95_ms:g} ms, errors <= {t.max_error_rate:.1%}, "
        f"throughput >= {t.min_rps_per_user:.3g} req/s per user",
    ])


@dg.op(out={"result": dg.Out(dict), **{name: dg.Out(is_required=False) for name in _CHECK_OUTPUTS}},
       description="Merges the shards, judges the thresholds, reports capacity, records it.")
def judge_load_test(context: dg.OpExecutionContext, shards: list[dict], vercel: VercelResource,
                    history: HistoryResource, benchmark: BenchmarkResource,
                    load: LoadTestResource):
    dep_id = context.partition_key
    stages, shard_rows = merge_shards(shards)
    scale = benchmark.baseline_scale
    t = load.thresholds(scale)
    report = capacity_report(stages, t, current_replicas=load.current_replicas,
                             target_load=load.target_users)
    provider = _hand_to_provider(context, vercel, dep_id, report)
    rows = []
    for r, verdict in zip(stages, report.stages):  # both lightest first
        rows.append(dict(r.to_dict(histogram=True), passed=verdict["passed"],
                         failures=verdict["failures"]))
    LoadHistory(history.engine()).record_load_test(dep_id, context.run_id, rows, report.desired_replicas,
                                     report.recommendation)
    table = [dg.TableRecord({
        "users": r["users"], "requests": r["requests"], "errors": r["errors"],
        "error_rate_pct": round(r["error_rate"] * 100, 3), "rps": r["rps"],
        "avg_ms": r["avg_ms"], "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"],
        "p99_ms": r["p99_ms"], "max_ms": r["max_ms"], "passed": r["passed"],
        "failures": "; ".join(r["failures"]),
    }) for r in rows]
    metadata = {
        "deployment": dep_id,
        "stages": dg.MetadataValue.table(table, schema=_STAGES_SCHEMA),
        "capacity": dg.MetadataValue.md(_capacity_md(dep_id, report, t, scale, provider)),
        "shards": len(shards) if len(shards) > 1 else stages[0].shards,
        "provider": provider,
    }
    if report.max_passing_load is not None:
        metadata["max_users_within_thresholds"] = int(report.max_passing_load)
    if report.desired_replicas is not None:
        metadata["desired_replicas"] = report.desired_replicas
    if len(shards) > 1:
        metadata["shard_runs"] = dg.MetadataValue.table(
            [dg.TableRecord(r) for r in shard_rows], schema=_SHARDS_SCHEMA)
    context.log.info(f"{dep_id}: {report.recommendation}")
    yield dg.Output(report.as_dict(), "result", metadata=metadata)
    target = report.target_load
    for check in CHECKS:
        yield _evaluate(check, stages, t, target)


@dg.graph_asset(
    partitions_def=deployments_partitions,
    group_name=GROUP,
    check_specs=CHECK_SPECS,
    kinds={"python"},
    description="Stages of concurrent users (default 100, 500, 1000) against the deployment: "
    "response times, error rate, throughput per stage, judged against the plan's thresholds; "
    "the highest load within them, the knee and an HPA-style replica recommendation.",
)
def load_test():
    out = judge_load_test(plan_load_test().map(run_load_shard).collect())
    return {"result": out.result, **{name: getattr(out, name) for name in _CHECK_OUTPUTS}}


load_test_job = dg.define_asset_job(
    "load_test_job",
    selection=dg.AssetSelection.assets(load_test),
    partitions_def=deployments_partitions,
    # Enough processes for every shard at once; only the shard steps ever run side by side.
    executor_def=dg.multiprocess_executor.configured({"max_concurrent": MAX_SHARDS}),
    # A retry from the failure would reuse finished shards' results from another time.
    tags={"dagster/retry_strategy": "ALL_STEPS"},
    description="Load-test one deployment, its shards spread over the executor's processes.",
)
