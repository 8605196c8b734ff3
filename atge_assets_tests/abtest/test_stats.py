"""The statistics against published values and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from atge_assets.abtest import stats as st


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
