"""The analysis of an A/B test of AI model variants: which model and reasoning effort make better
trading signals. The statistics live in `stats.py`.

Decided by the primary metric, the win rate (wins / resolved signals), in one of two modes:
- Sequential, the default and what the scheduled asset runs: the always-valid mixture SPRT of
  stats.py, evaluated after every resolved signal of the history in time order, so however often
  anyone looks (hourly asset, a person re-running the CLI) a winner is named wrongly at most
  `alpha` of the time. It replaces looks at planned fractions of a horizon: below the first look
  such a design can name nothing, where this test needs only `min_signals_per_variant` in each arm
  and evidence enough. The decision depends on the rows only: run hourly or weekly, same answer.
- Fixed horizon (`final=True`, `--final`): the user declares the experiment over, and a single
  one-sided pooled two-proportion z-test on all the data decides: the most power these signals can
  give, valid only if nobody stopped the experiment because of what an earlier look showed.
Beside either, GrowthBook's Bayesian view: chance to win and expected loss. It informs; it does
not decide.
- Two or more challengers: Holm's procedure on the one-sided p-values (always-valid ones when
  sequential); a variant significantly worse than control is reported at the Bonferroni level.
- A decision needs `min_signals_per_variant` resolved signals in both arms, a clean sample-ratio
  check when the split is declared (chi-square against the configured traffic, alarm at
  p < 0.001), and no guardrail breach: p95 analysis time or error rate worse than control beyond a
  margin, or profit/loss significantly worse. Guardrails look at all the data, as they only veto.
- Profit/loss and analysis time are reported with Welch intervals; they never pick a winner.
- The sequential test stops with "no winner" once its always-valid interval rules out a lift of
  `min_detectable_lift`, or the planned signals (a fixed-horizon plan for that lift at `power`)
  have been reached. It stays valid if collection continues, so a winner may still appear later.
Caveats. The unit of assignment is the user but the unit of analysis is the signal; a user with
many signals makes the counts more variable than the tests assume. The strict SRM alarm level
allows for that, but one very heavy user can still trip it. The sequence is in `timestamp` order;
if that is when the signal was made rather than resolved, a late outcome can move an earlier
point of the path a little.
"""

from __future__ import annotations

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
    """Resolved signals (all enabled variants) a fixed-horizon test would plan for: enough for
    `power` at `min_detectable_lift` in every comparison, at Holm's strictest level."""
    plan = config.plan
    if plan.planned_signals is not None:
        return int(plan.planned_signals)
    enabled = config.enabled
    challengers = [v for v in enabled if v.id != config.control]
    if not challengers:
        return 0
    total = sum(v.traffic_percent for v in enabled)
    share_c = config.variant(config.control).traffic_percent / total
    alpha = plan.alpha / len(challengers)
    return max(st.fixed_sample_signals(plan.baseline_win_rate, plan.min_detectable_lift,
                                       share_c, v.traffic_percent / total, alpha, plan.power)
               for v in challengers)


def _resolved_stream(config: ExperimentConfig, res: Results) -> Results:
    """Resolved signals of enabled variants in time order: the ones that say something about the
    win rate."""
    enabled = np.zeros(len(res), bool)
    for v in config.enabled:
        enabled |= res.mask(v.id)
    return res._take(enabled & (res.outcome <= _CODE[WIN]))


def _sequential(config: ExperimentConfig, test: Results, challengers: list[str]) -> dict:
    """The mixture SPRT of each challenger against control over the whole path, Holm across."""
    plan = config.plan
    tau, min_n = plan.min_detectable_lift, int(plan.min_signals_per_variant)
    win = test.outcome == _CODE[WIN]
    is_c = test.mask(config.control)
    paths, p_up, p_down = {}, {}, {}
    for v in challengers:
        is_v = test.mask(v)
        pair = is_c | is_v
        path = st.sequential_path(win[pair], is_v[pair], tau, min_n)
        paths[v] = path
        p_up[v] = st.always_valid_p(path["log_up"])
        p_down[v] = st.always_valid_p(path["log_down"])
    levels = st.holm(p_up, plan.alpha)
    strict = plan.alpha / max(len(challengers), 1)
    left = sum(1 for v in challengers if levels[v] is None)
    out = {}
    for v in challengers:
        path = paths[v]
        better = levels[v] is not None
        worse = not better and p_down[v] <= strict
        level = levels[v] if better else strict if worse else plan.alpha / max(left, 1)
        at = st.first_crossing(path["log_up" if better else "log_down"], level) \
            if better or worse else None
        n = len(path["z"])
        now = {"n_control": int(path["n_c"][-1]) if n else 0,
               "n_variant": int(path["n_v"][-1]) if n else 0,
               "enough_signals": bool(path["ok"][-1]) if n else False}
        bounds = None
        if n and path["ok"][-1]:
            c = st.msprt_threshold(float(path["x"][-1]), level)
            d, se = float(path["diff"][-1]), float(path["se"][-1])
            bounds = [d - c * se, d + c * se]
            now.update(diff=d, z=float(path["z"][-1]), threshold=c)
        out[v] = {
            "result": "better" if better else "worse" if worse else None,
            "p_value_always_valid": p_up[v], "p_value_worse_always_valid": p_down[v],
            "alpha_level": level,
            "at_signals": at + 1 if at is not None else None,
            "at": ({"diff": float(path["diff"][at]), "z": float(path["z"][at]),
                    "n_control": int(path["n_c"][at]), "n_variant": int(path["n_v"][at])}
                   if at is not None else None),
            "now": now,
            "confidence_sequence": bounds,
            "rules_out_min_lift": bool(bounds is not None and bounds[1] < tau),
        }
    return out


def _fixed(config: ExperimentConfig, figures: dict, challengers: list[str]) -> dict:
    """One-sided pooled z-test per challenger on all resolved signals, Holm across."""
    fc = figures[config.control]
    zs, p = {}, {}
    for v in challengers:
        fv = figures[v]
        z = st.pooled_z(fc["wins"], fc["resolved"], fv["wins"], fv["resolved"])
        enough = min(fc["resolved"], fv["resolved"]) >= config.plan.min_signals_per_variant
        zs[v] = z
        p[v] = st.norm_sf(z) if z is not None and enough else 1.0
    levels = st.holm(p, config.plan.alpha)
    strict = config.plan.alpha / max(len(challengers), 1)
    out = {}
    for v in challengers:
        worse = levels[v] is None and p[v] < 1 and st.norm_sf(-zs[v]) <= strict
        out[v] = {"z": zs[v], "p_value": p[v],
                  "result": "better" if levels[v] is not None else "worse" if worse else None,
                  "alpha_level": levels[v] if levels[v] is not None else strict}
    return out


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
            config: ExperimentConfig | None = None, *, final: bool = False) -> dict:
    """The experiment's state: per-variant figures, SRM, tests, and `winner` (id or None).

    `results`: validated `Results`, an `Intake` (its config is used when none is given), or raw
    rows (validated here; bad ones are reported under `bad_rows`). `final`: the experiment is
    over, decide with the fixed-horizon test instead of the sequential one. Returns a
    JSON-serialisable dict; `status` and `decision_reason` give the decision, `final` whether
    the experiment is over.
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
    enabled_ids = [v.id for v in config.enabled]
    control = config.control
    arms = {v.id: _arm(res, v.id) for v in config.variants}
    counts = {v: len(arms[v]["outcome"]) for v in enabled_ids}
    total_enabled = sum(counts.values())
    figures = {v.id: _figures(arms[v.id], v, control, total_enabled) for v in config.variants}
    srm = _srm(config, counts)

    challengers = [v for v in enabled_ids if v != control]
    test = _resolved_stream(config, res)
    seq = _sequential(config, test, challengers) if challengers else {}
    fixed = _fixed(config, figures, challengers) if challengers else {}
    tests = []
    for v in challengers:
        fc, fv = figures[control], figures[v]
        diff = (fv["win_rate"] - fc["win_rate"]
                if fc["win_rate"] is not None and fv["win_rate"] is not None else None)
        ci = st.newcombe_diff(fc["wins"], fc["resolved"], fv["wins"], fv["resolved"])
        z = fixed[v]["z"]
        pl_test = st.welch(arms[control]["pl"], arms[v]["pl"])
        tests.append({
            "variant": v, "control": control,
            "win_rate": {"control": fc["win_rate"], "variant": fv["win_rate"], "diff": diff,
                         "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
                         "ci": "Newcombe hybrid score, 95%, all data, not valid under peeking",
                         "z": z, "p_value_nominal": 2 * st.norm_sf(abs(z)) if z is not None
                         else None},
            "sequential": seq[v], "fixed_horizon": fixed[v],
            "bayesian": (st.chance_to_win(fc["wins"], fc["resolved"], fv["wins"], fv["resolved"])
                         if fc["resolved"] and fv["resolved"] else None),
            "decided_by": "fixed_horizon" if final else "sequential",
            "profit_loss": pl_test,
            "analysis_time": st.welch(arms[control]["time"], arms[v]["time"]),
            "guardrails": _guardrails(config.guardrails, fc, fv, pl_test),
        })
    plan = config.plan
    meta = {"resolved_signals": len(test), "planned_signals": planned_horizon(config)}
    meta["horizon_reached"] = bool(meta["planned_signals"]) and \
        meta["resolved_signals"] >= meta["planned_signals"]
    status, winner, reason, done = _decide(config, tests, meta, srm, total_enabled, final)
    method = ({"design": "fixed horizon: one-sided pooled two-proportion z-test on all the data "
                         "(the experiment was declared over)"} if final else
              {"design": "always-valid mixture SPRT (Johari et al. 2022), evaluated after every "
                         "resolved signal; valid at any sample size and under peeking",
               "mixture_sd": plan.min_detectable_lift})
    out = {
        "experiment": config.experiment, "control": control, "winner": winner, "status": status,
        "decision_reason": reason, "final": done, "mode": "final" if final else "sequential",
        "method": {**method, "alpha_one_sided": plan.alpha, "power": plan.power,
                   "min_detectable_lift": plan.min_detectable_lift,
                   "multiple_comparisons": "Holm" if len(challengers) > 1 else "none",
                   "min_signals_per_variant": plan.min_signals_per_variant,
                   "bayesian": "chance to win and expected loss (GrowthBook's view), "
                               "informative only", **meta},
        "variants": figures, "srm": srm, "tests": tests,
        "variants_from": "config" if config.split_declared else "results",
    }
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


def _pts(x: float) -> str:
    return f"{x * 100:+.1f} points"


def _decide(config: ExperimentConfig, tests: list[dict], meta: dict, srm: dict,
            total: int, final: bool) -> tuple[str, str | None, str, bool]:
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
    key = "fixed_horizon" if final else "sequential"
    better = [t for t in tests if t[key]["result"] == "better"]
    worse = [t for t in tests if t[key]["result"] == "worse"]
    ok = [t for t in better if not t["guardrails"]["veto"]]
    vetoed = [t for t in better if t["guardrails"]["veto"]]
    veto_text = "; ".join(f"{t['variant']} beat control but breached "
                          f"{', '.join(t['guardrails']['breached'])}" for t in vetoed)
    n = meta["resolved_signals"]
    if ok:
        best = max(ok, key=lambda t: t["win_rate"]["diff"] or 0.0)
        d = best[key]
        if final:
            why = (f"win rate {_pts(best['win_rate']['diff'])} over {config.control} on all "
                   f"{n} resolved signals, fixed-horizon z={d['z']:.2f}, one-sided "
                   f"p={d['p_value']:.2g} <= {d['alpha_level']:.3g}")
        else:
            at = d["at"]
            why = (f"win rate {_pts(at['diff'])} over {config.control} when the sequential "
                   f"test crossed, after {d['at_signals']} resolved signals ({at['n_control']} "
                   f"vs {at['n_variant']}; always-valid p now {d['p_value_always_valid']:.2g}, "
                   f"level {d['alpha_level']:.3g}, valid at any sample size)")
        reason = f"{best['variant']} wins: {why}; guardrails passed"
        return WINNER, best["variant"], reason + (f"; {veto_text}" if veto_text else ""), True
    if vetoed:
        return VETOED, None, f"no winner: {veto_text}; keep {config.control}", True
    short = [t["variant"] for t in tests
             if min(t["sequential"]["now"]["n_control"], t["sequential"]["now"]["n_variant"])
             < config.plan.min_signals_per_variant]
    need = (f"{config.plan.min_signals_per_variant} resolved signals in each arm "
            f"({', '.join(short)} short)")
    extra = (f" ({', '.join(t['variant'] for t in worse)} significantly worse)"
             if worse and len(worse) < len(tests) else "")
    if final:
        why = ("every variant is significantly worse than control" if len(worse) == len(tests)
               else f"fewer than {need}" if short else
               f"no variant beat control at one-sided alpha {config.plan.alpha:g}")
        return NO_WINNER, None, (f"no winner: {why}{extra} (fixed horizon, {n} resolved "
                                 f"signals); keep {config.control}"), True
    if short and len(short) == len(tests):
        return COLLECTING, None, f"collecting: {n} resolved signals; a decision needs {need}", \
            False
    lift = config.plan.min_detectable_lift
    ruled_out = all(t["sequential"]["rules_out_min_lift"] or t in worse for t in tests)
    if len(worse) == len(tests) or ruled_out or meta["horizon_reached"]:
        why = ("every variant is significantly worse than control" if len(worse) == len(tests)
               else f"the always-valid interval rules out a lift of {_pts(lift)}" if ruled_out
               else f"no variant beat control by the planned {meta['planned_signals']} "
                    f"resolved signals")
        return NO_WINNER, None, (f"no winner: {why}{extra} ({n} resolved signals); keep "
                                 f"{config.control}"), True
    best = max(tests, key=lambda t: t["win_rate"]["diff"] or 0.0)
    return COLLECTING, None, (
        f"collecting: {n} of {meta['planned_signals']} planned resolved signals, no winner yet "
        f"(best {best['variant']}: always-valid p={best['sequential']['p_value_always_valid']:.2g},"
        f" needs <= {best['sequential']['alpha_level']:.3g}){extra}"), False
