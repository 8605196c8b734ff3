"""A/B tests of Einstein's model variants, one partition per experiment:
results intake -> analysis -> promotion.

Partitions are dynamic ("experiments") rather than static: configs come from a live source (the
sandbox's endpoint, a file someone edits), experiments start while the code location runs, and a
static list would mean an HTTP call at load time and a reload for every new experiment. The
sensor adds a partition per configured experiment; ended experiments keep theirs, so their last
analysis stays browsable. Like the deployment graph, data moves through the history store, so
each asset can be rerun alone; the promotion reads the verdict the UI shows, the analysis's
latest materialization.
"""


import json
from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from atge_assets.abtest.analysis import WINNER, analyze
from atge_assets.abtest.config import ConfigError, ExperimentConfig
from atge_assets.abtest.history import AbtestHistory
from atge_assets.abtest.intake import (
    ResultsError,
    intake_records,
    read_results_csv,
    results_from_store,
)
from atge_assets.abtest.resources import CSV, SANDBOX, ExperimentsResource, SourceError
from atge_assets.lib.redaction import redact
from atge_assets.lib.resources import HistoryResource
from atge_assets.notify import PROMOTION, Event
from atge_assets.notify.resources import NotifierResource

GROUP = "ab_tests"
experiments_partitions = dg.DynamicPartitionsDefinition(name="experiments")
_MAX_BAD_SHOWN = 200
MANUAL_RUN_CONFIG = {"ops": {"ab_test_promotion": {"config": {"promote": True}}}}


def _config(experiments: ExperimentsResource, key: str) -> ExperimentConfig:
    try:
        return experiments.config(key)
    except (SourceError, ConfigError) as exc:
        raise dg.Failure(f"no usable config for experiment {key}: {exc}") from exc


def _cell(v):
    if isinstance(v, float):
        if v != v:
            return None
        # p-values and other small numbers keep their significant digits.
        return round(v, 3) if abs(v) >= 1 else float(f"{v:.3g}")
    return v


def _table(columns: list[tuple[str, str]], rows: list[dict]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        [dg.TableRecord({c: _cell(r.get(c)) for c, _ in columns}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, t) for c, t in columns]))


def _pct(x, digits: int = 1):
    return None if x is None else round(100 * x, digits)


def _span(lo, hi, scale: float = 1.0, fmt: str = "{:+.1f}") -> str:
    if lo is None or hi is None:
        return ""
    return f"{fmt.format(lo * scale)} to {fmt.format(hi * scale)}"


def _iso(ts) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


# -- intake ----------------------------------------------------------------------------------------
@dg.asset(
    group_name=GROUP,
    partitions_def=experiments_partitions,
    kinds={"python", "sql"},
    check_specs=[dg.AssetCheckSpec(
        "results_valid", asset="ab_test_results",
        description="Warns when result rows were kept out of the analysis as malformed.")],
    description="The experiment's signal results, brought into einstein_ab_test_results from a "
    "CSV or the sandbox's feed (or checked there when the app writes them); malformed rows are "
    "kept out and listed with the reason.",
)
def ab_test_results(context: dg.AssetExecutionContext, experiments: ExperimentsResource,
                    history: HistoryResource) -> dg.MaterializeResult:
    key = context.partition_key
    config = _config(experiments, key)
    store = AbtestHistory(history.engine())
    mode = experiments.results_mode()
    known: set | None = None
    try:
        if mode == CSV:
            source = experiments.results_csv
            intake = read_results_csv(source, config)
            known = store.ab_signal_keys(key)
        elif mode == SANDBOX:
            since = store.ab_latest_timestamp(key)
            source = f"{experiments.sandbox_url} results feed"
            intake = intake_records(experiments.fetch_results(key, since), config, source=source)
            known = store.ab_signal_keys(key, since) if since is not None else set()
        else:
            source = "einstein_ab_test_results (written by the app)"
            intake = results_from_store(store, config)
    except (ResultsError, SourceError) as exc:
        raise dg.Failure(f"results of {key}: {exc}") from exc
    # A re-read CSV or an overlapping page must not store a signal twice; a pending row followed
    # by its outcome is two different rows, and the analysis keeps the outcome.
    new = [] if known is None else [r for r in intake.rows
                                    if (r["signal_id"], r["outcome"]) not in known]
    inserted = store.record_ab_results(new)
    bad = intake.bad
    for b in bad[:20]:
        context.log.warning(f"{intake.source}: row {b.line} kept out: {b.reason}")
    for b in intake.notes[:20]:
        context.log.warning(f"{intake.source}: row {b.line} kept, {b.reason}")
    context.log.info(f"{key}: {len(intake.rows)} usable rows from {source}, {inserted} new, "
                     f"{len(bad)} bad")
    where = {CSV: "line", SANDBOX: "fetched_row"}.get(mode, "row_id")
    bad_md = "\n".join(f"- {where} {b.line}: {b.reason}" for b in bad[:20]) or "none"
    return dg.MaterializeResult(
        metadata={
            "source": source,
            "rows_usable": len(intake.rows),
            "rows_inserted": inserted,
            "rows_already_stored": len(intake.rows) - inserted if known is not None else 0,
            "pending_superseded": intake.superseded,
            "bad_row_count": len(bad),
            "rows_with_notes": len(intake.notes),
            "confidence_scale": intake.confidence_scale,
            "bad_rows": _table([(where, "int"), ("reason", "string"), ("raw", "string")],
                               [{where: b.line, "reason": b.reason,
                                 "raw": json.dumps(b.as_dict()["raw"])[:500]}
                                for b in bad[:_MAX_BAD_SHOWN]]),
            "other_experiments": dg.MetadataValue.json(intake.other_experiments),
            "latest_result_at": _iso(store.ab_latest_timestamp(key)),
        },
        check_results=[dg.AssetCheckResult(
            check_name="results_valid", passed=not bad, severity=dg.AssetCheckSeverity.WARN,
            metadata={"bad_row_count": len(bad), "bad_rows": dg.MetadataValue.md(bad_md)})],
    )


# -- analysis --------------------------------------------------------------------------------------
_VARIANT_COLUMNS = [
    ("variant", "string"), ("name", "string"), ("role", "string"), ("traffic_pct", "float"),
    ("observed_pct", "float"), ("signals", "int"), ("resolved", "int"), ("win_rate_pct", "float"),
    ("win_rate_ci_95", "string"), ("avg_analysis_s", "float"), ("p95_analysis_s", "float"),
    ("avg_confidence", "float"), ("avg_profit_loss", "float"), ("error_rate_pct", "float"),
]
_TEST_COLUMNS = [
    ("variant", "string"), ("vs", "string"), ("win_rate_diff_pts", "float"),
    ("ci_95_pts", "string"), ("z", "float"), ("p_nominal", "float"), ("sequential", "string"),
    ("p_always_valid", "float"), ("confidence_sequence_pts", "string"),
    ("chance_to_win_pct", "float"), ("expected_loss_pts", "float"),
    ("profit_loss_diff", "float"), ("profit_loss_ci_95", "string"),
    ("analysis_time_diff_s", "float"), ("analysis_time_ci_95", "string"), ("guardrails", "string"),
]


def _variant_rows(result: dict) -> list[dict]:
    rows = []
    for vid, f in result["variants"].items():
        ci = f["win_rate_ci"]
        rows.append({
            "variant": vid, "name": f["name"],
            "role": "control" if f["control"] else "challenger" if f["enabled"] else "off",
            "traffic_pct": f["traffic_percent"], "observed_pct": f["observed_percent"],
            "signals": f["signals"], "resolved": f["resolved"],
            "win_rate_pct": _pct(f["win_rate"]),
            "win_rate_ci_95": _span(*(ci or (None, None)), 100, "{:.1f}"),
            "avg_analysis_s": f["avg_analysis_time"], "p95_analysis_s": f["p95_analysis_time"],
            "avg_confidence": f["avg_confidence"], "avg_profit_loss": f["avg_profit_loss"],
            "error_rate_pct": _pct(f["error_rate"], 2),
        })
    return rows


def _test_rows(result: dict) -> list[dict]:
    rows = []
    for t in result["tests"]:
        w, seq, bayes = t["win_rate"], t["sequential"], t["bayesian"] or {}
        pl, at = t["profit_loss"] or {}, t["analysis_time"] or {}
        cs = seq["confidence_sequence"] or (None, None)
        g = t["guardrails"]
        rows.append({
            "variant": t["variant"], "vs": t["control"],
            "win_rate_diff_pts": _pct(w["diff"], 2),
            "ci_95_pts": _span(w["ci_low"], w["ci_high"], 100),
            "z": w["z"], "p_nominal": w["p_value_nominal"],
            "sequential": (f"{seq['result']} after {seq['at_signals']} signals"
                           if seq["result"] else "no decision yet"),
            "p_always_valid": seq["p_value_always_valid"],
            "confidence_sequence_pts": _span(*cs, 100),
            "chance_to_win_pct": _pct(bayes.get("chance_to_win")),
            "expected_loss_pts": _pct(bayes.get("expected_loss_variant"), 2),
            "profit_loss_diff": pl.get("diff"),
            "profit_loss_ci_95": _span(pl.get("ci_low"), pl.get("ci_high"), 1, "{:+.2f}"),
            "analysis_time_diff_s": at.get("diff"),
            "analysis_time_ci_95": _span(at.get("ci_low"), at.get("ci_high"), 1, "{:+.2f}"),
            "guardrails": ("breached: " + ", ".join(g["breached"])) if g["breached"] else "passed",
        })
    return rows


def _decision_md(result: dict, experiments: ExperimentsResource, key: str) -> str:
    m, srm = result["method"], result["srm"]
    head = (f"### Winner: `{result['winner']}` ({result['variants'][result['winner']]['name']})"
            if result["winner"] else f"### {result['status'].replace('_', ' ').capitalize()}")
    lines = [head, "", result["decision_reason"], ""]
    lines.append(f"- progress: {m['resolved_signals']} resolved signals; a fixed-horizon plan "
                 f"would need {m['planned_signals']}")
    lines.append("- sample ratio: " + ("too few signals to check" if srm["p_value"] is None else
                                       f"chi-square p={srm['p_value']:.3g}, "
                                       + ("**MISMATCH**" if srm["alarm"] else "ok")))
    lines.append(f"- design: {m['design']}; one-sided alpha {m['alpha_one_sided']:g}"
                 + (f", {m['multiple_comparisons']} across variants"
                    if m["multiple_comparisons"] != "none" else ""))
    for t in result["tests"]:
        if t["bayesian"]:
            lines.append(f"- Bayesian (informative): {t['variant']} has a "
                         f"{t['bayesian']['chance_to_win']:.1%} chance to beat {t['control']}")
    if result["winner"]:
        hook = experiments.promotion_target(key)
        if experiments.auto_promote and hook:
            lines.append(f"- promotion: automatic, `ab_test_promotion` gives it all the traffic "
                         f"via `{hook.split('?')[0]}`")
        else:
            why = "auto-promotion is off" if not experiments.auto_promote else "no promotion hook"
            lines.append(f"- promotion: {why}; to promote, materialize `ab_test_promotion` for "
                         f"partition `{key}` with run config "
                         f"`{json.dumps(MANUAL_RUN_CONFIG)}`")
    return "\n".join(lines)


@dg.asset(
    group_name=GROUP,
    partitions_def=experiments_partitions,
    deps=[ab_test_results],
    kinds={"python", "scipy"},
    check_specs=[dg.AssetCheckSpec(
        "sample_ratio", asset="ab_test_analysis",
        description="Warns when the signals per variant do not match the configured traffic "
        "split (chi-square, alarm at the plan's srm_alpha): the split is broken and no result "
        "can be trusted.")],
    description="Always-valid sequential analysis of the experiment (mixture SPRT, safe however "
    "often it runs): per-variant figures, sample-ratio check, win-rate tests with intervals, the "
    "Bayesian chance to win, guardrails, and the decision with its reason.",
)
def ab_test_analysis(context: dg.AssetExecutionContext, experiments: ExperimentsResource,
                     history: HistoryResource) -> dg.MaterializeResult:
    key = context.partition_key
    config = _config(experiments, key)
    result = analyze(results_from_store(AbtestHistory(history.engine()), config), config)
    context.log.info(f"{key}: {result['status']}: {result['decision_reason']}")
    srm, m = result["srm"], result["method"]
    return dg.MaterializeResult(
        metadata={
            "decision": dg.MetadataValue.md(_decision_md(result, experiments, key)),
            "status": result["status"],
            "winner": result["winner"] or "",
            "final": result["final"],
            "variants": _table(_VARIANT_COLUMNS, _variant_rows(result)),
            "tests": _table(_TEST_COLUMNS, _test_rows(result)),
            "srm_p_value": dg.MetadataValue.float(srm["p_value"]) if srm["p_value"] is not None
            else dg.MetadataValue.text("too few signals"),
            "resolved_signals": m.get("resolved_signals", 0),
            "planned_signals": m.get("planned_signals", 0),
            "bad_row_count": result.get("bad_row_count", 0),
            # The promotion acts on exactly this verdict.
            "analysis": dg.MetadataValue.json(result),
        },
        check_results=[dg.AssetCheckResult(
            check_name="sample_ratio", passed=not srm["alarm"],
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"p_value": srm["p_value"] if srm["p_value"] is not None else -1.0,
                      "observed": dg.MetadataValue.json(srm["observed"]),
                      "expected": dg.MetadataValue.json(
                          {k: round(v, 1) for k, v in srm["expected"].items()})})],
    )


# -- promotion -------------------------------------------------------------------------------------
class PromotionConfig(dg.Config):
    promote: bool = Field(
        default=False,
        description="Promote the analysis's winner now, even with auto-promotion off.")


def _latest_analysis(instance: dg.DagsterInstance, key: str) -> dict | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ab_test_analysis.key, asset_partitions=[key]),
        limit=1).records
    if not records:
        return None
    entry = records[0].asset_materialization.metadata.get("analysis")
    return entry.value if entry is not None else None


def _announce(context, notifier: NotifierResource, store, key: str, winner: str,
              analysis: dict) -> list[str]:
    """Tell the notifiers once (their sent log skips repeats); never fails the promotion."""
    try:
        w = analysis["variants"][winner]
        c = analysis["variants"][analysis["control"]]
        metrics = []
        if w["avg_analysis_time"] and c["avg_analysis_time"]:
            change = w["avg_analysis_time"] / c["avg_analysis_time"] - 1
            metrics.append({"metric": "avg_analysis_time", "value": w["avg_analysis_time"] * 1000,
                            "baseline": c["avg_analysis_time"] * 1000, "change": change,
                            "verdict": "faster" if change < 0 else "slower"})
        event = Event(
            PROMOTION, deployment_id=f"experiment:{key}",
            title=f"A/B test {key}: experiment variant {winner} ({w['name']}) promoted",
            metrics=metrics,
            decision=f"experiment variant {winner} ({w['model']}, {w['reasoning_effort']} "
                     f"reasoning) now gets 100% of traffic, was {w['traffic_percent']:g}%",
            reason=analysis["decision_reason"], run_id=context.run_id,
            dedup_key=f"atge-ab-{key}", idempotency_key=f"ab_promotion:{key}:{winner}")
        results = notifier.send(event, store.engine)
    except Exception as exc:  # a bad channel setting must not undo a promotion that happened
        note = redact(f"not announced: {type(exc).__name__}: {exc}")[:500]
        context.log.warning(note)
        return [note]
    for r in results:
        (context.log.info if r.ok else context.log.warning)(f"announcement: {r}")
    return [str(r) for r in results]


@dg.asset(
    group_name=GROUP,
    partitions_def=experiments_partitions,
    deps=[ab_test_analysis],
    kinds={"python"},
    description="Gives a winning variant (significant, guardrails passed, sample ratio sound) "
    "all the traffic through the promotion hook, at most once per winner, and announces it. "
    "With auto-promotion off the winner awaits a manual materialization with `promote: true`.",
)
def ab_test_promotion(context: dg.AssetExecutionContext, config: PromotionConfig,
                      experiments: ExperimentsResource, history: HistoryResource,
                      notifier: NotifierResource) -> dg.MaterializeResult:
    key = context.partition_key
    analysis = _latest_analysis(context.instance, key)
    if analysis is None:
        raise dg.Failure(f"experiment {key} has no analysis yet: materialize ab_test_analysis")
    store = AbtestHistory(history.engine())
    winner = analysis["winner"]
    hook = experiments.promotion_target(key)
    meta = {"analysis_status": analysis["status"], "winner": winner or "",
            "hook": (hook or "").split("?")[0], "auto_promote": experiments.auto_promote,
            "manual": config.promote}
    if analysis["status"] != WINNER or not winner:
        reason = f"nothing to promote: {analysis['decision_reason']}"
        context.log.info(f"{key}: {reason}")
        return dg.MaterializeResult(metadata={**meta, "decision": "no_promotion",
                                              "reason": dg.MetadataValue.md(reason)})
    split = {v: 100.0 if v == winner else 0.0 for v in analysis["variants"]}
    verdict = analysis["decision_reason"]
    row = store.ab_promotion(key, winner)
    notes: list[str] = []
    if row and row["status"] == "done":
        decision = "already_promoted"
        reason = f"{winner} was promoted by run {row['run_id']}; not again"
        notes = _announce(context, notifier, store, key, winner, analysis)  # only if it never went out
    elif not (experiments.auto_promote and hook) and not config.promote:
        store.await_ab_promotion(key, winner, split, verdict, context.run_id)
        decision = "awaiting_manual_promotion"
        why = ("auto-promotion is off" if not experiments.auto_promote
               else "no promotion hook is configured (ATGE_AB_PROMOTION_URL)")
        reason = (f"awaiting manual promotion of {winner}: {why}. To promote, materialize "
                  f"ab_test_promotion for partition {key} with run config "
                  f"`{json.dumps(MANUAL_RUN_CONFIG)}`")
    elif hook is None:
        raise dg.Failure("cannot promote: no promotion hook is configured (ATGE_AB_PROMOTION_URL)")
    elif not store.claim_ab_promotion(key, winner, split, verdict, context.run_id):
        decision = "in_progress"
        reason = f"another run has claimed the promotion of {winner}; not repeated"
    else:
        context.log.warning(f"promoting {winner} in {key}: {verdict}")
        out = experiments.promote(key, {"experiment": key, "winner": winner, "split": split,
                                        "reason": verdict, "run_id": context.run_id})
        if not out.ok:
            store.finish_ab_promotion(key, winner, "failed", out.detail)
            raise dg.Failure(f"the promotion hook refused or failed: {out.detail}; the next run "
                             f"tries again")
        store.finish_ab_promotion(key, winner, "done", f"HTTP {out.status}")
        decision = "promoted"
        reason = f"{winner} now gets 100% of {key}'s traffic. {verdict}"
        notes = _announce(context, notifier, store, key, winner, analysis)
    context.log.info(f"{key}: {decision}: {reason}")
    return dg.MaterializeResult(metadata={
        **meta, "decision": decision, "reason": dg.MetadataValue.md(reason),
        "split": dg.MetadataValue.json(split),
        "announcements": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
    })


ab_test_job = dg.define_asset_job(
    "ab_test_job",
    selection=dg.AssetSelection.assets(ab_test_results, ab_test_analysis, ab_test_promotion),
    partitions_def=experiments_partitions,
    executor_def=dg.in_process_executor,
    description="Take in an experiment's results, analyse them, promote a winner.",
)
