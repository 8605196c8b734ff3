"""The statistics behind `abtest`: intervals, Welch, SRM, the always-valid sequential test of the
win rate, the fixed-horizon test, and the Bayesian chance to win.

Numpy and scipy.special only (ufuncs cost microseconds a call, and the benchmark runs tens of
thousands of analyses). Nothing here knows about variants, rows or files.

The sequential test, in one paragraph. It is the mixture sequential probability ratio test
(mSPRT) of Johari, Koomen, Pekelis & Walsh, "Always Valid Inference: Continuous Monitoring of A/B
Tests" (Operations Research 70(3), 2022), the test behind Optimizely's and Statsig's sequential
results; GrowthBook's sequential intervals are the same normal mixture written as a confidence
sequence (Waudby-Smith et al., "Time-uniform central limit theory and asymptotic confidence
sequences", arXiv 2103.06476, eq. 9). With z the difference in win rate over its standard error
and x = tau^2 / se^2 (the information gathered, in units of the mixing prior's variance tau^2),
the likelihood ratio of "the lift is drawn from N(0, tau^2), positive half" against "no lift" is
    Lambda+(z, x) = 2 Phi(z sqrt(x / (1 + x))) (1 + x)^(-1/2) exp(z^2 x / (2 (1 + x))).
Under no lift it is a nonnegative martingale with mean 1, so by Ville's inequality it ever reaches
1/alpha with probability at most alpha: the test may be evaluated after every signal, forever,
and a winner is named wrongly at most alpha of the time. Two choices differ from GrowthBook's
defaults. The mixture is one-sided, since only a winner is acted on, and it is scaled by the
plan's minimum detectable lift (tau, in win-rate points) rather than by a guessed sample size:
the information x then accounts for the split and the win rate, and the test is sharpest where an
experiment of this app can find a lift worth having, a few hundred to ten thousand signals.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special  # scipy.optimize would add half a second to every CLI start


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


# -- always-valid sequential test (mixture SPRT) ---------------------------------------------------
def log_msprt(z, x):
    """log Lambda+ (see the module docstring): the one-sided normal-mixture likelihood ratio for a
    positive difference, given z = diff / se and x = tau^2 / se^2. Works on arrays."""
    z, x = np.asarray(z, float), np.asarray(x, float)
    r = x / (1 + x)
    return (math.log(2) + special.log_ndtr(z * np.sqrt(r)) - 0.5 * np.log1p(x)
            + 0.5 * z * z * r)


def msprt_threshold(x: float, alpha: float) -> float:
    """The z at which Lambda+ reaches 1/alpha after information x: the always-valid bound is
    diff - threshold * se. Bisection: log_msprt rises with z."""
    target = math.log(1 / alpha)
    lo, hi = 0.0, 4.0
    while float(log_msprt(hi, x)) < target:
        hi *= 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(log_msprt(mid, x)) < target:
            lo = mid
        else:
            hi = mid
    return hi


def diff_se(w_c, n_c, w_v, n_v):
    """Standard error of p_v - p_c (unpooled, as GrowthBook and Statsig use). The rates are held
    half a signal off 0 and 1: a small arm that won every time has some variance, not none."""
    n_c, n_v = np.asarray(n_c, float), np.asarray(n_v, float)
    p_c = np.clip(w_c / np.maximum(n_c, 1), 0.5 / np.maximum(n_c, 1), 1 - 0.5 / np.maximum(n_c, 1))
    p_v = np.clip(w_v / np.maximum(n_v, 1), 0.5 / np.maximum(n_v, 1), 1 - 0.5 / np.maximum(n_v, 1))
    return np.sqrt(p_c * (1 - p_c) / np.maximum(n_c, 1) + p_v * (1 - p_v) / np.maximum(n_v, 1))


def sequential_path(win: np.ndarray, is_v: np.ndarray, tau: float, min_n: int) -> dict:
    """The test after every resolved signal of one comparison, in time order.

    `is_v` marks the variant's signals (the rest are control's), `win` the wins.
    Returns running counts, z, and log Lambda for "variant better" and "variant worse" (the
    latter is the same mixture on -z), -inf before both arms hold `min_n` signals.
    """
    n_v = np.cumsum(is_v)
    n_c = np.arange(1, len(is_v) + 1) - n_v
    w_v, w_c = np.cumsum(win & is_v), np.cumsum(win & ~is_v)
    se = diff_se(w_c, n_c, w_v, n_v)
    ok = (n_c >= min_n) & (n_v >= min_n)
    diff = np.where(ok, w_v / np.maximum(n_v, 1) - w_c / np.maximum(n_c, 1), 0.0)
    z = diff / se
    x = tau * tau / (se * se)
    up = np.where(ok, log_msprt(z, x), -np.inf)
    down = np.where(ok, log_msprt(-z, x), -np.inf)
    return {"n_c": n_c, "n_v": n_v, "w_c": w_c, "w_v": w_v, "diff": diff, "se": se, "z": z,
            "x": x, "log_up": up, "log_down": down, "ok": ok}


def always_valid_p(log_lr: np.ndarray) -> float:
    """min(1, 1 / max Lambda so far): valid at whatever time the analysis is read."""
    if not len(log_lr):
        return 1.0
    return float(min(1.0, math.exp(-min(float(np.max(log_lr)), 700.0))))


def first_crossing(log_lr: np.ndarray, alpha: float) -> int | None:
    """Index of the first signal at which Lambda reached 1/alpha, or None."""
    hits = np.flatnonzero(log_lr >= math.log(1 / alpha))
    return int(hits[0]) if len(hits) else None


def holm(p_values: dict[str, float], alpha: float) -> dict[str, float | None]:
    """Holm's step-down procedure: the level each rejected hypothesis was rejected at (None for
    the rest). Valid for always-valid p-values too, as they are valid p-values at any time."""
    out: dict[str, float | None] = {k: None for k in p_values}
    left = len(p_values)
    for k, p in sorted(p_values.items(), key=lambda kv: kv[1]):
        level = alpha / left
        if p > level:
            break
        out[k] = level
        left -= 1
    return out


def fixed_sample_signals(p_control: float, lift: float, share_control: float,
                         share_variant: float, alpha: float, power: float) -> int:
    """Resolved signals (all variants together) a one-sided fixed-horizon z-test needs for
    `power` to find `lift`; the shares are of all enabled traffic. A planning guide only."""
    p_var = p_control + lift
    unit_var = p_control * (1 - p_control) / share_control + p_var * (1 - p_var) / share_variant
    z = norm_ppf(1 - alpha) + norm_ppf(power)
    return math.ceil(z * z * unit_var / (lift * lift))


# -- Bayesian ----------------------------------------------------------------------------------------
def chance_to_win(w_c: int, n_c: int, w_v: int, n_v: int) -> dict:
    """GrowthBook's Bayesian summary of p_v - p_c: uniform Beta(1, 1) priors, the difference of
    the Beta posteriors taken as normal. `expected_loss` is the win-rate points given up on
    average by choosing the variant (and by keeping control), GrowthBook's "risk"."""
    a_c, b_c, a_v, b_v = 1 + w_c, 1 + n_c - w_c, 1 + w_v, 1 + n_v - w_v
    mean = a_v / (a_v + b_v) - a_c / (a_c + b_c)
    var = (a_v * b_v / ((a_v + b_v) ** 2 * (a_v + b_v + 1))
           + a_c * b_c / ((a_c + b_c) ** 2 * (a_c + b_c + 1)))
    sd = math.sqrt(var)
    k = mean / sd
    dens = math.exp(-0.5 * k * k) / math.sqrt(2 * math.pi)
    return {"chance_to_win": float(special.ndtr(k)), "mean": mean, "sd": sd,
            "expected_loss_variant": sd * dens - mean * float(special.ndtr(-k)),
            "expected_loss_control": sd * dens + mean * float(special.ndtr(k)),
            "prior": "uniform Beta(1, 1) per arm"}
