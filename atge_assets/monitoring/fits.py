"""The fits behind the forecaster (see forecast.py for the rule that uses them): Theil-Sen with
Sen's slope interval, the hinge (flat, then a ramp or a level shift, averaged over onsets), the
curve (flat, then accelerating), and robust Holt. Pure numpy; every fit works on values already
scaled by forecast() to a robust level and spread, so nothing here sees 1e10 or 1e-3."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

# The hinge's onsets: this many times from the window's start (a plain line) to HINGE_MIN_RAMP_MIN
# before now; as many level shifts, SHIFT_MARGIN_MIN from either end.
HINGE_ONSETS = 30
# A ramp of fewer minutes, or fewer points, than this has no slope worth extrapolating (and on two
# or three points it would chase the last spike).
HINGE_MIN_RAMP_MIN = 8.0
HINGE_MIN_POINTS = 5
SHIFT_MARGIN_MIN = 4.0
# A past window with fewer points than this says nothing about how steeply the series swings.
MIN_SWING_POINTS = 6
# Prior weights of the hinge's shapes against the line's 1 (a trend begun before the window, or
# none): a ramp from an onset inside the window (all onsets together), and a level shift. Ramps
# fitted to noise that wanders raise false alarms: at even odds, flat series with AR noise and slow
# cycles checked every 2 minutes alarmed 1.6 times as often as under the line-or-Holt forecaster,
# at a half 1.15 times. A shift fits a noisy ramp about as well as a ramp does, and averaging the
# two halves its trend: at a shift as likely as a ramp 0.5% more of the benchmark's ramps went
# uncaught, at a fifth of that 0.1%, while a step a third of the way to the threshold warned 29% of
# the time, not 62% as with no shifts (24% with the line or Holt).
RAMP_PRIOR = 0.5
SHIFT_PRIOR = 0.1
# The hinge's fits: Huber's M-estimator (95% of least squares' efficiency on Gaussian noise, a
# spike's influence bounded), then Tukey's bisquare from there (as efficient, a spike's influence
# nil: a spike on the last point otherwise tilts the short late ramps toward it).
HUBER_C = 1.345
HUBER_ITERATIONS = 5
BISQUARE_C = 4.685
BISQUARE_ITERATIONS = 2
# Errors beyond this many noise sigmas are clipped before they update Holt's state.
HUBER_K = 2.0
HOLT_ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7)
HOLT_BETAS = (0.02, 0.05, 0.1, 0.2)
# Holt's smoothing constants are those whose forecasts this many samples ahead erred least ...
HOLT_AHEAD = 5
# ... recently: errors count half as much per this many minutes back, so a ramp
# that began 15 minutes ago picks a Holt that follows it, not one tuned to the flat hour before.
HOLT_HALF_LIFE_MIN = 20.0

_GRID_A, _GRID_B = (np.array(g, dtype=float) for g in zip(
    *[(a, b) for a in HOLT_ALPHAS for b in HOLT_BETAS]))


@dataclass(frozen=True)
class Fit:
    """A forecaster's level line from now (t = 0, minutes) and the spread of the level around it."""

    method: str
    level: float
    slope: float
    sd: Callable  # t (minutes from now, array) -> standard deviation of the level at t
    shape: str = ""  # what the hinge saw, for the reasons
    curv: float = 0.0  # the curve's acceleration (per minute squared); 0 for the lines

    def at(self, t):
        return self.level + (self.slope + self.curv * t) * t

    def scaled(self, centre: float, unit: float) -> "Fit":
        """The same fit in the metric's units, from values that were (y - centre) / unit."""
        sd = self.sd
        return Fit(self.method, centre + unit * self.level, unit * self.slope,
                   lambda h: unit * sd(h), self.shape, unit * self.curv)


def median(a: np.ndarray) -> float:
    a = np.sort(a)
    half = len(a) // 2
    return float(a[half] if len(a) % 2 else 0.5 * (a[half - 1] + a[half]))


def robust_sd(residuals: np.ndarray) -> float:
    """MAD scaled to a standard deviation; never 0, so a perfectly flat series still divides."""
    mad = 1.4826 * median(np.abs(residuals - median(residuals)))
    return max(mad, 1e-9 * max(1.0, float(np.abs(residuals).max(initial=0.0))))


def lag1(residuals: np.ndarray, noise: float) -> float:
    """Lag-1 autocorrelation of the residuals, spikes clipped, kept in [0, 0.9]."""
    r = np.clip(residuals, -3 * noise, 3 * noise)
    r = r - r.mean()
    denom = float(r @ r)
    if len(r) < 3 or denom <= 0:
        return 0.0
    return min(max(float(r[1:] @ r[:-1]) / denom, 0.0), 0.9)


def sen_bounds(slopes: np.ndarray, n: int, z: float, rho: float) -> tuple[float, float]:
    """Sen's distribution-free CI of the slope from the sorted pairwise slopes of n points.

    Positive autocorrelation (noise that wanders) makes a chance trend look significant; the
    Kendall variance is multiplied by (1 + rho) / (1 - rho), the usual effective-sample-size
    correction.
    """
    pairs = len(slopes)
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18 * (1 + rho) / (1 - rho))
    lo = slopes[min(max(int(math.floor((pairs - c) / 2)), 0), pairs - 1)]
    hi = slopes[min(max(int(math.ceil((pairs + c) / 2)), 0), pairs - 1)]
    return float(lo), float(hi)


def theil_sen(t: np.ndarray, y: np.ndarray, z: float):
    """The Theil-Sen line with its interval. Returns (fit, sorted pairwise slopes, residuals)."""
    n = len(t)
    i, j = np.triu_indices(n, 1)
    slopes = np.sort((y[j] - y[i]) / (t[j] - t[i]))
    slope = median(slopes)
    centre = float(t.mean())
    mid = median(y - slope * (t - centre))  # level at the window's centre
    residuals = y - (mid + slope * (t - centre))
    noise = robust_sd(residuals)
    rho = lag1(residuals, noise)
    lo, hi = sen_bounds(slopes, n, z, rho)
    var_slope = ((hi - lo) / (2 * z)) ** 2
    var_mid = math.pi / 2 * noise ** 2 / n * (1 + rho) / (1 - rho)  # a median's: pi/2 a mean's
    fit = Fit("theil-sen", mid - slope * centre, slope,
               lambda h: np.sqrt(var_mid + (h - centre) ** 2 * var_slope))
    return fit, slopes, residuals


def robust_lines(x: np.ndarray, y: np.ndarray, scale: float, huber: int = HUBER_ITERATIONS,
                  bisquare: int = BISQUARE_ITERATIONS):
    """y = a + b x fitted for every row of x at once by iteratively reweighted least squares, each
    row's 2x2 normal equations in closed form: `huber` iterations with Huber's weights (a convex
    loss, so a few from least squares get close for any start), then `bisquare` with Tukey's from
    there, which give a spike no weight at all. Returns (a, b, loss, weights): the loss is Tukey's,
    bounded, so a spike costs every candidate alike (Huber's if no bisquare iterations)."""
    w = np.ones_like(x)
    clip, reject = HUBER_C * scale, BISQUARE_C * scale
    for i in range(huber + bisquare):
        wx = w * x
        sw, swx, swy = w.sum(1), wx.sum(1), w @ y
        swxx, swxy = np.einsum("ij,ij->i", wx, x), wx @ y
        det = sw * swxx - swx * swx
        ok = det > 1e-12 * (sw * swxx)
        b = np.where(ok, (sw * swxy - swx * swy) / np.where(ok, det, 1.0), 0.0)
        a = (swy - b * swx) / np.maximum(sw, 1e-300)
        r = np.abs(y - a[:, None] - b[:, None] * x)
        if i + 1 < huber:
            w = clip / np.maximum(r, clip)
        else:
            w = (1 - np.minimum(r / reject, 1.0) ** 2) ** 2
    if bisquare:
        u = np.minimum(r / reject, 1.0)
        return a, b, (BISQUARE_C ** 2 / 6 * (1 - (1 - u * u) ** 3)).sum(1), w
    u = np.minimum(r, clip) / scale
    return a, b, (0.5 * u * u).sum(1) + HUBER_C * ((r - clip) / scale * (r > clip)).sum(1), w


def _variances(sw, swx, swxx, noise_var) -> np.ndarray:
    """Each candidate's weighted least-squares variance factor; 0 where its x has no spread (a
    candidate ruled out by its prior), which would otherwise be inf and make 0 * inf = nan."""
    det = sw * swxx - swx * swx
    ok = det > 1e-12 * (sw * swxx)
    return np.where(ok, noise_var / np.where(ok, det, 1.0), 0.0)


def hinge(t: np.ndarray, y: np.ndarray, scale: float):
    """The level as flat, then a straight ramp from an onset t0 (y = a + b max(t - t0, 0); t0 at
    the window's start is a plain line), or as a level shift at ts (y = a + b [t >= ts]).
    Returns (fit, residuals). `scale`: a first guess at the noise, re-estimated here.

    A line through a window in which a ramp began bends it into a shallower ramp that starts too
    high and ends too low; smoothing (Holt) follows the bend, but its level leans on the last few
    points. The hinge pins the level the ramp started from with the flat part and fits the ramp
    with every point since. Onsets and shifts are searched on grids, each candidate a
    two-parameter line in its own x fitted by robust_lines, so that a spike moves none. The
    forecast averages the candidates, each weighted by its likelihood, exp(-loss), times its
    prior (RAMP_PRIOR for all the inside onsets together, SHIFT_PRIOR for all the shifts, against
    1 for the line). The loss differences are divided by the residuals' autocorrelation factor:
    wandering noise is weaker evidence. The spread of the candidates' forecasts goes into the
    interval, so an onset the data cannot place widens it; each candidate's own variance is the
    weighted least-squares one, also widened for autocorrelation.
    """
    last = float(t[-1]) - HINGE_MIN_RAMP_MIN
    onsets = np.linspace(t[0], last, HINGE_ONSETS) if last > t[0] else t[:1]
    shifts = (np.linspace(t[0] + SHIFT_MARGIN_MIN, t[-1] - SHIFT_MARGIN_MIN, HINGE_ONSETS)
              if t[-1] - t[0] > 2 * SHIFT_MARGIN_MIN else t[:0])
    ramps, steps = np.maximum(t - onsets[:, None], 0.0), (t >= shifts[:, None]).astype(float)
    x = np.vstack([ramps, steps])
    # For h >= 0 (the future) x = alpha + beta h: a ramp keeps rising, a shift stays put.
    alpha = np.concatenate([-onsets, np.ones(len(shifts))])
    beta = np.concatenate([np.ones(len(onsets)), np.zeros(len(shifts))])
    log_prior = np.concatenate([
        [0.0], np.full(len(onsets) - 1, math.log(RAMP_PRIOR / max(len(onsets) - 1, 1))),
        np.full(len(shifts), math.log(SHIFT_PRIOR / max(len(shifts), 1)))])
    # With a few points on one side of an onset or a shift, it would be fitted to a spike or two
    # rather than to a trend.
    after = (x > 0).sum(1)
    log_prior[(after < HINGE_MIN_POINTS) | (len(t) - after < HINGE_MIN_POINTS)] = -np.inf
    log_prior[0] = 0.0
    # A line's residuals are inflated where the series bends away from a line: refit with the
    # best candidate's own.
    a, b, loss, w = robust_lines(x, y, scale, huber=2, bisquare=0)
    k = int(np.argmin(loss - log_prior))
    scale = robust_sd(y - a[k] - b[k] * x[k])
    a, b, loss, w = robust_lines(x, y, scale)
    k = int(np.argmin(loss - log_prior))
    best_residuals = y - a[k] - b[k] * x[k]
    noise = robust_sd(best_residuals)
    rho = lag1(best_residuals, noise)
    inflation = (1 + rho) / (1 - rho)
    p = np.exp((loss[k] - loss) / inflation + log_prior - log_prior[k])
    p /= p.sum()
    level_c, slope_c = a + b * alpha, b * beta
    level, slope = float(p @ level_c), float(p @ slope_c)
    # Var(a + b x(h)) per candidate plus the candidates' spread around the average is a quadratic
    # in h: its coefficients once, rather than per point of the crossing grid.
    sw, swx, swxx = w.sum(1), (w * x).sum(1), (w * x * x).sum(1)
    v = _variances(sw, swx, swxx, noise ** 2 * inflation)
    d, e = level_c - level, slope_c - slope
    c0 = float(p @ (v * (swxx - 2 * swx * alpha + sw * alpha ** 2) + d * d))
    c1 = float(p @ (v * 2 * beta * (sw * alpha - swx) + 2 * d * e))
    c2 = float(p @ (v * sw * beta ** 2 + e * e))

    def sd(h):
        h = np.asarray(h, dtype=float)
        return np.sqrt(np.maximum(c0 + (c1 + c2 * h) * h, 0.0))

    best, n = int(np.argmax(p)), len(onsets)
    shape = ("most likely a line" if best == 0 else
             f"most likely a ramp since {-onsets[best]:.3g} min ago" if best < n else
             f"most likely a level shift {-shifts[best - n]:.3g} min ago")
    shape += f" (weights: line {p[0]:.2f}, ramp {p[1:n].sum():.2f}, shift {p[n:].sum():.2f})"
    residuals = y - p @ (a[:, None] + b[:, None] * x)
    return Fit("hinge", level, slope, sd, shape), residuals


def holt(t: np.ndarray, y: np.ndarray, start: Fit, noise: float, split: int):
    """Robust Holt over all (alpha, beta) on the grid at once. Returns (fit of the whole series,
    fit as it stood at index `split`, one-step errors).

    Started from the Theil-Sen line. alpha and beta are per minute: a gap of dt minutes applies
    them as dt one-minute steps would, 1 - (1 - alpha) ** dt. The pair kept is the one whose
    forecasts HOLT_AHEAD samples ahead erred least (recent errors weighing more): one-step errors
    reward chasing the noise, while what matters here is the trend several minutes out.
    """
    level = np.full(len(_GRID_A), start.at(t[0]))
    trend = np.full(len(_GRID_A), start.slope)
    levels, trends, errors = (np.zeros((len(t), len(_GRID_A))) for _ in range(3))
    levels[0], trends[0] = level, trend
    gaps = np.diff(t)
    alphas = 1 - (1 - _GRID_A) ** gaps[:, None]
    betas = 1 - (1 - _GRID_B) ** gaps[:, None]
    clip = HUBER_K * noise
    for k in range(1, len(t)):
        dt = gaps[k - 1]
        predicted = level + trend * dt
        errors[k] = e = y[k] - predicted
        new_level = predicted + alphas[k - 1] * np.minimum(np.maximum(e, -clip), clip)
        trend = trend + betas[k - 1] * ((new_level - level) / dt - trend)
        level = levels[k] = new_level
        trends[k] = trend
    k = min(HOLT_AHEAD, len(t) - 3)
    ahead = levels[:-k] + trends[:-k] * (t[k:] - t[:-k])[:, None]
    loss = np.minimum(np.abs(y[k:, None] - ahead), HUBER_K * noise)  # bounded: spikes cannot pick
    weight = 0.5 ** ((t[-1] - t[k:]) / HOLT_HALF_LIFE_MIN)
    best = int(np.argmin(weight @ loss))
    alpha, beta = float(_GRID_A[best]), float(_GRID_B[best])
    sigma = robust_sd(errors[1:, best])
    step = max(float(np.median(np.diff(t))), 1e-6)
    ab = alpha * beta  # ETS's beta

    def sd(h):
        # ETS(A,A,N) h-step variance less the new observation's own noise, plus the smoothed
        # level's own variance alpha / (2 - alpha); h counted in typical sampling steps.
        s = np.maximum(np.asarray(h, dtype=float) / step, 1.0)
        var = alpha / (2 - alpha) + (s - 1) * (alpha ** 2 + alpha * ab * s
                                               + ab ** 2 * s * (2 * s - 1) / 6)
        return sigma * np.sqrt(var)

    def fit(k: int) -> Fit:
        # The state after point k forecasts from t[k]; shift it so t = 0 is now, like every Fit.
        level, trend = float(levels[k, best]), float(trends[k, best])
        return Fit("holt", level - trend * float(t[k]), trend, sd)

    return fit(len(t) - 1), fit(split), errors[1:, best]


def curve(t: np.ndarray, y: np.ndarray, scale: float, noise: float) -> Fit:
    """Flat, then accelerating: y = a + c max(t - t0, 0)^2, averaged over the hinge's onsets by
    likelihood (a leak that feeds on itself, a queue whose service slows as it grows). A hinge
    extrapolates such growth at its average slope and misses crossings an hour early; the curve's
    slope grows. It is used only when it forecast the held-out recent past clearly better
    (forecast.py), since fitted to noise its extrapolation runs away fastest of all."""
    last = float(t[-1]) - HINGE_MIN_RAMP_MIN
    onsets = np.linspace(t[0] - (t[-1] - t[0]), last, HINGE_ONSETS) if last > t[0] else t[:1]
    x = np.maximum(t - onsets[:, None], 0.0) ** 2
    after = (x > 0).sum(1)
    a, c, loss, w = robust_lines(x, y, scale)
    residuals = y - a[:, None] - c[:, None] * x
    rho = lag1(residuals[int(np.argmin(loss))], noise)
    inflation = (1 + rho) / (1 - rho)
    log_p = np.where(after >= HINGE_MIN_POINTS, (loss.min() - loss) / inflation, -np.inf)
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    # y(h) = a + c (h - t0)^2 = (a + c t0^2) - 2 c t0 h + c h^2
    level_c, slope_c, curv_c = a + c * onsets ** 2, -2 * c * onsets, c
    level, slope, curv = float(p @ level_c), float(p @ slope_c), float(p @ curv_c)
    sw, swx, swxx = w.sum(1), (w * x).sum(1), (w * x * x).sum(1)
    v = _variances(sw, swx, swxx, noise ** 2 * inflation)
    live = p > 1e-9

    def sd(h):
        shape = np.shape(h)
        h = np.atleast_1d(np.asarray(h, dtype=float))
        xh = (h - onsets[live, None]) ** 2
        mean_c = level_c[live, None] + (slope_c[live, None] + curv_c[live, None] * h) * h
        mean = level + (slope + curv * h) * h
        var = (v[live, None] * (swxx[live, None] - 2 * swx[live, None] * xh + sw[live, None] * xh * xh)
               + (mean_c - mean) ** 2)
        return np.sqrt(np.maximum(p[live] @ var, 0.0)).reshape(shape)

    best = int(np.argmax(p))
    fit = Fit("curve", level, slope, sd, f"accelerating since {-onsets[best]:.3g} min ago", curv)
    # In the window the flat part is flat: the residuals are the candidates' own, not those of the
    # parabola extended backwards.
    return fit, y - p @ (a[:, None] + c[:, None] * x)


def swings(t: np.ndarray, y: np.ndarray, width: float, before: float) -> np.ndarray:
    """Least-squares slopes of the windows `width` minutes wide that end at each sample up to
    `before` (minutes from now, <= 0): how steeply the series has swung up and down over the
    context while nothing breached. Prefix sums make it linear in the number of points."""
    ends = np.flatnonzero(t <= before)
    starts = np.searchsorted(t, t[ends] - width, side="right")
    n = (ends - starts + 1).astype(float)
    keep = (n >= MIN_SWING_POINTS) & (t[starts] >= t[0])
    ends, starts, n = ends[keep], starts[keep], n[keep]
    tc = t - t[0]  # from the context's start: smaller sums, less cancellation
    sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (tc, y, tc * tc, tc * y)]
    st, sy, stt, sty = (c[ends + 1] - c[starts] for c in sums)
    var = stt - st * st / n
    ok = var > 0
    return ((sty - st * sy / n)[ok] / var[ok])


def tukey_loss(residuals: np.ndarray, noise: float) -> float:
    u = np.minimum(np.abs(residuals) / (BISQUARE_C * noise), 1.0)
    return float((BISQUARE_C ** 2 / 6 * (1 - (1 - u * u) ** 3)).sum())


def blend(first: Fit, second: Fit, w: float) -> Fit:
    """The mixture (1 - w) first + w second: the mean's coefficients averaged, the variance the
    mixture's (each one's own plus the spread of the two means)."""
    if w <= 0 or w >= 1:
        return second if w >= 1 else first

    def sd(h):
        gap = first.at(h) - second.at(h)
        return np.sqrt((1 - w) * first.sd(h) ** 2 + w * second.sd(h) ** 2 + w * (1 - w) * gap * gap)

    mix = lambda a, b: (1 - w) * a + w * b  # noqa: E731
    return Fit(second.method if w >= 0.5 else first.method, mix(first.level, second.level),
               mix(first.slope, second.slope), sd, second.shape if w >= 0.5 else first.shape,
               mix(first.curv, second.curv))
