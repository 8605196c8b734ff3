"""From stage results to a capacity report: the plan's thresholds per stage, the highest load within
them, the knee where latency turns up, and an HPA-style replica recommendation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from atge_assets.load.spec import LoadResult


# -- capacity ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Thresholds:
    """The plan's pass/fail limits for one stage; `scaled()` for a sandbox that runs faster."""

    max_avg_ms: float = 30_000.0
    max_p95_ms: float = 45_000.0
    max_error_rate: float = 0.01
    # Closed stages: throughput must reach this x users. As the plan has it, it cannot hold
    # beside a 30 s average: a user waiting 30 s per answer sends at most 1/30 req/s (Little's
    # law) unless its requests overlap, so set it from the think time of the journey measured.
    min_rps_per_user: float = 0.8
    min_rate_ratio: float = 0.8  # open stages: throughput must reach this x the offered rate

    def scaled(self, scale: float) -> Thresholds:
        """Limits for an app whose latencies are `scale` times the real one's (sandbox: 0.005).

        Time limits shrink with it; a closed user's throughput grows as its latency shrinks.
        """
        if not scale > 0:
            raise ValueError("scale must be > 0")
        return replace(self, max_avg_ms=self.max_avg_ms * scale,
                       max_p95_ms=self.max_p95_ms * scale,
                       min_rps_per_user=self.min_rps_per_user / scale)

    def failures(self, r: LoadResult) -> list[str]:
        out = []
        if r.aborted:
            out.append(f"aborted: {r.aborted}")
        if r.requests == 0 or r.avg_ms is None:
            return out + ["no answered requests"]
        if r.avg_ms > self.max_avg_ms:
            out.append(f"avg {r.avg_ms:.1f} ms > {self.max_avg_ms:g} ms")
        if r.p95_ms > self.max_p95_ms:
            out.append(f"p95 {r.p95_ms:.1f} ms > {self.max_p95_ms:g} ms")
        if r.error_rate > self.max_error_rate:
            out.append(f"error rate {r.error_rate:.2%} > {self.max_error_rate:.2%}")
        floor = (self.min_rps_per_user * r.users if r.rate is None
                 else self.min_rate_ratio * r.rate)
        if r.rps < floor:
            out.append(f"throughput {r.rps:.1f} req/s < {floor:.1f} req/s")
        return out


def plan_thresholds(limits: Thresholds, latency_scale: float, *, think_s: float,
                    ramp_up_s: float, stage_s: float) -> Thresholds:
    """The plan's limits, time limits scaled like the benchmark's static baselines.

    The plan also asks for throughput of at least 0.8 req/s per user. A closed user sends one
    request per answer and think time (Little's law: X = N / (R + Z)), so at the plan's own 30 s
    average a user cannot exceed 1/30 req/s and the rule as written fails every healthy stage.
    Here the floor is `min_rate_ratio` of what the users send when every answer takes the allowed
    average: ratio x N / (max_avg + mean think time), discounted for users still ramping up. That
    is the plan's rule exactly when the allowed average plus think time is 1 s, and it scales
    with the sandbox's latencies like the time limits do.
    """
    t = limits.scaled(latency_scale)
    cycle_s = t.max_avg_ms / 1000.0 + think_s
    # Users start evenly over the ramp-up, so on average they are busy this share of a stage.
    active = 1.0 - min(ramp_up_s, stage_s) / (2 * stage_s)
    return replace(t, min_rps_per_user=limits.min_rate_ratio * active / cycle_s)


@dataclass(frozen=True)
class CapacityReport:
    stages: list[dict]
    max_passing_load: float | None
    knee_load: float | None
    knee_reason: str | None
    target_load: float
    current_replicas: int
    desired_replicas: int | None
    recommendation: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def capacity_report(stage_results: Sequence[LoadResult], thresholds: Thresholds = Thresholds(),
                    *, current_replicas: int = 1, target_load: float | None = None,
                    knee_tolerance: float = 0.2, scale_tolerance: float = 0.1) -> CapacityReport:
    """What the stages say about capacity. Pure: no I/O.

    - max_passing_load: the highest load before the first stage that failed a threshold (a pass
      above a failure is taken for noise, not capacity).
    - knee: the first stage whose p95 grew by a larger factor than its throughput did, compared
      with the stage before, and by more than `knee_tolerance`. By Little's law the extra load
      either becomes throughput or waiting; past the knee, more of it becomes waiting.
    - desired_replicas: the HPA rule, ceil(current_replicas * current_metric / target_metric),
      with load per replica as the metric: the demand (`target_load`, default the heaviest
      stage) over the load the current replicas held within the thresholds. Within
      `scale_tolerance` of 1 the ratio changes nothing, as the HPA's 10% tolerance does.
    """
    if current_replicas < 1:
        raise ValueError("current_replicas must be >= 1")
    ordered = sorted(stage_results, key=lambda r: r.load)
    if not ordered:
        raise ValueError("no stage results")
    rows, max_passing, knee, knee_reason, failed_before = [], None, None, None, False
    for i, r in enumerate(ordered):
        fails = thresholds.failures(r)
        row = {"load": r.load, "model": r.model, "rps": round(r.rps, 2), "avg_ms": r.avg_ms,
               "p95_ms": r.p95_ms, "error_rate": round(r.error_rate, 6), "passed": not fails,
               "failures": fails}
        if i:
            prev = ordered[i - 1]
            if prev.p95_ms and r.p95_ms and prev.rps > 0:
                lat_g, rps_g = r.p95_ms / prev.p95_ms, r.rps / prev.rps
                row.update(p95_growth=round(lat_g, 3), rps_growth=round(rps_g, 3))
                if knee is None and lat_g > max(rps_g, 1 + knee_tolerance):
                    knee = r.load
                    knee_reason = (f"from load {prev.load:g} to {r.load:g}, p95 grew x{lat_g:.2f} "
                                   f"while throughput grew x{rps_g:.2f}")
        if not fails and not failed_before:
            max_passing = r.load
        failed_before = failed_before or bool(fails)
        rows.append(row)

    target = float(target_load if target_load is not None else ordered[-1].load)
    if max_passing is None:
        desired = None
        advice = (f"no stage met the thresholds, not even load {ordered[0].load:g}: capacity is "
                  "below the lightest stage; measure lighter stages before scaling")
    else:
        ratio = target / max_passing
        desired = current_replicas if abs(ratio - 1) <= scale_tolerance else max(
            1, math.ceil(current_replicas * ratio))
        lower = " (a lower bound: every stage passed)" if not failed_before else ""
        advice = (f"desired = ceil({current_replicas} x {target:g} / {max_passing:g}) "
                  f"= {desired} replicas for a load of {target:g}; {current_replicas} "
                  f"replica(s) held {max_passing:g}{lower}")
        if desired < current_replicas and not failed_before:
            desired, advice = current_replicas, advice + "; not scaling down on a lower bound"
    return CapacityReport(rows, max_passing, knee, knee_reason, target, current_replicas,
                          desired, advice)
