"""The sequential design: how many samples a metric may take, when it is looked at, and how much
of the error budget each look spends. Pure arithmetic; the judge applies it to one look.

A deployment is measured in rounds of `first` samples a side, up to a planned `budget`, so it has
`looks = ceil(budget / first)` planned looks. Two error rates are spent over those looks with a
Hwang-Shih-DeCani spending function (gsDesign's `sfHSD`) of the information fraction k / looks:

- alpha, the chance of a rollback when the deployment is at most half the threshold slower (the
  rank test's null); a look may reject at the alpha its spending adds (`alpha_at`).
- beta, the chance of calling a deployment harmless (stopping for futility) when it is in fact
  1.5 x the threshold slower (+15% at 10%), the smallest change the goals promise to catch; a look
  may stop for futility at the beta its spending adds (`futility_at`).

Why this design rather than halving alpha at each look (what the judge did before): halving spends
half the budget on the first look and leaves 0.005/256 for the ninth, so re-measuring adds
samples but hardly any power; a spending function plans the whole budget, so the last look still
has a real share of it, and the futility boundary lets a clearly harmless change stop at the first
look instead of being measured to the cap. Why spend each look's increment as its nominal level
(Bonferroni over the looks) instead of computing exact group-sequential boundaries from the joint
distribution of the looks: the looks' statistics are rank tests on a mode split that may change
between looks, so no canonical joint distribution is exact; the increments are valid whatever the
correlation, and cost little, since the looks are strongly correlated only late, where the
spending is small. gamma > 0 front-loads the spending: most deployments are decided at the first
look (benchmarks/judge_accuracy.py measures the samples used).

At the last planned look, what neither boundary settles is `hold`: a person decides. Before it,
`measure_more`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Total error budget of one metric over all its looks.
ALPHA = 0.02
BETA = 0.05
# HSD's gamma: 1 is close to Pocock (even spending), -4 to O'Brien-Fleming (late); 2 spends a
# fifth of the budget by the first of twelve looks.
GAMMA = 2.0
# The smallest slowdown, as a multiple of the threshold, that must not be called harmless.
DETECT = 1.5

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
        return spent(look / self.looks, self.beta) - spent((look - 1) / self.looks, self.beta)

    def final(self, look: int) -> bool:
        self._check(look)
        return look == self.looks


def design(first: int, budget: int, alpha: float = ALPHA, beta: float = BETA) -> Design:
    """The design of rounds of `first` samples a side up to `budget` samples a side."""
    if first < 1 or budget < first:
        raise ValueError(f"need 1 <= first <= budget, got first={first}, budget={budget}")
    return Design(math.ceil(budget / first), alpha, beta)
