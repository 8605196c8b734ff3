"""benchmarks/judge_bound.py, small: the oracle's figures are there and its SPRT hits the error
rates it was tuned to on its own simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "judge_bound.py"


@pytest.fixture(scope="module")
def run():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reps", "1500", "--judge-reps", "8",
                           "--seed", "7"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr.strip().splitlines()


def test_the_figures_are_reported(run):
    result, err = run
    assert err[-1].startswith("SUMMARY oracle SPRT") and "our judge x" in err[-1]
    changes = [f"{c:+.0%}" for c in result["selection"]["true_change"]]
    for name in ("goals", "goals_every_noise", "judge_errors"):
        o = result["oracle"][name]
        assert list(o["by_change"]) == changes and list(o["by_noise"]) == ["5%", "10%", "20%"]
        # The first look is always taken and the cap is 12 rounds.
        assert all(1.0 <= v <= 12.0 for v in o["by_change"].values())
        assert 1.0 <= o["samples_used_floor"] <= o["samples_used"]
        # Wald's approximation drops the overshoot, so it is a little below the simulation.
        assert o["samples_used"] * 0.9 <= o["samples_used_wald"] <= o["samples_used"] + 0.01
        assert o["held"] < 0.01
    assert list(result["judge"]["by_change"]) == changes and result["judge"]["samples_used"] >= 1
    assert result["reachable_lognormal"] == (result["oracle"]["goals"]["samples_used"] <= 1.4)


def test_the_oracle_meets_the_error_rates_it_was_tuned_to(run):
    oracle = run[0]["oracle"]
    goals, every, at_judge = oracle["goals"], oracle["goals_every_noise"], oracle["judge_errors"]
    assert goals["false_rollback"] == pytest.approx(0.005, abs=5e-4)
    assert goals["detect_15"] == pytest.approx(0.95, abs=3e-3)
    assert every["false_rollback_by_noise"]["20%"] == pytest.approx(0.005, abs=5e-4)
    assert every["detect_15_by_noise"]["20%"] == pytest.approx(0.95, abs=3e-3)
    assert at_judge["false_rollback"] == pytest.approx(0.0017, abs=3e-4)
    assert at_judge["detect_15"] == pytest.approx(0.98, abs=3e-3)
    # Errors spent where they cost samples: most of the +5% rollbacks are at 20% noise.
    assert goals["rollback_at_5"] > goals["false_rollback"]
    # Stricter errors cost samples.
    assert goals["samples_used"] < every["samples_used"] < at_judge["samples_used"]
