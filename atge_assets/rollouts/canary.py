"""One stage's evidence: the canary measured in alternation with the release's current
deployment over HTTP, judged look by look as the deployments graph judges a deployment (the
sequential design of deployments/sequential.py), and the traffic the stage really sends it.

Plain Python; the `rollout_stage` asset calls it and acts on the answer. Both deployments are
measured on their own URLs rather than through the production domain: a request to the domain
lands on the canary only at the stage's share, so the comparison would take many times the
samples, and the two sides would not alternate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping

import httpx

from atge_assets.deployments import compare as cmp
from atge_assets.deployments import sequential
from atge_assets.deployments.suite import Suite
from atge_assets.deployments.timing import CANDIDATE, REFERENCE, Sample, measure
from atge_assets.lib.http import HostNotAllowed, check_url
from atge_assets.lib.providers.base import (
    READY,
    Deployment,
    MalformedPayload,
    ProviderError,
)


class NotMeasurable(Exception):
    """A deployment of the release cannot be measured; the message says why."""


def resolve(client, allowed: list[str], dep_id: str) -> Deployment:
    """The deployment, READY and on an allowed host: nothing is sent anywhere else."""
    try:
        dep = client.get_deployment(dep_id)
    except (ProviderError, MalformedPayload, ValueError) as exc:
        raise NotMeasurable(f"could not read deployment {dep_id}: {exc}") from exc
    if dep.state != READY:
        raise NotMeasurable(f"deployment {dep_id} is {dep.state}, not READY")
    try:
        check_url(dep.url, allowed)
    except HostNotAllowed as exc:
        raise NotMeasurable(f"deployment {dep_id} not measured: {exc}") from exc
    return dep


@dataclass
class StageResult:
    rows: list[dict]  # compare.compare's rows at the last look
    verdict: str  # pass, improved, regressed or held
    rounds: list[dict] = field(default_factory=list)
    samples: int = 0  # per side, of the metric measured most


def _by_metric(samples: list[Sample], who: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in samples:
        if s.target == who:
            out.setdefault(s.metric, []).append(s.value_ms)
    return out


def judge_stage(canary_url: str, current_url: str, current_id: str, suite: Suite,
                max_samples: int, *, headers: Mapping[str, str] | None = None,
                log: Callable[[str], None] = lambda line: None) -> StageResult:
    """Measure, judge, and measure the undecided metrics again until every one is decided or
    the budget is spent (then it is held)."""
    samples = measure(canary_url, suite, reference_url=current_url, headers=headers)
    looks = sequential.design(suite.samples, max_samples).looks
    rounds: list[dict] = []
    while True:
        cand, ref = _by_metric(samples, CANDIDATE), _by_metric(samples, REFERENCE)
        base = {m: {"source": f"interleaved:{current_id}", "samples": v} for m, v in ref.items()}
        look = len(rounds) + 1
        rows = cmp.compare(suite, base, cand, look=look, looks=looks)
        unsure = [r["metric"] for r in rows if r["decision"] == sequential.MEASURE_MORE]
        taken = max(map(len, cand.values()), default=0)
        rounds.append({"round": look, "samples": taken,
                       "verdicts": ", ".join(f"{r['metric']}={r['verdict']}" for r in rows)})
        n = min((len(cand.get(m, [])) for m in unsure), default=0)
        more = min(suite.samples, max_samples - n)
        if not unsure or more < 1:
            break
        log(f"look {look} of {looks}: {unsure} undecided at {n} samples; measuring {more} more")
        samples += measure(canary_url, dataclasses.replace(
            suite, metrics=tuple(m for m in suite.metrics if m.name in unsure), warmup=0,
            samples=more), reference_url=current_url, seq_start=n, headers=headers)
    return StageResult(rows, cmp.overall_verdict(rows), rounds, taken)


def probe_traffic(production_url: str, n: int, canary_header: str, path: str = "/api/health",
                  headers: Mapping[str, str] | None = None) -> tuple[list[bool], int]:
    """(served by the canary?, one per answered request) and the number of failed requests,
    for `n` requests to the production domain, each as a new visitor (no cookies kept)."""
    served: list[bool] = []
    failed = 0
    with httpx.Client(headers={"user-agent": "atge-rollout/0.1", **(headers or {})},
                      timeout=10.0, cookies=None) as client:
        for _ in range(n):
            client.cookies.clear()  # a visitor keeps its side of the split by cookie
            try:
                resp = client.get(production_url.rstrip("/") + path)
            except httpx.HTTPError:
                failed += 1
                continue
            if resp.status_code >= 400:
                failed += 1
                continue
            served.append(bool(resp.headers.get(canary_header)))
    return served, failed
