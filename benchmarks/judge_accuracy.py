"""How often does the judge roll back what it should, and only that? Ours vs the plan's naive rule.

    .venv/bin/python benchmarks/judge_accuracy.py [--reps 1000] [--seed 20240611]

Synthetic scenarios with a fixed seed: baseline and candidate latencies drawn from the same shape,
the candidate multiplied by (1 + true change). Shapes: log-normal; log-normal with 5% outliers
(x3-x10, GC pauses and cold starts); heavy tail (Student-t with 3 degrees of freedom on the log
scale); two modes (30% cache misses at 5x the hit latency). Noise is the log-scale sigma of the
body (~ its coefficient of variation), 5-30%. Each side gets 10-40 samples, drawn independently, and
both sides fail requests at the same rate (0, 2% or 5%), so the error test is exercised with no
true error change. A separate group raises the candidate's failure rate with latency unchanged,
another its share of cache misses (30% before) with each mode's latency unchanged, and another
slows only the misses.

Naive rules (the plan's): `naive_single` rolls back if one candidate timing is more than 10% above
the baseline mean; `naive_mean` if the candidate mean is.

`ours` is one call of judge(); `ours_remeasured` is what the graph does with it under its defaults
(samples 10, max_samples 40: up to four looks): on `inconclusive`, measure as many samples again as
the first look had and judge all of them with look=2 (half the alpha), and so on up to look 4.
`samples_used` is the mean number of samples per side over the first look's (1.0 = never
re-measured).

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

SHAPES = ("lognormal", "outliers", "heavy_tail", "two_mode")
NOISES = (0.05, 0.10, 0.20, 0.30)
CHANGES = (-0.20, -0.10, -0.05, 0.0, 0.05, 0.10, 0.15, 0.25, 0.50)
ERROR_RATES = (0.0, 0.0, 0.02, 0.05)
N_MIN, N_MAX = 10, 40
THRESHOLD = 0.10
# The graph's defaults: rounds of `samples` (10) up to `max_samples` (40).
LOOKS = 4

GOALS = {
    # name: (target, comparison, scope description, scenario filter)
    "false_rollback": (0.005, "<=", "true change <= +5%, noise <= 20%, all shapes, 10-40 samples",
                       lambda s: s["change"] <= 0.05 and s["noise"] <= 0.20),
    "detect_15": (0.90, ">=", "true change +15%, noise <= 10%, 20+ samples per side",
                  lambda s: s["change"] == 0.15 and s["noise"] <= 0.10 and s["n_min"] >= 20),
    "detect_25": (0.99, ">=", "true change +25%, noise <= 20%, 20+ samples per side",
                  lambda s: s["change"] == 0.25 and s["noise"] <= 0.20 and s["n_min"] >= 20),
}
RULES = ("ours", "ours_remeasured", "naive_single", "naive_mean")


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


def scenario(rng, shape, sigma, change, error_rate=None, cand_error_rate=None,
             cand_misses: float = 0.30, cand_miss_factor: float = 1.0) -> dict:
    """One comparison, judged once and, while inconclusive, again on more samples (up to LOOKS)."""
    n_b, n_c = (int(v) for v in rng.integers(N_MIN, N_MAX + 1, 2))
    base_ms = float(np.exp(rng.uniform(np.log(5), np.log(500))))
    e = ERROR_RATES[rng.integers(len(ERROR_RATES))] if error_rate is None else error_rate
    e_c = e if cand_error_rate is None else cand_error_rate
    # Draw every look up front: each re-measure adds as many fresh samples as the first look had.
    baseline = samples(rng, shape, sigma, base_ms, 1.0, e, LOOKS * n_b)
    candidate = samples(rng, shape, sigma, base_ms, 1.0 + change, e_c, LOOKS * n_c, cand_misses,
                        cand_miss_factor)
    first = final = judge(baseline[:n_b], candidate[:n_c], THRESHOLD)
    look = 1
    while final.verdict == INCONCLUSIVE and look < LOOKS:
        look += 1
        final = judge(baseline[:look * n_b], candidate[:look * n_c], THRESHOLD, look=look)
    single, mean = naive(baseline[:n_b], candidate[:n_c])
    return {
        "shape": shape, "noise": sigma, "change": change, "n_min": min(n_b, n_c),
        "ours": first.rollback, "inconclusive": first.verdict == INCONCLUSIVE,
        "ours_remeasured": final.rollback, "naive_single": single, "naive_mean": mean,
        "samples_used": look, "still_inconclusive": final.verdict == INCONCLUSIVE,
        "lines": (baseline[:n_b], candidate[:n_c]),
    }


def rate(rows: list[dict], key: str) -> float | None:
    return sum(r[key] for r in rows) / len(rows) if rows else None


def pct(x: float | None, digits: int = 1) -> str:
    return "   -  " if x is None else f"{100 * x:{4 + digits}.{digits}f}%"


def report_groups(rows: list[dict], err) -> None:
    print("\nRollback rate by true change: ours (first look) / ours after one re-measure / "
          "naive_mean", file=err)
    header = f"{'shape':<11}{'noise':>6}{'n_min':>7} | " + " | ".join(
        f"{c:+.0%}".center(20) for c in CHANGES)
    print(header, file=err)
    buckets = (("10-19", 10, 19), ("20-40", 20, 40))
    for shape, sigma, (label, lo, hi) in product(SHAPES, NOISES, buckets):
        cells = []
        for change in CHANGES:
            sel = [r for r in rows if r["shape"] == shape and r["noise"] == sigma
                   and r["change"] == change and lo <= r["n_min"] <= hi]
            cells.append(" ".join(pct(rate(sel, k)) for k in
                                  ("ours", "ours_remeasured", "naive_mean")))
        print(f"{shape:<11}{sigma:>6.0%}{label:>7} | " + " | ".join(cells), file=err)

    print("\nPooled over shapes and sample sizes, noise <= 20%: rollback / inconclusive", file=err)
    for change in CHANGES:
        sel = [r for r in rows if r["change"] == change and r["noise"] <= 0.20]
        print(f"  true {change:+.0%}: ours {pct(rate(sel, 'ours'))} (inconclusive "
              f"{pct(rate(sel, 'inconclusive'))}), re-measured "
              f"{pct(rate(sel, 'ours_remeasured'))}, "
              f"naive_mean {pct(rate(sel, 'naive_mean'))}, naive_single "
              f"{pct(rate(sel, 'naive_single'))}", file=err)


def error_group(rng, reps: int) -> dict:
    """Latency unchanged, candidate fails more often than the baseline's 1%."""
    out = {}
    for extra in (0.0, 0.05, 0.10, 0.20):
        rows = [scenario(rng, "lognormal", 0.10, 0.0, 0.01, 0.01 + extra) for _ in range(reps)]
        out[f"+{extra:.0%}"] = {"ours": rate(rows, "ours"),
                                "ours_remeasured": rate(rows, "ours_remeasured"),
                                "naive_mean": rate(rows, "naive_mean")}
    return out


def miss_group(rng, reps: int) -> dict:
    """Latency of each mode unchanged, the candidate's cache misses more often than 30%."""
    out = {}
    for misses in (0.30, 0.40, 0.50, 0.70, 0.90):
        rows = [scenario(rng, "two_mode", 0.10, 0.0, 0.0, 0.0, misses) for _ in range(reps)]
        mean_change = (1 - misses + 5 * misses) / (0.7 + 5 * 0.3) - 1
        out[f"{misses:.0%}"] = {"mean_latency_change": round(mean_change, 3),
                                **{k: rate(rows, k) for k in
                                   ("ours", "ours_remeasured", "naive_mean")}}
    return out


def slow_misses_group(rng, reps: int) -> dict:
    """Hits unchanged, only the cache misses (30% of requests) slower."""
    out = {}
    for factor in (1.0, 1.1, 1.3, 1.6, 2.0):
        rows = [scenario(rng, "two_mode", 0.10, 0.0, 0.0, 0.0, 0.30, factor) for _ in range(reps)]
        mean_change = (0.7 + 0.3 * 5 * factor) / (0.7 + 0.3 * 5) - 1
        out[f"x{factor:g}"] = {"mean_latency_change": round(mean_change, 3),
                               **{k: rate(rows, k) for k in
                                  ("ours", "ours_remeasured", "naive_mean")}}
    return out


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000, help="scenarios per shape x noise x change")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--batch", type=int, default=5000, help="comparisons for the run_batch timing")
    args = ap.parse_args()
    err = sys.stderr
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    rows = [scenario(rng, shape, sigma, change)
            for shape, sigma, change in product(SHAPES, NOISES, CHANGES)
            for _ in range(args.reps)]
    report_groups(rows, err)

    def met(name: str, figure: float) -> bool:
        target, op = GOALS[name][:2]
        return figure <= target if op == "<=" else figure >= target

    goals, goals_by_shape = {}, {shape: {} for shape in SHAPES}
    print(file=err)
    for name, (target, op, scope, keep) in GOALS.items():
        sel = [r for r in rows if keep(r)]
        figures = {rule: rate(sel, rule) for rule in RULES}
        goals[name] = {"target": f"{op} {target:.1%}", "scope": scope, "scenarios": len(sel),
                       **figures, "inconclusive": rate(sel, "inconclusive"),
                       "samples_used": rate(sel, "samples_used"),
                       "still_inconclusive": rate(sel, "still_inconclusive"),
                       "met": met(name, figures["ours"]),
                       "met_remeasured": met(name, figures["ours_remeasured"])}
        print(f"goal {name} ({scope}; target {op} {target:.1%}): ours {pct(figures['ours'], 2)} "
              f"{'MET' if goals[name]['met'] else 'NOT MET'}, re-measured "
              f"{pct(figures['ours_remeasured'], 2)} "
              f"{'MET' if goals[name]['met_remeasured'] else 'NOT MET'} (samples used "
              f"x{goals[name]['samples_used']:.2f}); naive_mean "
              f"{pct(figures['naive_mean'])}, naive_single {pct(figures['naive_single'])}",
              file=err)
        for shape in SHAPES:
            part = [r for r in sel if r["shape"] == shape]
            goals_by_shape[shape][name] = {rule: rate(part, rule) for rule in RULES}
            print(f"    {shape:<11} ours {pct(rate(part, 'ours'))}, re-measured "
                  f"{pct(rate(part, 'ours_remeasured'))}, naive_mean "
                  f"{pct(rate(part, 'naive_mean'))}", file=err)

    by_change = {}
    for change in CHANGES:
        sel = [r for r in rows if r["change"] == change and r["noise"] <= 0.20]
        by_change[f"{change:+.0%}"] = {k: rate(sel, k) for k in (*RULES, "inconclusive")}
    cells_at_plus5 = [
        ((shape, sigma, bucket), rate(sel, "ours"))
        for shape, sigma, bucket in product(SHAPES, (0.05, 0.10, 0.20), ("10-19", "20-40"))
        if (sel := [r for r in rows if r["shape"] == shape and r["noise"] == sigma
                    and r["change"] == 0.05 and (r["n_min"] >= 20) == (bucket == "20-40")])
    ]
    worst_false = max(cells_at_plus5, key=lambda cell: cell[1])
    errors = error_group(rng, max(args.reps // 2, 100))
    print(f"\nerror-rate regression (latency unchanged, baseline 1% failures), rollback rate: "
          f"{json.dumps(errors)}", file=err)
    misses = miss_group(rng, max(args.reps // 2, 100))
    print(f"cache misses up (30% before, hit and miss latencies unchanged), rollback rate: "
          f"{json.dumps(misses)}", file=err)
    slow_misses = slow_misses_group(rng, max(args.reps // 2, 100))
    print(f"only the cache misses slower (hits unchanged), rollback rate: "
          f"{json.dumps(slow_misses)}", file=err)
    batch = time_batch(rows, args.batch)
    print(f"run_batch: {batch}", file=err)

    result = {
        "seed": args.seed, "scenarios": len(rows), "threshold": THRESHOLD,
        "grid": {"shapes": SHAPES, "noise": NOISES, "true_change": CHANGES,
                 "samples_per_side": [N_MIN, N_MAX], "error_rates_both_sides": ERROR_RATES,
                 "reps_per_cell": args.reps},
        "rules": {"ours": "judge(), one look",
                  "ours_remeasured": f"while inconclusive, judge() again with as many samples "
                                     f"more, look=2, 3, ... up to {LOOKS} (the graph's defaults)",
                  "naive_single": "first candidate timing > 1.1 x baseline mean",
                  "naive_mean": "candidate mean > 1.1 x baseline mean"},
        "goals": goals, "goals_by_shape": goals_by_shape,
        "rollback_by_true_change_noise_le_20pct": by_change,
        "worst_cell_at_plus_5pct": {"shape_noise_n": list(worst_false[0]), "ours": worst_false[1]},
        "error_rate_regression": errors, "cache_miss_regression": misses,
        "slow_miss_regression": slow_misses, "batch": batch,
        "runtime_seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(result, sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")
    figures = "; ".join(
        f"{name} " + " / ".join(pct(g[rule], 2).strip() for rule in RULES)
        + f" (goal {g['target']})"
        for name, g in goals.items())
    print(f"SUMMARY ours / re-measured / naive_single / naive_mean: {figures}; goals met "
          f"{sum(g['met'] for g in goals.values())}/3 first look, "
          f"{sum(g['met_remeasured'] for g in goals.values())}/3 re-measured; "
          f"{batch['comparisons_per_second']} comparisons/s", file=err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
