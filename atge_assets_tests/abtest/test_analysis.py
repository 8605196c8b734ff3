"""The analysis's decisions: winner, A/A, collecting, SRM, guardrails, Holm, peeking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atge_assets.abtest.analysis import analyze
from atge_assets.abtest.config import (
    ExperimentConfig,
    default_config,
)
from atge_assets.abtest.intake import (
    Results,
)
from atge_assets.abtest.simulate import simulate_results
from atge_assets_tests.abtest.helpers import HIGH, MEDIUM, three_way, variant
from atge_assets_tests.conftest import plain_json


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
    assert result["method"]["horizon_reached"] and "by the planned" in result["decision_reason"]
    assert result["tests"][0]["sequential"]["result"] is None
    assert not result["srm"]["alarm"]


def test_collecting_until_each_arm_has_the_minimum_then_an_early_winner():
    config = default_config()
    rows = simulate_results(config, 60, {HIGH: 0.3, MEDIUM: 0.9}, seed=13, error_rate=0.0)
    result = analyze(rows, config)
    assert result["winner"] is None and result["status"] == "collecting"
    assert "needs 30 resolved signals in each arm (gpt51-medium short)" in \
        result["decision_reason"]
    # A huge lift wins long before any planned horizon: no look has to be reached.
    rows = simulate_results(config, 400, {HIGH: 0.3, MEDIUM: 0.9}, seed=13, error_rate=0.0)
    result = analyze(rows, config)
    assert result["winner"] == MEDIUM and result["method"]["planned_signals"] > 3000
    seq = result["tests"][0]["sequential"]
    assert seq["at"]["n_variant"] == 30 and seq["at_signals"] < 200
    assert "valid at any sample size" in result["decision_reason"]
    strict = ExperimentConfig.from_dict({**config.to_dict(), "plan": {
        "min_signals_per_variant": 200}})
    result = analyze(rows, strict)
    assert result["status"] == "collecting" and "needs 200 resolved signals" in \
        result["decision_reason"]


def test_final_decides_at_a_fixed_horizon_where_the_sequential_test_still_collects():
    config = default_config()
    rows = simulate_results(config, 2000, {HIGH: 0.55, MEDIUM: 0.61}, seed=20, error_rate=0.0)
    running = analyze(rows, config)
    assert running["status"] == "collecting" and not running["final"]
    assert running["mode"] == "sequential"
    over = analyze(rows, config, final=True)
    assert over["status"] == "winner" and over["winner"] == MEDIUM and over["final"]
    assert over["mode"] == "final" and "fixed-horizon z=" in over["decision_reason"]
    fixed = over["tests"][0]["fixed_horizon"]
    assert fixed["p_value"] <= 0.025 and fixed["z"] == over["tests"][0]["win_rate"]["z"]
    # Both views and GrowthBook's Bayesian one are reported either way.
    bayes = running["tests"][0]["bayesian"]
    assert 0.95 < bayes["chance_to_win"] < 1
    assert bayes["expected_loss_variant"] < bayes["expected_loss_control"]
    aa = simulate_results(config, 2000, 0.55, seed=21)
    assert analyze(aa, config, final=True)["status"] == "no_winner"


def test_no_winner_once_the_interval_rules_out_the_lift_worth_having():
    config = ExperimentConfig.from_dict({**default_config().to_dict(),
                                         "plan": {"planned_signals": 100_000}})
    result = analyze(simulate_results(config, 30_000, 0.55, seed=3), config)
    assert result["status"] == "no_winner" and result["final"]
    assert "rules out a lift of +6.0 points" in result["decision_reason"]
    low, high = result["tests"][0]["sequential"]["confidence_sequence"]
    assert low < 0 < high < 0.06


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
    assert seq["c"]["p_value_always_valid"] <= 0.0125 < seq["b"]["p_value_always_valid"]
    assert result["method"]["multiple_comparisons"] == "Holm"


def test_decisions_do_not_depend_on_when_the_analysis_runs():
    config = default_config()
    rows = simulate_results(config, 6000, {HIGH: 0.55, MEDIUM: 0.61}, seed=18)
    res = Results(rows)
    answers = [analyze(res.head(n), config) for n in (1500, 2500, 4000, 6000)]
    decided = [a for a in answers if a["winner"]]
    assert decided and not answers[0]["winner"], "a +6 point lift: found, but not at once"
    first = decided[0]["tests"][0]["sequential"]
    for later in decided[1:]:  # the path up to the crossing does not change with more data
        seq = later["tests"][0]["sequential"]
        assert (seq["at_signals"], seq["at"]) == (first["at_signals"], first["at"])
    assert first["at_signals"] > answers[0]["method"]["resolved_signals"]
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
