"""Change points across deployments: where a metric's level moved and stayed moved.

Pure Python (numpy/scipy, imported lazily), no Dagster or pandas import, so `atge changepoints`
starts fast. One series in, a list of change points out.

The method is Apache Otava's (Fleming et al. 2023, "Hunter"): a divisive *split* pass proposes
candidates with a loose t-test, then a *merge* pass re-tests every candidate against its
neighbouring segments only and drops the weakest until all survivors pass the strict test.
What differs from Otava, and why:

- A change is a *transition* from one level to another, either at once (a step) or along a
  straight ramp of up to ``max_creep`` points (a creep: each deployment a little slower, none
  alarming alone). Both are one regression on a 0..1 regressor, so they compete on one t-test.
- The split pass also tries two steps at once (as circular binary segmentation does) when no
  single split is significant: a regression that was fixed a few deployments later is invisible
  to a single split through the middle of a long series.
- Isolated spikes (one or two wild points) are replaced by their local median first, so an
  outlier can neither be a change point nor inflate a segment's variance.
- The merge pass guards against series that wander rather than step (trends, random walks, as
  in many TCPD series): the t statistic is discounted for the autocorrelation left in the
  residuals, a change is dropped where a straight line fits its stretch twice as well, and a
  shift smaller than the point-to-point noise is not reported however many points support it.

Defaults were chosen on TCPD (benchmarks/changepoints_tcpd.py) among settings that also keep
synthetic deployment series right (steps, creeps, spikes, flat noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence, TextIO

if TYPE_CHECKING:
    import numpy as np

STEP = "step"
CREEP = "creep"

MIN_SIZE = 3
ALPHA = 1e-4
SPLIT_ALPHA = 3e-3
MAX_CREEP = 12
CREEP_MIN = 3
MIN_SHIFT = 1.0
TREND_RATIO = 2.0
SPIKE_WINDOW = 2
SPIKE_K = 5.0
# A ramp loses to two steps when the steps' F statistic against it exceeds this: two nearby
# steps in the same direction otherwise pass for a creep.
_STAIRCASE_F = 10.0


@dataclass(frozen=True)
class ChangePoint:
    index: int  # 0-based index (original series, gaps counted) where the new regime starts
    before: float  # robust level (median) of the segment before
    after: float  # robust level of the segment after
    change: float  # relative change after/before - 1 (0 if before == 0)
    p_value: float  # significance of the shift, tested against the neighbouring segments
    kind: str  # STEP or CREEP


@dataclass
class _Transition:
    start: int  # first point off the old level (index into the gap-free series)
    width: int  # 1 for a step; else the ramp's length, reaching the new level at start + width - 1
    p_value: float = 1.0

    @property
    def end(self) -> int:
        """First point at the new level; ramp points before it belong to neither plateau."""
        return self.start + self.width - 1


def detect(
    series: Sequence[float | None],
    *,
    min_size: int = MIN_SIZE,
    alpha: float = ALPHA,
    split_alpha: float = SPLIT_ALPHA,
    max_creep: int = MAX_CREEP,
    creep_min: int = CREEP_MIN,
    min_shift: float = MIN_SHIFT,
    trend_ratio: float = TREND_RATIO,
    spike_window: int = SPIKE_WINDOW,
    spike_k: float = SPIKE_K,
) -> list[ChangePoint]:
    """Change points of ``series``; ``None``, NaN and inf are gaps: skipped, but counted in indices.

    min_size:    fewest points of a regime (so one or two odd points are never one)
    alpha:       largest p-value a change point may keep after the merge pass
    split_alpha: looser p-value at which the split pass proposes candidates
    max_creep:   longest ramp tried, in points; 1 finds steps only
    creep_min:   a ramp this long or longer is reported as kind "creep", a shorter one as a step
    min_shift:   smallest reported shift, in units of the point-to-point noise
    trend_ratio: a change is dropped when a straight line fits its stretch this many times better
                 (smaller residual sum of squares); 0 turns the check off
    spike_window, spike_k: a point further than spike_k noise sigmas from the median of the
                 2*spike_window+1 points around it is a spike and is replaced by that median
    """
    import numpy as np

    positions, y = _clean(series)
    if len(y) < 2 * min_size:
        return []
    noise = _noise(y)
    y = _despike(y, spike_window, spike_k, noise)
    candidates = _split(y, min_size, max_creep, split_alpha)
    kept = _merge(y, candidates, alpha, noise, min_shift, trend_ratio)

    out = []
    for i, t in enumerate(kept):
        lo = kept[i - 1].end if i > 0 else 0
        hi = kept[i + 1].start if i + 1 < len(kept) else len(y)
        before = float(np.median(y[lo : t.start]))
        plateau = y[t.end : hi]
        if len(plateau) >= min_size:
            after = float(np.median(plateau))
        else:  # a creep still under way: its fitted end level beats one or two noisy points
            after = before + _fit(y, t, lo, hi)[0]
        change = after / before - 1.0 if before != 0 else 0.0
        kind = CREEP if t.width >= creep_min else STEP
        out.append(ChangePoint(int(positions[t.start]), before, after, change, t.p_value, kind))
    return out


def changepoint_indices(series: Sequence[float | None]) -> list[int]:
    """Sorted indices of the change points found with the default parameters."""
    return sorted(cp.index for cp in detect(series))


def _clean(series: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    values = np.array([np.nan if v is None else float(v) for v in series], dtype=float)
    positions = np.flatnonzero(np.isfinite(values))
    return positions, values[positions]


def _noise(y: np.ndarray) -> float:
    """Point-to-point noise sigma: the MAD of first differences ignores a few steps and spikes."""
    import numpy as np

    d = np.diff(y)
    if len(d) == 0:
        return 0.0
    dev = np.abs(d - np.median(d))
    mad = 1.4826 * float(np.median(dev))
    # Quantised data (whole milliseconds) can have a zero MAD: fall back to the mean deviation.
    return (mad if mad > 0 else 1.2533 * float(np.mean(dev))) / math.sqrt(2)


def _despike(y: np.ndarray, half: int, k: float, noise: float) -> np.ndarray:
    """Hampel filter with a fixed-size window, shifted inwards at the edges so that two wild
    points at the very end are outvoted like two in the middle."""
    import numpy as np

    n, w = len(y), 2 * half + 1
    if half < 1 or n < w or noise == 0:
        return y
    starts = np.clip(np.arange(n) - half, 0, n - w)
    med = np.median(np.lib.stride_tricks.sliding_window_view(y, w)[starts], axis=1)
    return np.where(np.abs(y - med) > k * noise, med, y)


def _split(y: np.ndarray, min_size: int, max_creep: int, alpha: float) -> list[_Transition]:
    """Binary segmentation: split wherever a proposal is significant, then split the pieces."""
    found, todo = [], [(0, len(y))]
    while todo:
        a, b = todo.pop()
        proposal = _propose(y, a, b, min_size, max_creep, alpha)
        if not proposal or proposal[0].p_value > alpha:
            continue
        found += proposal
        starts = [a] + [t.end for t in proposal]
        ends = [t.start for t in proposal] + [b]
        todo += zip(starts, ends)
    return sorted(found, key=lambda t: t.start)


def _propose(y: np.ndarray, a: int, b: int, min_size: int, max_creep: int, alpha: float) -> list[_Transition]:
    """The best split of y[a:b]: one step, one ramp, or (if neither is significant) two steps.

    A single transition is the fit y = level + shift * x, x being 0 before it, (k+1)/width on
    its k-th point and 1 after; for width 1 that is exactly the pooled two-sample t-test. Two
    steps (three levels) are tested with the F-test. All positions are scored at once from
    cumulative sums.
    """
    import numpy as np
    from scipy import special  # scipy.stats would add a second or two to the first call

    seg = y[a:b]
    m = len(seg)
    if m < 2 * min_size:
        return []
    c0 = np.concatenate([[0.0], np.cumsum(seg)])
    c1 = np.concatenate([[0.0], np.cumsum(np.arange(m) * seg)])
    sy, sst = c0[-1], float(np.sum((seg - seg.mean()) ** 2))
    if sst <= 0:
        return []
    step, ramp = (0.0, 0, 1), (0.0, 0, 2)  # (variance explained, start, width)
    for w in range(1, max(1, max_creep) + 1):
        # The old level keeps >= min_size points, the new one (ramp included) too; a ramp may
        # run to the last point: a creep still under way.
        s = np.arange(min_size, m - max(min_size, w) + 1)
        if len(s) == 0:
            break
        e = s + w
        flat = m - e
        sx = (w + 1) / 2 + flat
        sxx = (w + 1) * (2 * w + 1) / (6 * w) + flat
        sxy = ((c1[e] - c1[s]) - (s - 1) * (c0[e] - c0[s])) / w + (c0[m] - c0[e])
        explained = (sxy - sx * sy / m) ** 2 / (sxx - sx * sx / m)
        j = int(np.argmax(explained))
        best = (float(explained[j]), int(s[j]), w)
        if w == 1:
            step = best
        elif best[0] > ramp[0]:
            ramp = best
    pair, i2, j2 = _two_steps(c0, min_size)
    floor = 1e-12 * sst  # a noiseless series must not divide by zero
    sse_step, sse_ramp, sse_pair = sst - step[0], sst - ramp[0], max(sst - pair, floor)

    # The ramp has one parameter more than a step (its width): BIC asks it to cut the residual
    # by a factor m^(1/m).
    single = step
    if sse_step > sse_ramp * m ** (1 / m) and (sse_ramp - sse_pair) / sse_pair * (m - 3) < _STAIRCASE_F:
        single = ramp
    explained, s1, w1 = single
    t2 = (m - 2) * explained / max(sst - explained, floor)
    p_single = float(2 * special.stdtr(m - 2, -math.sqrt(t2)))
    if p_single > alpha and i2 >= 0:
        p_pair = float(special.fdtrc(2, m - 3, (pair / 2) / (sse_pair / (m - 3))))
        # Two steps are scanned over about m times more positions than one: Bonferroni for that,
        # or heavy-tailed noise throws up a short "regression" now and then.
        if p_pair < p_single and p_pair * m <= alpha:
            return [_Transition(a + i2, 1, p_pair), _Transition(a + j2, 1, p_pair)]
    return [_Transition(a + s1, w1, p_single)]


def _two_steps(c0: np.ndarray, min_size: int) -> tuple[float, int, int]:
    """Variance explained by the best three-level fit, and its two step positions (-1 if none).

    Scans all pairs, in blocks of first positions so that memory stays flat on long series."""
    import numpy as np

    m = len(c0) - 1
    j = np.arange(2 * min_size, m - min_size + 1)[None, :]
    best = (-math.inf, -1, -1)
    for i0 in range(min_size, m - 2 * min_size + 1, 256):
        i = np.arange(i0, min(i0 + 256, m - 2 * min_size + 1))[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = c0[i] ** 2 / i + (c0[j] - c0[i]) ** 2 / (j - i) + (c0[m] - c0[j]) ** 2 / (m - j)
        fit = np.where(j - i >= min_size, fit, -np.inf)
        row, col = divmod(int(np.argmax(fit)), fit.shape[1])
        if fit[row, col] > best[0]:
            best = (float(fit[row, col]), int(i[row, 0]), int(j[0, col]))
    if best[1] < 0:
        return 0.0, -1, -1
    return best[0] - c0[m] ** 2 / m, best[1], best[2]


def _merge(
    y: np.ndarray, found: list[_Transition], alpha: float, noise: float, min_shift: float, trend_ratio: float
) -> list[_Transition]:
    """Otava's merge pass: re-test each change point between its neighbours, drop the weakest,
    until every survivor is significant at ``alpha``.

    The t-test assumes independent points. If the residuals of the current segmentation are
    still autocorrelated (lag-1 rho > 0), the series wanders, as a trend or a random walk does,
    and each point carries less information: for AR(1) noise the effective t^2 shrinks by
    (1 - rho) / (1 + rho). Rho is re-estimated after every drop, so a series that only looked
    stepped because it was cut into a staircase loses its steps together.
    """
    import numpy as np
    from scipy import special

    cps = list(found)

    def measure(i: int) -> tuple[float, int]:
        """t^2 of change point i between its neighbours (0 if it is vetoed), and its df."""
        t = cps[i]
        lo = cps[i - 1].end if i > 0 else 0
        hi = cps[i + 1].start if i + 1 < len(cps) else len(y)
        shift, t2, sse = _fit(y, t, lo, hi)
        if trend_ratio > 0 and _line_sse(y[lo:hi]) * trend_ratio <= sse:
            t2 = 0.0  # a trend, not a change
        if abs(shift) < min_shift * noise:
            t2 = 0.0  # real perhaps, but within the run-to-run noise
        return t2, max(hi - lo - 2, 1)

    measured = [measure(i) for i in range(len(cps))]
    while cps:
        rho = _residual_rho(y, cps)
        t2, df = np.array(measured, dtype=float).T
        p = 2 * special.stdtr(df, -np.sqrt(t2 * (1 - rho) / (1 + rho)))
        weakest = int(np.argmax(p))
        if p[weakest] <= alpha:
            for t, pv in zip(cps, p):
                t.p_value = float(pv)
            break
        del cps[weakest], measured[weakest]
        # only the two neighbours' segments changed
        for i in (weakest - 1, weakest):
            if 0 <= i < len(cps):
                measured[i] = measure(i)
    return cps


def _fit(y: np.ndarray, t: _Transition, lo: int, hi: int) -> tuple[float, float, float]:
    """Least squares of y[lo:hi] on the transition's regressor: (shift, t^2, residual SS)."""
    import numpy as np

    seg = y[lo:hi]
    x = np.clip((np.arange(lo, hi) - t.start + 1) / t.width, 0.0, 1.0)
    xc, yc = x - x.mean(), seg - seg.mean()
    sxx, sxy, syy = float(xc @ xc), float(xc @ yc), float(yc @ yc)
    if len(seg) < 3 or sxx == 0:
        return 0.0, 0.0, syy
    explained = sxy * sxy / sxx
    sse = syy - explained
    if explained <= 0:
        t2 = 0.0
    else:  # a perfect fit (noiseless data) is as significant as it gets
        t2 = (len(seg) - 2) * explained / sse if sse > 1e-12 * syy else math.inf
    return sxy / sxx, t2, max(sse, 0.0)


def _line_sse(seg: np.ndarray) -> float:
    import numpy as np

    x = np.arange(len(seg), dtype=float)
    xc, yc = x - x.mean(), seg - seg.mean()
    sxx = float(xc @ xc)
    return float(yc @ yc) - (float(xc @ yc) ** 2 / sxx if sxx > 0 else 0.0)


def _residual_rho(y: np.ndarray, cps: list[_Transition]) -> float:
    """Lag-1 autocorrelation of the residuals from each plateau's mean (ramp points left out)."""
    import numpy as np

    idx = np.arange(len(y))
    plateau = np.searchsorted([t.end for t in cps], idx, side="right")  # transitions passed
    next_start = np.array([t.start for t in cps] + [len(y)])[plateau]
    on_plateau = idx < next_start  # else inside the next transition's ramp
    plateau, values = plateau[on_plateau], y[on_plateau]
    means = np.bincount(plateau, values) / np.maximum(np.bincount(plateau), 1)
    r = values - means[plateau]
    denom = float(r @ r)
    if len(r) < 3 or denom <= 0:
        return 0.0
    return float(np.clip((r[1:] @ r[:-1]) / denom, 0.0, 0.99))


# The search costs about the square of the length: 20,000 points take up to ~15 s on one core
# (100,000 would take minutes), and a daily trend series is a few hundred.
MAX_BATCH_POINTS = 20_000


def run_batch(lines: Iterable[str | bytes], out: TextIO) -> int:
    """JSONL in ({"id", "series"}), JSONL out ({"id", "changepoints"}); returns the error count.

    A malformed line, or a series over MAX_BATCH_POINTS, gets ``"error"`` and an empty list
    instead of stopping the batch.
    """
    from atge_assets.lib.jsonl import check_length, run_jsonl

    def handle(record: dict) -> dict:
        series = record.get("series")
        if not isinstance(series, list):
            raise ValueError('"series" must be a list of numbers or nulls')
        check_length('"series"', series, MAX_BATCH_POINTS)
        for v in series:
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f'"series" holds a non-number: {v!r}')
        return {"changepoints": changepoint_indices(series)}

    return run_jsonl(lines, out, handle, {"changepoints": []})
