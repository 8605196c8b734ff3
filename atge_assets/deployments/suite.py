"""The benchmark suite: which request measures which metric, and the plan's static baselines.

The ATGE plan names four metrics with fixed baselines (data collection 10 s, AI analysis 15 s,
database query 2 s, end-to-end 30 s), each with a 10% tolerance. A metric is measured either as
the wall-clock time of its request or, when `phase` is set, as that phase of the response's
`Server-Timing` header (falling back to wall-clock when the header lacks it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


class SuiteError(ValueError):
    """The suite configuration is invalid."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    path: str
    method: str = "GET"
    body: dict | None = None
    phase: str | None = None
    timeout_s: float = 60.0
    baseline_ms: float = 1000.0  # the plan's static baseline, used on a cold start
    threshold: float = 0.10

    def validate(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise SuiteError(f"metric name {self.name!r} must be letters, digits and underscores")
        if self.method.upper() not in {"GET", "POST", "PUT", "HEAD"}:
            raise SuiteError(f"metric {self.name}: method {self.method!r} is not GET/POST/PUT/HEAD")
        if not self.path.startswith("/"):
            raise SuiteError(f"metric {self.name}: path {self.path!r} must start with '/'")
        if not (0 < self.timeout_s <= 600):
            raise SuiteError(f"metric {self.name}: timeout_s must be in (0, 600], got {self.timeout_s}")
        if not (self.baseline_ms > 0):
            raise SuiteError(f"metric {self.name}: baseline_ms must be positive")
        if not (0 < self.threshold < 10):
            raise SuiteError(f"metric {self.name}: threshold must be a fraction such as 0.10")


ANALYZE_BODY = {"symbol": "BTC"}

DEFAULT_SUITE: tuple[MetricSpec, ...] = (
    MetricSpec("data_collection", "/api/einstein/analyze", "POST", ANALYZE_BODY, phase="collect",
               baseline_ms=10_000),
    MetricSpec("ai_analysis", "/api/einstein/analyze", "POST", ANALYZE_BODY, phase="ai",
               baseline_ms=15_000),
    MetricSpec("database_query", "/api/einstein/trade-history", "GET", phase="db",
               baseline_ms=2_000),
    MetricSpec("end_to_end", "/api/einstein/analyze", "POST", ANALYZE_BODY, baseline_ms=30_000),
)


@dataclass(frozen=True)
class Suite:
    metrics: tuple[MetricSpec, ...] = DEFAULT_SUITE
    samples: int = 10
    warmup: int = 2
    # The sandbox serves the plan's latencies scaled down; static baselines follow the same scale.
    baseline_scale: float = 1.0
    extra: dict = field(default_factory=dict)

    def validate(self) -> "Suite":
        if not self.metrics:
            raise SuiteError("the suite has no metrics")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise SuiteError(f"metric names repeat: {names}")
        for m in self.metrics:
            m.validate()
        if not (3 <= self.samples <= 1000):
            raise SuiteError(f"samples must be between 3 and 1000, got {self.samples}")
        if not (0 <= self.warmup <= 100):
            raise SuiteError(f"warmup must be between 0 and 100, got {self.warmup}")
        if not (self.baseline_scale > 0):
            raise SuiteError("baseline_scale must be positive")
        return self

    def static_baseline_ms(self, metric: str) -> float:
        return self.by_name(metric).baseline_ms * self.baseline_scale

    def by_name(self, metric: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == metric:
                return m
        raise KeyError(metric)


def metrics_from_json(text: str) -> tuple[MetricSpec, ...]:
    """Parse a JSON list of metric objects (the `ATGE_SUITE_JSON` / resource override)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"suite JSON is not valid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise SuiteError("suite JSON must be a list of metric objects")
    allowed = set(MetricSpec.__dataclass_fields__)
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SuiteError(f"suite entry {i} is not an object")
        unknown = set(item) - allowed
        if unknown:
            raise SuiteError(f"suite entry {i}: unknown keys {sorted(unknown)}")
        try:
            spec = MetricSpec(**item)
        except TypeError as exc:
            raise SuiteError(f"suite entry {i}: {exc}") from None
        spec.validate()
        out.append(spec)
    return tuple(out)


def metrics_to_json(metrics: tuple[MetricSpec, ...]) -> str:
    return json.dumps([asdict(m) for m in metrics])
