"""Timing ATGE endpoints over real HTTP: samples and `Server-Timing` phases.

Every sample is kept, failed ones included (status, error, timeout), because an error rate is a
regression signal of its own and a silent drop would flatter a broken deployment.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import httpx

from atge_assets.deployments.suite import MetricSpec, Suite


def parse_server_timing(header: str | None) -> dict[str, float]:
    """Parse `Server-Timing: collect;dur=52.1, ai;desc="model";dur=80` into {name: ms}.

    Entries without a numeric `dur` are skipped rather than guessed.
    """
    out: dict[str, float] = {}
    if not header:
        return out
    for entry in header.split(","):
        parts = [p.strip() for p in entry.split(";")]
        name = parts[0]
        if not name:
            continue
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur":
                try:
                    out[name] = float(value.strip().strip('"'))
                except ValueError:
                    pass
    return out


@dataclass
class Sample:
    metric: str
    seq: int
    ok: bool
    value_ms: float | None  # the metric's value: its Server-Timing phase, else wall-clock
    wall_ms: float | None
    status: int | None = None
    error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    target: str = "candidate"

    def as_dict(self) -> dict:
        return asdict(self)


def time_request(client: httpx.Client, base_url: str, spec: MetricSpec, seq: int) -> Sample:
    url = base_url.rstrip("/") + spec.path
    started = time.time()
    t0 = time.perf_counter()
    try:
        resp = client.request(
            spec.method.upper(), url, json=spec.body, timeout=spec.timeout_s,
            follow_redirects=False,
        )
        resp.read()
    except httpx.TimeoutException:
        return Sample(spec.name, seq, False, None, None, error=f"timeout after {spec.timeout_s}s",
                      started_at=started)
    except httpx.HTTPError as exc:
        return Sample(spec.name, seq, False, None, None, error=f"{type(exc).__name__}: {exc}",
                      started_at=started)
    wall = (time.perf_counter() - t0) * 1000.0
    phases = parse_server_timing(resp.headers.get("server-timing"))
    value = phases.get(spec.phase, wall) if spec.phase else wall
    ok = 200 <= resp.status_code < 300
    return Sample(
        spec.name, seq, ok, value if ok else None, wall, status=resp.status_code,
        error=None if ok else f"HTTP {resp.status_code}", phases=phases, started_at=started,
    )


CANDIDATE = "candidate"
REFERENCE = "reference"


def _same_request(spec: MetricSpec) -> tuple:
    return (spec.method.upper(), spec.path, json.dumps(spec.body, sort_keys=True), spec.timeout_s)


def _as_metric(s: Sample, spec: MetricSpec) -> Sample:
    """The sample of `spec` read off a response timed for another metric of the same request."""
    value = s.phases.get(spec.phase, s.wall_ms) if spec.phase else s.wall_ms
    return dataclasses.replace(s, metric=spec.name, value_ms=value if s.ok else None,
                               phases=dict(s.phases))


def measure(
    base_url: str,
    suite: Suite,
    *,
    reference_url: str | None = None,
    client: httpx.Client | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    seq_start: int = 0,
    headers: Mapping[str, str] | None = None,
) -> list[Sample]:
    """Time each metric of the suite: warm-up discarded, then N samples per deployment.

    With `reference_url` (the production deployment to compare with), the two are measured in
    alternation within the same run, A B B A A B ..., so drift in the network, the machine or the
    provider hits both alike and the order of a pair never favours one side.
    Metrics that are phases of the same request (the default suite's collect, ai and end-to-end
    are all one POST /analyze) are read off one response: timing that request three times over
    tripled the time a look takes and measured nothing more. `seq_start` numbers the samples of
    a later round after those already taken. `headers` go with every request (the protection
    bypass).
    """
    targets = [(CANDIDATE, base_url)] + ([(REFERENCE, reference_url)] if reference_url else [])
    groups: dict[tuple, list[MetricSpec]] = {}
    for spec in suite.metrics:
        groups.setdefault(_same_request(spec), []).append(spec)
    own = client is None
    client = client or httpx.Client(
        headers={"user-agent": "atge-benchmark/0.1", **(headers or {})})
    samples: list[Sample] = []
    try:
        for specs in groups.values():
            for i in range(suite.warmup):
                for _, url in targets:
                    time_request(client, url, specs[0], -1 - i)
            for i in range(seq_start, seq_start + suite.samples):
                for name, url in (targets if i % 2 == 0 else targets[::-1]):
                    timed = time_request(client, url, specs[0], i)
                    timed.target = name
                    for spec in specs:
                        s = timed if spec is specs[0] else _as_metric(timed, spec)
                        samples.append(s)
                        if on_sample:
                            on_sample(s)
    finally:
        if own:
            client.close()
    return samples
