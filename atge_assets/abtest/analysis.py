"""The analysis of an A/B test of AI model variants: which model and reasoning effort make better
trading signals. The statistics live in `stats.py`.

Analysis, decided by the primary metric, the win rate (wins / resolved signals):
- Group-sequential, not fixed-horizon, and not mSPRT. The asset re-runs the analysis on a schedule,
  so it must be safe to look often. Looks are fixed in data, at K equal steps of the planned number
  of resolved signals, and each is evaluated on the time-ordered prefix it covers (see
  stats.py). A fixed horizon would have nothing to say until the end. This design has about the
  same power and stops early on big lifts: in benchmarks/abtest_accuracy.py a +10 point lift is
  called at 55% of the horizon on average. mSPRT is safe under peeking too, but with the same
  signals it found a +6 point lift 72% of the time, against 88% here. Results after the horizon
  are ignored, so a finished experiment keeps its answer.
- Two or more challengers: Holm's procedure run on the sequential boundaries (the graphical
  approach of Maurer & Bretz, 2013). Each hypothesis is tested at alpha / (hypotheses left),
  and whenever one is rejected the others are re-tested at the larger level, at every look so far.
- A decision needs at least `min_signals_per_variant` resolved signals in both arms of a look,
  a clean sample-ratio check (chi-square against the configured traffic, alarm at p < 0.001), and
  no guardrail breach: p95 analysis time or error rate worse than control beyond a margin, or
  profit/loss significantly worse. Guardrails look at all the data, as they only ever veto.
- Profit/loss and analysis time are reported with Welch intervals. They do not pick a winner, and
  those p-values are for the data as it stands, not corrected for looks.
Caveats. The unit of assignment is the user but the unit of analysis is the signal. A user with
many signals makes the counts more variable than the tests assume. The strict SRM alarm level
allows for that, but one very heavy user can still trip it. Also, looks take the first n results
in `timestamp` order. If that timestamp is when the outcome became known, the rows only ever
append and a past look never changes. If it is when the signal was made, a late outcome can move
an early look a little.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from atge_assets.abtest import stats as st
from atge_assets.abtest.config import (
    ExperimentConfig,
    Guardrails,
    Variant,
    default_config,
)
from atge_assets.abtest.intake import (
    _CODE,
    _MAX_BAD_LISTED,
    ERROR,
    PENDING,
    WIN,
    Intake,
    Results,
    intake_records,
)
from atge_assets.lib.jsonl import plain as _plain

COLLECTING, WINNER, NO_WINNER, VETOED, SRM, NO_DATA, NO_COMPARISON = (
    "collecting", "winner", "no_winner", "vetoed", "srm", "no_data", "no_comparison")


# -- analysis --------------------------------------------------------------------------------------
def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _p95(x: np.ndarray) -> float | None:
    """np.percentile(x, 95) (linear interpolation) without its per-call overhead."""
    if not len(x):
        return None
    x = np.sort(x)
    pos = 0.95 * (len(x) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(x) - 1)
    return float(x[lo] + (x[hi] - x[lo]) * (pos - lo))


def _arm(res: Results, variant_id: str) -> dict:
    """One variant's rows, split the ways the figures and tests need them."""
    m = res.mask(variant_id)
    out = res.outcome[m]
    ok = out != _CODE[ERROR]
    resolved = out <= _CODE[WIN]  # codes: loss 0, win 1
    times = res.analysis_time[m][ok]
    return {"outcome": out, "ok": ok, "resolved": resolved, "time": times[np.isfinite(times)],
            "pl": res.profit_loss[m][resolved], "confidence": res.confidence[m][ok]}


def _figures(arm: dict, v: Variant, control: str, total_enabled: int) -> dict:
    out = arm["outcome"]
    signals, wins = len(out), int(np.count_nonzero(out == _CODE[WIN]))
    n_res = int(np.count_nonzero(arm["resolved"]))
    errors = signals - int(np.count_nonzero(arm["ok"]))
    times, pl = arm["time"], arm["pl"]
    return {
        "name": v.name, "model": v.model, "reasoning_effort": v.reasoning_effort,
        "control": v.id == control, "enabled": v.enabled,
        "traffic_percent": v.traffic_percent if v.enabled else 0.0,
        "observed_percent": (100.0 * signals / total_enabled
                             if v.enabled and total_enabled else None),
        "signals": signals, "resolved": n_res, "wins": wins, "losses": n_res - wins,
        "pending": int(np.count_nonzero(out == _CODE[PENDING])), "errors": errors,
        "win_rate": wins / n_res if n_res else None,
        "win_rate_ci": list(st.wilson(wins, n_res)) if n_res else None,
        "avg_analysis_time": _mean(times),
        "p95_analysis_time": _p95(times),
        "avg_confidence": _mean(arm["confidence"]),
        "avg_profit_loss": _mean(pl),
        "total_profit_loss": float(pl.sum()) if len(pl) else 0.0,
        "error_rate": errors / signals if signals else None,
    }


def planned_horizon(config: ExperimentConfig) -> int:
    """Resolved signals (all enabled variants) at which the last look falls."""
    plan = config.plan
    if plan.planned_signals is not None:
        return int(plan.planned_signals)
    enabled = config.enabled
    challengers = [v for v in enabled if v.id != config.control]
    if not challengers:
        return 0
    total = sum(v.traffic_percent for v in enabled)
    share_c = config.variant(config.control).traffic_percent / total
    # Planned at Holm's first, strictest level: enough for every comparison in the worst case.
    alpha = plan.alpha / len(challengers)
    return max(st.planned_signals(plan.baseline_win_rate, plan.min_detectable_lift, share_c,
                                  v.traffic_percent / total, alpha, plan.power, int(plan.looks))
               for v in challengers)


def _look_stats(res: Results, control: str, variant: str, look_sizes: list[int],
                min_n: int) -> list[dict]:
    """z of the win-rate difference at each look, on the first n resolved signals of the test."""
    win_seq = res.outcome == _CODE[WIN]
    is_c, is_v = res.mask(control), res.mask(variant)
    # Running counts, so every look is one lookup into them.
    cum = np.cumsum(np.stack([is_c, is_v, is_c & win_seq, is_v & win_seq]), axis=1)
    out = []
    for k, n in enumerate(look_sizes, 1):
        n_c, n_v, w_c, w_v = (int(x) for x in cum[:, n - 1])
        enough = n_c >= min_n and n_v >= min_n
        z = st.pooled_z(w_c, n_c, w_v, n_v) if n_c and n_v else None
        diff = w_v / n_v - w_c / n_c if n_c and n_v else None
        se = (math.sqrt((w_c / n_c) * (1 - w_c / n_c) / n_c + (w_v / n_v) * (1 - w_v / n_v) / n_v)
              if n_c and n_v else None)
        out.append({"look": k, "signals": n, "n_control": n_c, "n_variant": n_v, "diff": diff,
                    "se": se, "z": z, "enough": enough})
    return out


def _sequential(config: ExperimentConfig, res: Results, horizon: int) -> tuple[dict, dict]:
    """Holm on group-sequential boundaries, over every look the data has reached."""
    plan = config.plan
    looks = int(plan.looks)
    enabled = np.zeros(len(res), bool)
    for v in config.enabled:
        enabled |= res.mask(v.id)
    # Looks count resolved signals of enabled variants only: "the first n" are n signals that
    # carry information about the win rate.
    test = res._take(enabled & (res.outcome <= _CODE[WIN]))
    n_resolved = len(test)
    sizes = [math.ceil((k + 1) * horizon / looks) for k in range(looks)]
    reached = [n for n in sizes if n <= n_resolved]
    challengers = [v.id for v in config.enabled if v.id != config.control]
    stats = {v: _look_stats(test, config.control, v, reached, int(plan.min_signals_per_variant))
             for v in challengers}

    def first_cross(v: str, level: float, sign: int) -> int | None:
        bounds = st.obf_bounds(level, looks)
        for s in stats[v]:
            if s["enough"] and s["z"] is not None and sign * s["z"] >= bounds[s["look"] - 1]:
                return s["look"]
        return None

    result: dict[str, dict] = {v: {"result": None, "at_look": None, "alpha_level": None}
                               for v in challengers}
    open_ = list(challengers)
    while open_:
        level = plan.alpha / len(open_)
        crossed = {v: first_cross(v, level, +1) for v in open_}
        crossed = {v: k for v, k in crossed.items() if k is not None}
        if not crossed:
            break
        for v, k in crossed.items():
            result[v] = {"result": "better", "at_look": k, "alpha_level": level}
            open_.remove(v)
    # Harm is reported at the strictest (Bonferroni) level; it stops a variant, never picks one.
    strict = plan.alpha / max(len(challengers), 1)
    for v in open_:
        k = first_cross(v, strict, -1)
        result[v] = {"result": "worse" if k else None, "at_look": k,
                     "alpha_level": strict if k else plan.alpha / len(open_)}
    for v in challengers:
        bounds = st.obf_bounds(result[v]["alpha_level"], looks)
        last = stats[v][-1] if stats[v] else None
        rci = None
        if last and last["se"] is not None:
            b = bounds[last["look"] - 1]
            rci = [last["diff"] - b * last["se"], last["diff"] + b * last["se"]]
        result[v].update({
            "boundaries": list(bounds),
            "looks": [{"look": s["look"], "signals": s["signals"], "n_control": s["n_control"],
                       "n_variant": s["n_variant"], "diff": s["diff"], "z": s["z"],
                       "boundary": bounds[s["look"] - 1], "enough_signals": s["enough"]}
                      for s in stats[v]],
            "repeated_ci": rci,
        })
    meta = {"resolved_signals": n_resolved, "planned_signals": horizon, "looks": looks,
            "looks_reached": len(reached), "look_sizes": sizes,
            "next_look_at": sizes[len(reached)] if len(reached) < looks else None,
            "horizon_reached": len(reached) == looks}
    return result, meta


def _guardrails(g: Guardrails, fc: dict, fv: dict, pl_test: dict | None) -> dict:
    checks = {}
    p95_c, p95_v = fc["p95_analysis_time"], fv["p95_analysis_time"]
    change = p95_v / p95_c - 1 if p95_c and p95_v is not None else None
    breach = change is not None and change > g.max_p95_increase
    if g.max_p95_seconds is not None and p95_v is not None and p95_v > g.max_p95_seconds:
        breach = True
    checks["analysis_time_p95"] = {"control": p95_c, "variant": p95_v, "change": change,
                                   "max_increase": g.max_p95_increase,
                                   "max_seconds": g.max_p95_seconds, "breached": breach}
    e_c, e_v = fc["error_rate"], fv["error_rate"]
    rise = e_v - e_c if e_c is not None and e_v is not None else None
    breach = rise is not None and rise > g.max_error_rate_increase
    if g.max_error_rate is not None and e_v is not None and e_v > g.max_error_rate:
        breach = True
    checks["error_rate"] = {"control": e_c, "variant": e_v, "increase": rise,
                            "max_increase": g.max_error_rate_increase,
                            "max_rate": g.max_error_rate, "breached": breach}
    p_lower = pl_test["p_lower"] if pl_test else None
    breach = (g.profit_loss_alpha is not None and p_lower is not None
              and p_lower < g.profit_loss_alpha)
    checks["profit_loss"] = {"diff": pl_test["diff"] if pl_test else None,
                             "p_value_lower": p_lower, "alpha": g.profit_loss_alpha,
                             "breached": breach}
    breached = [k for k, c in checks.items() if c["breached"]]
    return {**checks, "breached": breached, "veto": bool(breached)}


def analyze(results: "Results | Intake | Sequence[Mapping]",
            config: ExperimentConfig | None = None) -> dict:
    """The experiment's state: per-variant figures, SRM, tests, and `winner` (id or None).

    `results`: validated `Results`, an `Intake`, or raw rows (validated here; bad ones are
    reported under `bad_rows`). Returns a JSON-serialisable dict; see `status` and
    `decision_reason` for the decision and `final` for whether the experiment is over.
    """
    intake = None
    if isinstance(results, Intake):
        intake = results
        config = config or intake.config
    elif not isinstance(results, Results):
        intake = intake_records(results, config)
        config = config or intake.config
    config = config or default_config()
    res = Results(intake.rows) if intake is not None else results
    enabled = config.enabled
    enabled_ids = [v.id for v in enabled]
    control = config.control
    arms = {v.id: _arm(res, v.id) for v in config.variants}
    counts = {v: len(arms[v]["outcome"]) for v in enabled_ids}
    total_enabled = sum(counts.values())
    figures = {v.id: _figures(arms[v.id], v, control, total_enabled) for v in config.variants}

    srm = _srm(config, counts)

    horizon = planned_horizon(config)
    seq, meta = _sequential(config, res, horizon) if horizon else ({}, {})
    tests = []
    for v in enabled_ids:
        if v == control:
            continue
        fc, fv = figures[control], figures[v]
        diff = (fv["win_rate"] - fc["win_rate"]
                if fc["win_rate"] is not None and fv["win_rate"] is not None else None)
        ci = st.newcombe_diff(fc["wins"], fc["resolved"], fv["wins"], fv["resolved"])
        z = st.pooled_z(fc["wins"], fc["resolved"], fv["wins"], fv["resolved"])
        pl_test = st.welch(arms[control]["pl"], arms[v]["pl"])
        tests.append({
            "variant": v, "control": control,
            "win_rate": {"control": fc["win_rate"], "variant": fv["win_rate"], "diff": diff,
                         "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
                         "ci": "Newcombe hybrid score, 95%, all data, not adjusted for looks",
                         "z": z, "p_value_nominal": 2 * st.norm_sf(abs(z)) if z is not None
                         else None},
            "sequential": seq.get(v),
            "profit_loss": pl_test,
            "analysis_time": st.welch(arms[control]["time"], arms[v]["time"]),
            "guardrails": _guardrails(config.guardrails, fc, fv, pl_test),
        })

    status, winner, reason, final = _decide(config, tests, meta, srm, total_enabled)
    out = {
        "experiment": config.experiment, "control": control, "winner": winner, "status": status,
        "decision_reason": reason, "final": final,
        "method": {
            "design": "group-sequential, looks at fixed fractions of the planned resolved signals",
            "spending": "Lan-DeMets O'Brien-Fleming", "alpha_one_sided": config.plan.alpha,
            "power": config.plan.power, "min_detectable_lift": config.plan.min_detectable_lift,
            "multiple_comparisons": "Holm on the sequential boundaries (Maurer-Bretz)",
            "min_signals_per_variant": config.plan.min_signals_per_variant, **meta,
        },
        "variants": figures, "srm": srm, "tests": tests,
    }
    out["variants_from"] = "config" if config.split_declared else "results"
    if intake is not None:
        out.update(rows_used=len(intake.rows), bad_row_count=len(intake.bad),
                   bad_rows=[b.as_dict() for b in intake.bad[:_MAX_BAD_LISTED]],
                   other_experiments=intake.other_experiments, superseded=intake.superseded,
                   confidence_scale=intake.confidence_scale,
                   note_count=len(intake.notes),
                   notes=[b.as_dict() for b in intake.notes[:_MAX_BAD_LISTED]])
    return _plain(out)


def _srm(config: ExperimentConfig, counts: dict[str, int]) -> dict:
    """Chi-square of the signals per variant against the declared split; none without one."""
    total = sum(counts.values())
    if not config.split_declared:
        return {"chi2": None, "df": len(counts) - 1, "p_value": None, "alarm": False,
                "alpha": config.plan.srm_alpha, "observed": counts, "expected": None,
                "checked": False,
                "note": "no declared split (no variants config): the split is the observed one "
                        "and is not checked"}
    shares = [config.variant(v).traffic_percent / 100 for v in counts]
    srm = st.srm_chi2(list(counts.values()), shares)
    alarm = srm["p_value"] is not None and srm["p_value"] < config.plan.srm_alpha
    return {**srm, "alarm": alarm, "alpha": config.plan.srm_alpha, "observed": counts,
            "expected": {v: total * s for v, s in zip(counts, shares)},
            "checked": srm["p_value"] is not None}


def _decide(config: ExperimentConfig, tests: list[dict], meta: dict, srm: dict,
            total: int) -> tuple[str, str | None, str, bool]:
    """(status, winner, reason, final)."""
    if not tests:
        return NO_COMPARISON, None, "only one enabled variant: nothing to compare", False
    if total == 0:
        return NO_DATA, None, "no results for the enabled variants yet", False
    if srm["alarm"]:
        obs = ", ".join(f"{v} {n}" for v, n in srm["observed"].items())
        exp = ", ".join(f"{v} {e:.0f}" for v, e in srm["expected"].items())
        return SRM, None, (f"sample ratio mismatch: signals {obs} against expected {exp} "
                           f"(chi-square p={srm['p_value']:.2g} < {srm['alpha']:g}); the split "
                           f"is broken, so no result can be trusted until it is fixed"), False
    better = [t for t in tests if t["sequential"]["result"] == "better"]
    worse = [t for t in tests if t["sequential"]["result"] == "worse"]
    ok = [t for t in better if not t["guardrails"]["veto"]]
    vetoed = [t for t in better if t["guardrails"]["veto"]]
    veto_text = "; ".join(f"{t['variant']} beat control but breached "
                          f"{', '.join(t['guardrails']['breached'])}" for t in vetoed)
    if ok:
        best = max(ok, key=lambda t: t["win_rate"]["diff"] or 0.0)
        s = best["sequential"]
        look = s["looks"][s["at_look"] - 1]
        reason = (f"{best['variant']} wins: win rate {look['diff'] * 100:+.1f} points over "
                  f"{config.control} at look {s['at_look']} of {meta['looks']} "
                  f"({look['signals']} resolved signals), z={look['z']:.2f} >= boundary "
                  f"{look['boundary']:.2f} (one-sided alpha {s['alpha_level']:.3g}); "
                  f"guardrails passed")
        return WINNER, best["variant"], reason + (f"; {veto_text}" if veto_text else ""), True
    done = meta["horizon_reached"] or len(better) + len(worse) == len(tests)
    progress = (f"{meta['resolved_signals']} of {meta['planned_signals']} planned resolved "
                f"signals, look {meta['looks_reached']} of {meta['looks']}")
    if vetoed:
        return VETOED, None, f"no winner: {veto_text}; keep {config.control}", done
    if done:
        why = ("every variant is significantly worse than control" if len(worse) == len(tests)
               else "no variant beat control by the planned horizon")
        extra = f" ({', '.join(t['variant'] for t in worse)} significantly worse)" if worse and \
            len(worse) < len(tests) else ""
        return NO_WINNER, None, f"no winner: {why}{extra} ({progress}); keep {config.control}", True
    if meta["looks_reached"] == 0:
        return COLLECTING, None, (f"collecting: {progress}; the first look is at "
                                  f"{meta['next_look_at']}"), False
    short = [t["variant"] for t in tests
             if t["sequential"]["looks"] and not t["sequential"]["looks"][-1]["enough_signals"]]
    note = (f"; below {config.plan.min_signals_per_variant} resolved signals in an arm for "
            f"{', '.join(short)}" if short else "")
    return COLLECTING, None, (f"collecting: {progress}, no boundary crossed yet{note}; next look "
                              f"at {meta['next_look_at']} resolved signals"), False
