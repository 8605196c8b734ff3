"""The statistics behind `abtest`: interval estimates, Welch, SRM and a group-sequential design.

Numpy and scipy.special only (the ufuncs are microseconds a call, which the benchmark's tens of
thousands of analyses need). Nothing here knows about variants, rows or files.

The sequential design, in one paragraph. The experiment plans a horizon of N resolved signals and
K looks at N/K, 2N/K, ..., N. Looks are defined by counts of data, not by when someone runs the
analysis: whatever the schedule, the analysis re-evaluates every look that the data has reached,
each on the prefix of the data (in time order) that look covers. So the answer depends on the data
only, running the asset hourly or weekly gives the same decisions, and peeking is free. At look k
the z-statistic is compared with a boundary from Lan-DeMets alpha spending with the O'Brien-Fleming
shape: very strict early (z >= 4.88 at the first of five looks), close to the fixed-sample 1.96
at the last (2.03), so the design needs ~3% more signals than a fixed horizon and stops early on
big effects.
Boundaries come from the usual recursive numerical integration (Jennison & Turnbull, "Group
Sequential Methods", ch. 19), deterministic and cached.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import special  # scipy.optimize would add half a second to every CLI start

_GRID = 601  # points per look of the numerical integration: boundaries right to ~1e-5


def norm_ppf(q: float) -> float:
    return float(special.ndtri(q))


def norm_sf(z: float) -> float:
    return float(special.ndtr(-z))


# -- intervals and tests ---------------------------------------------------------------------------
def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion: sane at 0 and at n, unlike the Wald interval."""
    if n <= 0:
        return None
    z = norm_ppf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff(s_a: int, n_a: int, s_b: int, n_b: int, confidence: float = 0.95
                  ) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for p_b - p_a (his method 10).

    Built from the two Wilson intervals, so it keeps its coverage near 0 and 1 and at a few
    hundred signals, where the Wald interval of a difference is too narrow.
    """
    wa, wb = wilson(s_a, n_a, confidence), wilson(s_b, n_b, confidence)
    if wa is None or wb is None:
        return None
    pa, pb = s_a / n_a, s_b / n_b
    d = pb - pa
    return (d - math.sqrt((pb - wb[0]) ** 2 + (wa[1] - pa) ** 2),
            d + math.sqrt((wb[1] - pb) ** 2 + (pa - wa[0]) ** 2))


def pooled_z(s_a: int, n_a: int, s_b: int, n_b: int) -> float | None:
    """Two-proportion z for p_b - p_a with the pooled variance (the null's own variance)."""
    if n_a <= 0 or n_b <= 0:
        return None
    p = (s_a + s_b) / (n_a + n_b)
    var = p * (1 - p) * (1 / n_a + 1 / n_b)
    if var <= 0:  # everything won or everything lost: no evidence either way
        return 0.0
    return (s_b / n_b - s_a / n_a) / math.sqrt(var)


def welch(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict | None:
    """Welch's t for mean(b) - mean(a): difference, CI, two-sided p, degrees of freedom, and the
    one-sided p_lower that b's mean is below a's.

    With hundreds of signals a side the means are close to normal even for skewed profit/loss,
    and unequal variances (a 20% arm against an 80% one) are exactly what Welch is for.
    """
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    ma, mb = float(np.mean(a)), float(np.mean(b))
    va, vb = float(np.var(a, ddof=1)) / na, float(np.var(b, ddof=1)) / nb
    diff = mb - ma
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "ci_low": diff, "ci_high": diff, "p_value": 1.0 if diff == 0 else 0.0,
                "p_lower": 0.0 if diff < 0 else 1.0, "t": None, "df": None}
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    t = diff / se
    q = float(special.stdtrit(df, 0.5 + confidence / 2))
    return {"diff": diff, "ci_low": diff - q * se, "ci_high": diff + q * se,
            "p_value": float(2 * special.stdtr(df, -abs(t))),
            "p_lower": float(special.stdtr(df, t)), "t": t, "df": df}


def srm_chi2(observed: list[int], shares: list[float]) -> dict:
    """Chi-square goodness of fit of the signal counts against the configured traffic shares."""
    n = sum(observed)
    expected = [n * s for s in shares]
    if len(observed) < 2 or min(expected, default=0) < 5:
        return {"chi2": None, "df": len(observed) - 1, "p_value": None}
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    df = len(observed) - 1
    return {"chi2": chi2, "df": df, "p_value": float(special.chdtrc(df, chi2))}


# -- group-sequential design -----------------------------------------------------------------------
def obf_spending(t: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type spending: one-sided alpha spent by information fraction t."""
    if t <= 0:
        return 0.0
    return min(alpha, 2 * norm_sf(norm_ppf(1 - alpha / 2) / math.sqrt(t)))


def _grid(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Points and trapezoid weights on [lo, hi]."""
    x = np.linspace(lo, hi, _GRID)
    w = np.full(_GRID, (hi - lo) / (_GRID - 1))
    w[0] = w[-1] = w[0] / 2
    return x, w


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


class _Walk:
    """The sub-density of W(t) = Z(t) * sqrt(t) on the region not yet stopped, look by look.

    W has independent increments with mean drift * dt and variance dt (drift = E[Z at t=1]); the
    density on the continuation region W < c is carried from look to look on a grid.
    """

    def __init__(self, drift: float):
        self.drift = drift
        self.t = 0.0
        self.x: np.ndarray | None = None
        self.mass: np.ndarray | None = None  # density times trapezoid weight at each grid point

    def cross(self, t: float, c: float) -> float:
        """P(not stopped so far and W(t) >= c)."""
        dt = t - self.t
        mean = self.drift * dt
        if self.x is None:
            return norm_sf((c - mean) / math.sqrt(dt))
        return float(np.sum(self.mass * special.ndtr((self.x + mean - c) / math.sqrt(dt))))

    def advance(self, t: float, c: float) -> None:
        """Move to look time t, keeping only the paths that stayed below c."""
        dt, sd = t - self.t, math.sqrt(t - self.t)
        lo = self.drift * t - 9 * math.sqrt(t)
        x, w = _grid(lo, max(c, lo + 1e-9))
        if self.x is None:
            dens = _phi((x - self.drift * t) / sd) / sd
        else:
            dens = (_phi((x[:, None] - self.x[None, :] - self.drift * dt) / sd) / sd) @ self.mass
        self.x, self.mass, self.t = x, dens * w, t


def _bisect(f, lo: float, hi: float, tol: float) -> float:
    """Root of f on [lo, hi] (f changes sign there); robust to the 1e-12 tails of early looks."""
    f_lo = f(lo)
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        if (f_mid > 0) == (f_lo > 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _illinois(f, lo: float, hi: float, ftol: float) -> float:
    """Root of a smooth monotone f on [lo, hi]: regula falsi, Illinois variant.

    A handful of evaluations where bisection needs twenty, which matters when one evaluation
    integrates over every look.
    """
    f_lo, f_hi = f(lo), f(hi)
    side, x = 0, lo
    for _ in range(100):
        x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        f_x = f(x)
        if abs(f_x) < ftol:
            break
        if (f_x > 0) == (f_hi > 0):
            hi, f_hi = x, f_x
            if side == 1:
                f_lo /= 2
            side = 1
        else:
            lo, f_lo = x, f_x
            if side == -1:
                f_hi /= 2
            side = -1
    return x


def _fractions(looks: int) -> tuple[float, ...]:
    return tuple((k + 1) / looks for k in range(looks))


@lru_cache(maxsize=256)
def obf_bounds(alpha: float, looks: int) -> tuple[float, ...]:
    """Upper z boundaries for `looks` equally spaced looks, one-sided level alpha."""
    if looks < 1:
        raise ValueError("looks must be >= 1")
    walk = _Walk(0.0)
    bounds: list[float] = []
    spent = 0.0
    for t in _fractions(looks):
        target = obf_spending(t, alpha) - spent
        c = _bisect(lambda c: walk.cross(t, c) - target, -1.0, 15.0, 1e-9)
        bounds.append(c / math.sqrt(t))
        walk.advance(t, c)
        spent += target
    return tuple(bounds)


def crossing_probability(bounds: tuple[float, ...], drift: float) -> float:
    """P(Z crosses the upper boundary at some look) when E[Z at the horizon] is `drift`."""
    walk = _Walk(drift)
    total = 0.0
    for b, t in zip(bounds, _fractions(len(bounds))):
        c = b * math.sqrt(t)
        total += walk.cross(t, c)
        walk.advance(t, c)
    return total


@lru_cache(maxsize=256)
def obf_drift(alpha: float, looks: int, power: float) -> float:
    """The drift (expected z at the full horizon) the design needs for the given power."""
    bounds = obf_bounds(alpha, looks)
    # A fixed sample needs z_alpha + z_power; spending alpha over looks never costs 30% more.
    fixed = norm_ppf(1 - alpha) + norm_ppf(power)
    return _illinois(lambda d: crossing_probability(bounds, d) - power, fixed, 1.3 * fixed, 1e-7)


def planned_signals(p_control: float, lift: float, share_control: float, share_variant: float,
                    alpha: float, power: float, looks: int) -> int:
    """Resolved signals (all variants together) for `power` to detect `lift` in win rate.

    The shares are of all enabled traffic, so the count is for the whole experiment.
    """
    p_var = p_control + lift
    unit_var = p_control * (1 - p_control) / share_control + p_var * (1 - p_var) / share_variant
    drift = obf_drift(alpha, looks, power)
    return int(math.ceil(drift * drift * unit_var / (lift * lift)))
