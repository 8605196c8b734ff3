"""The sequential design: the spending function, each look's share, the decisions it allows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atge_assets.deployments import sequential
from atge_assets.deployments.judge import judge


def test_spending_is_hwang_shih_decani():
    # alpha (1 - exp(-gamma t)) / (1 - exp(-gamma)): all of it by t = 1, none at t = 0, more
    # early the larger gamma (-4 is O'Brien-Fleming-like, spending almost nothing early).
    ts = np.linspace(0, 1, 11)
    for gamma in (-4, 1, 2):
        curve = [sequential.spent(t, 0.025, gamma) for t in ts]
        assert curve[0] == 0 and curve[-1] == pytest.approx(0.025)
        assert all(b > a for a, b in zip(curve, curve[1:]))
    assert sequential.spent(0.25, 0.025, -4) < 0.05 * 0.025 < 0.25 * 0.025 < sequential.spent(
        0.25, 0.025, 2)
    assert sequential.spent(0.5, 0.025, 1) == pytest.approx(0.025 * (1 - math.exp(-0.5))
                                                             / (1 - math.exp(-1)))
    assert sequential.spent(0.3, 0.1, 0) == pytest.approx(0.03)  # gamma 0: uniform
    assert sequential.spent(1.7, 0.1) == pytest.approx(0.1)  # past the budget: all spent


def test_default_gamma_is_read_when_called(monkeypatch):
    # benchmarks/judge_accuracy.py --gamma tries another design by setting GAMMA; a default bound
    # at import would silently measure the old one.
    first = sequential.Design(12).alpha_at(1)
    futility = sequential.Design(12).futility_at(1)
    assert sequential.spent(0.5, 0.02) == pytest.approx(sequential.spent(0.5, 0.02, 4.0))
    monkeypatch.setattr(sequential, "GAMMA", 6.0)
    assert sequential.spent(0.5, 0.02) == pytest.approx(sequential.spent(0.5, 0.02, 6.0))
    assert sequential.Design(12).alpha_at(1) > first
    monkeypatch.setattr(sequential, "BETA_GAMMA", 3.0)
    assert sequential.Design(12).futility_at(1) > futility


def test_design_rounds_up_to_whole_looks_and_rejects_nonsense():
    assert sequential.design(20, 160).looks == 8
    assert sequential.design(30, 100).looks == 4  # the last round may be cut short
    d = sequential.design(10, 10)
    assert d.looks == 1 and d.final(1) and d.alpha_at(1) == sequential.ALPHA
    for first, budget in ((0, 10), (20, 10)):
        with pytest.raises(ValueError, match="first"):
            sequential.design(first, budget)
    with pytest.raises(ValueError, match="look"):
        sequential.Design(8).alpha_at(9)


def draw(rng, n, factor=1.0, noise=0.10):
    return list(100 * factor * np.exp(rng.normal(0, noise, n)))


def test_a_clearly_harmless_change_stops_at_the_first_look():
    rng = np.random.default_rng(1)
    decisions = [judge(draw(rng, 20), draw(rng, 20), look=1, looks=8).decision
                 for _ in range(200)]
    # Futility: most identical deployments are kept at once, not measured to the budget.
    assert decisions.count("keep") >= 180 and "rollback" not in decisions


def test_a_large_slowdown_in_two_modes_is_decided_at_the_first_look():
    rng = np.random.default_rng(2)
    for _ in range(50):
        def two_mode(factor):
            x = 100 * factor * np.exp(rng.normal(0, 0.10, 40))
            return list(np.where(rng.random(40) < 0.30, 5 * x, x))
        assert judge(two_mode(1.0), two_mode(1.5), look=1, looks=8).decision == "rollback"


def test_undecided_at_the_last_look_is_held_and_before_it_measured_again():
    rng = np.random.default_rng(3)
    base, cand = draw(rng, 40, noise=0.3), draw(rng, 40, 1.12, noise=0.3)
    assert judge(base, cand, look=1, looks=2).decision == "measure_more"
    held = judge(base, cand, look=2, looks=2)
    assert held.decision == "hold" and held.as_dict()["decision"] == "hold"
    assert held.verdict == "inconclusive" and not held.rollback


def test_exact_levels_spend_exactly_each_increment():
    # Under no change the rank statistic of look k is a normalised sum of k equal increments:
    # simulated, the chance of first crossing each look's level must be that look's increment.
    # Levels equal to the increments (Bonferroni) cross less often: 0.0139 in all, not 0.02.
    increments = tuple(sequential.spent(k / 12, 0.02, 2.0) - sequential.spent((k - 1) / 12, 0.02, 2.0)
                       for k in range(1, 13))
    levels = sequential.crossing_levels(increments)
    assert levels[0] == increments[0] and levels[-1] > 4 * increments[-1]
    rng = np.random.default_rng(4)
    z = np.cumsum(rng.standard_normal((400_000, 12)), axis=1) / np.sqrt(np.arange(1, 13))
    bars = np.array([sequential._NORMAL.inv_cdf(1 - p) for p in levels])
    crossed = z >= bars
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    rates = np.array([(first == k).mean() for k in range(12)])
    assert rates.sum() == pytest.approx(0.02, abs=0.0015)
    assert rates[-4:].sum() == pytest.approx(sum(increments[-4:]), abs=0.0006)
    bonferroni = (z >= np.array([sequential._NORMAL.inv_cdf(1 - p) for p in increments])).any(1)
    assert bonferroni.mean() < 0.016
    assert sequential.Design(12).rollback_level(3) == sequential.crossing_levels(tuple(
        sequential.Design(12).alpha_at(k) for k in range(1, 13)))[2]


def test_one_look_keeps_its_own_budgets():
    assert sequential.budgets(1) == (sequential.ONE_LOOK_ALPHA, sequential.ONE_LOOK_BETA)
    assert sequential.budgets(12) == (sequential.ALPHA, sequential.BETA)
    assert sequential.budgets(12, 0.01, 0.2) == (0.01, 0.2)

