"""`atge abtest`: analyze results, assign users, simulate an experiment (no Dagster import)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Sequence, TextIO

from atge_assets.abtest.analysis import analyze
from atge_assets.abtest.assignment import assign, bucket
from atge_assets.abtest.config import (
    DEFAULT_EXPERIMENT,
    ConfigError,
    ExperimentConfig,
    default_config,
    load_config,
)
from atge_assets.abtest.intake import (
    _MAX_BAD_LISTED,
    ResultsError,
    read_results_csv,
    results_from_store,
    write_results_csv,
)
from atge_assets.abtest.simulate import simulate_results


# -- CLI -------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atge abtest",
                                description="A/B tests of AI model variants")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="analyse results; the last stdout line is JSON with --json")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", metavar="FILE.csv", help="results CSV")
    src.add_argument("--db", metavar="URL", help="history database URL (einstein_ab_test_results)")
    a.add_argument("--variants", metavar="FILE.json", help="variants config with the declared "
                   "split, checked for sample ratio mismatch (default: the variants found in "
                   "the results, split as observed)")
    a.add_argument("--experiment", metavar="KEY", help="experiment key (default: the config's, "
                   "or the only one in the results)")
    a.add_argument("--control", metavar="ID", help="the control variant (default: the config's, "
                   "else the variant named 'control', else the largest arm)")
    a.add_argument("--final", action="store_true", help="the experiment is over: decide with "
                   "one fixed-horizon test on all the data (more power than the sequential "
                   "default, valid only if nobody stopped early on what a look showed)")
    a.add_argument("--json", action="store_true", help="print the analysis as one JSON line")
    s = sub.add_parser("assign", help="which variant a user gets")
    _assign_args(s)
    m = sub.add_parser("simulate", help="write simulated results as CSV (known true win rates)")
    m.add_argument("--variants", metavar="FILE.json")
    m.add_argument("--experiment", metavar="KEY")
    m.add_argument("--signals", type=int, default=4000)
    m.add_argument("--win-rates", required=True, metavar="ID=RATE,...",
                   help="true win rate per enabled variant, e.g. gpt51-high=0.55,gpt51-medium=0.6")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", metavar="FILE.csv", help="default: stdout")
    return p


def _assign_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="KEY")
    p.add_argument("--user", required=True, metavar="ID")
    p.add_argument("--variants", metavar="FILE.json")
    p.add_argument("--json", action="store_true")


def _load(args) -> ExperimentConfig:
    if args.variants:
        return load_config(args.variants, args.experiment)
    return default_config(args.experiment or DEFAULT_EXPERIMENT)


def _run_assign(args, out: TextIO) -> int:
    config = _load(args)
    variant = config.variant(assign(args.user, config.experiment, config))
    if args.json:
        print(json.dumps({"experiment": config.experiment, "user": args.user,
                          "variant_id": variant.id, "bucket": bucket(args.user, config.experiment),
                          "variant": asdict(variant)}), file=out)
    else:
        print(variant.id, file=out)
    return 0


def _run_analyze(args, out: TextIO, err: TextIO) -> int:
    config = load_config(args.variants, args.experiment) if args.variants else None
    pick = {"experiment": args.experiment, "control": args.control}
    if args.results:
        intake = read_results_csv(args.results, config, **pick)
    else:
        from atge_assets.abtest.history import AbtestHistory

        store = AbtestHistory(args.db)
        try:
            intake = results_from_store(store, config, **pick)
        finally:
            store.dispose()
    where = "line" if args.results else "row id"
    for rows, what, fate in ((intake.bad, "bad rows", "row left out"),
                             (intake.notes, "rows with notes", "value ignored, row kept")):
        for b in rows[:_MAX_BAD_LISTED]:
            print(f"atge abtest: {intake.source}: {where} {b.line}: {b.reason} ({fate})",
                  file=err)
        if len(rows) > _MAX_BAD_LISTED:
            print(f"atge abtest: ... and {len(rows) - _MAX_BAD_LISTED} more {what}", file=err)
    if not intake.rows and intake.bad:
        raise ResultsError(f"{intake.source}: none of the {len(intake.bad)} rows is usable")
    if not intake.rows and intake.other_experiments:
        found = ", ".join(f"{k} ({n} rows)" for k, n in intake.other_experiments.items())
        key = config.experiment if config else args.experiment
        raise ResultsError(f"{intake.source}: no rows of experiment {key!r}; "
                           f"found {found}; pass --experiment or --variants")
    result = analyze(intake, final=args.final)
    if args.json:
        print(json.dumps(result, allow_nan=False), file=out)
    else:
        print(format_summary(result), file=out)
    return 0


def _run_simulate(args, out: TextIO) -> int:
    config = _load(args)
    rates = {}
    for part in args.win_rates.split(","):
        vid, _, rate = part.partition("=")
        try:
            rates[vid.strip()] = float(rate)
        except ValueError:
            raise ConfigError([f"--win-rates: {part!r} is not ID=RATE"]) from None
    try:
        rows = simulate_results(config, args.signals, rates, seed=args.seed)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            write_results_csv(rows, f)
    else:
        write_results_csv(rows, out)
    return 0


def format_summary(result: dict) -> str:
    """A human-readable summary of an analysis."""
    lines = [f"experiment {result['experiment']}: {result['status'].upper()}"
             + (f" {result['winner']}" if result["winner"] else ""),
             f"  {result['decision_reason']}", ""]
    if result.get("variants_from") == "results":
        lines.append(f"  variants read off the results (no --variants): control "
                     f"{result['control']}, split as observed, not checked for mismatch")
    if result.get("confidence_scale"):
        lines.append(f"  confidence read as {result['confidence_scale']}"
                     + (" (percent; shown as 0-1)" if result["confidence_scale"] == "0-100"
                        else ""))
    lines += [""
             f"  {'variant':<22}{'signals':>8}{'win rate':>10}{'95% CI':>16}{'avg s':>8}"
             f"{'p95 s':>8}{'conf':>6}{'avg P/L':>10}{'errors':>8}"]

    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    def num(x, f="{:.1f}"):
        return "-" if x is None else f.format(x)

    for vid, f in result["variants"].items():
        ci = f["win_rate_ci"]
        label = vid + (" (control)" if f["control"] else "" if f["enabled"] else " (off)")
        lines.append(f"  {label:<22}{f['signals']:>8}{pct(f['win_rate']):>10}"
                     f"{(pct(ci[0]) + '-' + pct(ci[1])) if ci else '-':>16}"
                     f"{num(f['avg_analysis_time']):>8}{num(f['p95_analysis_time']):>8}"
                     f"{num(f['avg_confidence'], '{:.2f}'):>6}{num(f['avg_profit_loss']):>10}"
                     f"{pct(f['error_rate']):>8}")
    srm = result["srm"]
    lines.append("")
    lines.append("  SRM: " + ("no declared split to check" if srm.get("checked") is False
                               and srm["expected"] is None else
                               "too few signals to check" if srm["p_value"] is None else
                               f"chi-square p={srm['p_value']:.3g}"
                               + (" ALARM" if srm["alarm"] else " ok")))
    for t in result["tests"]:
        w, seq, fixed, bayes = t["win_rate"], t["sequential"], t["fixed_horizon"], t["bayesian"]
        if w["diff"] is not None and w["ci_low"] is not None:
            lines.append(f"  {t['variant']} vs {t['control']}: win rate {w['diff'] * 100:+.1f} "
                         f"points (95% CI {w['ci_low'] * 100:+.1f} to {w['ci_high'] * 100:+.1f})")
        cs = seq["confidence_sequence"]
        lines.append(f"    sequential (always valid): p={seq['p_value_always_valid']:.2g}"
                     + (f", interval {cs[0] * 100:+.1f} to {cs[1] * 100:+.1f} points" if cs
                        else "") + f" -> {seq['result'] or 'no decision'}"
                     + ("  [decides]" if t["decided_by"] == "sequential" else ""))
        lines.append(f"    fixed horizon: z={num(fixed['z'], '{:.2f}')}, one-sided "
                     f"p={fixed['p_value']:.2g} -> {fixed['result'] or 'no decision'}"
                     + ("  [decides]" if t["decided_by"] == "fixed_horizon" else ""))
        if bayes:
            lines.append(f"    Bayesian: chance to win {bayes['chance_to_win']:.1%}, expected "
                         f"loss {bayes['expected_loss_variant'] * 100:.2f} points if chosen, "
                         f"{bayes['expected_loss_control'] * 100:.2f} if control is kept")
        if t["guardrails"]["breached"]:
            lines.append(f"    guardrails breached: {', '.join(t['guardrails']['breached'])}")
    if result.get("bad_row_count"):
        lines.append(f"  {result['bad_row_count']} bad rows left out (see stderr)")
    if result.get("note_count"):
        lines.append(f"  {result['note_count']} rows kept with an unused value ignored "
                     f"(see stderr)")
    return "\n".join(lines)


def cli_assign(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`atge abtest assign --experiment KEY --user ID [--variants FILE.json] [--json]`."""
    return cli_main(["assign", *argv], out=out, err=err)


def cli_main(argv: Sequence[str] | None = None, out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    """`atge abtest analyze|assign|simulate ...` (argv without the leading `abtest`).

    Returns 0 on success, 2 on bad input (arguments, variants file, results) with the reason on
    stderr.
    """
    out, err = out or sys.stdout, err or sys.stderr
    parser = _parser()
    try:
        with _redirect_stderr(err):
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if args.command == "assign":
            return _run_assign(args, out)
        if args.command == "simulate":
            return _run_simulate(args, out)
        return _run_analyze(args, out, err)
    except (ConfigError, ResultsError, ValueError) as exc:
        print(f"atge abtest: {exc}", file=err)
        return 2


class _redirect_stderr:
    """argparse writes usage errors to sys.stderr; send them where the caller asked."""

    def __init__(self, target: TextIO):
        self.target = target

    def __enter__(self):
        self.saved, sys.stderr = sys.stderr, self.target

    def __exit__(self, *exc):
        sys.stderr = self.saved
        return False


if __name__ == "__main__":
    raise SystemExit(cli_main())
