"""Does every deployment end rolled back, kept or held, within its sample budget, and rightly?

    .venv/bin/python benchmarks/judge_accuracy.py [--reps 300] [--seed 20240611]
        [--looks 12] [--alpha 0.03] [--beta 0.10] [--gamma 4] [--beta-gamma 1]
        [--detect 1.5] [--bonferroni]

The design flags try another sequential design than the graph's (sequential.py's constants):
how the goals trade against each other is measured, not argued.

Synthetic scenarios with a fixed seed: baseline and candidate latencies drawn from the same shape,
the candidate multiplied by (1 + true change). Shapes: log-normal; log-normal with 5% outliers
(x3-x10, GC pauses and cold starts); heavy tail (Student-t with 3 degrees of freedom on the log
scale); two modes (30% cache misses at 5x the hit latency). Noise is the log-scale sigma of the
body (~ its coefficient of variation), 5-30%. The first look has 10-40 samples a side, and both
sides fail requests at the same rate (0, 2% or 5%), so the error test is exercised with no true
error change. Separate groups raise the candidate's failure rate with latency unchanged, its
share of cache misses, and slow only the misses.

`sequential` is what the graph does under its defaults (sequential.py): look 1, then while the
decision is measure_more another round as big as the first, up to 12 looks (ATGE_MAX_SAMPLES =
12 x ATGE_SAMPLES); what is undecided at the last look is held. `first_look` is the rollback rate of
look 1 alone; `single` is one comparison judged as its own last look (`atge judge --batch` with
no look). The plan's naive rules: `naive_single` rolls back if one candidate timing is more than
10% above the baseline mean; `naive_mean` if the candidate mean is. `samples_used` is the mean
number of samples a side over the first look's (1.0 = decided at once); the goal counts first
looks of 20+ samples a side (the graph's default is 20), and the figure over 10-40 is printed too.

Per-group figures go to stderr, one JSON object to stdout, and a one-line summary last to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atge_assets.deployments.judge import INCONCLUSIVE, judge, run_batch  # noqa: E402
from atge_assets.deployments import sequential  # noqa: E402
from atge_assets.deployments.sequential import HOLD, MEASURE_MORE  # noqa: E402

SHAPES = ("lognormal", "outliers", "heavy_tail", "two_mode")
NOISES = (0.05, 0.10, 0.20, 0.30)
CHANGES = (-0.20, -0.10, -0.05, 0.0, 0.05, 0.10, 0.15, 0.25, 0.50)
ERROR_RATES = (0.0, 0.0, 0.02, 0.05)
N_MIN, N_MAX = 10, 40
THRESHOLD = 0.10
# The graph's defaults: rounds of ATGE_SAMPLES up to ATGE_MAX_SAMPLES = 8 rounds.
LOOKS = sequential.design(20, 240).looks

def _detect(change):
    return lambda s: s["change"] == change and s["noise"] <= 0.20 and s["n_min"] >= 20


GOALS = {
    # name: (target, comparison, scope, scenario filter, figure)
    "false_rollback": (0.005, "<=", "true change <= +5%, noise <= 20%, all shapes, 10-40 samples",
                       lambda s: s["change"] <= 0.05 and s["noise"] <= 0.20, "sequential"),
    "detect_15": (0.95, ">=", "true change +15%, noise <= 20%, 20+ samples per side",
                  _detect(0.15), "sequential"),
    "detect_25": (0.99, ">=", "true change +25%, noise <= 20%, 20+ samples per side",
                  _detect(0.25), "sequential"),
    "detect_50": (1.0, ">=", "true change +50%, noise <= 20%, 20+ samples per side",
                  _detect(0.50), "sequential"),
    "held": (0.01, "<=", "true change outside +5%..+15%, noise <= 20%",
             lambda s: not 0.05 <= s["change"] <= 0.15 and s["noise"] <= 0.20, "held"),
    "samples_used": (1.4, "<=", "mean samples a side / first look's, noise <= 20%, all changes, "
                     "20+ samples per side", lambda s: s["noise"] <= 0.20 and s["n_min"] >= 20,
                     "samples_used"),
}
RULES = ("sequential", "first_look", "single", "naive_single", "naive_mean")


def log_noise(rng: np.random.Generator, shape: str, sigma: float, size,
              misses: float = 0.30, miss_factor: float = 1.0) -> np.ndarray:
    body = rng.standard_t(3, size) if shape == "heavy_tail" else rng.standard_normal(size)
    x = sigma * body
    if shape == "outliers":
        x += np.where(rng.random(size) < 0.05, np.log(rng.uniform(3, 10, size)), 0.0)
    elif shape == "two_mode":
        x += np.where(rng.random(size) < misses, np.log(5.0 * miss_factor), 0.0)
    return x


def samples(rng, shape, sigma, base_ms, factor, error_rate, n,
            misses: float = 0.30, miss_factor: float = 1.0) -> list[float | None]:
    ms = np.round(base_ms * factor * np.exp(log_noise(rng, shape, sigma, n, misses, miss_factor)),
                  2)
    failed = rng.random(n) < error_rate
    return [None if f else float(v) for v, f in zip(ms, failed)]


def naive(baseline, candidate) -> tuple[bool, bool]:
    b = [x for x in baseline if x is not None]
    c = [x for x in candidate if x is not None]
    if not b or not c:
        return False, False
    limit = (1 + THRESHOLD) * (sum(b) / len(b))
    return c[0] > limit, sum(c) / len(c) > limit


def sequential_run(baseline, candidate, n_b, n_c, looks):
    """The graph's protocol: look 1 on the first round, then one more round a side per look while
    the decision is measure_more. Returns (first verdict, last verdict, looks used)."""
    budgets = dict(alpha=sequential.ALPHA, beta=sequential.BETA, looks=looks)
    first = last = judge(baseline[:n_b], candidate[:n_c], THRESHOLD, look=1, **budgets)
    look = 1
    while last.decision == MEASURE_MORE:
        look += 1
        last = judge(baseline[:look * n_b], candidate[:look * n_c], THRESHOLD, look=look,
                     **budgets)
    return first, last, look


def scenario(rng, shape, sigma, change, error_rate=None, cand_error_rate=None,
             cand_misses: float = 0.30, cand_miss_factor: float = 1.0, looks: int | None = None
             ) -> dict:
    """One deployment: judged at the first look and, while measure_more, on more rounds."""
    looks = LOOKS if looks is None else looks
    n_b, n_c = (int(v) for v in rng.integers(N_MIN, N_MAX + 1, 2))
    base_ms = float(np.exp(rng.uniform(np.log(5), np.log(500))))
    e = ERROR_RATES[rng.integers(len(ERROR_RATES))] if error_rate is None else error_rate
    e_c = e if cand_error_rate is None else cand_error_rate
    # Draw every look up front: each re-measure adds as many fresh samples as the first look had.
    baseline = samples(rng, shape, sigma, base_ms, 1.0, e, looks * n_b)
    candidate = samples(rng, shape, sigma, base_ms, 1.0 + change, e_c, looks * n_c, cand_misses,
                        cand_miss_factor)
    first, final, used = sequential_run(baseline, candidate, n_b, n_c, looks)
    old = judge(baseline[:n_b], candidate[:n_c], THRESHOLD)
    single, mean = naive(baseline[:n_b], candidate[:n_c])
    return {
        "shape": shape, "noise": sigma, "change": change, "n_min": min(n_b, n_c),
        "first_look": first.rollback, "inconclusive": first.verdict == INCONCLUSIVE,
        "sequential": final.rollback, "naive_single": single, "naive_mean": mean,
        "samples_used": used, "held": final.decision == HOLD, "single": old.rollback,
        "lines": (baseline[:n_b], candidate[:n_c]),
    }


def rate(rows: list[dict], key: str) -> float | None:
    return sum(r[key] for r in rows) / len(rows) if rows else None


def pct(x: float | None, digits: int = 1) -> str:
    return "   -  " if x is None else f"{100 * x:{4 + digits}.{digits}f}%"


def report_groups(rows: list[dict], err) -> dict:
    """Per shape and noise (30% included): rollback rate by true change, held, samples used."""
    print("\nsequential rollback rate by true change (held share, mean samples used x first look):",
          file=err)
    print(f"{'shape':<11}{'noise':>6} | " + " | ".join(f"{c:+.0%}".center(17) for c in CHANGES),
          file=err)
    table = {}
    for shape, sigma in product(SHAPES, NOISES):
        cells = []
        for change in CHANGES:
            sel = [r for r in rows if r["shape"] == shape and r["noise"] == sigma
                   and r["change"] == change]
            cells.append(f"{pct(rate(sel, 'sequential'))} {pct(rate(sel, 'held'), 0)} "
                         f"x{np.mean([r['samples_used'] for r in sel]):.1f}")
        print(f"{shape:<11}{sigma:>6.0%} | " + " | ".join(cells), file=err)
    for sigma in NOISES:
        sel = [r for r in rows if r["noise"] == sigma]
        used = [r["samples_used"] for r in sel]
        table[f"{sigma:.0%}"] = {
            "false_rollback": rate([r for r in sel if r["change"] <= 0.05], "sequential"),
            **{f"detect_{round(c * 100)}": rate([r for r in sel if r["change"] == c
                                                 and r["n_min"] >= 20], "sequential")
               for c in (0.15, 0.25, 0.50)},
            "held": rate(sel, "held"),
            "held_outside_5_15": rate([r for r in sel if not 0.05 <= r["change"] <= 0.15],
                                      "held"),
            "samples_used_mean": float(np.mean(used)),
            "samples_used_p95": float(np.percentile(used, 95)),
        }
    print("\nper noise level: " + json.dumps({k: {m: None if v is None else round(v, 4)
                                                  for m, v in d.items()}
                                              for k, d in table.items()}), file=err)
    return table


def group(rng, reps: int, cases: dict, make) -> dict:
    out = {}
    for label, (kwargs, mean_change) in cases.items():
        rows = [scenario(rng, **kwargs) for _ in range(reps)]
        out[label] = {"mean_latency_change": mean_change,
                      **{k: rate(rows, k) for k in ("sequential", "held", "naive_mean")}}
    return out


def error_group(rng, reps: int) -> dict:
    """Latency unchanged, candidate fails more often than the baseline's 1%."""
    return group(rng, reps, {
        f"+{extra:.0%}": (dict(shape="lognormal", sigma=0.10, change=0.0, error_rate=0.01,
                               cand_error_rate=0.01 + extra), 0.0)
        for extra in (0.0, 0.05, 0.10, 0.20)}, scenario)


def miss_group(rng, reps: int) -> dict:
    """Latency of each mode unchanged, the candidate's cache misses more often than 30%."""
    return group(rng, reps, {
        f"{m:.0%}": (dict(shape="two_mode", sigma=0.10, change=0.0, error_rate=0.0,
                          cand_error_rate=0.0, cand_misses=m),
                     round((1 - m + 5 * m) / (0.7 + 5 * 0.3) - 1, 3))
        for m in (0.30, 0.40, 0.50, 0.70, 0.90)}, scenario)


def slow_misses_group(rng, reps: int) -> dict:
    """Hits unchanged, only the cache misses (30% of requests) slower."""
    return group(rng, reps, {
        f"x{f:g}": (dict(shape="two_mode", sigma=0.10, change=0.0, error_rate=0.0,
                         cand_error_rate=0.0, cand_miss_factor=f),
                    round((0.7 + 0.3 * 5 * f) / (0.7 + 0.3 * 5) - 1, 3))
        for f in (1.0, 1.1, 1.3, 1.6, 2.0)}, scenario)


def time_batch(rows: list[dict], count: int) -> dict:
    lines = [json.dumps({"id": i, "baseline": r["lines"][0], "candidate": r["lines"][1]})
             for i, r in zip(range(count), rows * (count // len(rows) + 1))]
    out = io.StringIO()
    start = time.perf_counter()
    errors = run_batch(lines, out)
    seconds = time.perf_counter() - start
    assert errors == 0 and out.getvalue().count("\n") == count
    return {"comparisons": count, "seconds": round(seconds, 3),
            "comparisons_per_second": round(count / seconds)}


def main() -> int:
    global LOOKS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300, help="scenarios per shape x noise x change")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--batch", type=int, default=5000, help="comparisons for the run_batch timing")
    ap.add_argument("--looks", type=int, default=LOOKS, help="planned looks (budget / first)")
    ap.add_argument("--alpha", type=float, default=sequential.ALPHA)
    ap.add_argument("--beta", type=float, default=sequential.BETA)
    ap.add_argument("--gamma", type=float, default=sequential.GAMMA,
                    help="HSD spending gamma of alpha")
    ap.add_argument("--beta-gamma", type=float, default=sequential.BETA_GAMMA,
                    help="HSD spending gamma of beta (futility)")
    ap.add_argument("--detect", type=float, default=sequential.DETECT,
                    help="futility point, a multiple of the threshold")
    ap.add_argument("--bonferroni", action="store_true",
                    help="each look's spent increment as its latency level (the design before "
                         "exact levels)")
    args = ap.parse_args()
    # What-if designs: sequential.py reads these at call time, and the runs pass alpha and beta.
    LOOKS = args.looks
    sequential.ALPHA, sequential.BETA = args.alpha, args.beta
    sequential.GAMMA, sequential.DETECT = args.gamma, args.detect
    sequential.BETA_GAMMA = args.beta_gamma
    sequential.EXACT = not args.bonferroni
    err = sys.stderr
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    rows = [scenario(rng, shape, sigma, change)
            for shape, sigma, change in product(SHAPES, NOISES, CHANGES)
            for _ in range(args.reps)]
    by_noise = report_groups(rows, err)

    def figure(sel, key):
        return float(np.mean([r[key] for r in sel])) if sel else None

    goals = {}
    print(file=err)
    for name, (target, op, scope, keep, key) in GOALS.items():
        sel = [r for r in rows if keep(r)]
        ours = figure(sel, key)
        per_shape = {shape: figure([r for r in sel if r["shape"] == shape], key)
                     for shape in SHAPES}
        worst = max(per_shape.values()) if op == "<=" else min(per_shape.values())
        met = (ours <= target and worst <= target * 1.5) if op == "<=" else worst >= target
        if name.startswith("detect") or name == "false_rollback":
            met = (worst <= target) if op == "<=" else (worst >= target)
            if name == "false_rollback":
                met = ours <= target
        others = {rule: rate(sel, rule) for rule in RULES[1:]} if key == "sequential" else {}
        goals[name] = {"target": f"{op} {target:g}", "scope": scope, "scenarios": len(sel),
                       "ours": ours, "by_shape": per_shape, "met": met, **others}
        fmt = (lambda x: f"x{x:.2f}") if key == "samples_used" else (lambda x: pct(x, 2).strip())
        print(f"goal {name} ({scope}; target {op} {target:g}): {fmt(ours)} "
              f"{'MET' if met else 'NOT MET'}; by shape "
              + ", ".join(f"{k} {fmt(v)}" for k, v in per_shape.items())
              + ("; " + ", ".join(f"{k} {pct(v).strip()}" for k, v in others.items())
                 if others else ""), file=err)

    errors = error_group(rng, max(args.reps // 2, 100))
    print(f"\nerror-rate regression (latency unchanged, baseline 1% failures): "
          f"{json.dumps(errors)}", file=err)
    misses = miss_group(rng, max(args.reps // 2, 100))
    print(f"cache misses up (30% before, each mode's latency unchanged): {json.dumps(misses)}",
          file=err)
    slow_misses = slow_misses_group(rng, max(args.reps // 2, 100))
    print(f"only the cache misses slower (hits unchanged): {json.dumps(slow_misses)}", file=err)
    batch = time_batch(rows, args.batch)
    print(f"run_batch: {batch}", file=err)
    used = [r["samples_used"] for r in rows if r["noise"] <= 0.20]
    # The indifference zone (+5%..+15%) is where deciding costs most, and either answer is fine.
    used_clear = float(np.mean([r["samples_used"] for r in rows if r["noise"] <= 0.20
                                and not 0.05 <= r["change"] <= 0.15]))
    used_all_n = float(np.mean(used))
    result = {
        "seed": args.seed, "scenarios": len(rows), "threshold": THRESHOLD,
        "grid": {"shapes": SHAPES, "noise": NOISES, "true_change": CHANGES,
                 "first_look_samples_per_side": [N_MIN, N_MAX], "looks": LOOKS,
                 "error_rates_both_sides": ERROR_RATES, "reps_per_cell": args.reps},
        "design": {"alpha": sequential.ALPHA, "beta": sequential.BETA,
                   "spending": f"Hwang-Shih-DeCani, gamma {sequential.GAMMA:g} (alpha), "
                               f"{sequential.BETA_GAMMA:g} (beta)",
                   "levels": "Bonferroni" if not sequential.EXACT else "exact",
                   "futility_at": f"+{sequential.DETECT * THRESHOLD:.0%}"},
        "goals": goals, "by_noise": by_noise,
        "samples_used_p95": float(np.percentile(used, 95)),
        "samples_used_outside_5_15": used_clear, "samples_used_10_40": used_all_n,
        "error_rate_regression": errors, "cache_miss_regression": misses,
        "slow_miss_regression": slow_misses, "batch": batch,
        "runtime_seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(result, sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")
    figures = "; ".join(
        f"{name} " + (f"x{g['ours']:.2f}" if name == "samples_used" else pct(g["ours"], 2).strip())
        + f" (goal {g['target']}{'' if g['met'] else ', NOT MET'})" for name, g in goals.items())
    design = (f"looks {LOOKS}, alpha {sequential.ALPHA:g}, beta {sequential.BETA:g}, gamma "
              f"{sequential.GAMMA:g} / {sequential.BETA_GAMMA:g}, futility at "
              f"{sequential.DETECT:g} x threshold"
              + (", Bonferroni levels" if not sequential.EXACT else ""))
    print(f"SUMMARY sequential judge ({design}), noise <= 20%: {figures}; goals met "
          f"{sum(g['met'] for g in goals.values())}/{len(goals)} (samples used x{used_clear:.2f} "
          f"outside +5%..+15%, x{used_all_n:.2f} with 10-40 first-look samples); naive_mean false rollbacks "
          f"{pct(goals['false_rollback']['naive_mean']).strip()}, detects +15% "
          f"{pct(goals['detect_15']['naive_mean']).strip()}; "
          f"{batch['comparisons_per_second']} comparisons/s", file=err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
