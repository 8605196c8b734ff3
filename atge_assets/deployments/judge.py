"""The regression judge: baseline samples and candidate samples in, a verdict with its reasons out.

Numpy only (no Dagster, pandas or scipy), so `atge judge --batch` starts fast and does thousands of
comparisons a second. One call judges one metric. A sample is a latency in milliseconds, or
``None`` for a request that failed (error status or timeout); NaN and infinity count as failures
too, since that is how pandas and some clients spell "no latency".

The rule. Latency regressed when the Hodges-Lehmann estimate of the change (median of all
candidate/baseline log-ratios) is beyond the threshold AND a one-sided Mann-Whitney test says the
candidate is slower by more than half the threshold (+5% at 10%) with p < alpha (0.005). Errors
regressed when the candidate's failure rate is above the baseline's by more than a margin (2
points) AND a one-sided Fisher exact test says so with p < 0.01. Either is a rollback. Evidence
that falls short (estimate past half the threshold with the CI reaching past it, or a suggestive
rise in failures) is ``inconclusive``: the graph measures more and calls again with ``look=2``,
3, ... (each look halves alpha); it never rolls back on inconclusive.

Why these pieces (asv and Kayenta use the same two: a rank test plus a factor or tolerance on a
robust shift estimate):
- Ranks and the median of pairwise log-ratios ignore how far an outlier is, so a GC pause or a
  cold start moves the estimate by at most one rank.
- Two modes (cache hit / miss, found as a wide gap in the pooled samples) are compared within
  each mode: van Elteren's stratified Mann-Whitney and the weighted median of the within-mode
  log-ratios. A hit against a miss says nothing about the deployment; with 30% misses those
  pairs are 42% of all pairs and left in they cost the test most of its power. A chance imbalance
  of misses (which wrecks a mean) moves nothing. A cache that misses more often is judged apart,
  like failures: a bigger share of the slow mode (Fisher exact, p < alpha) whose implied mean
  latency is beyond the threshold is a regression too. So is one mode slower on its own (misses
  60% slower, hits as before), judged by its own test and by the mean latency it implies: the
  within-mode estimate follows the bigger mode and would miss it.
- Logs make the change a ratio (what "10% slower" means) and make ms and seconds judge alike.
- The confidence interval is the distribution-free one from Mann-Whitney critical values (an order
  statistic of the pairwise differences): analytic, so no bootstrap per comparison.
- The point estimate, not a CI bound, must cross the threshold: with 20 samples at 10% noise a
  true +15% and a true +5% are only ~3 standard errors apart, and requiring the CI's lower bound
  past 10% would miss most +15%s. The test against +5% rather than against zero is what keeps a
  real but harmless +5%, whose estimate lands past the threshold by luck, from rolling back: at
  that change the test's null holds, so it fires with probability alpha at most, however little
  noise there is. benchmarks/judge_accuracy.py measures the trade-off, with the graph's re-measure
  rounds.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Iterable, Sequence, TextIO

import numpy as np

from atge_assets.deployments import ranks, sequential
from atge_assets.lib.jsonl import plain as _plain
from atge_assets.lib.jsonl import run_jsonl

REGRESSED = "regressed"
PASS = "pass"
IMPROVED = "improved"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REGRESSED, PASS, IMPROVED, INCONCLUSIVE)
# A deployment's verdict (not one look's) when a metric is still inconclusive at its last planned
# look: not promoted, not known-good, announced; a person decides. ACCEPTED: what a person made
# of a held deployment they let through.
HELD = "held"
ACCEPTED_BY_PERSON = "accepted"

ALPHA = sequential.ALPHA
# The rank test asks "slower by more than this share of the threshold?", not "slower at all?": a
# +5% change is no regression at a 10% threshold, yet with little noise it is significantly
# slower than zero, leaving only the estimate between it and a rollback.
MARGIN = 0.5
CONFIDENCE = 0.95
ERROR_ALPHA = 0.01
# With 10-40 requests a side, a 20% failure rate against 0% is often only p ~ 0.05: worth measuring
# again (inconclusive) rather than passing, but not worth a rollback yet.
ERROR_SUGGESTIVE = 0.10
# Absolute rise in failure rate that matters even when significant: a few more timeouts in a
# thousand requests is a flaky network, not a bad deployment.
ERROR_MARGIN = 0.02
# Beyond this many successful samples a side, a systematic subsample keeps memory and time bounded.
MAX_SAMPLES = 2000
# Two modes (see _modes): a gap of this many within-mode standard deviations between them, each
# with at least this share (and count) of the pooled samples. The floor on the spread keeps timers
# that round to the same value from making every gap look wide.
MODE_GAP = 1.5
MODE_SHARE = 0.10
MODE_MIN = 4
# The two mode tests are extra chances of a false alarm beside the latency test, on data where
# the latency test is already weakest: they spend a quarter of its alpha.
MODE_ALPHA_SHARE = 0.25
_MIN_SPREAD = 0.01



@dataclass(frozen=True)
class Verdict:
    verdict: str
    change: float | None  # estimated relative change of the typical latency: 0.23 = 23% slower
    ci_low: float | None  # confidence interval of `change` at level `confidence`
    ci_high: float | None
    # Mann-Whitney (van Elteren with two modes), one-sided: the probability of this much slowdown
    # by chance if the candidate were at most MARGIN x threshold slower (+5% at a 10% threshold).
    p_value: float | None
    test: str
    n_baseline: int  # successful samples (latencies) on each side
    n_candidate: int
    baseline_error_rate: float
    candidate_error_rate: float
    noise: float | None  # robust coefficient of variation of the baseline
    threshold: float
    reasons: list[str] = field(default_factory=list)
    confidence: float = CONFIDENCE
    alpha: float = ALPHA
    p_value_faster: float | None = None  # the same test the other way, for `improved`
    candidate_noise: float | None = None
    baseline_failures: int = 0
    candidate_failures: int = 0
    error_p_value: float | None = None  # Fisher exact, one-sided (candidate fails more)
    mode_cut_ms: float | None = None  # two modes (cache hit / miss) split here, judged apart
    # With two modes: the mean latency's change implied by the candidate's share of the slow mode
    # alone, and Fisher's one-sided p for that share being bigger.
    mode_mix_change: float | None = None
    mode_mix_p_value: float | None = None
    # The futility test, one-sided: slower by less than DETECT x threshold (+15% at 10%)?
    p_value_harmless: float | None = None
    look: int = 1  # this comparison is look `look` of `looks` planned ones (sequential.py)
    looks: int = 1
    futility_alpha: float | None = None  # the futility test's level at this look

    @property
    def rollback(self) -> bool:
        return self.verdict == REGRESSED

    @property
    def decision(self) -> str:
        """rollback, keep, measure_more, or hold (undecided at the last planned look)."""
        if self.verdict == REGRESSED:
            return sequential.ROLLBACK
        if self.verdict == INCONCLUSIVE:
            return sequential.HOLD if self.look >= self.looks else sequential.MEASURE_MORE
        return sequential.KEEP

    def as_dict(self) -> dict:
        d = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        d["rollback"] = self.rollback
        d["decision"] = self.decision
        return d


def _latencies(samples: Sequence[float | None], side: str) -> tuple[np.ndarray, int]:
    """Latencies of the successful samples, and the number of failed ones."""
    if isinstance(samples, (str, bytes)) or not isinstance(samples, Iterable):
        raise ValueError(f"{side}: expected a list of latencies, got {type(samples).__name__}")
    samples = list(samples)
    # Plain JSON numbers skip the per-item check, which would cost more than the statistics.
    if not set(map(type, samples)) <= {float, int, type(None)}:
        for s in samples:
            # bool is an int to Python, but `true` in a latency list is a bug upstream, not 1 ms.
            if s is not None and not isinstance(s, float) and (
                not isinstance(s, numbers.Real) or isinstance(s, (bool, np.bool_))
            ):
                raise ValueError(f"{side}: {s!r} is neither a latency in ms nor null")
    values = np.array(samples, dtype=float)  # None becomes NaN: a failure
    ok = values[np.isfinite(values)]
    if (ok < 0).any():
        raise ValueError(f"{side}: negative latency {float(ok[ok < 0][0])!r}")
    return ok, len(values) - len(ok)


def _logs(baseline: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log latencies of both sides. A zero is a timer rounding below its resolution: it is read
    as half the smallest latency measured on either side, so the floor moves with the unit and
    the same measurements in ns, ms or s get the same verdict (a fixed floor of 0.001 turned
    sub-millisecond seconds into ties)."""
    positive = np.concatenate([baseline[baseline > 0], candidate[candidate > 0]])
    floor = float(positive.min()) / 2 if len(positive) else 1.0
    return np.log(np.maximum(baseline, floor)), np.log(np.maximum(candidate, floor))


def _robust_cv(logs: np.ndarray) -> float | None:
    """MAD of the log latencies scaled to a standard deviation: ~ the coefficient of variation."""
    return ranks.robust_sd(logs) if len(logs) >= 2 else None


def _modes(lb: np.ndarray, lc: np.ndarray) -> float | None:
    """Where the pooled log latencies split into two modes (cache hit / miss), or None.

    The cut is the widest gap of the pooled values, used only when it is wide against the spread
    inside each side of it and each side holds a real share of the samples: a unimodal sample's
    widest gap is in a tail and cuts off a handful. The cut depends on the pooled values alone, not
    on which side each came from, so a rank test within the modes stays exact under no change.
    """
    pooled = np.sort(np.concatenate([lb, lc]))
    total = len(pooled)
    if total < 2 * MODE_MIN:
        return None
    gaps = np.diff(pooled)
    lo = max(MODE_MIN, math.ceil(MODE_SHARE * total)) - 1
    hi = total - max(MODE_MIN, math.ceil(MODE_SHARE * total)) - 1
    if hi < lo:
        return None
    i = lo + int(np.argmax(gaps[lo:hi + 1]))
    below, above = pooled[:i + 1], pooled[i + 1:]
    spread = max(ranks.robust_sd(below), ranks.robust_sd(above), _MIN_SPREAD)
    if gaps[i] < MODE_GAP * spread:
        return None
    return float(0.5 * (pooled[i] + pooled[i + 1]))


def _mode_slowdowns(tb: np.ndarray, tc: np.ndarray, cut: float, confidence: float, margin: float,
                    threshold: float, alpha: float, suggestive):
    """(regressed, unsure, reason) for one mode slower on its own, e.g. only cache misses.

    The within-mode estimate is dominated by the bigger mode (hits), so misses 60% slower with hits
    unchanged would pass, though such misses can be half the time spent. Each mode is judged by
    its own test (alpha split between the two) and by the change of the mean latency its slowdown
    implies at the baseline's mix: a slower rare mode counts for as much time as it takes.
    """
    m = len(tb)
    centres = [math.exp(ranks.median(tb[tb < cut])), math.exp(ranks.median(tb[tb >= cut]))]
    shares = [(tb < cut).sum() / m, (tb >= cut).sum() / m]
    mean = sum(q * c for q, c in zip(shares, centres))
    worst = (False, False, None)
    for name, b, c, q, centre in (("fast", tb[tb < cut], tc[tc < cut], shares[0], centres[0]),
                                  ("slow", tb[tb >= cut], tc[tc >= cut], shares[1], centres[1])):
        estimate, _, _, p, _, _ = ranks.shift(b, c, confidence, None, margin)
        implied = q * centre * math.expm1(estimate) / mean
        line = (f"{name} mode alone: {_pct(math.expm1(estimate))} ({len(b)} vs {len(c)} samples), "
                f"{_pct(implied)} of the mean latency; Mann-Whitney p={p:.3g}")
        if implied > threshold and p < alpha / 2:
            return True, False, f"{line} < {alpha / 2:g}: that mode regressed"
        if implied > threshold and suggestive(p, alpha / 2) and not worst[0]:
            worst = (False, True, f"{line}: that mode might have regressed")
    return worst if worst[1] else (False, False, None)


def _mode_mix(tb: np.ndarray, tc: np.ndarray, cut: float, threshold: float, alpha: float,
              suggestive):
    """(regressed, unsure, change, p-value or None, reason) for a bigger share of the slow mode.

    Within-mode comparison cannot see a cache that misses more often, so the shares are a test of
    their own, like the failure rate: Fisher exact on the counts in the slow mode, and the change
    of the mean latency that the new share implies with both modes at their pooled medians. A
    cache that now misses every time leaves too few hits for two modes and is caught by the
    latency test; one that misses 70% of the time instead of 30% is caught here.
    """
    m, n = len(tb), len(tc)
    b_slow, c_slow = int((tb >= cut).sum()), int((tc >= cut).sum())
    pooled = np.concatenate([tb, tc])
    fast = math.exp(ranks.median(pooled[pooled < cut]))
    slow = math.exp(ranks.median(pooled[pooled >= cut]))
    qb, qc = b_slow / m, c_slow / n
    change = ((1 - qc) * fast + qc * slow) / ((1 - qb) * fast + qb * slow) - 1
    line = (f"slow mode: candidate {c_slow}/{n} ({qc:.0%}), baseline {b_slow}/{m} ({qb:.0%}); "
            f"mean latency at that mix {_pct(change)}")
    if qc <= qb:
        return False, False, change, None, f"{line}: no bigger share"
    p = ranks.fisher_worse(c_slow, n, b_slow, m)
    line += f"; Fisher exact p={p:.3g}"
    if change > threshold and p < alpha:
        return True, False, change, p, f"{line} < {alpha:g}: significantly more slow responses"
    if change > threshold and suggestive(p, alpha):
        return False, True, change, p, f"{line}: a bigger share, not yet significant"
    return False, False, change, p, f"{line}: not a significant change beyond the threshold"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def _thin(logs: np.ndarray) -> np.ndarray:
    # The pairwise differences are m*n floats: 2000 a side is 32 MB and a third of a second.
    # Evenly spaced picks keep a systematic sample of a run that was recorded in time order.
    if len(logs) <= MAX_SAMPLES:
        return logs
    return logs[np.linspace(0, len(logs) - 1, MAX_SAMPLES).round().astype(int)]


def _errors(b_fail, b_total, c_fail, c_total, error_alpha, error_margin, suggestive):
    """(regressed, unsure, p-value or None, reason or None) for the failure rates."""
    b_rate = b_fail / b_total if b_total else 0.0
    c_rate = c_fail / c_total if c_total else 0.0
    counts = (f"candidate {c_fail}/{c_total} failed ({c_rate:.1%}), baseline "
              f"{b_fail}/{b_total} ({b_rate:.1%})")
    if not (b_total and c_total and c_rate > b_rate):
        return False, False, None, (f"errors: {counts}: no worse" if b_fail or c_fail else None)
    p = ranks.fisher_worse(c_fail, c_total, b_fail, b_total)
    rise = c_rate - b_rate
    line = (f"errors: {counts}; up {rise * 100:.3g} points (margin {error_margin * 100:g}); "
            f"Fisher exact p={p:.3g}")
    if rise > error_margin and p < error_alpha:
        return True, False, p, f"{line} < {error_alpha:g}: significantly more failures"
    if rise > error_margin and suggestive(p, error_alpha):
        return False, True, p, f"{line}: more failures, not yet significant at p < {error_alpha:g}"
    return False, False, p, f"{line}: not a significant rise beyond the margin"


def judge(
    baseline: Sequence[float | None],
    candidate: Sequence[float | None],
    threshold: float = 0.10,
    alpha: float | None = None,
    *,
    confidence: float = CONFIDENCE,
    error_alpha: float = ERROR_ALPHA,
    error_margin: float = ERROR_MARGIN,
    look: int = 1,
    looks: int = 1,
    beta: float | None = None,
) -> Verdict:
    """Compare candidate latencies with baseline latencies (ms, None for a failed request).

    This is look `look` of `looks` planned ones (see sequential.py): 1 of 1 is a single
    comparison. alpha, error_alpha and beta are budgets over all the looks, and this look spends
    its share of each; alpha and beta default to sequential.budgets(looks). The verdict's
    `decision` says what to do: rollback, keep, measure_more or, at the last look with the
    question still open, hold for a person.

    Raises ValueError for input that is not latencies (strings, booleans, negative numbers), for
    a threshold that is not a positive number, or for a look outside 1..looks.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
        math.isfinite(threshold) and threshold > 0
    ):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    alpha, beta = sequential.budgets(looks, alpha, beta)
    if not (0 < alpha < 1 and 0 < confidence < 1 and 0 < error_alpha < 1 and error_margin >= 0):
        raise ValueError("alpha, confidence and error_alpha must be in (0, 1), error_margin >= 0")
    plan = sequential.Design(looks, alpha, beta)
    threshold = float(threshold)
    # The failure and mode tests spend this look's increment as their level; the latency tests,
    # which accumulate over the looks, get the exact level for it (sequential.py).
    spent_k = plan.alpha_at(look)
    error_alpha = error_alpha * spent_k / alpha
    mode_alpha = spent_k * MODE_ALPHA_SHARE
    futility, final = plan.harmless_level(look), plan.final(look)
    alpha = plan.rollback_level(look)

    def suggestive(p: float, level: float) -> bool:
        # A sub-test short of its level keeps the look open only while the rest of the budget
        # could settle it: its z grows like sqrt(samples) if the trend holds, so at look k of K
        # at most sqrt(K / k) over. Without this a chance imbalance of failures (5 against 14 in
        # 170 requests, the same rate both sides) reopened look after look at p ~ 0.03. At the
        # last (or only) look a suggestive p is left to a person, as before.
        if p >= ERROR_SUGGESTIVE:
            return False
        if final:
            return True
        return (ranks.NORMAL.inv_cdf(1 - p) * math.sqrt(looks / look)
                >= ranks.NORMAL.inv_cdf(1 - level))
    b, b_fail = _latencies(baseline, "baseline")
    c, c_fail = _latencies(candidate, "candidate")
    lb, lc = _logs(b, c)
    m, n = len(lb), len(lc)
    b_total, c_total = m + b_fail, n + c_fail

    errors_regressed, errors_unsure, error_p, error_reason = _errors(
        b_fail, b_total, c_fail, c_total, error_alpha, error_margin, suggestive)
    reasons = [error_reason] if error_reason else []
    tests = ["fisher-exact"] if error_p is not None else []
    result = dict(
        n_baseline=m, n_candidate=n, threshold=threshold, confidence=confidence, alpha=alpha,
        baseline_error_rate=b_fail / b_total if b_total else 0.0,
        candidate_error_rate=c_fail / c_total if c_total else 0.0,
        noise=_robust_cv(lb), candidate_noise=_robust_cv(lc),
        baseline_failures=b_fail, candidate_failures=c_fail, error_p_value=error_p,
        look=look, looks=looks, futility_alpha=futility,
    )

    # With too few samples even a total separation is not significant: a regression could never
    # be shown, so a pass would be a guess. Ask for more samples instead.
    if m == 0 or n == 0 or ranks.min_p(m, n) >= alpha:
        verdict = REGRESSED if errors_regressed else INCONCLUSIVE
        reasons.insert(0, f"{verdict}: " + ("more failures than baseline" if errors_regressed
                                            else "too few successful samples to judge latency"))
        reasons.append(f"latency: only {m} baseline and {n} candidate successful samples, too few "
                       f"for the Mann-Whitney test to reach p < {alpha:.2g}")
        return Verdict(verdict, None, None, None, None, "+".join(tests) or "none",
                       reasons=reasons, **result)

    tb, tc = _thin(lb), _thin(lc)
    modes_at = _modes(tb, tc)
    # Compared within modes only when both deployments have samples in both: otherwise the "gap"
    # may be of the change's own making (every candidate sample above every baseline one), and
    # the whole-sample comparison sees that change. The share of the slow mode is tested anyway.
    cut = modes_at if modes_at is not None and min(
        (tb < modes_at).sum(), (tb >= modes_at).sum(),
        (tc < modes_at).sum(), (tc >= modes_at).sum()) >= 2 else None
    margin = math.log1p(MARGIN * threshold)
    detect = math.log1p(sequential.DETECT * threshold)
    shift, lo, hi, p_slower, p_faster, p_harmless = ranks.shift(tb, tc, confidence, cut, margin,
                                                                detect)
    change, ci_low, ci_high = math.expm1(shift), math.expm1(lo), math.expm1(hi)
    rank_test = "Mann-Whitney" if cut is None else "van Elteren (Mann-Whitney within modes)"
    by = f"by more than {_pct(MARGIN * threshold)}"
    modes = "" if cut is None else (
        f"two modes split at {math.exp(cut):.4g} ms (baseline {int((tb >= cut).sum())}/{len(tb)}, "
        f"candidate {int((tc >= cut).sum())}/{len(tc)} in the slow mode), compared within each; ")
    reasons.append(
        f"latency: {_pct(change)} (Hodges-Lehmann on log latencies; {confidence:.0%} CI "
        f"{_pct(ci_low)} to {_pct(ci_high)}); {modes}{rank_test} one-sided "
        f"p(slower {by})={p_slower:.3g}, p(faster {by})={p_faster:.3g}, "
        f"p(slower by less than {_pct(sequential.DETECT * threshold)})={p_harmless:.3g}; "
        f"{m} baseline vs {n} candidate samples"
        + (f" (thinned to {MAX_SAMPLES} a side)" if max(m, n) > MAX_SAMPLES else "")
        + f"; noise ±{result['noise']:.0%} baseline, ±{result['candidate_noise']:.0%} candidate"
        + f"; look {look} of {looks}, alpha {alpha:.2g}, futility {futility:.2g}"
    )
    # Symmetric in log space, like asv's factor: slower means over 1.1x the time, improved means
    # under 1/1.1 of it.
    limit = math.log1p(threshold)
    slower = shift > limit and p_slower < alpha
    faster = shift < -limit and p_faster < alpha
    # Futility: significantly less slow than the change the goals promise to catch. At the last
    # look an estimate within half the threshold is kept too: holding a deployment whose best
    # estimate is a harmless +3% for a person would only teach people to ignore holds.
    harmless = p_harmless < futility or (final and change <= threshold / 2)
    mix_regressed = mix_unsure = False
    mix_change = mix_p = None
    if modes_at is not None:
        mix_regressed, mix_unsure, mix_change, mix_p, mix_reason = _mode_mix(
            tb, tc, modes_at, threshold, mode_alpha, suggestive)
        reasons.append(mix_reason)
        tests.append("fisher-exact-modes")
    mode_regressed = mode_unsure = False
    if cut is not None and not slower:
        mode_regressed, mode_unsure, mode_reason = _mode_slowdowns(
            tb, tc, cut, confidence, margin, threshold, mode_alpha, suggestive)
        if mode_reason:
            reasons.append(mode_reason)

    if errors_regressed or slower or mix_regressed or mode_regressed:
        verdict, why = REGRESSED, " and ".join(
            (["more failures than baseline"] if errors_regressed else [])
            + ([f"{_pct(change)} slower, beyond the {threshold * 100:g}% threshold, "
                f"p={p_slower:.2g} < {alpha:.2g}"] if slower else [])
            + ([f"more responses in the slow mode ({_pct(mix_change)} mean latency), "
                f"p={mix_p:.2g} < {mode_alpha:.2g}"] if mix_regressed else [])
            + (["one mode slower on its own, beyond the threshold in mean latency"]
               if mode_regressed else []))
    elif errors_unsure:
        verdict, why = INCONCLUSIVE, "more failures than baseline, not yet significant"
    elif mix_unsure:
        verdict, why = INCONCLUSIVE, "more responses in the slow mode, not yet significant"
    elif mode_unsure:
        verdict, why = INCONCLUSIVE, "one mode might be slower on its own, not yet significant"
    elif faster:
        verdict, why = IMPROVED, f"{_pct(change)}, faster beyond the threshold, p={p_faster:.2g}"
    elif harmless:
        verdict, why = PASS, (
            f"{_pct(change)} is within the {threshold * 100:g}% threshold" if change <= threshold
            else f"{_pct(change)}, but p={p_slower:.2g} is not < {alpha:.2g}")
        if p_harmless < futility:
            why += (f"; slower by less than {_pct(sequential.DETECT * threshold)}, "
                    f"p={p_harmless:.2g} < {futility:.2g}")
    else:
        verdict, why = INCONCLUSIVE, (
            f"{_pct(change)} with CI up to {_pct(ci_high)} might be beyond the "
            f"{threshold * 100:g}% threshold"
            + (f", but p={p_slower:.2g} is not < {alpha:.2g}" if shift > limit else ""))
    reasons.insert(0, f"{verdict}: {why}")
    tests.insert(0, "mann-whitney" if cut is None else "van-elteren")
    return Verdict(verdict, change, ci_low, ci_high, p_slower, "+".join(tests), reasons=reasons,
                   p_value_faster=p_faster, p_value_harmless=p_harmless,
                   mode_cut_ms=None if modes_at is None else math.exp(modes_at),
                   mode_mix_change=mix_change, mode_mix_p_value=mix_p, **result)


def run_batch(lines: Iterable[str | bytes], out: TextIO) -> int:
    """`atge judge --batch`: one JSON comparison per line in, one JSON verdict per line out.

    In:  {"id": ..., "baseline": [ms or null, ...], "candidate": [...], "threshold": 0.10,
          "look": 2, "budget": 160}
    `look` and `budget` (samples a side at most) are optional: with them a script re-measures
    exactly as the graph does (rounds as big as the first, `look` counting them); without them the
    line is one comparison judged as its own last look.
    Out: {"id": ..., "verdict": ..., "decision": rollback|keep|measure_more|hold, "change": ...,
    "rollback": ..., <other Verdict fields>, "error": null}, or for a line that cannot be judged
    (not JSON, not UTF-8, over the line cap) {"id": ..., "line": N, "error": "...",
    "verdict": null, "decision": null, "rollback": false}. Blank lines are skipped; returns the
    number of error lines.
    """
    def whole(row: dict, key: str, low: int) -> int | None:
        x = row.get(key)
        if x is not None and (isinstance(x, bool) or not isinstance(x, int) or x < low):
            raise ValueError(f"{key} must be a whole number >= {low}, got {x!r}")
        return x

    def handle(row: dict) -> dict:
        missing = [k for k in ("baseline", "candidate") if not isinstance(row.get(k), list)]
        if missing:
            raise ValueError(f"{' and '.join(missing)} must be a list of latencies in ms")
        threshold = row.get("threshold")
        look, budget = whole(row, "look", 1) or 1, whole(row, "budget", 1)
        looks = look
        if budget is not None:
            first = math.ceil(max(len(row["baseline"]), len(row["candidate"]), 1) / look)
            if budget < first * (look - 1) + 1:
                raise ValueError(f"look {look} is past the budget of {budget} samples a side")
            looks = sequential.design(min(first, budget), budget).looks
        v = judge(row["baseline"], row["candidate"],
                  0.10 if threshold is None else threshold, look=look, looks=looks).as_dict()
        return {"verdict": v.pop("verdict"), "decision": v.pop("decision"),
                "change": v.pop("change"), "rollback": v.pop("rollback"), **v, "error": None}

    return run_jsonl(lines, out, handle, {"verdict": None, "decision": None, "rollback": False})
