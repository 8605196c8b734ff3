"""Rank statistics for the judge: the Hodges-Lehmann shift with its distribution-free interval
and Mann-Whitney (or van Elteren, within modes) p-values, Fisher's exact test, robust spread.
Numpy and the standard library only."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

NORMAL = NormalDist()


def median(a: np.ndarray) -> float:
    # np.median costs ~40 us of checks per call, more than the whole rank test here.
    a = np.sort(a)
    half = len(a) // 2
    return float(a[half] if len(a) % 2 else 0.5 * (a[half - 1] + a[half]))


def robust_sd(a: np.ndarray) -> float:
    return 1.4826 * median(np.abs(a - median(a)))


def shift(lb: np.ndarray, lc: np.ndarray, confidence: float, cut: float | None = None,
           margin: float = 0.0, detect: float | None = None):
    """Hodges-Lehmann shift of lc over lb with its distribution-free CI, and Mann-Whitney p-values:
    slower by more than `margin`, faster by more than it and, with `detect`, slower by less than
    `detect` (the futility test: small p says the change is smaller than the one to catch).

    All from the pairwise differences: U counts the positive ones, the estimate is their median
    and the CI bounds are order statistics at the Mann-Whitney critical value. Normal approximation
    with tie and continuity corrections; near the tails it overstates p, i.e. errs toward keeping
    a deployment.

    With a `cut` (two modes, see _modes), only pairs within the same mode count, and each mode's
    pairs weigh 1/(its sample count + 1): van Elteren's stratified Mann-Whitney test, and the
    weighted median of the within-mode differences as its shift estimate. A hit compared with a
    miss says nothing about the deployment, only about the cache; with 30% misses such pairs are
    42% of all pairs, and leaving them out is what gives the test its power back.
    """
    groups = [(lb, lc)] if cut is None else [(lb[lb < cut], lc[lc < cut]),
                                             (lb[lb >= cut], lc[lc >= cut])]
    diffs, weights = [], []
    expected = var = 0.0
    correction = 0.0
    for b, c in groups:
        m, n = len(b), len(c)
        if not (m and n):
            continue
        w = 1.0 if cut is None else 1.0 / (m + n + 1)
        diffs.append(np.subtract.outer(c, b).ravel())
        weights.append(np.full(m * n, w))
        expected += w * m * n / 2
        var += w * w * u_variance(b, c)
        correction = max(correction, 0.5 * w)
    d = np.concatenate(diffs)
    if cut is None:  # equal weights, the common case: a plain sort, the weights' sums counted
        d.sort()
        cum = np.arange(1.0, len(d) + 1.0)
    else:
        order = np.argsort(d, kind="stable")
        d = d[order]
        cum = np.cumsum(np.concatenate(weights)[order])
    total_w = float(cum[-1])
    # The weighted median: the first difference whose cumulative weight reaches half the total
    # (the mean of the two middle ones when it lands exactly on a boundary, as an unweighted
    # median does).
    k = int(np.searchsorted(cum, 0.5 * total_w - 1e-12 * total_w))
    estimate = float(d[k])
    if abs(cum[k] - 0.5 * total_w) <= 1e-9 * total_w and k + 1 < len(d):
        estimate = 0.5 * (estimate + float(d[k + 1]))

    if var <= 0:  # every sample on both sides identical
        harmless = None if detect is None else (0.0 if estimate < detect else 1.0)
        return estimate, estimate, estimate, 1.0, 1.0, harmless
    sd = math.sqrt(var)

    def u_above(x: float) -> float:
        """U of the candidate shifted by -x: weight of differences above x, ties count half."""
        below = int(np.searchsorted(d, x, side="left"))
        upto = int(np.searchsorted(d, x, side="right"))
        w_below = float(cum[below - 1]) if below else 0.0
        w_upto = float(cum[upto - 1]) if upto else 0.0
        return (total_w - w_upto) + 0.5 * (w_upto - w_below)

    # Slower by more than `margin` (log scale), and faster by more than it.
    p_slower = upper_tail((u_above(margin) - expected - correction) / sd)
    p_faster = upper_tail((expected - u_above(-margin) - correction) / sd)
    p_harmless = None if detect is None else upper_tail(
        (expected - u_above(detect) - correction) / sd)

    # CI bounds: the differences where the weight below (above) reaches the critical value.
    z = NORMAL.inv_cdf(0.5 + confidence / 2)
    reach = max(expected - z * sd, 0.0)
    lo = min(int(np.searchsorted(cum, reach, side="right")), k)
    hi = max(int(np.searchsorted(cum, total_w - reach, side="left")), k)
    return (estimate, float(d[lo]), float(d[min(hi, len(d) - 1)]), p_slower, p_faster,
            p_harmless)


def u_variance(b: np.ndarray, c: np.ndarray) -> float:
    """Variance of Mann-Whitney's U under no change, corrected for ties."""
    m, n = len(b), len(c)
    total = m + n
    pooled = np.sort(np.concatenate([b, c]))
    ties = 0.0
    if (pooled[1:] == pooled[:-1]).any():  # rare with float latencies, common with whole ms
        _, counts = np.unique(pooled, return_counts=True)
        ties = float(np.sum(counts.astype(float) ** 3 - counts))
    return m * n / 12.0 * ((total + 1) - ties / (total * (total - 1)))


def upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def min_p(m: int, n: int) -> float:
    """Smallest p-value the test can give with these sample sizes (complete separation, no ties)."""
    mn = m * n
    return upper_tail((mn / 2 - 0.5) / math.sqrt(mn * (m + n + 1) / 12))


def fisher_worse(c_fail: int, c_total: int, b_fail: int, b_total: int) -> float:
    """One-sided Fisher exact p: chance of the candidate getting >= c_fail of all the failures.

    Exact integer hypergeometric tail; request counts are small enough that big ints are cheap.
    """
    fails, total = c_fail + b_fail, c_total + b_total
    tail = sum(
        math.comb(fails, x) * math.comb(total - fails, c_total - x)
        for x in range(c_fail, min(fails, c_total) + 1)
    )
    return tail / math.comb(total, c_total)
