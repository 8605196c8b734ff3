"""From samples to decisions: baselines, per-metric comparisons, the overall verdict, the rollback.

Pure functions over plain data, so the Dagster assets only fetch, call and record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from atge_assets.deployments import judge as judge_mod
from atge_assets.deployments.suite import Suite

Samples = Sequence[float | None]


def summarize(values: Samples) -> dict:
    ok = np.asarray([v for v in values if v is not None], dtype=float)
    out = {"n": len(values), "ok": int(ok.size), "errors": len(values) - int(ok.size)}
    if ok.size:
        out.update(mean=float(ok.mean()), p50=float(np.percentile(ok, 50)),
                   p95=float(np.percentile(ok, 95)), min=float(ok.min()), max=float(ok.max()))
    else:
        out.update(mean=None, p50=None, p95=None, min=None, max=None)
    return out


def build_baseline(
    suite: Suite,
    earlier: Sequence[tuple[str, dict[str, list]]],
    reference: tuple[str, dict[str, list]] | None = None,
) -> dict[str, dict]:
    """Per metric, the samples the candidate is judged against, and where they came from.

    First choice: the production deployment measured in alternation in the same run (drift
    cancels). Else the pooled samples of `earlier` accepted deployments ([(id, {metric: samples})],
    newest first). Else, on a cold start, the plan's static value.
    """
    out: dict[str, dict] = {}
    for spec in suite.metrics:
        if reference and any(v is not None for v in reference[1].get(spec.name, [])):
            out[spec.name] = {"source": f"interleaved:{reference[0]}",
                              "samples": list(reference[1][spec.name])}
            continue
        pooled: list[float | None] = []
        used: list[str] = []
        for dep_id, per_metric in earlier:
            if per_metric.get(spec.name):
                pooled.extend(per_metric[spec.name])
                used.append(dep_id)
        if any(v is not None for v in pooled):
            out[spec.name] = {"source": "history:" + ",".join(used), "samples": pooled}
        else:
            static = suite.static_baseline_ms(spec.name)
            # A constant sample set lets the same judge compare against a fixed target.
            out[spec.name] = {"source": f"static:{static:g}ms", "samples": [static] * suite.samples}
    return out


def compare(suite: Suite, baseline: dict[str, dict], candidate: dict[str, Samples],
            look: int = 1, looks: int = 1) -> list[dict]:
    """Judge every metric at look `look` of the `looks` the sequential design plans (see
    sequential.py); each row's `decision` says whether that metric needs more samples."""
    rows = []
    for spec in suite.metrics:
        base = baseline.get(spec.name, {"source": "missing", "samples": []})
        cand = candidate.get(spec.name, [])
        v = judge_mod.judge(base["samples"], cand, spec.threshold, look=look, looks=looks)
        rows.append({
            "metric": spec.name,
            "verdict": v.verdict,
            "decision": v.decision,
            "current_ms": summarize(cand)["p50"],
            "baseline_ms": summarize(base["samples"])["p50"],
            "change": v.change,
            "threshold": spec.threshold,
            "p_value": v.p_value,
            "baseline_source": base["source"],
            "details": v.as_dict(),
        })
    return rows


_WORDS = {"regressed": "regressed", "inconclusive": "is undecided", "improved": "improved",
          "pass": "passed", "held": "is held for a person (undecided within its sample budget)"}


def change_text(change: float | None) -> str:
    """A relative change as a person reads it: `+31.2%`, or `n/a` when there is none."""
    return "n/a" if change is None else f"{change * 100:+.1f}%"


def metric_change(r: dict) -> str:
    """`end_to_end +31.2% (195.3 ms vs 148.9 ms)` for one row of a comparison."""
    cur, base = r["current_ms"], r["baseline_ms"]
    ms = f" ({cur:.1f} ms vs {base:.1f} ms)" if cur is not None and base is not None else ""
    return f"{r['metric']} {change_text(r['change'])}{ms}"


def summary(dep_id: str, overall: str, rows: Sequence[dict]) -> str:
    """The first line a person reads: what happened, and why, in the metrics' own numbers."""
    if overall == "pass" or not rows:
        top = max(rows, key=lambda r: abs(r["change"] or 0), default=None)
        return f"{dep_id} passed: every metric within its threshold" + (
            f" (largest change: {top['metric']} {change_text(top['change'])})." if top else ".")
    wanted = judge_mod.INCONCLUSIVE if overall == judge_mod.HELD else overall
    hit = [r for r in rows if r["verdict"] == wanted] or list(rows)
    # The judge's first reason starts with the verdict, already said here.
    return f"{dep_id} {_WORDS.get(overall, overall)}: " + "; ".join(
        f"{metric_change(r)}: {(r['details'].get('reasons') or [''])[0].split(': ', 1)[-1]}"
        for r in hit)


def regressed_metrics(rows: Sequence[dict]) -> str:
    """`end_to_end +31.2% (195.3 ms vs 148.9 ms), ...` for the regressed rows of a comparison."""
    return ", ".join(metric_change(r) for r in rows if r["verdict"] == judge_mod.REGRESSED)


def held_metrics(rows: Sequence[dict]) -> str:
    """`end_to_end +8.1% (..)` for the rows still undecided."""
    return ", ".join(metric_change(r) for r in rows if r["verdict"] == judge_mod.INCONCLUSIVE)


def overall_verdict(rows: Sequence[dict]) -> str:
    """The deployment's verdict once measuring has ended: one regressed metric regresses it; a
    metric still unsure makes it `held` (a person decides) and beats fine; all better is
    improved."""
    verdicts = [r["verdict"] for r in rows]
    if judge_mod.REGRESSED in verdicts:
        return judge_mod.REGRESSED
    if judge_mod.INCONCLUSIVE in verdicts or not verdicts:
        return judge_mod.HELD
    if all(v == judge_mod.IMPROVED for v in verdicts):
        return judge_mod.IMPROVED
    return judge_mod.PASS


@dataclass(frozen=True)
class RollbackPlan:
    action: str  # "rollback", "finish", or a final decision: "kept", "skipped", "would_roll_back"
    reason: str
    rollback_to: str | None = None


def plan_rollback(
    *,
    deployment_id: str,
    verdict: str | None,
    target: str,
    production_id: str | None,
    known_good_id: str | None,
    existing: dict | None,
    dry_run: bool,
    smoke_failed: Sequence[str] = (),
    regressed_metrics: str = "",
    held_metrics: str = "",
    person: str = "",
    approver: str = "",
) -> RollbackPlan:
    """Decide what the rollback asset does. Every path returns a reason a person can read.

    A regression beyond the threshold, or a failed smoke test, on the live deployment rolls back.
    A `held` deployment waits for a person: `person` is their decision (`accept` or `reject`,
    validated by release.person_decision), `approver` who made it.
    """
    if existing and existing["status"] == "done":
        return RollbackPlan("skipped", f"already rolled back to {existing['rollback_to']}",
                            existing["rollback_to"])
    if existing:  # claimed by an earlier try that may or may not have reached the provider
        if production_id != deployment_id:
            return RollbackPlan("finish", "an earlier attempt's rollback took effect "
                                f"(production is {production_id})", existing["rollback_to"])
        return RollbackPlan("rollback", "retrying an unfinished rollback", existing["rollback_to"])
    if verdict is None and not smoke_failed:
        return RollbackPlan("skipped", "no comparison recorded for this deployment")
    if person == "accept":
        return RollbackPlan("accepted", f"accepted by {approver}: kept, and known-good from now on"
                            + (f" (held: {held_metrics})" if held_metrics else ""))
    if verdict == judge_mod.HELD and not person and not smoke_failed:
        return RollbackPlan("held", f"held for a person: {held_metrics or 'a metric'} undecided "
                            "within the sample budget; not known-good until decided. To decide, "
                            f"materialize `rollback` for {deployment_id} with config "
                            "{decision: reject} (roll back) or {decision: accept}")
    if person == "reject":
        why = f"rejected by {approver}" + (f" (held: {held_metrics})" if held_metrics else "")
    elif verdict == judge_mod.REGRESSED:
        why = "regressed beyond the threshold" + (f": {regressed_metrics}" if regressed_metrics
                                                  else "")
    elif smoke_failed:
        why = f"smoke tests failed: {', '.join(smoke_failed)}"
    else:
        return RollbackPlan("kept", f"verdict is {verdict}: no regression beyond the threshold")
    if target != "production":
        return RollbackPlan("skipped", f"{why}, but a preview deployment is never live: "
                            "nothing to roll back")
    if production_id != deployment_id:
        return RollbackPlan("skipped", f"{why}, but it is no longer production "
                            f"(production is {production_id})")
    if known_good_id is None:
        return RollbackPlan("skipped", f"{why}, but there is no known-good production "
                            "deployment to return to")
    if dry_run:
        return RollbackPlan("would_roll_back", f"{why}; dry run: would roll back", known_good_id)
    return RollbackPlan("rollback", why, known_good_id)
