"""Predictive monitoring: will a metric cross its threshold within the horizon?

Numpy only (no Dagster, pandas or scipy), so `atge forecast --batch` starts fast and forecasts a
few hundred series a second. One call forecasts one metric series: unix-second timestamps and
values, irregular spacing and gaps allowed; ``None``/NaN values are missing samples.

What is forecast is the metric's *level*, the value without its noise: a breach is the level
crossing the threshold, not one noisy sample poking over it, and the intervals are the level's.
Two models look at the recent window (an hour by default):

- ``hinge``, the forecast: the level flat, then a straight ramp from an onset inside the window (a
  "broken stick", continuous at the onset; an onset at the window's start is a plain line), or a
  level shift. A metric often heads for its threshold from a steady level (a leak since a deploy,
  a backlog since a surge): a line through the whole window bends such a ramp into a shallower one
  that starts too high and ends too low, while the hinge pins the level the ramp left with the flat
  part and fits the ramp with every point since. Onsets and shifts are searched on a grid, each
  candidate fitted robustly (Huber's M-estimator, then Tukey's bisquare, so a spike gets no
  weight), and the forecast averages the candidates weighted by likelihood and prior, so an onset
  the data cannot place widens the interval instead of being guessed. A level shift (a step that
  stays) is forecast flat: it is no trend.
- ``theil-sen``: a straight line whose slope is the median of all pairwise slopes, so a spike moves
  it by at most one rank; Sen's distribution-free slope CI (the Kendall statistic's variance, as in
  the Mann-Kendall trend test), widened for autocorrelated noise, is the trend test below. Its own
  forecast is reported among the candidates.

- ``holt``, the challenger: double exponential smoothing on the time gaps as they are, each
  one-step error clipped at 2 noise sigmas before it updates the state (Gelper, Fried & Croux
  2010), with the ETS(A,A,N) interval (Hyndman & Athanasopoulos, "Forecasting: principles and
  practice" 8.7). The hinge and Holt each forecast the last quarter of the window from the first
  three; Holt is used only when its error there is under a quarter of the hinge's: a trend that
  bends in a way a hinge cannot follow. A dozen held-out points otherwise pick by noise between two
  good forecasts (with the better one simply chosen, Holt won most straight ramps and the
  benchmark's time to threshold erred ~1 point more), and a holdout cannot judge a hinge whose
  onset falls in or just before it.

This is Prometheus's `predict_linear` (a line through the window, extrapolated) made robust and
aware of where the trend began, plus Datadog's forecast monitors' alerting on the forecast's band
rather than on the raw points.

The rule. A breach is *expected* when (1) the trend toward the threshold is significant: the lower
bound of Sen's slope CI (90%, so a one-sided test at 5%, its variance widened by the
autocorrelation of the hinge's residuals) is past zero, and (2) the hinge's forecast crosses the
threshold within two horizons and its interval within the horizon. The trend must be
certain; the crossing within the horizon need only be plausible. The series is *breached* now,
reported apart, when the median of the last five minutes (at least three points) is already past
the threshold. A spike satisfies neither: it moves no median, and a flat series has no
significant trend. benchmarks/forecast_accuracy.py measures catches, false alarms and the error
of the time to threshold, against the plan's naive "% per minute" extrapolation.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

from atge_assets.lib.jsonl import plain as _plain

OK = "ok"
EXPECTED = "breach_expected"
BREACHED = "breached"
INSUFFICIENT = "insufficient_data"
STATUSES = (OK, EXPECTED, BREACHED, INSUFFICIENT)
ABOVE, BELOW = "above", "below"  # breach: the metric goes above (latency) / below (free memory)

CONFIDENCE = 0.90
WINDOW_S = 3600.0
# Fewer points, or a shorter stretch of time, than this says nothing about a trend.
MIN_POINTS = 10
MIN_SPAN_S = 600.0
# "Breached now" is the median of this recent stretch (at least BREACH_POINTS points) being past
# the threshold: a majority of recent points, which one spike cannot make.
BREACH_S = 300.0
BREACH_POINTS = 3
# Beyond a few horizons, extrapolating the last hour says little: later crossings are None.
LOOKAHEAD = 4
# A breach is expected only if the forecast itself crosses within this many horizons: a wide
# interval alone (a step up, a wandering series) should not raise the alarm every few checks.
POINT_WITHIN = 2
# The hinge's onsets: this many times from the window's start (a plain line) to HINGE_MIN_RAMP_MIN
# before now; as many level shifts, SHIFT_MARGIN_MIN from either end.
HINGE_ONSETS = 30
# A ramp of fewer minutes, or fewer points, than this has no slope worth extrapolating (and on two
# or three points it would chase the last spike).
HINGE_MIN_RAMP_MIN = 8.0
HINGE_MIN_POINTS = 5
SHIFT_MARGIN_MIN = 4.0
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
# Holt (double exponential smoothing) is the challenger: it forecasts from the first 3/4 of the
# window and is used only when it forecast the last quarter with under HOLT_MARGIN times the
# hinge's error. A dozen held-out points pick by noise between two good forecasts, and the hinge,
# whose onsets the holdout cannot judge when they fall near it, should lose only to a clearly
# better one: a trend that bends in a way a hinge cannot follow (a slow-down, a curve). At 0.5
# the benchmark's median time error rose 0.3-0.9 points over three seeds; at 0.25 it is the
# hinge's alone, within 0.2.
HOLDOUT = 0.25
HOLT_MARGIN = 0.25
# Errors beyond this many noise sigmas are clipped before they update Holt's state.
HUBER_K = 2.0
HOLT_ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7)
HOLT_BETAS = (0.02, 0.05, 0.1, 0.2)
# Holt's smoothing constants are those whose forecasts this many samples ahead erred least ...
HOLT_AHEAD = 5
# ... recently: errors count half as much per this many minutes back, so a ramp
# that began 15 minutes ago picks a Holt that follows it, not one tuned to the flat hour before.
HOLT_HALF_LIFE_MIN = 20.0
# Pairwise slopes are n^2/2 floats: a window sampled every few seconds is thinned to this many.
MAX_POINTS = 400

_GRID_A, _GRID_B = (np.array(g, dtype=float) for g in zip(
    *[(a, b) for a in HOLT_ALPHAS for b in HOLT_BETAS]))


@dataclass(frozen=True)
class Forecast:
    status: str  # one of STATUSES
    breach_expected: bool  # a breach is coming within the horizon, trend significant (not here yet)
    breached_now: bool  # the recent median is already past the threshold
    minutes_to_threshold: float | None  # when the forecast level crosses; None: not in lookahead
    minutes_to_threshold_low: float | None  # earliest and latest crossing: the interval's bounds
    minutes_to_threshold_high: float | None
    method: str | None  # "hinge", or "holt" when it forecast the recent past far better
    slope_per_minute: float | None  # of the level, in the metric's units
    level: float | None  # the fitted level now
    forecast: float | None  # the level at now + horizon ...
    interval_low: float | None  # ... and its interval at `confidence`
    interval_high: float | None
    trend_significant: bool  # Sen's slope CI excludes zero on the threshold's side
    noise: float | None  # robust standard deviation of the points around the level
    n_points: int
    history_minutes: float  # span of the points used
    threshold: float
    direction: str
    horizon_minutes: float
    confidence: float = CONFIDENCE
    candidates: dict = field(default_factory=dict)  # per model: its forecast (holdout error)
    reasons: list[str] = field(default_factory=list)

    @property
    def alert(self) -> bool:
        """Worth acting on: a breach is coming or already here."""
        return self.breach_expected or self.breached_now

    def as_dict(self) -> dict:
        d = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        d["alert"] = self.alert
        return d


@dataclass(frozen=True)
class _Fit:
    """A forecaster's level line from now (t = 0, minutes) and the spread of the level around it."""

    method: str
    level: float
    slope: float
    sd: Callable  # t (minutes from now, array) -> standard deviation of the level at t
    shape: str = ""  # what the hinge saw, for the reasons

    def at(self, t):
        return self.level + self.slope * t


def _series(timestamps, values, now, window_s) -> tuple[np.ndarray, np.ndarray]:
    """Minutes before `now` (<= 0) and values in the window, sorted, one value per timestamp."""
    if isinstance(timestamps, (str, bytes)) or isinstance(values, (str, bytes)):
        raise ValueError("timestamps and values must be lists of numbers")
    timestamps, values = list(timestamps), list(values)
    if len(timestamps) != len(values):
        raise ValueError(f"{len(timestamps)} timestamps but {len(values)} values")
    for name, items, nullable in (("timestamps", timestamps, False), ("values", values, True)):
        # Plain JSON numbers skip the per-item check, which would cost more than the statistics.
        if set(map(type, items)) <= ({float, int, type(None)} if nullable else {float, int}):
            continue
        for x in items:
            # bool is an int to Python, but `true` in a metric series is a bug upstream.
            if not (x is None and nullable) and (
                    not isinstance(x, numbers.Real) or isinstance(x, (bool, np.bool_))):
                raise ValueError(f"{name}: {x!r} is not a number")
    ts = np.array(timestamps, dtype=float)
    ys = np.array([np.nan if v is None else v for v in values], dtype=float)
    if not np.isfinite(ts).all():
        raise ValueError("timestamps must be finite unix seconds")
    keep = np.isfinite(ys)
    ts, ys = ts[keep], ys[keep]
    if not len(ts):
        return ts, ys
    if now is None:
        now = float(ts.max())
    elif isinstance(now, bool) or not isinstance(now, numbers.Real) or not math.isfinite(now):
        raise ValueError(f"now must be unix seconds, got {now!r}")
    keep = (ts > now - window_s) & (ts <= now)
    ts, ys = ts[keep], ys[keep]
    # Two samples with one timestamp (a retried scrape) become their mean: a slope needs dt > 0.
    ts, inverse = np.unique(ts, return_inverse=True)
    ys = np.bincount(inverse, weights=ys) / np.bincount(inverse)
    if len(ts) > MAX_POINTS:
        pick = np.linspace(0, len(ts) - 1, MAX_POINTS).round().astype(int)
        ts, ys = ts[pick], ys[pick]
    return (ts - now) / 60.0, ys


def _median(a: np.ndarray) -> float:
    a = np.sort(a)
    half = len(a) // 2
    return float(a[half] if len(a) % 2 else 0.5 * (a[half - 1] + a[half]))


def _scale(residuals: np.ndarray) -> float:
    """MAD scaled to a standard deviation; never 0, so a perfectly flat series still divides."""
    mad = 1.4826 * _median(np.abs(residuals - _median(residuals)))
    return max(mad, 1e-9 * max(1.0, float(np.abs(residuals).max(initial=0.0))))


def _lag1(residuals: np.ndarray, noise: float) -> float:
    """Lag-1 autocorrelation of the residuals, spikes clipped, kept in [0, 0.9]."""
    r = np.clip(residuals, -3 * noise, 3 * noise)
    r = r - r.mean()
    denom = float(r @ r)
    if len(r) < 3 or denom <= 0:
        return 0.0
    return min(max(float(r[1:] @ r[:-1]) / denom, 0.0), 0.9)


def _sen_bounds(slopes: np.ndarray, n: int, z: float, rho: float) -> tuple[float, float]:
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


def _theil_sen(t: np.ndarray, y: np.ndarray, z: float):
    """The Theil-Sen line with its interval. Returns (fit, sorted pairwise slopes, residuals)."""
    n = len(t)
    i, j = np.triu_indices(n, 1)
    slopes = np.sort((y[j] - y[i]) / (t[j] - t[i]))
    slope = _median(slopes)
    centre = float(t.mean())
    mid = _median(y - slope * (t - centre))  # level at the window's centre
    residuals = y - (mid + slope * (t - centre))
    noise = _scale(residuals)
    rho = _lag1(residuals, noise)
    lo, hi = _sen_bounds(slopes, n, z, rho)
    var_slope = ((hi - lo) / (2 * z)) ** 2
    var_mid = math.pi / 2 * noise ** 2 / n * (1 + rho) / (1 - rho)  # a median's: pi/2 a mean's
    fit = _Fit("theil-sen", mid - slope * centre, slope,
               lambda h: np.sqrt(var_mid + (h - centre) ** 2 * var_slope))
    return fit, slopes, residuals


def _robust_lines(x: np.ndarray, y: np.ndarray, scale: float, huber: int = HUBER_ITERATIONS,
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
        b = (sw * swxy - swx * swy) / np.maximum(sw * swxx - swx * swx, 1e-300)
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


def _hinge(t: np.ndarray, y: np.ndarray, scale: float):
    """The level as flat, then a straight ramp from an onset t0 (y = a + b max(t - t0, 0); t0 at
    the window's start is a plain line), or as a level shift at ts (y = a + b [t >= ts]).
    Returns (fit, residuals). `scale`: a first guess at the noise, re-estimated here.

    A line through a window in which a ramp began bends it into a shallower ramp that starts too
    high and ends too low; smoothing (Holt) follows the bend, but its level leans on the last few
    points. The hinge pins the level the ramp started from with the flat part and fits the ramp
    with every point since. Onsets and shifts are searched on grids, each candidate a
    two-parameter line in its own x fitted by _robust_lines, so that a spike moves none. The
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
    a, b, loss, w = _robust_lines(x, y, scale, huber=2, bisquare=0)
    k = int(np.argmin(loss - log_prior))
    scale = _scale(y - a[k] - b[k] * x[k])
    a, b, loss, w = _robust_lines(x, y, scale)
    k = int(np.argmin(loss - log_prior))
    best_residuals = y - a[k] - b[k] * x[k]
    noise = _scale(best_residuals)
    rho = _lag1(best_residuals, noise)
    inflation = (1 + rho) / (1 - rho)
    p = np.exp((loss[k] - loss) / inflation + log_prior - log_prior[k])
    p /= p.sum()
    level_c, slope_c = a + b * alpha, b * beta
    level, slope = float(p @ level_c), float(p @ slope_c)
    # Var(a + b x(h)) per candidate plus the candidates' spread around the average is a quadratic
    # in h: its coefficients once, rather than per point of the crossing grid.
    sw, swx, swxx = w.sum(1), (w * x).sum(1), (w * x * x).sum(1)
    v = noise ** 2 * inflation / np.maximum(sw * swxx - swx * swx, 1e-300)
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
    return _Fit("hinge", level, slope, sd, shape), residuals


def _holt(t: np.ndarray, y: np.ndarray, start: _Fit, noise: float, split: int):
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
    sigma = _scale(errors[1:, best])
    step = max(float(np.median(np.diff(t))), 1e-6)
    ab = alpha * beta  # ETS's beta

    def sd(h):
        # ETS(A,A,N) h-step variance less the new observation's own noise, plus the smoothed
        # level's own variance alpha / (2 - alpha); h counted in typical sampling steps.
        s = np.maximum(np.asarray(h, dtype=float) / step, 1.0)
        var = alpha / (2 - alpha) + (s - 1) * (alpha ** 2 + alpha * ab * s
                                               + ab ** 2 * s * (2 * s - 1) / 6)
        return sigma * np.sqrt(var)

    def fit(k: int) -> _Fit:
        # The state after point k forecasts from t[k]; shift it so t = 0 is now, like every _Fit.
        level, trend = float(levels[k, best]), float(trends[k, best])
        return _Fit("holt", level - trend * float(t[k]), trend, sd)

    return fit(len(t) - 1), fit(split), errors[1:, best]


def _crossing(fit: _Fit, threshold: float, z: float, lookahead: float):
    """Minutes until the level's forecast, its upper bound and its lower bound reach the threshold
    (rising toward it; the caller flips a falling metric): (point, earliest, latest), None beyond
    the lookahead."""
    point = None
    if fit.level >= threshold:
        point = 0.0
    elif fit.slope > 0 and (threshold - fit.level) / fit.slope <= lookahead:
        point = (threshold - fit.level) / fit.slope
    grid = np.linspace(0.0, lookahead, 2001)  # a 30-minute horizon: 3.6-second steps
    centre, spread = fit.at(grid), z * fit.sd(grid)

    def first(curve):
        hit = np.flatnonzero(curve >= threshold)
        return float(grid[hit[0]]) if len(hit) else None

    return point, first(centre + spread), first(centre - spread)


def forecast(
    timestamps: Sequence[float],
    values: Sequence[float | None],
    threshold: float,
    horizon_s: float = 1800.0,
    *,
    direction: str = ABOVE,
    now: float | None = None,
    window_s: float = WINDOW_S,
    confidence: float = CONFIDENCE,
) -> Forecast:
    """Forecast one metric series and decide whether it will breach `threshold` within `horizon_s`.

    timestamps: unix seconds; values: the metric, None/NaN for a missing sample.
    direction:  ABOVE (breach when the metric rises past the threshold) or BELOW (falls past it).
    now:        the forecast origin in unix seconds; defaults to the last timestamp. Only points in
                (now - window_s, now] are used.

    Raises ValueError for input that is not a series (mismatched lengths, strings, booleans) or
    for a threshold, horizon, window or confidence out of range.
    """
    for name, x in (("threshold", threshold), ("horizon_s", horizon_s), ("window_s", window_s)):
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
            raise ValueError(f"{name} must be a finite number, got {x!r}")
    if horizon_s <= 0 or window_s <= 0:
        raise ValueError("horizon_s and window_s must be positive")
    if direction not in (ABOVE, BELOW):
        raise ValueError(f"direction must be {ABOVE!r} or {BELOW!r}, got {direction!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    t, y = _series(timestamps, values, now, float(window_s))
    threshold, horizon = float(threshold), horizon_s / 60.0
    # Everything below reasons about a metric rising toward its threshold; a falling one is negated.
    sign = 1.0 if direction == ABOVE else -1.0
    y, limit = sign * y, sign * threshold
    past = "above" if direction == ABOVE else "below"
    span = float(t[-1] - t[0]) if len(t) else 0.0
    base = dict(threshold=threshold, direction=direction, horizon_minutes=horizon,
                confidence=confidence, n_points=len(t), history_minutes=span)

    recent = y[t >= t[-1] - BREACH_S / 60] if len(t) else y
    recent = recent if len(recent) >= BREACH_POINTS else y[-BREACH_POINTS:]
    if len(recent) >= BREACH_POINTS and _median(recent) >= limit:
        # Already over: no forecast needed to know it, and a trend fit across the crossing would
        # only muddle the message.
        return Forecast(
            BREACHED, False, True, 0.0, 0.0, 0.0, None, None, sign * _median(recent), None, None,
            None, False, None, reasons=[
                f"breached: the median of the last {len(recent)} points, "
                f"{sign * _median(recent):.6g}, is already {past} the threshold {threshold:g}"],
            **base)
    if len(t) < MIN_POINTS or span < MIN_SPAN_S / 60:
        return Forecast(
            INSUFFICIENT, False, False, None, None, None, None, None, None, None, None, None,
            False, None, reasons=[
                f"insufficient data: {len(t)} points over {span:.3g} min in the window; need "
                f"{MIN_POINTS} points over {MIN_SPAN_S / 60:g} min"], **base)

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    line, slopes, residuals = _theil_sen(t, y, z)
    hinge, errors = _hinge(t, y, _scale(residuals))
    noise = _scale(errors)  # the line's residuals would count a bend as noise
    # The challenger: both forecast the last quarter from the first three.
    split = min(max(int(len(t) * (1 - HOLDOUT)), 5), len(t) - 2) - 1  # last index fitted
    held_t, held_y = t[split + 1:], y[split + 1:]
    early_line = _theil_sen(t[:split + 1], y[:split + 1], z)[0]
    early_hinge = _hinge(t[:split + 1], y[:split + 1], _scale(residuals))[0]
    holt, early_holt, holt_errors = _holt(t, y, early_line, noise, split)
    scores = {f.method: _median(np.abs(held_y - f.at(held_t))) for f in (early_hinge, early_holt)}
    use_holt = scores["holt"] < HOLT_MARGIN * scores["hinge"]
    fit, errors = (holt, holt_errors) if use_holt else (hinge, errors)
    # Is there a trend at all? Kendall's rank statistic needs no straight line, but its variance
    # must allow for autocorrelated noise; that is measured on the hinge's residuals, because a
    # line's residuals on a bending ramp are autocorrelated through misfit, not noise.
    slope_lo, slope_hi = _sen_bounds(slopes, len(t), z, _lag1(errors, _scale(errors)))

    lookahead = LOOKAHEAD * horizon
    point, earliest, latest = _crossing(fit, limit, z, lookahead)
    significant = slope_lo > 0
    expected = (significant and earliest is not None and earliest <= horizon
                and point is not None and point <= POINT_WITHIN * horizon)

    def summary(f: _Fit) -> dict:
        centre, spread = f.at(horizon), z * float(f.sd(horizon))
        low, high = sorted((sign * (centre - spread), sign * (centre + spread)))
        return dict(slope_per_minute=sign * f.slope, level=sign * f.level,
                    forecast=float(sign * centre), interval_low=float(low),
                    interval_high=float(high), holdout_error=scores.get(f.method))

    chosen = summary(fit)
    bounds = ", ".join(f"{name} " + (f"beyond {lookahead:g}" if x is None else f"{x:.3g}")
                       for name, x in (("earliest", earliest), ("latest", latest)))
    ci = sorted((sign * slope_lo, sign * slope_hi))
    trend = (f"trend {sign * line.slope:+.3g}/min (Theil-Sen, {confidence:.0%} CI {ci[0]:+.3g} "
             f"to {ci[1]:+.3g})")
    crossing = (f"the level is forecast to go {past} {threshold:g} "
                + (f"in {point:.3g} min" if point is not None else f"not within {lookahead:g} min")
                + f" ({bounds} min)")
    if expected:
        head = (f"breach expected: the {trend} is significant and {crossing}: within the "
                f"{horizon:g}-min horizon at the earliest")
    elif not significant:
        head = f"ok: no significant trend toward {threshold:g}: {trend}"
    elif point is None:
        head = (f"ok: the {trend} is significant, but the {fit.method} forecast has the level "
                f"not reaching {threshold:g} within {lookahead:g} min")
    else:
        head = f"ok: {crossing}: not within the {horizon:g}-min horizon; {trend}"
    reasons = [
        head,
        f"method: {fit.method} (hinge {hinge.shape}; median error forecasting the last "
        f"{len(held_t)} points: hinge {scores['hinge']:.3g}, holt {scores['holt']:.3g}, holt used "
        f"only under {HOLT_MARGIN:g}x the hinge's); level now {chosen['level']:.6g}, "
        f"{chosen['slope_per_minute']:+.3g}/min, {chosen['forecast']:.6g} in {horizon:g} min "
        f"({confidence:.0%} interval {chosen['interval_low']:.6g} to "
        f"{chosen['interval_high']:.6g}); noise ±{noise:.3g}; {len(t)} points over {span:.3g} min",
    ]
    return Forecast(
        EXPECTED if expected else OK, expected, False, point, earliest, latest, fit.method,
        chosen["slope_per_minute"], chosen["level"], chosen["forecast"], chosen["interval_low"],
        chosen["interval_high"], significant, noise,
        candidates={f.method: summary(f) for f in (hinge, holt, line)}, reasons=reasons, **base)

