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
- ``curve``, for accelerating growth: flat, then a parabola from an onset (fits.py). It replaces
  the hinge only when it fits the window clearly better and forecast the held-out last quarter
  no worse (CURVE_ODDS): fitted to noise, its extrapolation runs away first. Short of that it still
  widens the alarm's earliest crossing, by its likelihood (CURVE_DOUBT), and once the level has
  clearly risen (RISE_SIGMAS) the forecast is the hinge and the curve averaged by that likelihood.

This is Prometheus's `predict_linear` (a line through the window, extrapolated) made robust and
aware of where the trend began, plus Datadog's forecast monitors' alerting on the forecast's band
rather than on the raw points.

The rule. A breach is *expected* when (1) the trend toward the threshold is significant: the lower
bound of Sen's slope CI (90%, so a one-sided test at 5%, its variance widened by the
autocorrelation of the hinge's residuals) is past zero, and (2) the forecast (the hinge's, or its
blend with the curve once the level has risen) crosses the threshold within two horizons and its
interval within the horizon (the interval of the hinge blended with the curve by the curve's
likelihood, where the curve is not used). The trend must be certain; the crossing within the
horizon need only be plausible. The series is *breached* now, reported apart, when the median of
the last five minutes (at least three points) is already past the threshold (or the last point is,
where bursts past it lasted in the context, or the last five minutes jumped there from the rest of
the window); it still carries the fit's forecast and interval. A spike satisfies none: it moves no
median, one point is no jump, and a flat series has no significant trend.
benchmarks/forecast_accuracy.py measures catches, false alarms and the error of the time to
threshold, against the plan's naive "% per minute" extrapolation.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from statistics import NormalDist
from typing import Sequence

import numpy as np

from atge_assets.lib.jsonl import plain as _plain
from atge_assets.monitoring import fits

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
# ... or the level has jumped past it: the last BREACH_S (two points at least) all this many
# robust sigmas above the rest of the window, their median past the threshold. A server that bursts
# from idle reads 0.1, 75, 99 at 5-minute samples: no trend to test and no three-point median yet,
# but two points far from anything before are a new level, not a spike. On real CloudWatch
# series (benchmarks/forecast_real.py) this caught 2 more sustained breaches at 30 minutes for
# +0.21 false alarms a day; without the jump condition (two points past the threshold) a plateau
# wobbling around its threshold pages every few hours.
JUMP_SIGMAS = 4.0
# Beyond a few horizons, extrapolating the last hour says little: later crossings are None.
LOOKAHEAD = 4
# A breach is expected only if the forecast itself crosses within this many horizons: a wide
# interval alone (a step up, a wandering series) should not raise the alarm every few checks.
POINT_WITHIN = 2
# Holt (double exponential smoothing) is the challenger: it forecasts from the first 3/4 of the
# window and is used only when it forecast the last quarter with under HOLT_MARGIN times the
# hinge's error. A dozen held-out points pick by noise between two good forecasts, and the hinge,
# whose onsets the holdout cannot judge when they fall near it, should lose only to a clearly
# better one: a trend that bends in a way a hinge cannot follow (a slow-down, a curve). At 0.5
# the benchmark's median time error rose 0.3-0.9 points over three seeds; at 0.25 it is the
# hinge's alone, within 0.2.
HOLDOUT = 0.25
HOLT_MARGIN = 0.25
# The curve (flat, then accelerating) replaces the hinge only when it fits the window better by
# CURVE_ODDS in log-likelihood (Tukey's, deflated for autocorrelation) and forecast the held-out
# last quarter no worse. Over a 30-60 minute window a parabola departs from a hinge by only 0.3-1.5
# noise sigmas, so the evidence is weak, and the log-odds is what there is of it: it tells the
# benchmark's accelerating ramps from its straight ones with AUC 0.80, the holdout's errors 0.65,
# and a logistic fit on both added nothing. Fitted to noise a parabola fits the window about as
# well as to real acceleration, and its extrapolation runs away fastest of all. Before, the curve
# also had to forecast the holdout under 0.75x the hinge's error and by a noise sigma: at 2% noise
# that rejected 2 in 3 accelerating ramps. benchmarks/forecast_accuracy.py (--reps 300, seeds
# 20240611 / 7 / 99; alone, without CURVE_DOUBT): at 1.0 the accelerating ramps' median time error
# 60 / 65 / 53% -> 47 / 51 / 44%, straight ramps' 14.9 / 16.1 / 13.4% -> 14.9 / 17.0 / 14.0%; at
# 1.5 straight unchanged but accelerating 55 / 56 / 45%, and with CURVE_DOUBT's extra catches the
# overall time error 20.2 / 21.6% (worse than before); at 0.5 accelerating 35%, straight 15.8 /
# 18.2 / 14.8%. Tried and dropped: the forecast blended with the curve by its posterior weight
# (prior 0.2) short of the switch: straight ramps 12.8 / 19.3%, never-crossing series alarmed at
# least once 1.7 / 3.3% -> 11.7 / 6.7% (the mixture's wide band); earlier, a Diebold-Mariano test
# on the held-out errors and a likelihood floor (no more caught, more alarms).
CURVE_ODDS = 1.0
# Short of that the alarm, not the forecast, still allows for the curve: its earliest crossing is
# that of the hinge and the curve blended by the curve's posterior weight at this prior, so an
# acceleration the data cannot confirm brings the earliest crossing in instead of being ignored.
# With CURVE_ODDS, seeds 20240611 / 7: caught 88.3 / 89.0% -> 93.2 / 93.2% (accelerating 72.7 /
# 74.7% -> 87.0 / 86.7%), median time error 19.8 / 21.3% -> 19.5 / 20.9% (straight 14.9 / 16.1% ->
# 14.9 / 17.4%, accelerating 60 / 65% -> 55 / 58%), false alarms 0.2 / 0.5% -> 0.2 / 0.7%;
# never-crossing series checked every 2 minutes for 2 hours unchanged: 1.7 / 3.3% alarmed at least
# once, 0 / 1.7% twice in a row (240 series, seed 99: 5.4% / 4.2% before and after, measured with
# the curve's own, wider spread in the band); series crossing 45-90 minutes out warned 14% -> 24%.
# At priors of 0.1, 0.2, 0.3 and 0.5: 92.4, 93.1, 93.3 and 93.3% caught (seed 20240611).
# Without the switch the extra catches carry the hinge's late forecast: time error 21.6 / 24.3%.
CURVE_DOUBT = 0.3
# ... and where the level has risen this many noise sigmas since the window's first quarter, the
# forecast itself (its time to threshold, level and interval) is that blend, not the hinge alone: a
# model average, where the alarm's earliest crossing alone allowed for the curve before. Seeds
# 20240611 / 7: accelerating ramps' median time error 55 / 58% -> 33 / 34%, straight 14.9 / 17.4%
# -> 14.0 / 18.0%, spiky 12.7 / 13.4% -> 15.5 / 15.6% (the curve leans on spikes near now), overall
# 19.5 / 20.9% -> 18.8 / 20.4%; caught 93.2 -> 93.7% on both; false alarms and the 2-hour sweep
# unchanged; real data (forecast_real.py) 1.24 / 1.40 -> 1.28 / 1.42 false alarms a day, catches
# unchanged. Without the rise condition (the blend wherever the trend is significant), caught 95.4%
# but never-crossing series alarmed at least once in 2 h 1.7% -> 16.7% (5% twice in a row): a
# parabola fitted to a flat series' last minutes extrapolates past any threshold within the hour.
# At 2 sigmas the sweep's at least once 9.2 / 5.8% (offline, 120 series a seed; 3.3 / 4.2% at
# 3); at 4 the time error 18.2 / 21.2%. Priors 0.2 / 0.5 for the blend: accelerating 38 / 27%,
# straight 13 / 18%.
RISE_SIGMAS = 3.0
# The context: up to 6 h before now, thinned to this many points, tells how steeply the series
# swings while nothing is coming; it counts only with this many window-widths of it (more than
# one cycle of a recurring hump).
CONTEXT_S = 6 * 3600.0
CONTEXT_POINTS = 2000
SWING_WINDOWS = 2
PERSIST_EVIDENCE = 3
# Pairwise slopes are n^2/2 floats: a window sampled every few seconds is thinned to this many.
MAX_POINTS = 400

@dataclass(frozen=True)
class Forecast:
    status: str  # one of STATUSES
    breach_expected: bool  # a breach is coming within the horizon, trend significant (not here yet)
    breached_now: bool  # the recent median is already past the threshold
    minutes_to_threshold: float | None  # when the forecast level crosses; None: not in lookahead
    minutes_to_threshold_low: float | None  # earliest and latest crossing: the interval's bounds
    minutes_to_threshold_high: float | None
    method: str | None  # "hinge", "holt" or "curve": the model the forecast leans on most
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
    # The trend is steeper than the series' own swings over the context (or there is too little
    # context to tell): with trend_significant and the crossing times, the alarm can be re-read at
    # another lead (benchmarks/forecast_real.py sweeps it).
    beyond_swings: bool = False

    @property
    def alert(self) -> bool:
        """Worth acting on: a breach is coming or already here."""
        return self.breach_expected or self.breached_now

    def alert_at(self, lead_minutes: float) -> bool:
        """The alarm as if the horizon were `lead_minutes` (the same trend test and crossing
        times; alert_at(horizon_minutes) == alert): a sensitivity knob for a benchmark to sweep
        without forecasting again. Crossings are known up to LOOKAHEAD horizons, so it is exact for
        leads up to LOOKAHEAD / POINT_WITHIN horizons; beyond, later crossings are missing."""
        early, point = self.minutes_to_threshold_low, self.minutes_to_threshold
        return self.breached_now or bool(
            self.trend_significant and self.beyond_swings and early is not None
            and point is not None and early <= lead_minutes
            and point <= POINT_WITHIN * lead_minutes)

    def as_dict(self) -> dict:
        d = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        d["alert"] = self.alert
        return d


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
    return (ts - now) / 60.0, ys


def _thin(t: np.ndarray, y: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    if len(t) <= most:
        return t, y
    pick = np.linspace(0, len(t) - 1, most).round().astype(int)
    return t[pick], y[pick]


def _bounds(bounds, y: np.ndarray) -> tuple[float, float]:
    """(lower, upper) the metric cannot leave. Unless given, a metric never negative in what was
    passed is taken as one that cannot be (bytes, requests, latency, a utilisation): a level or
    interval below zero is then an artefact of extrapolating a line, not a forecast."""
    if bounds is None:
        return (0.0 if len(y) and float(y.min()) >= 0 else -math.inf), math.inf
    lo, hi = bounds
    lo, hi = -math.inf if lo is None else float(lo), math.inf if hi is None else float(hi)
    if math.isnan(lo) or math.isnan(hi) or lo >= hi:
        raise ValueError(f"bounds must be (lower, upper) with lower < upper, got {bounds!r}")
    return lo, hi


def _persistent_over(y: np.ndarray, limit: float) -> bool:
    """Has a point past the threshold mostly been followed by another one, over the context? A
    server that bursts from idle to 95% is past its threshold from the first sample of the burst,
    and one sample in five minutes is all there is; where such points were lone spikes, the rule
    of the recent median stands. At least PERSIST_EVIDENCE such points (before the last) must
    show it, counted with one stay and one fall as prior."""
    over = y[:-1] >= limit
    n = int(over[:-1].sum())
    stays = int((over[:-1] & over[1:]).sum())
    return n >= PERSIST_EVIDENCE and (stays + 1) / (n + 2) > 0.5


def _jumped_over(t: np.ndarray, y: np.ndarray, limit: float) -> tuple[int, float] | None:
    """(points, median) of the recent stretch when it is a new level past the threshold, reached by
    a jump (JUMP_SIGMAS above the rest of the window); None otherwise."""
    recent = t >= t[-1] - BREACH_S / 60
    if recent.sum() < 2:
        recent[-2:] = True
    before, now = y[~recent], y[recent]
    if len(before) < MIN_POINTS:
        return None
    base, level = fits.median(before), fits.median(now)
    if level >= limit and now.min() > base + JUMP_SIGMAS * fits.robust_sd(before - base):
        return len(now), level
    return None


def _swing(t, y, tc, yc) -> tuple[float, float, float] | None:
    """(the window's least-squares slope, the robust spread of the same slope over the context's
    earlier windows, the width in minutes), None without two windows' worth of earlier history.
    A hump that recurs, or a plateau that wanders, swings as steeply before as now: a trend only
    counts if it is steeper than the swings the series made while nothing breached."""
    width = float(t[-1] - t[0])
    before = -width / 2  # earlier windows may share half of this one, not its end
    if len(tc) < MIN_POINTS or tc[0] > before - SWING_WINDOWS * width:
        return None
    past = fits.swings(tc, yc, width, before)
    if len(past) < MIN_POINTS:
        return None
    now = fits.swings(t, y, width + 1e-9, 0.0)
    return float(now[-1]), fits.robust_sd(past - fits.median(past)), width


def _crossing(fit: fits.Fit, threshold: float, z: float, lookahead: float):
    """Minutes until the level's forecast, its upper bound and its lower bound reach the threshold
    (rising toward it; the caller flips a falling metric): (point, earliest, latest), None beyond
    the lookahead."""
    point = None
    grid = np.linspace(0.0, lookahead, 2001)  # a 30-minute horizon: 3.6-second steps
    centre, spread = fit.at(grid), z * fit.sd(grid)

    def first(curve):
        hit = np.flatnonzero(curve >= threshold)
        return float(grid[hit[0]]) if len(hit) else None

    if fit.level >= threshold:
        point = 0.0
    elif fit.curv:
        point = first(centre)
    elif fit.slope > 0 and (threshold - fit.level) / fit.slope <= lookahead:
        point = (threshold - fit.level) / fit.slope
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
    context_s: float = CONTEXT_S,
    bounds: tuple[float | None, float | None] | None = None,
) -> Forecast:
    """Forecast one metric series and decide whether it will breach `threshold` within `horizon_s`.

    timestamps: unix seconds; values: the metric, None/NaN for a missing sample.
    direction:  ABOVE (breach when the metric rises past the threshold) or BELOW (falls past it).
    now:        the forecast origin in unix seconds; defaults to the last timestamp. Only points in
                (now - window_s, now] are fitted; those in (now - context_s, now] tell how
                steeply the series swings when nothing is coming (humps, a wandering plateau).
    bounds:     (lower, upper) the metric cannot leave, None for either side unbounded (a
                percentage: (0, 100)); by default non-negative if no value passed is negative.

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
    if isinstance(context_s, bool) or not isinstance(context_s, numbers.Real) or context_s < 0:
        raise ValueError(f"context_s must be a number >= 0, got {context_s!r}")
    tc, yc = _series(timestamps, values, now, max(float(window_s), float(context_s)))
    lower, upper = _bounds(bounds, yc)
    inside = tc > -window_s / 60
    t, y = _thin(tc[inside], yc[inside], MAX_POINTS)
    tc, yc = _thin(tc, yc, CONTEXT_POINTS)
    threshold, horizon = float(threshold), horizon_s / 60.0
    # Everything below reasons about a metric rising toward its threshold; a falling one is negated.
    sign = 1.0 if direction == ABOVE else -1.0
    y, yc, limit = sign * y, sign * yc, sign * threshold
    past = "above" if direction == ABOVE else "below"
    span = float(t[-1] - t[0]) if len(t) else 0.0
    base = dict(threshold=threshold, direction=direction, horizon_minutes=horizon,
                confidence=confidence, n_points=len(t), history_minutes=span)

    recent = y[t >= t[-1] - BREACH_S / 60] if len(t) else y
    recent = recent if len(recent) >= BREACH_POINTS else y[-BREACH_POINTS:]
    persistent = _persistent_over(yc, limit)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    breached = None
    median_over = len(recent) >= BREACH_POINTS and fits.median(recent) >= limit
    burst_over = len(recent) >= BREACH_POINTS and y[-1] >= limit and persistent
    jump = _jumped_over(t, y, limit) if len(t) > 1 and not (median_over or burst_over) else None
    if median_over:
        breached = [f"breached: the median of the last {len(recent)} points, "
                    f"{sign * fits.median(recent):.6g}, is already {past} the threshold "
                    f"{threshold:g}"]
    elif burst_over:
        breached = [f"breached: the last point, {sign * y[-1]:.6g}, is {past} the threshold "
                    f"{threshold:g}, and in this series' history a point {past} it was mostly "
                    f"followed by another (bursts that last, not spikes)"]
    elif jump is not None:
        breached = [f"breached: the level jumped {past} the threshold {threshold:g}: the last "
                    f"{jump[0]} points, far from the rest of the window, have a median of "
                    f"{sign * jump[1]:.6g}"]
    # Already over: the status says so whatever the trend; the fit below still gives the level's
    # forecast and interval, for what acting on it may achieve. The level now is the recent median
    # (of the points since the jump, after a jump).
    recent = y[-jump[0]:] if jump is not None else recent
    if len(t) < MIN_POINTS or span < MIN_SPAN_S / 60:
        if breached:
            # Too few points for a trend: the interval is the recent median's own.
            level = fits.median(recent)
            half = z * fits.robust_sd(recent - level) * math.sqrt(math.pi / 2 / len(recent))
            low, high = sorted((sign * (level - half), sign * (level + half)))
            return Forecast(
                BREACHED, False, True, 0.0, 0.0, 0.0, None, None, sign * level, sign * level,
                max(low, lower), min(high, upper), False, None, reasons=breached, **base)
        return Forecast(
            INSUFFICIENT, False, False, None, None, None, None, None, None, None, None, None,
            False, None, reasons=[
                f"insufficient data: {len(t)} points over {span:.3g} min in the window; need "
                f"{MIN_POINTS} points over {MIN_SPAN_S / 60:g} min"], **base)

    # The fits see values in units of the window's own spread around its median: a disk counter
    # at 1e9 bytes and a CPU at 0.1% are then the same problem, and no sum of squares overflows.
    centre = fits.median(y)
    unit = fits.robust_sd(y - centre)
    unit = max(unit, 1e-6 * max(abs(centre), abs(limit - centre))) or 1.0
    y, yc, limit = (y - centre) / unit, (yc - centre) / unit, (limit - centre) / unit
    line, slopes, residuals = fits.theil_sen(t, y, z)
    hinge, errors = fits.hinge(t, y, fits.robust_sd(residuals))
    noise = fits.robust_sd(errors)  # the line's residuals would count a bend as noise
    # The challengers: each forecasts the last quarter from the first three.
    split = min(max(int(len(t) * (1 - HOLDOUT)), 5), len(t) - 2) - 1  # last index fitted
    held_t, held_y = t[split + 1:], y[split + 1:]
    early_line = fits.theil_sen(t[:split + 1], y[:split + 1], z)[0]
    early_hinge = fits.hinge(t[:split + 1], y[:split + 1], fits.robust_sd(residuals))[0]
    holt, early_holt, holt_errors = fits.holt(t, y, early_line, noise, split)
    scores = {f.method: fits.median(np.abs(held_y - f.at(held_t))) for f in (early_hinge, early_holt)}
    use_holt = scores["holt"] < HOLT_MARGIN * scores["hinge"]
    fit, errors = (holt, holt_errors) if use_holt else (hinge, errors)
    # Accelerating growth. Over a window a parabola and a hinge whose onset sits early fit about
    # equally well; where they part is the future. So each also forecasts the last quarter from
    # the first three: the curve is used only when it fits the window clearly better than the
    # hinge (by likelihood) and forecast the held-out recent past no worse.
    curve, curve_errors = fits.curve(t, y, fits.robust_sd(residuals), noise)
    early_curve = fits.curve(t[:split + 1], y[:split + 1], fits.robust_sd(residuals), noise)[0]
    scores["curve"] = fits.median(np.abs(held_y - early_curve.at(held_t)))
    # Judged at the better model's noise and autocorrelation: the worse one's misfit would pass
    # for noise and blur the very difference being weighed.
    both = min(noise, fits.robust_sd(curve_errors))
    rho = min(fits.lag1(errors, both), fits.lag1(curve_errors, both))
    log_odds = (fits.tukey_loss(errors, both) - fits.tukey_loss(curve_errors, both)) \
        * (1 - rho) / (1 + rho)
    # The curve replaces the hinge only on clear evidence: fitted to noise, its extrapolation runs
    # away fastest of all.
    curve_weight = float(not use_holt and log_odds > CURVE_ODDS
                         and scores["curve"] <= scores["hinge"])
    fit = fits.blend(fit, curve, curve_weight)
    # Is there a trend at all? Kendall's rank statistic needs no straight line, but its variance
    # must allow for autocorrelated noise; that is measured on the hinge's residuals, because a
    # line's residuals on a bending ramp are autocorrelated through misfit, not noise.
    slope_lo, slope_hi = fits.sen_bounds(slopes, len(t), z, fits.lag1(errors, fits.robust_sd(errors)))
    swing = _swing(t, y, tc, yc)

    lookahead = LOOKAHEAD * horizon
    point, earliest, latest = _crossing(fit, limit, z, lookahead)
    significant = slope_lo > 0
    beyond_swings = swing is None or swing[0] > z * swing[1]
    averaged = None  # the curve's weight where the forecast is the hinge and the curve averaged
    if significant and beyond_swings and point is not None and not use_holt and not curve_weight:
        # For the alarm: the earliest crossing allows for the curve as well, weighted by how
        # likely it is against the hinge (its prior CURVE_DOUBT). Only where an alarm may come of
        # it (a significant trend beyond the swings, the forecast crossing within
        # the lookahead, as alert_at needs at any lead): a flat series' earliest crossing stays
        # the hinge's.
        # The curve's mean with the hinge's own spread: a curve's onsets near now (fitted to a
        # spike after a gap) would otherwise widen the band by themselves.
        odds = CURVE_DOUBT * math.exp(min(log_odds, 50.0))
        bent = fits.Fit(curve.method, curve.level, curve.slope, fit.sd, curve.shape, curve.curv)
        weight = odds / (1 - CURVE_DOUBT + odds)
        doubt = fits.blend(fit, bent, weight)
        doubt_point, early, doubt_latest = _crossing(doubt, limit, z, lookahead)
        # For the forecast only where the level has clearly moved: a flat series' chance trend
        # would let a parabola through its last minutes set the time to threshold.
        if fit.level - fits.median(y[:max(3, len(y) // 4)]) >= RISE_SIGMAS * noise:
            fit, averaged, point, latest = doubt, weight, doubt_point, doubt_latest
        if early is not None and (earliest is None or early < earliest):
            earliest = early
    expected = (significant and beyond_swings and earliest is not None and earliest <= horizon
                and point is not None and point <= POINT_WITHIN * horizon)
    hinge, holt, line, curve, fit = (f.scaled(centre, unit)
                                     for f in (hinge, holt, line, curve, fit))
    noise, slope_lo, slope_hi, limit = unit * noise, unit * slope_lo, unit * slope_hi, sign * threshold
    scores = {k: unit * v for k, v in scores.items()}

    def summary(f: fits.Fit) -> dict:
        centre, spread = f.at(horizon), z * float(f.sd(horizon))
        low, high = sorted((sign * (centre - spread), sign * (centre + spread)))
        clip = lambda v: float(min(max(v, lower), upper))  # noqa: E731
        return dict(slope_per_minute=sign * f.slope, level=clip(sign * f.level),
                    forecast=clip(sign * centre), interval_low=clip(low),
                    interval_high=clip(high),
                    holdout_error=None if f is fit and averaged else scores.get(f.method))

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
    elif not beyond_swings:
        head = (f"ok: the {trend} is no steeper than the series' own swings: over the last "
                f"{-tc[0] / 60:.3g} h, {swing[2]:.3g}-min slopes varied by "
                f"±{unit * swing[1]:.3g}/min while nothing breached")
    elif point is None:
        head = (f"ok: the {trend} is significant, but the {fit.method} forecast has the level "
                f"not reaching {threshold:g} within {lookahead:g} min")
    else:
        head = f"ok: {crossing}: not within the {horizon:g}-min horizon; {trend}"
    reasons = [
        head,
        f"method: {fit.method} (hinge {hinge.shape}; median error forecasting the last "
        f"{len(held_t)} points: hinge {scores['hinge']:.3g}, holt {scores['holt']:.3g}, curve "
        f"{scores['curve']:.3g}; holt used only under {HOLT_MARGIN:g}x the hinge's; the curve's "
        f"log-odds against the hinge {log_odds:.2f}, used past {CURVE_ODDS:g} and no worse held "
        "out: " + ("used" if curve_weight else f"averaged in at weight {averaged:.2f} as the "
                   "level has risen" if averaged else "not used")
        + f"); level now {chosen['level']:.6g}, "
        f"{chosen['slope_per_minute']:+.3g}/min, {chosen['forecast']:.6g} in {horizon:g} min "
        f"({confidence:.0%} interval {chosen['interval_low']:.6g} to "
        f"{chosen['interval_high']:.6g}); noise ±{noise:.3g}; {len(t)} points over {span:.3g} min",
    ]
    candidates = {f.method: summary(f) for f in (hinge, holt, line, curve)}
    if breached:
        level = min(max(sign * fits.median(recent), lower), upper)
        return Forecast(
            BREACHED, False, True, 0.0, 0.0, 0.0, fit.method, chosen["slope_per_minute"], level,
            chosen["forecast"], chosen["interval_low"], chosen["interval_high"], significant,
            noise, candidates=candidates, reasons=breached + reasons[1:],
            beyond_swings=beyond_swings, **base)
    return Forecast(
        EXPECTED if expected else OK, expected, False, point, earliest, latest, fit.method,
        chosen["slope_per_minute"], chosen["level"], chosen["forecast"], chosen["interval_low"],
        chosen["interval_high"], significant, noise,
        candidates=candidates, reasons=reasons, beyond_swings=beyond_swings, **base)

