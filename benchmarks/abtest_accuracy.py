"""Does the A/B analysis name the right winner, and only then, even when it looks every day?

    .venv/bin/python benchmarks/abtest_accuracy.py [--scale 1.0] [--seed 20260101] [--jobs 2]
                                                   [--every 250]

Simulated experiments (abtest.simulate_results, fixed seeds) on the issue's configuration:
control "GPT-5.1 high reasoning" at 80% against "medium reasoning" at 20%, control win rate 55%,
1% failed analyses, log-normal analysis times, exponential wins and losses. Three-variant groups
split 60/20/20. Each experiment runs until it passes its planned horizon, 10% more signals than
the planned resolved signals, and is analysed every `--every` signals (about four hours of traffic
at 60 signals an hour): the scheduled asset's peeking. A rule "names a winner" if any of those
analyses does, since the sensor acts on the first one.

Groups: A/A (no true difference, 2 and 3 variants); a true lift of 6, 7, 8 or 10 points for the
challenger; three variants with one real +8 point lift; a +10 point lift that is 60% slower at
p95 (the guardrail must veto it); a broken 84/16 split (SRM must block it).

Rules compared on the two-variant groups, all one-sided at 2.5% ("p < 0.05" two-sided):
- ours: abtest.analyze(), group-sequential with O'Brien-Fleming spending, SRM and guardrails.
- naive_peeking: a two-proportion z-test at every analysis; a winner the first time z >= 1.96.
- msprt: always-valid mixture SPRT (normal approximation, mixing sd = the planned 6 points),
  winner when its likelihood ratio reaches 20; valid under peeking, the alternative to ours.
- fixed_horizon: one z-test on exactly the planned resolved signals, no peeking and no early stop:
  the best power this many signals can give, for reference.

Per-group lines go to stderr, one JSON object to stdout, and a one-line summary last to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atge_assets.abtest import stats as st  # noqa: E402
from atge_assets.abtest.analysis import analyze, planned_horizon  # noqa: E402
from atge_assets.abtest.config import ExperimentConfig, default_config  # noqa: E402
from atge_assets.abtest.intake import Results  # noqa: E402
from atge_assets.abtest.simulate import simulate_results  # noqa: E402

BASE = 0.55
TAU = 0.06  # mSPRT mixing sd, matched to the plan's minimum detectable lift
Z = 1.959964
CONTROL, CHALLENGER = "gpt51-high", "gpt51-medium"


def configs() -> dict[str, ExperimentConfig]:
    three = ExperimentConfig.from_dict({
        "experiment": "bench-three", "control": "a",
        "variants": [{"id": k, "name": k, "model": "gpt-5.1", "reasoning_effort": e,
                      "traffic_percent": p}
                     for k, e, p in (("a", "high", 60), ("b", "medium", 20), ("c", "low", 20))]})
    return {"two": default_config("bench-two"), "three": three}


# name: (config, true win rates, simulate kwargs, true winner, repetitions at scale 1)
GROUPS = {
    "aa_2": ("two", {CONTROL: BASE, CHALLENGER: BASE}, {}, None, 700),
    "aa_3": ("three", {"a": BASE, "b": BASE, "c": BASE}, {}, None, 250),
    "lift_6": ("two", {CONTROL: BASE, CHALLENGER: BASE + 0.06}, {}, CHALLENGER, 200),
    "lift_7": ("two", {CONTROL: BASE, CHALLENGER: BASE + 0.07}, {}, CHALLENGER, 200),
    "lift_8": ("two", {CONTROL: BASE, CHALLENGER: BASE + 0.08}, {}, CHALLENGER, 200),
    "lift_10": ("two", {CONTROL: BASE, CHALLENGER: BASE + 0.10}, {}, CHALLENGER, 200),
    "three_lift_8": ("three", {"a": BASE, "b": BASE, "c": BASE + 0.08}, {}, "c", 150),
    "veto_slow_p95": ("two", {CONTROL: BASE, CHALLENGER: BASE + 0.10},
                      {"analysis_time": {CONTROL: 20.0, CHALLENGER: 32.0}}, None, 100),
    "srm_84_16": ("two", {CONTROL: BASE, CHALLENGER: BASE + 0.08},
                  {"traffic": {CONTROL: 84.0, CHALLENGER: 16.0}}, None, 100),
}
GOALS = {
    "false_winner": (0.05, "<=", "A/A, 2 and 3 variants, every analysis counted",
                     ("aa_2", "aa_3")),
    "detect_6_10": (0.80, ">=", "true lift 6-10 points (2 variants) or 8 points (3 variants)",
                    ("lift_6", "lift_7", "lift_8", "lift_10", "three_lift_8")),
}
_CONFIGS: dict[str, ExperimentConfig] = {}


def _comparators(res: Results, looks: list[int], horizon: int) -> dict:
    """The other rules on the same data (two variants), each from running win/loss counts."""
    resolved = res.outcome <= 1
    win = res.outcome == 1
    is_c, is_v = res.mask(CONTROL) & resolved, res.mask(CHALLENGER) & resolved
    cum = np.cumsum(np.stack([is_c, is_v, is_c & win, is_v & win]), axis=1)

    def counts(n_rows):
        return [int(x) for x in cum[:, n_rows - 1]]

    out = {"naive_peeking": None, "msprt": None, "fixed_horizon": None}
    for n in looks:
        n_c, n_v, w_c, w_v = counts(n)
        if min(n_c, n_v) < 30:
            continue
        z = st.pooled_z(w_c, n_c, w_v, n_v)
        if out["naive_peeking"] is None and z >= Z:
            out["naive_peeking"] = CHALLENGER
        p_c, p_v = w_c / n_c, w_v / n_v
        var = p_c * (1 - p_c) / n_c + p_v * (1 - p_v) / n_v
        if var > 0 and out["msprt"] is None:
            d = p_v - p_c
            log_lr = 0.5 * math.log(var / (var + TAU ** 2)) + d * d * TAU ** 2 / (
                2 * var * (var + TAU ** 2))
            if log_lr >= math.log(20) and d > 0:
                out["msprt"] = CHALLENGER
    cum_resolved = np.cumsum(resolved)
    if cum_resolved[-1] >= horizon:
        n_rows = int(np.searchsorted(cum_resolved, horizon)) + 1
        n_c, n_v, w_c, w_v = counts(n_rows)
        if st.pooled_z(w_c, n_c, w_v, n_v) >= Z:
            out["fixed_horizon"] = CHALLENGER
    return out


def run_one(task: tuple) -> dict:
    group, seed, every = task
    cfg_name, rates, kwargs, truth, _ = GROUPS[group]
    config = _CONFIGS[cfg_name]
    horizon = planned_horizon(config)
    n_signals = int(horizon * 1.10 / 0.99) + 1
    res = Results(simulate_results(config, n_signals, rates, seed=seed, **kwargs))
    looks = list(range(every, n_signals, every)) + [n_signals]
    winner, at, srm_alarm, final_status = None, None, False, None
    for n in looks:
        result = analyze(res.head(n), config)
        srm_alarm |= result["srm"]["alarm"]
        final_status = result["status"]
        if winner is None and result["winner"]:
            winner, at = result["winner"], result["method"]["resolved_signals"]
    row = {"group": group, "truth": truth, "ours": winner, "ours_at": at, "srm_alarm": srm_alarm,
           "final_status": final_status, "analyses": len(looks), "horizon": horizon}
    if cfg_name == "two":
        row.update(_comparators(res, looks, horizon))
    return row


def _init():
    _CONFIGS.update(configs())
    for config in _CONFIGS.values():  # boundaries and plans, computed once per process
        planned_horizon(config)


def rate(rows, rule, predicate) -> float | None:
    vals = [predicate(r[rule], r["truth"]) for r in rows if rule in r]
    return round(sum(vals) / len(vals), 4) if vals else None


def named_any(w, _truth):
    return w is not None


def right(w, truth):
    return w == truth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="repetitions x this")
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--every", type=int, default=250, help="signals between analyses")
    args = ap.parse_args()
    started = time.perf_counter()
    err = sys.stderr
    _init()
    tasks = []
    for g_index, (group, spec) in enumerate(GROUPS.items()):
        reps = max(int(spec[4] * args.scale), 5)
        tasks += [(group, args.seed + 100_000 * g_index + i, args.every) for i in range(reps)]
    if args.jobs > 1:
        with mp.get_context("fork").Pool(args.jobs, initializer=_init) as pool:
            rows = list(pool.imap_unordered(run_one, tasks, chunksize=8))
    else:
        rows = [run_one(t) for t in tasks]

    rules = ("ours", "naive_peeking", "msprt", "fixed_horizon")
    groups = {}
    for group, spec in GROUPS.items():
        sel = [r for r in rows if r["group"] == group]
        truth = spec[3]
        figures = {"experiments": len(sel), "horizon_resolved_signals": sel[0]["horizon"],
                   "analyses_per_experiment": sel[0]["analyses"], "true_winner": truth}
        for rule in rules:
            if rule not in sel[0]:
                continue
            figures[rule] = {"named_a_winner": rate(sel, rule, named_any)}
            if truth is not None:
                figures[rule]["right_winner"] = rate(sel, rule, right)
        ats = [r["ours_at"] for r in sel if r["ours"] is not None and r["ours"] == truth]
        if ats:
            figures["ours"]["mean_resolved_signals_at_decision"] = round(float(np.mean(ats)))
        figures["ours"]["srm_alarm"] = round(sum(r["srm_alarm"] for r in sel) / len(sel), 4)
        groups[group] = figures
        print(f"{group:>14}: n={len(sel):4d} " + "  ".join(
            f"{rule} {figures[rule].get('right_winner', figures[rule]['named_a_winner']):.1%}"
            for rule in rules if rule in figures)
            + ("  (right winner)" if truth else "  (named a winner)")
            + f"  srm alarms {figures['ours']['srm_alarm']:.1%}", file=err)

    goals = {}
    for name, (target, op, scope, members) in GOALS.items():
        sel = [r for r in rows if r["group"] in members]
        pred = named_any if name == "false_winner" else right
        value = rate(sel, "ours", pred)
        met = value <= target if op == "<=" else value >= target
        goals[name] = {"target": f"{op} {target:.0%}", "scope": scope, "experiments": len(sel),
                       "ours": value, "met": met}
    result = {
        "seed": args.seed, "scale": args.scale, "analyse_every_signals": args.every,
        "control_win_rate": BASE, "plan": asdict(_CONFIGS["two"].plan),
        "rules": {"ours": "abtest.analyze(): group-sequential (Lan-DeMets O'Brien-Fleming, 5 "
                          "looks), Holm, SRM, guardrails",
                  "naive_peeking": "z >= 1.96 at any analysis",
                  "msprt": f"mixture SPRT, tau {TAU}, LR >= 20 at any analysis",
                  "fixed_horizon": "z >= 1.96 once, at the planned resolved signals"},
        "groups": groups, "goals": goals,
        "runtime_seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(result, sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")
    g = groups
    print(f"SUMMARY false winners (A/A, peeking every {args.every} signals) "
          f"{goals['false_winner']['ours']:.1%} (goal <= 5%; naive peeking "
          f"{g['aa_2']['naive_peeking']['named_a_winner']:.1%}); right winner at 6-10 points "
          f"{goals['detect_6_10']['ours']:.1%} (goal >= 80%; "
          f"+6 {g['lift_6']['ours']['right_winner']:.0%}, "
          f"+10 {g['lift_10']['ours']['right_winner']:.0%}; mSPRT +6 "
          f"{g['lift_6']['msprt']['right_winner']:.0%}); vetoed slow winner "
          f"{1 - g['veto_slow_p95']['ours']['named_a_winner']:.0%}; SRM blocked "
          f"{1 - g['srm_84_16']['ours']['named_a_winner']:.0%}; goals met "
          f"{sum(x['met'] for x in goals.values())}/{len(goals)}; "
          f"{result['runtime_seconds']} s", file=err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
