"""Does the A/B analysis name the right winner, and only then, beside GrowthBook and a z-test?

    .venv/bin/python benchmarks/abtest_accuracy.py [--scale 1.0] [--seed 20260101] [--jobs 1]
                                                   [--gbstats-python /tmp/gbstats/bin/python]

gbstats (GrowthBook's own statistics engine) pins an old pandas, so it lives in its own
virtualenv and runs in a subprocess of that interpreter:

    python3 -m venv /tmp/gbstats && /tmp/gbstats/bin/pip install gbstats

Without --gbstats-python its columns are skipped and the JSON says so.

The experiments, simulated with abtest.simulate_results and fixed seeds: the app's own variant
ids (`control`, `variant-a`), a declared 50/50 or 80/20 split, control's win rate 55%, and either
no difference (A/A) or a lift of 4, 6, 8 or 10 points in win rate for the variant, at 300, 1,000,
3,000 and 10,000 signals. No failed analyses and equal analysis times: guardrails are not what is
compared here (they only ever veto, and have their own checks below). Every rule sees the same
signals. A rule "names a winner" when it says the variant is better:
- ours: abtest.analyze(), the default the sensor runs: the always-valid mixture SPRT read after
  every resolved signal of the history (a crossing anywhere on the path counts), SRM check.
- ours_final: abtest.analyze(final=True), `--final`: one fixed-horizon test on all the data.
- gbstats_sequential: gbstats' SequentialTwoSidedTTest with GrowthBook's defaults (relative lift,
  alpha 0.05, tuning parameter 5000), a winner when its interval's lower end is above 0 at any
  of 10 equally spaced looks (what its always-valid interval permits a user watching it).
- gbstats_fixed: gbstats' TwoSidedTTest (GrowthBook's default frequentist test) once, at the end.
- z_test: the two-proportion z-test (pooled), once, at the end, z >= 1.96.
All are one-sided 2.5% against a false winner; only the sequential ones stay so under peeking.

Checks beside them (ours only, 3,000 signals): three variants 60/20/20 (A/A and one +8 points),
a +10 point winner 60% slower at p95 (the guardrail must veto it), a broken 84/16 split of an
80/20 plan (SRM must block it).

Per-size lines go to stderr, one JSON object to stdout, and a one-line summary last to stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atge_assets.abtest import stats as st  # noqa: E402
from atge_assets.abtest.analysis import analyze  # noqa: E402
from atge_assets.abtest.config import ExperimentConfig  # noqa: E402
from atge_assets.abtest.intake import Results  # noqa: E402
from atge_assets.abtest.simulate import simulate_results  # noqa: E402

BASE = 0.55
SIZES = (300, 1000, 3000, 10_000)
SPLITS = {"50/50": 50.0, "80/20": 80.0}
LIFTS = (0.04, 0.06, 0.08, 0.10)
REPS_AA, REPS_LIFT = 300, 100  # per size and split, at scale 1
GB_LOOKS = 10
CONTROL, VARIANT = "control", "variant-a"
RULES = ("ours", "ours_final", "gbstats_sequential", "gbstats_fixed", "z_test")

# One subprocess of gbstats' interpreter for every experiment: reads [[looks...], ...] where a
# look is [n_control, wins_control, n_variant, wins_variant], writes [[seq, fixed], ...].
GB_SCRIPT = r"""
import json, sys
import gbstats
from gbstats.models.statistics import ProportionStatistic as P
from gbstats.frequentist.tests import (FrequentistConfig, SequentialConfig,
                                       SequentialTwoSidedTTest, TwoSidedTTest)
def won(test):
    r = test.compute_result()
    return r.ci[0] > 0 and r.error_message is None
out = []
for looks in json.load(sys.stdin):
    seq = any(won(SequentialTwoSidedTTest(P(n=a, sum=wa), P(n=b, sum=wb), SequentialConfig()))
              for a, wa, b, wb in looks if min(a, b) >= 2)
    a, wa, b, wb = looks[-1]
    fixed = min(a, b) >= 2 and won(TwoSidedTTest(P(n=a, sum=wa), P(n=b, sum=wb),
                                                 FrequentistConfig()))
    out.append([seq, fixed])
json.dump({"version": getattr(gbstats, "__version__", "unknown"), "decisions": out}, sys.stdout)
"""


def two_way(control_pct: float) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "experiment": "bench", "control": CONTROL,
        "variants": [{"id": CONTROL, "name": "control", "model": "gpt-5.1",
                      "reasoning_effort": "high", "traffic_percent": control_pct},
                     {"id": VARIANT, "name": "variant a", "model": "gpt-5.1",
                      "reasoning_effort": "medium", "traffic_percent": 100 - control_pct}]})


def three_way() -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "experiment": "bench-three", "control": "a",
        "variants": [{"id": k, "name": k, "model": "gpt-5.1", "reasoning_effort": e,
                      "traffic_percent": p}
                     for k, e, p in (("a", "high", 60), ("b", "medium", 20), ("c", "low", 20))]})


def run_one(task: tuple) -> dict:
    size, split, lift, seed = task
    config = two_way(SPLITS[split])
    rates = {CONTROL: BASE, VARIANT: BASE + lift}
    res = Results(simulate_results(config, size, rates, seed=seed, error_rate=0.0))
    resolved, win = res.outcome <= 1, res.outcome == 1
    is_c, is_v = res.mask(CONTROL) & resolved, res.mask(VARIANT) & resolved
    cum = np.cumsum(np.stack([is_c, is_c & win, is_v, is_v & win]), axis=1)
    ends = [max(1, round(len(res) * k / GB_LOOKS)) for k in range(1, GB_LOOKS + 1)]
    looks = [[int(x) for x in cum[:, e - 1]] for e in ends]
    n_c, w_c, n_v, w_v = looks[-1]
    z = st.pooled_z(w_c, n_c, w_v, n_v)
    return {"size": size, "split": split, "lift": lift, "looks": looks,
            "ours": analyze(res, config)["winner"] == VARIANT,
            "ours_final": analyze(res, config, final=True)["winner"] == VARIANT,
            "z_test": z is not None and z >= 1.959964}


def run_check(task: tuple) -> dict:
    name, seed = task
    n = 3000
    if name.startswith("three"):
        config = three_way()
        rates = {"a": BASE, "b": BASE, "c": BASE + (0.08 if name == "three_lift_8" else 0.0)}
        truth, kwargs = ("c" if name == "three_lift_8" else None), {}
    else:
        config = two_way(80.0)
        rates = {CONTROL: BASE, VARIANT: BASE + 0.10}
        kwargs = ({"analysis_time": {CONTROL: 20.0, VARIANT: 32.0}} if name == "veto_slow_p95"
                  else {"traffic": {CONTROL: 84.0, VARIANT: 16.0}})
        truth = None
    result = analyze(Results(simulate_results(config, n, rates, seed=seed, error_rate=0.0,
                                              **kwargs)), config)
    return {"name": name, "winner": result["winner"], "truth": truth}


def gbstats_decisions(python: str, rows: list[dict]) -> tuple[str, list[list[bool]]]:
    out = subprocess.run([python, "-c", GB_SCRIPT], input=json.dumps([r["looks"] for r in rows]),
                         capture_output=True, text=True, check=True, cwd="/")
    answer = json.loads(out.stdout)
    return answer["version"], answer["decisions"]


def rate(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="repetitions x this")
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--gbstats-python", metavar="PATH",
                    help="python of a virtualenv with gbstats installed; without it, skipped")
    args = ap.parse_args()
    started = time.perf_counter()
    err = sys.stderr
    tasks, seed = [], args.seed
    for size in SIZES:
        for split in SPLITS:
            for lift in (0.0,) + LIFTS:
                reps = max(int((REPS_AA if lift == 0 else REPS_LIFT) * args.scale), 5)
                tasks += [(size, split, lift, seed + i) for i in range(reps)]
                seed += 100_000
    checks = [(name, seed + 100_000 * k + i)
              for k, name in enumerate(("three_aa", "three_lift_8", "veto_slow_p95", "srm_84_16"))
              for i in range(max(int(100 * args.scale), 5))]
    if args.jobs > 1:
        with mp.get_context("fork").Pool(args.jobs) as pool:
            rows = pool.map(run_one, tasks, chunksize=16)
            check_rows = pool.map(run_check, checks, chunksize=8)
    else:
        rows = [run_one(t) for t in tasks]
        check_rows = [run_check(t) for t in checks]

    gb = {"skipped": "no --gbstats-python given"}
    if args.gbstats_python:
        try:
            version, decisions = gbstats_decisions(args.gbstats_python, rows)
            gb = {"python": args.gbstats_python, "version": version}
            for r, (seq, fixed) in zip(rows, decisions):
                r["gbstats_sequential"], r["gbstats_fixed"] = seq, fixed
        except (OSError, subprocess.CalledProcessError, ValueError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            gb = {"skipped": f"gbstats failed: {detail.strip()[-500:]}"}
    rules = [r for r in RULES if r in rows[0]]

    by_size, by_cell = {}, {}
    for size in SIZES:
        sel = [r for r in rows if r["size"] == size]
        by_size[str(size)] = {rule: {
            "false_winner": rate(r[rule] for r in sel if r["lift"] == 0),
            "right_winner": rate(r[rule] for r in sel if r["lift"] > 0)} for rule in rules}
        for split in SPLITS:
            for lift in (0.0,) + LIFTS:
                cell = [r for r in sel if r["split"] == split and r["lift"] == lift]
                by_cell[f"{size} {split} {'A/A' if lift == 0 else f'+{lift * 100:.0f}'}"] = {
                    "experiments": len(cell), **{rule: rate(r[rule] for r in cell)
                                                 for rule in rules}}
        f = by_size[str(size)]
        print(f"{size:>6} signals: right winners " + "  ".join(
            f"{rule} {f[rule]['right_winner']:.1%}" for rule in rules) + " | false winners "
            + "  ".join(f"{rule} {f[rule]['false_winner']:.1%}" for rule in rules), file=err)

    checks_out = {}
    for name in ("three_aa", "three_lift_8", "veto_slow_p95", "srm_84_16"):
        sel = [r for r in check_rows if r["name"] == name]
        truth = sel[0]["truth"]
        checks_out[name] = {"experiments": len(sel),
                            "named_a_winner": rate(r["winner"] is not None for r in sel)}
        if truth:
            checks_out[name]["right_winner"] = rate(r["winner"] == truth for r in sel)

    sizes = [str(s) for s in SIZES]
    worst_false = max(by_size[s][rule]["false_winner"] for s in sizes
                      for rule in ("ours", "ours_final"))
    goals = {
        "false_winners": {"target": "<= 5% under A/A at every size, both modes",
                          "worst": worst_false, "met": worst_false <= 0.05},
        "final_near_z_test": {
            "target": "ours_final right winners >= 90% of the z-test's at every size",
            "ratios": {s: round(by_size[s]["ours_final"]["right_winner"]
                                / by_size[s]["z_test"]["right_winner"], 3)
                       if by_size[s]["z_test"]["right_winner"] else None for s in sizes}},
    }
    goals["final_near_z_test"]["met"] = all(
        r is None or r >= 0.9 for r in goals["final_near_z_test"]["ratios"].values())
    if "gbstats_sequential" in rules:
        margins = {s: round(by_size[s]["ours"]["right_winner"]
                            - by_size[s]["gbstats_sequential"]["right_winner"], 4)
                   for s in sizes}
        goals["above_gbstats_sequential"] = {
            "target": "ours right winners above gbstats' sequential test at every size",
            "margins": margins, "met": all(m > 0 for m in margins.values())}
    else:
        goals["above_gbstats_sequential"] = {"met": None, "skipped": gb["skipped"]}

    result = {
        "seed": args.seed, "scale": args.scale, "control_win_rate": BASE,
        "sizes": list(SIZES), "splits": list(SPLITS), "lifts_points": [x * 100 for x in LIFTS],
        "experiments": len(rows), "gbstats": gb,
        "rules": {
            "ours": "abtest.analyze(): always-valid one-sided mixture SPRT, tau = 6 points, "
                    "alpha 0.025, read after every resolved signal",
            "ours_final": "abtest.analyze(final=True): one-sided pooled z-test at the end, "
                          "alpha 0.025",
            "gbstats_sequential": f"gbstats SequentialTwoSidedTTest, defaults, lower bound > 0 "
                                  f"at any of {GB_LOOKS} looks",
            "gbstats_fixed": "gbstats TwoSidedTTest, defaults, lower bound > 0 at the end",
            "z_test": "pooled two-proportion z >= 1.96 at the end"},
        "by_size": by_size, "by_cell": by_cell, "checks": checks_out, "goals": goals,
        "runtime_seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(result, sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")

    def fig(rule, what="right_winner"):
        if rule not in rules:
            return "skipped"
        return "/".join(f"{by_size[s][rule][what]:.0%}" for s in sizes)

    print(f"SUMMARY right winners at {'/'.join(sizes)} signals: ours {fig('ours')}, "
          f"gbstats sequential {fig('gbstats_sequential')}, ours --final {fig('ours_final')}, "
          f"z-test {fig('z_test')}, gbstats fixed {fig('gbstats_fixed')}; false winners (A/A) "
          f"ours {fig('ours', 'false_winner')}, --final {fig('ours_final', 'false_winner')}; "
          f"3 variants +8 {checks_out['three_lift_8']['right_winner']:.0%}, slow winner vetoed "
          f"{1 - checks_out['veto_slow_p95']['named_a_winner']:.0%}, SRM blocked "
          f"{1 - checks_out['srm_84_16']['named_a_winner']:.0%}; goals met "
          f"{sum(g['met'] is True for g in goals.values())}/{len(goals)}; "
          f"{result['runtime_seconds']} s", file=err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
