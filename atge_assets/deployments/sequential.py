"""The sequential design: how many samples a metric may take, when it is looked at, and how much
of the error budget each look spends. Pure arithmetic; the judge applies it to one look.

A deployment is measured in rounds of `first` samples a side, up to a planned `budget`, so it has
`looks = ceil(budget / first)` planned looks. Two error rates are spent over those looks with a
Hwang-Shih-DeCani spending function (gsDesign's `sfHSD`) of the information fraction k / looks:

- alpha, the chance of a rollback when the deployment is at most half the threshold slower (the
  rank test's null); a look adds `alpha_at` to what has been spent, and its latency test rejects
  at the level that spends exactly that (`rollback_level`).
- beta, the chance of calling a deployment harmless (stopping for futility) when it is in fact
  1.5 x the threshold slower (+15% at 10%), the smallest change the goals promise to catch; a look
  adds `futility_at`, and its futility test stops at `harmless_level`.

Why this design rather than halving alpha at each look (what the judge did before): halving spends
half the budget on the first look and leaves 0.005/256 for the ninth, so re-measuring adds
samples but hardly any power; a spending function plans the whole budget, so the last look still
has a real share of it, and the futility boundary lets a clearly harmless change stop at the first
look instead of being measured to the cap. The latency tests reject at the exact level that spends
each look's increment (`rollback_level`, `harmless_level`: the looks' rank statistics accumulate
like sums of independent increments); spending each increment as its own level (Bonferroni over
the looks) was the judge's design before, and its cost was not small: a +15% measured to the
budget at 20% noise was held at p ~ 0.001 against a last-look level of 0.00057, where the exact
level is 0.003. The failure and mode tests, whose counts and mode split may change between looks,
still spend their increments as levels. The two budgets have their own gammas: rollbacks are
front-loaded (gamma 4), since spending alpha early costs no detection and the false-rollback goal
is met with room; futility is spread (gamma 1), since futility at an early, noisy look is what
calls a +15% harmless (benchmarks/judge_accuracy.py measures the samples used and the errors).

At the last planned look, what neither boundary settles is `hold`: a person decides. Before it,
`measure_more`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

# Total error budget of one metric over all its looks.
ALPHA = 0.03
BETA = 0.10
# HSD's gamma for alpha: 1 is close to Pocock (even spending), -4 to O'Brien-Fleming (late); 4
# spends 29% of the budget by the first of twelve looks. BETA_GAMMA is futility's: 1 spends 14%.
GAMMA = 4.0
BETA_GAMMA = 1.0
# A comparison judged on its own (one planned look: `atge judge --batch` without a look) keeps
# the budgets it was tuned with; ALPHA and BETA were tuned for the whole sequential procedure,
# whose goals benchmarks/judge_accuracy.py measures.
ONE_LOOK_ALPHA = 0.02
ONE_LOOK_BETA = 0.05
# The smallest slowdown, as a multiple of the threshold, that must not be called harmless.
DETECT = 1.5
# Exact levels for the latency test's looks (see `Design.rollback_level`); False spends each
# look's increment as its level, as before, for benchmarks/judge_accuracy.py --bonferroni.
EXACT = True

ROLLBACK = "rollback"
KEEP = "keep"
MEASURE_MORE = "measure_more"
HOLD = "hold"
DECISIONS = (ROLLBACK, KEEP, MEASURE_MORE, HOLD)


def spent(fraction: float, total: float, gamma: float | None = None) -> float:
    """Error spent by information fraction `fraction` (0..1): Hwang, Shih & DeCani (1990).
    `gamma` defaults to GAMMA as it is when called, so benchmarks/judge_accuracy.py can try
    another."""
    gamma = GAMMA if gamma is None else gamma
    t = min(max(fraction, 0.0), 1.0)
    if gamma == 0:
        return total * t
    return total * (1 - math.exp(-gamma * t)) / (1 - math.exp(-gamma))


@dataclass(frozen=True)
class Design:
    looks: int = 1
    alpha: float = ALPHA
    beta: float = BETA

    def __post_init__(self):
        if isinstance(self.looks, bool) or not isinstance(self.looks, int) or self.looks < 1:
            raise ValueError(f"looks must be 1, 2, ..., got {self.looks!r}")
        if not (0 < self.alpha < 1 and 0 < self.beta < 1):
            raise ValueError("alpha and beta must be in (0, 1)")

    def _check(self, look: int) -> None:
        if isinstance(look, bool) or not isinstance(look, int) or not 1 <= look <= self.looks:
            raise ValueError(f"look must be 1..{self.looks}, got {look!r}")

    def alpha_at(self, look: int) -> float:
        """The alpha look `look` may spend (1 = first)."""
        self._check(look)
        return (spent(look / self.looks, self.alpha)
                - spent((look - 1) / self.looks, self.alpha))

    def futility_at(self, look: int) -> float:
        """The beta look `look` may spend on stopping a deployment as harmless."""
        self._check(look)
        return (spent(look / self.looks, self.beta, BETA_GAMMA)
                - spent((look - 1) / self.looks, self.beta, BETA_GAMMA))

    def rollback_level(self, look: int) -> float:
        """The p-value below which look `look`'s latency test may roll back: the nominal level
        whose chance of being crossed first at this look, by a statistic that accumulates over
        the looks like a sum of independent increments (the rank test on all samples so far, to
        the normal approximation it already uses), is what `alpha_at` spends here."""
        return self._level(look, self.alpha)

    def harmless_level(self, look: int) -> float:
        """The same for the futility test, spending `futility_at`."""
        return self._level(look, self.beta, BETA_GAMMA)

    def _level(self, look: int, total: float, gamma: float | None = None) -> float:
        self._check(look)
        increments = tuple(spent(k / self.looks, total, gamma)
                           - spent((k - 1) / self.looks, total, gamma)
                           for k in range(1, self.looks + 1))
        return crossing_levels(increments)[look - 1] if EXACT else increments[look - 1]

    def final(self, look: int) -> bool:
        self._check(look)
        return look == self.looks


def budgets(looks: int, alpha: float | None = None, beta: float | None = None
            ) -> tuple[float, float]:
    """alpha and beta for `looks` planned looks, where not given: read when called, so
    benchmarks/judge_accuracy.py can try others."""
    one = looks == 1
    return (alpha if alpha is not None else ONE_LOOK_ALPHA if one else ALPHA,
            beta if beta is not None else ONE_LOOK_BETA if one else BETA)


def design(first: int, budget: int, alpha: float = ALPHA, beta: float = BETA) -> Design:
    """The design of rounds of `first` samples a side up to `budget` samples a side."""
    if first < 1 or budget < first:
        raise ValueError(f"need 1 <= first <= budget, got first={first}, budget={budget}")
    return Design(math.ceil(budget / first), alpha, beta)


_NORMAL = NormalDist()


@lru_cache(maxsize=64)
def crossing_levels(increments: tuple[float, ...], step: float = 0.005) -> tuple[float, ...]:
    """One-sided nominal levels p_1..p_K for K equally spaced looks at Z_k = S_k / sqrt(k), S a
    sum of independent standard normal increments, such that the chance of first crossing at
    look k is increments[k-1]: Armitage, McPherson & Rowe's recursion on a grid of S, each
    look's density the previous one's, cut at its boundary, convolved with one increment.

    Why not the increments themselves (a Bonferroni bound, valid whatever the correlation): the
    looks share most of their samples (look 11 and 12 correlate at 0.96), so by the last look
    the increment (0.00057 of 0.02 over 12 looks) is a fifth of the level that spends the same
    error (0.0030), and a +15% measured to the budget at 20% noise ended held at p ~ 0.001. The
    levels are computed under the null each test is about (+5% for rollback, +15% for
    futility) ignoring the other boundary, so the errors are at most the budgets."""
    total = len(increments)
    # Whole numbers of steps, odd lengths: the kernel's centre is the grid's, so "same" keeps
    # the convolved density aligned. S_k stays within 8 standard deviations.
    half = round(8.0 / step)
    x = np.arange(-half, half + 1) * step
    grid = np.arange(-half * math.ceil(math.sqrt(total)), half * math.ceil(math.sqrt(total)) + 1
                     ) * step
    kernel = np.exp(-0.5 * x * x) * step / math.sqrt(2 * math.pi)
    density = np.exp(-0.5 * grid * grid) / math.sqrt(2 * math.pi)
    levels = [increments[0]]  # the first look alone: its level is its increment
    cut = _NORMAL.inv_cdf(1 - increments[0])
    for k, increment in enumerate(increments[1:], 2):
        density = np.convolve(np.where(grid < cut * math.sqrt(k - 1), density, 0.0), kernel,
                              mode="same")
        tail = np.cumsum((density * step)[::-1])[::-1]  # mass at or above each grid point
        i = min(max(int(np.searchsorted(-tail, -increment)), 1), len(grid) - 1)
        above, below = tail[i - 1], tail[i]
        s = grid[i - 1] + step * ((above - increment) / (above - below) if above > below else 1)
        cut = s / math.sqrt(k)
        levels.append(1 - _NORMAL.cdf(cut))
    return tuple(levels)
