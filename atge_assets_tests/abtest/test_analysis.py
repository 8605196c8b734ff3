"""A/B tests of model variants: GrowthBook-compatible assignment, config validation, results
intake, the analysis's decisions (winner, A/A, SRM, guardrails, Holm, peeking), the CLI, the store.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from atge_assets.abtest import stats as st
from atge_assets.abtest.analysis import analyze, planned_horizon
from atge_assets.abtest.assignment import (
    assign,
    bucket,
    bucket_ranges,
    choose_variation,
    gb_hash,
)
from atge_assets.abtest.cli import cli_assign, cli_main
from atge_assets.abtest.config import (
    DEFAULT_EXPERIMENT,
    ConfigError,
    ExperimentConfig,
    default_config,
)
from atge_assets.abtest.intake import (
    Results,
    ResultsError,
    read_results_csv,
    results_from_store,
    write_results_csv,
)
from atge_assets.abtest.simulate import simulate_results
from atge_assets_tests.conftest import plain_json

ROOT = Path(__file__).resolve().parents[2]
HIGH, MEDIUM = "gpt51-high", "gpt51-medium"


def variant(vid: str, pct: float, enabled: bool = True, effort: str = "high") -> dict:
    return {"id": vid, "name": f"Variant {vid}", "model": "gpt-5.1", "reasoning_effort": effort,
            "traffic_percent": pct, "enabled": enabled}


def three_way() -> ExperimentConfig:
    return ExperimentConfig.from_dict({"experiment": "three-way", "control": "a", "variants": [
        variant("a", 60), variant("b", 20, effort="medium"), variant("c", 20, effort="low")]})


# --- GrowthBook compatibility ---------------------------------------------------------------------
# From GrowthBook's shared SDK test cases (growthbook/growthbook-python tests/cases.json, spec
# 0.7.1; the same file drives the JS SDK): [seed, value, version, expected].
GB_HASH_CASES = [
    ["", "a", 1, 0.22], ["", "b", 1, 0.077], ["b", "a", 1, 0.946], ["ef", "d", 1, 0.652],
    ["asdf", "8952klfjas09ujk", 1, 0.549], ["", "123", 1, 0.011], ["", '___)((*":&', 1, 0.563],
    ["seed", "a", 2, 0.0505], ["seed", "b", 2, 0.2696], ["foo", "ab", 2, 0.2575],
    ["foo", "def", 2, 0.2019], ["89123klj", "8952klfjas09ujkasdf", 2, 0.124],
    ["90850943850283058242805", "123", 2, 0.7516], ["()**(%$##$%#$#", '___)((*":&', 2, 0.0128],
    ["abc", "def", 99, None],
]
GB_RANGE_CASES = [  # [numVariations, coverage, weights], expected ranges
    ([2, 1, None], [[0, 0.5], [0.5, 1]]),
    ([2, 0.5, None], [[0, 0.25], [0.5, 0.75]]),
    ([2, 0, None], [[0, 0], [0.5, 0.5]]),
    ([4, 1, None], [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]),
    ([2, 1, [0.4, 0.6]], [[0, 0.4], [0.4, 1]]),
    ([3, 1, [0.2, 0.3, 0.5]], [[0, 0.2], [0.2, 0.5], [0.5, 1]]),
    ([3, 0.2, [0.2, 0.3, 0.5]], [[0, 0.04], [0.2, 0.26], [0.5, 0.6]]),
    ([2, -0.2, None], [[0, 0], [0.5, 0.5]]),
    ([2, 1.5, None], [[0, 0.5], [0.5, 1]]),
    ([2, 1, [0.4, 0.1]], [[0, 0.5], [0.5, 1]]),
    ([2, 1, [0.7, 0.6]], [[0, 0.5], [0.5, 1]]),
    ([4, 1, [0.4, 0.4, 0.2]], [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]),
    ([2, 1, [0.4, 0.5999]], [[0, 0.4], [0.4, 0.9999]]),
]
GB_CHOOSE_CASES = [  # n, ranges, expected
    (0.2, [[0, 0.5], [0.5, 1]], 0), (0.6, [[0, 0.5], [0.5, 1]], 1),
    (0, [[0, 0.5], [0.5, 1]], 0), (0.5, [[0, 0.5], [0.5, 1]], 1),
    (0.4, [[0, 0.25], [0.5, 0.75]], -1), (0.25, [[0, 0.25], [0.5, 0.75]], -1),
    (0.5, [[0, 0.25], [0.5, 0.75]], 1), (0.5, [[0, 0.5], [0.5, 0.5], [0.5, 1]], 2),
]


@pytest.mark.parametrize("seed,value,version,expected", GB_HASH_CASES)
def test_hash_matches_growthbook_vectors(seed, value, version, expected):
    assert gb_hash(seed, value, version) == expected


@pytest.mark.parametrize("args,expected", GB_RANGE_CASES)
def test_bucket_ranges_match_growthbook_vectors(args, expected):
    got = bucket_ranges(*args)
    assert len(got) == len(expected)
    for (lo, hi), (elo, ehi) in zip(got, expected):
        assert lo == pytest.approx(elo, abs=1e-12) and hi == pytest.approx(ehi, abs=1e-12)


@pytest.mark.parametrize("n,ranges,expected", GB_CHOOSE_CASES)
def test_choose_variation_matches_growthbook_vectors(n, ranges, expected):
    assert choose_variation(n, [tuple(r) for r in ranges]) == expected


def test_assign_matches_growthbook_run_case():
    # cases.json run "Uses seed with default weights/coverage": seed "foo", hashVersion 2, id "1"
    # gets variation 1 of two equal ones.
    config = [variant("a", 50), variant("b", 50)]
    assert assign("1", "foo", config) == "b"


def test_assignments_are_stable_across_releases():
    # Golden values: if these change, every running experiment reshuffles its users.
    config = default_config()
    golden = {"user-1": (0.5029, HIGH), "user-2": (0.9559, MEDIUM), "user-3": (0.6682, HIGH),
              "alice@example.com": (0.8792, MEDIUM), "42": (0.3048, HIGH), "Zoë": (0.1342, HIGH),
              "🚀-trader": (0.1953, HIGH)}
    for user, (expected, vid) in golden.items():
        assert bucket(user, config.experiment) == expected
        assert assign(user, config.experiment, config) == vid
    assert assign(42, config.experiment, config) == assign("42", config.experiment, config)


def test_assignments_equal_the_growthbook_sdk():
    gb = pytest.importorskip("growthbook")  # test-only dependency
    config = ExperimentConfig.from_dict({"experiment": "exp-3way", "variants": [
        variant("a", 14.3), variant("off", 30, enabled=False), variant("b", 28.6),
        variant("c", 57.1)]})
    # Ids hashed exactly onto a range boundary are where a one-ulp weight difference would show.
    edges = {0.143, 0.429}
    users = [f"u{i}" for i in range(4000)] + ["Zoë", "🚀-trader", "ユーザー", "o'brien@x.io"]
    users += [u for u in (f"edge{i}" for i in range(60000))
              if bucket(u, config.experiment) in edges][:6]
    assert sum(bucket(u, config.experiment) in edges for u in users) >= 2
    experiment = gb.Experiment(key=config.experiment, variations=list(config.ids),
                               weights=[v.weight for v in config.variants], hashVersion=2)
    for user in users:
        sdk = gb.GrowthBook(attributes={"id": user}).run(experiment)
        assert sdk.inExperiment and sdk.value == assign(user, config.experiment, config), user


def test_traffic_split_over_100k_users():
    config = default_config()
    picks = [assign(f"user-{i}", config.experiment, config) for i in range(100_000)]
    share = picks.count(MEDIUM) / len(picks)
    assert abs(share - 0.20) < 0.005  # 4 standard errors
    three = three_way()
    picks = [assign(f"user-{i}", three.experiment, three) for i in range(30_000)]
    for vid, pct in (("a", 0.6), ("b", 0.2), ("c", 0.2)):
        assert abs(picks.count(vid) / len(picks) - pct) < 0.01


def test_assign_rejects_empty_ids():
    with pytest.raises(ValueError, match="empty"):
        assign("", "exp", default_config())
    with pytest.raises(ValueError, match="experiment key"):
        assign("u1", "", default_config())


# --- configuration --------------------------------------------------------------------------------
def test_default_config_is_the_issue_example():
    config = default_config()
    assert config.control == HIGH
    assert [(v.name, v.reasoning_effort, v.traffic_percent) for v in config.variants] == [
        ("GPT-5.1 high reasoning", "high", 80.0), ("GPT-5.1 medium reasoning", "medium", 20.0)]


def test_config_errors_name_every_problem():
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict({"variants": [
            variant("a", 70), variant("a", 20), {**variant("c", 5), "reasoning_effort": "hihg"},
            {**variant("d", 5), "traffic": 5}]})
    text = str(err.value)
    assert "duplicate id 'a' (also variants[0])" in text
    assert "reasoning_effort 'hihg' is not one of" in text
    assert "unknown field 'traffic'" in text
    assert len(err.value.problems) == 3


def test_config_percentages_must_sum_to_100():
    with pytest.raises(ConfigError, match=r"sums to 90 \(a 70 \+ b 20\), must be 100"):
        ExperimentConfig.from_dict({"variants": [variant("a", 70), variant("b", 20)]})
    # Disabled variants do not count, and decimal shares add up exactly.
    config = ExperimentConfig.from_dict({"variants": [
        variant("a", 33.3), variant("b", 33.3), variant("c", 33.4), variant("d", 50, False)]})
    assert [v.weight for v in config.variants] == [0.333, 0.333, 0.334, 0.0]


@pytest.mark.parametrize("data,message", [
    ({"variants": []}, "variants must be a non-empty list"),
    ({"variants": [variant("a", 100), variant("b", 0)]}, "enabled with traffic_percent 0"),
    ({"variants": [variant("a", "80%"), variant("b", 20)]}, "traffic_percent must be a number"),
    ({"variants": [variant("a", 100), variant("b", 0, False)], "control": "b"},
     "control 'b' is disabled"),
    ({"variants": [variant("a", 100)], "control": "z"}, "control 'z' is not one of"),
    ({"variants": [variant("a", 100)], "plan": {"looks": 2.5}}, "plan.looks must be a whole"),
    ({"variants": [variant("a", 100)], "plan": {"alpha": 0.7}}, "plan.alpha must be in"),
    ({"variants": [variant("a", 100)], "guardrails": {"max_p95": 1}}, "unknown field 'max_p95'"),
    ({"variants": [variant("a", 100)], "colour": 1}, "unknown field 'colour'"),
    ({"variants": [{**variant("a", 100), "enabled": "yes"}]}, "enabled must be true or false"),
])
def test_config_rejects(data, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_dict(data)


# --- results intake -------------------------------------------------------------------------------
CSV_HEADER = ("experiment,variant_id,signal_id,analysis_time,confidence,outcome,profit_loss,"
              "timestamp\n")


def test_csv_bad_rows_are_reported_with_line_numbers_and_kept_out():
    text = CSV_HEADER + (
        ",gpt51-high,s1,12.5,0.8,win,120.5,1767225600\n"                    # 2 ok
        ",gpt51-medium,s2,9.0,0.7,loss,-80,2026-01-01T00:05:00Z\n"          # 3 ok (ISO)
        ",gpt51-low,s3,9.0,0.7,loss,-80,1767225700\n"                       # 4 unknown variant
        ",gpt51-high,s4,abc,0.7,win,10,1767225800\n"                        # 5 bad time
        ",gpt51-high,s5,10,85,win,10,1767225900\n"                          # 6 confidence %
        ",gpt51-high,s6,10,0.5,maybe,10,1767226000\n"                       # 7 bad outcome
        ",gpt51-high,s7,10,0.5,win,,1767226100\n"                           # 8 no P/L
        ",gpt51-high,s8,10,0.5,win,5,1767226100000\n"                       # 9 milliseconds
        ",gpt51-high,s9,10,0.5\n"                                           # 10 short row
        "\n"                                                                # 11 blank: skipped
        ",gpt51-high,s1,11,0.6,loss,-5,1767226200\n"                        # 12 duplicate
        ",gpt51-medium,s10,,,error,,1767226300\n"                           # 13 ok (error)
        ",gpt51-medium,s11,8,0.6,pending,,1767226400\n"                     # 14 superseded
        ",gpt51-medium,s11,8,0.6,win,50,1767226500\n"                       # 15 ok
        "other-exp,whatever,s12,1,1,win,1,1767226600\n"                     # 16 other experiment
        ",gpt51-high,s13,-1,0.5,win,1,nan\n"                                # 17 two problems
    )
    intake = read_results_csv(io.StringIO(text), default_config())
    assert sorted(r["signal_id"] for r in intake.rows) == ["s1", "s10", "s11", "s2"]
    assert [r["outcome"] for r in intake.rows if r["signal_id"] == "s11"] == ["win"]
    assert intake.superseded == 1 and intake.other_experiments == {"other-exp": 1}
    bad = {b.line: b.reason for b in intake.bad}
    assert sorted(bad) == [4, 5, 6, 7, 8, 9, 10, 12, 17]
    assert "unknown variant_id 'gpt51-low'" in bad[4]
    assert "analysis_time 'abc' is not a number" in bad[5]
    assert "a percentage?" in bad[6]
    assert "outcome 'maybe' is not one of win, loss, pending, error" in bad[7]
    assert "profit_loss is missing" in bad[8]
    assert "looks like milliseconds" in bad[9]
    assert "expected 8 fields, got 5" in bad[10]
    assert "duplicate signal_id 's1' (already recorded at line 2)" in bad[12]
    assert "negative" in bad[17] and "timestamp 'nan'" in bad[17]
    # ... and the analysis reports them instead of dropping them silently.
    result = analyze(intake, default_config())
    assert result["bad_row_count"] == 9 and result["bad_rows"][0]["line"] == 4
    assert result["rows_used"] == 4 and plain_json(result)


def test_csv_missing_columns_is_an_error():
    with pytest.raises(ResultsError, match="missing column.*confidence, outcome"):
        read_results_csv(io.StringIO("variant_id,signal_id,analysis_time,profit_loss,"
                                        "timestamp\n"), default_config())
    with pytest.raises(ResultsError, match="empty"):
        read_results_csv(io.StringIO(""), default_config())


def test_csv_round_trip_of_simulated_rows(tmp_path):
    config = default_config()
    rows = simulate_results(config, 300, {HIGH: 0.5, MEDIUM: 0.6}, seed=3, pending_rate=0.1)
    path = tmp_path / "r.csv"
    with open(path, "w", newline="") as f:
        write_results_csv(rows, f)
    intake = read_results_csv(path, config)
    assert not intake.bad and len(intake.rows) == 300
    assert intake.rows[0] == {**rows[0], "experiment": config.experiment}


# --- analysis -------------------------------------------------------------------------------------
def test_winner_on_a_clear_lift():
    config = default_config()
    rows = simulate_results(config, 4000, {HIGH: 0.55, MEDIUM: 0.65}, seed=11)
    result = analyze(rows, config)
    assert result["winner"] == MEDIUM and result["status"] == "winner" and result["final"]
    assert MEDIUM in result["decision_reason"] and "guardrails passed" in result["decision_reason"]
    test = result["tests"][0]
    assert test["sequential"]["result"] == "better"
    assert 0.05 < test["win_rate"]["diff"] < 0.15
    assert test["win_rate"]["ci_low"] > 0 and test["profit_loss"]["diff"] > 0
    fig = result["variants"][MEDIUM]
    assert {"signals", "win_rate", "avg_analysis_time", "avg_confidence",
            "avg_profit_loss"} <= set(fig)
    assert json.loads(json.dumps(result, allow_nan=False)) == result and plain_json(result)


def test_no_winner_on_aa_at_the_horizon():
    config = default_config()
    rows = simulate_results(config, 4000, 0.55, seed=12)
    result = analyze(rows, config)
    assert result["winner"] is None and result["status"] == "no_winner" and result["final"]
    assert result["method"]["horizon_reached"]
    assert result["tests"][0]["sequential"]["result"] is None
    assert not result["srm"]["alarm"]


def test_collecting_before_the_first_look_and_min_sample():
    config = default_config()
    rows = simulate_results(config, 300, {HIGH: 0.3, MEDIUM: 0.9}, seed=13)
    result = analyze(rows, config)
    assert result["winner"] is None and result["status"] == "collecting"
    assert "first look" in result["decision_reason"]
    # A huge effect, but a look with too few signals in an arm cannot decide.
    strict = ExperimentConfig.from_dict({**config.to_dict(), "plan": {
        "planned_signals": 500, "looks": 2, "min_signals_per_variant": 200}})
    result = analyze(rows, strict)
    assert result["status"] == "collecting" and "below 200 resolved signals" in \
        result["decision_reason"]


def test_srm_alarm_on_a_skewed_split_blocks_a_winner():
    config = default_config()
    rows = simulate_results(config, 4000, {HIGH: 0.55, MEDIUM: 0.65}, seed=14,
                               traffic={HIGH: 84, MEDIUM: 16})
    result = analyze(rows, config)
    assert result["srm"]["alarm"] and result["srm"]["p_value"] < 0.001
    assert result["winner"] is None and result["status"] == "srm"
    assert "sample ratio mismatch" in result["decision_reason"]


def test_guardrail_veto_slow_p95():
    config = default_config()
    rows = simulate_results(config, 4000, {HIGH: 0.55, MEDIUM: 0.65}, seed=15,
                               analysis_time={HIGH: 20.0, MEDIUM: 32.0})
    result = analyze(rows, config)
    assert result["winner"] is None and result["status"] == "vetoed"
    guard = result["tests"][0]["guardrails"]
    assert guard["veto"] and guard["breached"] == ["analysis_time_p95"]
    assert guard["analysis_time_p95"]["change"] > 0.4
    assert "breached analysis_time_p95" in result["decision_reason"]


def test_guardrail_veto_errors_and_profit_loss():
    config = default_config()
    rows = simulate_results(config, 4000, {HIGH: 0.55, MEDIUM: 0.65}, seed=16,
                               error_rate={HIGH: 0.01, MEDIUM: 0.06},
                               avg_win={HIGH: 100.0, MEDIUM: 40.0})
    result = analyze(rows, config)
    assert result["winner"] is None
    assert result["tests"][0]["guardrails"]["breached"] == ["error_rate", "profit_loss"]


def test_holm_picks_the_real_winner_among_three():
    config = three_way()
    rows = simulate_results(config, 6000, {"a": 0.55, "b": 0.55, "c": 0.66}, seed=17)
    result = analyze(rows, config)
    assert result["winner"] == "c"
    seq = {t["variant"]: t["sequential"] for t in result["tests"]}
    assert seq["c"]["result"] == "better" and seq["b"]["result"] is None
    # c was tested at alpha / 2 first; after rejecting it, b is tested at the full alpha.
    assert seq["c"]["alpha_level"] == pytest.approx(0.0125)
    assert seq["b"]["alpha_level"] == pytest.approx(0.025)


def test_decisions_do_not_depend_on_when_the_analysis_runs():
    config = default_config()
    rows = simulate_results(config, 6000, {HIGH: 0.55, MEDIUM: 0.63}, seed=18)
    res = Results(rows)
    horizon = planned_horizon(config)
    answers = [analyze(res.head(n), config) for n in (2500, 4000, 5000, 6000)]
    decided = [a for a in answers if a["winner"]]
    assert decided, "a +8 point lift should be found by 6000 signals"
    first = decided[0]
    for later in decided[1:]:  # same look, same numbers: the first n signals do not change
        assert later["tests"][0]["sequential"]["at_look"] == first["tests"][0]["sequential"][
            "at_look"]
        assert later["decision_reason"] == first["decision_reason"]
    assert first["method"]["planned_signals"] == horizon
    # Rows arriving in a different order give the same analysis.
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    assert analyze(shuffled, config)["decision_reason"] == answers[-1]["decision_reason"]


def test_empty_and_single_variant_results_are_json_safe():
    config = default_config()
    result = analyze([], config)
    assert result["winner"] is None and result["status"] == "no_data" and plain_json(result)
    solo = ExperimentConfig.from_dict({"variants": [variant("a", 100), variant("b", 0, False)]})
    result = analyze(simulate_results(solo, 50, 0.5, seed=1), solo)
    assert result["status"] == "no_comparison" and plain_json(result)


# --- statistics -----------------------------------------------------------------------------------
def test_obf_boundaries_match_published_values():
    # Lan-DeMets O'Brien-Fleming spending, one-sided 0.025, equally spaced looks (gsDesign sfLDOF).
    assert st.obf_bounds(0.025, 5) == pytest.approx((4.8769, 3.3569, 2.6803, 2.2898, 2.0310),
                                                    abs=2e-4)
    assert st.obf_bounds(0.025, 4) == pytest.approx((4.3326, 2.9631, 2.3590, 2.0141), abs=2e-4)
    assert st.crossing_probability(st.obf_bounds(0.025, 5), 0.0) == pytest.approx(0.025, abs=1e-5)


def test_intervals():
    lo, hi = st.wilson(0, 10)
    assert lo == 0 and 0.25 < hi < 0.35  # where the Wald interval collapses to [0, 0]
    # Newcombe (1998) table II example: 56/70 vs 48/80, difference 0.2, CI 0.0524 to 0.3339.
    lo, hi = st.newcombe_diff(48, 80, 56, 70)
    assert lo == pytest.approx(0.0524, abs=1e-4) and hi == pytest.approx(0.3339, abs=1e-4)
    a, b = np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 8, 10])
    w = st.welch(a, b)
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert w["diff"] == pytest.approx(3.5) and w["df"] == pytest.approx(ref.df)
    assert w["p_value"] == pytest.approx(ref.pvalue) and w["t"] == pytest.approx(ref.statistic)
    assert (w["ci_low"], w["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert w["p_lower"] == pytest.approx(stats.ttest_ind(b, a, equal_var=False,
                                                         alternative="less").pvalue)
    observed, shares = [820, 180], [0.8, 0.2]
    ref = stats.chisquare(observed, [1000 * x for x in shares])
    assert st.srm_chi2(observed, shares)["p_value"] == pytest.approx(ref.pvalue)


# --- CLI and store --------------------------------------------------------------------------------
def test_cli_analyze_json_last_line(tmp_path):
    config = default_config()
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        write_results_csv(simulate_results(config, 4000, {HIGH: 0.55, MEDIUM: 0.65},
                                                 seed=11), f)
        f.write(",gpt51-high,bad1,x,0.5,win,1,1767225600\n")
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["analyze", "--results", str(path), "--json"], out=out, err=err) == 0
    result = json.loads(out.getvalue().splitlines()[-1])
    assert result["winner"] == MEDIUM and result["variants"][MEDIUM]["win_rate"] > 0.6
    assert "line 4002: analysis_time 'x' is not a number" in err.getvalue()
    out = io.StringIO()
    assert cli_main(["analyze", "--results", str(path)], out=out, err=io.StringIO()) == 0
    assert "WINNER gpt51-medium" in out.getvalue()


def test_cli_bad_input_exits_2(tmp_path):
    bad_variants = tmp_path / "v.json"
    bad_variants.write_text(json.dumps({"variants": [variant("a", 70), variant("b", 20)]}))
    results = tmp_path / "r.csv"
    results.write_text("variant_id,signal_id\n")
    for argv, message in (
        (["analyze", "--results", str(tmp_path / "nope.csv")], "cannot read results file"),
        (["analyze", "--results", str(results)], "missing column"),
        (["analyze", "--results", str(results), "--variants", str(bad_variants)], "sums to 90"),
        (["assign", "--experiment", "e", "--user", "u", "--variants", str(bad_variants)],
         "sums to 90"),
        (["assign", "--user", "u"], "--experiment"),
        (["frobnicate"], "invalid choice"),
    ):
        err = io.StringIO()
        assert cli_main(argv, out=io.StringIO(), err=err) == 2, argv
        assert message in err.getvalue(), (argv, err.getvalue())


def test_cli_assign(tmp_path):
    out = io.StringIO()
    assert cli_assign(["--experiment", DEFAULT_EXPERIMENT, "--user", "user-2"], out=out) == 0
    assert out.getvalue().strip() == MEDIUM
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"experiment": "foo", "variants": [variant("a", 50),
                                                                  variant("b", 50)]}))
    out = io.StringIO()
    assert cli_main(["assign", "--experiment", "foo", "--user", "1", "--variants", str(path),
                        "--json"], out=out) == 0
    assert json.loads(out.getvalue())["variant_id"] == "b"
    err = io.StringIO()
    assert cli_main(["assign", "--experiment", "bar", "--user", "1", "--variants", str(path)],
                       out=io.StringIO(), err=err) == 2
    assert "differs" in err.getvalue()


def test_store_round_trip_reports_bad_rows_by_id(store):
    config = default_config()
    rows = simulate_results(config, 200, 0.5, seed=4)
    rows.append({**rows[0], "signal_id": "broken", "confidence": None})
    assert store.record_ab_results(rows) == 201
    store.record_ab_results([{**rows[1], "experiment": "other", "signal_id": "x"}])
    intake = results_from_store(store, config)
    assert len(intake.rows) == 200
    assert [b.line for b in intake.bad] == [201]
    assert "confidence is missing" in intake.bad[0].reason
    assert len(store.ab_results()) == 202
    assert len(store.ab_results(config.experiment, since=rows[100]["timestamp"])) == 100
