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


def _crossing(fit: fits.Fit, threshold: float, z: float, lookahead: float):
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
    if len(recent) >= BREACH_POINTS and fits.median(recent) >= limit:
        # Already over: no forecast needed to know it, and a trend fit across the crossing would
        # only muddle the message.
        return Forecast(
            BREACHED, False, True, 0.0, 0.0, 0.0, None, None, sign * fits.median(recent), None, None,
            None, False, None, reasons=[
                f"breached: the median of the last {len(recent)} points, "
                f"{sign * fits.median(recent):.6g}, is already {past} the threshold {threshold:g}"],
            **base)
    if len(t) < MIN_POINTS or span < MIN_SPAN_S / 60:
        return Forecast(
            INSUFFICIENT, False, False, None, None, None, None, None, None, None, None, None,
            False, None, reasons=[
                f"insufficient data: {len(t)} points over {span:.3g} min in the window; need "
                f"{MIN_POINTS} points over {MIN_SPAN_S / 60:g} min"], **base)

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    line, slopes, residuals = fits.theil_sen(t, y, z)
    hinge, errors = fits.hinge(t, y, fits.robust_sd(residuals))
    noise = fits.robust_sd(errors)  # the line's residuals would count a bend as noise
    # The challenger: both forecast the last quarter from the first three.
    split = min(max(int(len(t) * (1 - HOLDOUT)), 5), len(t) - 2) - 1  # last index fitted
    held_t, held_y = t[split + 1:], y[split + 1:]
    early_line = fits.theil_sen(t[:split + 1], y[:split + 1], z)[0]
    early_hinge = fits.hinge(t[:split + 1], y[:split + 1], fits.robust_sd(residuals))[0]
    holt, early_holt, holt_errors = fits.holt(t, y, early_line, noise, split)
    scores = {f.method: fits.median(np.abs(held_y - f.at(held_t))) for f in (early_hinge, early_holt)}
    use_holt = scores["holt"] < HOLT_MARGIN * scores["hinge"]
    fit, errors = (holt, holt_errors) if use_holt else (hinge, errors)
    # Is there a trend at all? Kendall's rank statistic needs no straight line, but its variance
    # must allow for autocorrelated noise; that is measured on the hinge's residuals, because a
    # line's residuals on a bending ramp are autocorrelated through misfit, not noise.
    slope_lo, slope_hi = fits.sen_bounds(slopes, len(t), z, fits.lag1(errors, fits.robust_sd(errors)))

    lookahead = LOOKAHEAD * horizon
    point, earliest, latest = _crossing(fit, limit, z, lookahead)
    significant = slope_lo > 0
    expected = (significant and earliest is not None and earliest <= horizon
                and point is not None and point <= POINT_WITHIN * horizon)

    def summary(f: fits.Fit) -> dict:
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

