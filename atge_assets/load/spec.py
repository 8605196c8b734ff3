"""What a load stage asks for (`LoadSpec`, validated against hard caps) and what it measured
(`LoadResult`, whose histograms merge exactly across shards).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from atge_assets.load.histogram import LatencyHistogram

# Hard caps, whatever the caller asks: a typo must not turn a benchmark into a denial of service.
MAX_USERS = 10_000
MAX_RATE = 100_000.0
MAX_DURATION_S = 3_600.0
MAX_REQUESTS = 50_000_000
MAX_SHARDS = 32  # executor steps one stage is split over
DEFAULT_STAGES = (100, 500, 1000)


CLOSED, OPEN = "closed", "open"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)




@dataclass(frozen=True)
class LoadSpec:
    url: str
    users: int = 10
    duration_s: float = 10.0
    rate: float | None = None  # requests/s: the open model; None: the closed model
    method: str = "GET"
    body: Any = None  # sent as JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    think_time_s: tuple[float, float] = (0.0, 0.0)  # closed model: uniform in [lo, hi]
    ramp_up_s: float = 0.0  # closed model: users start evenly over this time, within duration_s
    max_requests: int | None = None
    timeout_s: float = 30.0
    abort_error_rate: float | None = 0.5  # abort once the errors in the window exceed this share
    abort_window: int = 100  # ... of the last this many requests (also the minimum before judging)

    def __post_init__(self):
        t = self.think_time_s
        if isinstance(t, (int, float)):
            object.__setattr__(self, "think_time_s", (float(t), float(t)))

    @property
    def model(self) -> str:
        return OPEN if self.rate is not None else CLOSED

    @property
    def load(self) -> float:
        """What a stage varies: users (closed) or requests/s (open)."""
        return self.rate if self.rate is not None else self.users

    def validate(self) -> LoadSpec:
        def need(ok: bool, msg: str):
            if not ok:
                raise ValueError(msg)

        need(isinstance(self.users, int) and 1 <= self.users <= MAX_USERS,
             f"users must be an integer in [1, {MAX_USERS}]")
        need(0 < self.duration_s <= MAX_DURATION_S,
             f"duration must be in (0, {MAX_DURATION_S:g}] s")
        need(self.rate is None or 0 < self.rate <= MAX_RATE, f"rate must be in (0, {MAX_RATE:g}]")
        need(self.max_requests is None or 1 <= self.max_requests <= MAX_REQUESTS,
             f"max_requests must be in [1, {MAX_REQUESTS}]")
        need(0 < self.timeout_s <= 600, "timeout must be in (0, 600] s")
        lo, hi = self.think_time_s
        need(0 <= lo <= hi <= 3600, "think time must be 0 <= lo <= hi <= 3600 s")
        need(0 <= self.ramp_up_s <= self.duration_s, "ramp-up must be in [0, duration]")
        need(self.abort_error_rate is None or 0 <= self.abort_error_rate < 1,
             "abort error rate must be in [0, 1) or None")
        need(1 <= self.abort_window <= 1_000_000, "abort window must be in [1, 1000000]")
        try:
            json.dumps(self.body)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"body is not JSON-serialisable: {exc}") from None
        # HEAD is left out: its answers announce a body that never comes, which llhttp must be told.
        need(self.method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
             f"unsupported method {self.method!r}")
        for k, v in self.headers.items():  # they go into the request verbatim
            need(isinstance(k, str) and isinstance(v, str) and _TOKEN.fullmatch(k) is not None
                 and not any(c in v for c in "\r\n\0"), f"bad header {k!r}: {v!r}")
        return self

    def shard(self, n: int) -> list[LoadSpec]:
        """Split users, rate and request cap over n processes, in proportion to their users."""
        n = max(1, min(n, self.users))
        users = [self.users // n + (i < self.users % n) for i in range(n)]
        out = []
        for i, u in enumerate(users):
            cap = None
            if self.max_requests is not None:
                cap = self.max_requests // n + (i < self.max_requests % n)
            out.append(replace(self, users=u, max_requests=cap,
                               rate=None if self.rate is None else self.rate * u / self.users))
        return [s for s in out if s.max_requests is None or s.max_requests > 0]


@dataclass
class LoadResult:
    """One stage's outcome. `requests` counts every finished attempt, failed ones included;
    `duration_s` runs from the start to the last answer, so `rps` = requests / duration_s.
    Latency figures (ms, HdrHistogram's 0.1% buckets) are None when nothing was answered."""

    model: str
    users: int
    rate: float | None
    requests: int
    errors: int
    duration_s: float
    rps: float
    status_counts: dict[str, int]
    error_counts: dict[str, int]
    aborted: str | None
    stopped_by: str  # "duration", "max_requests", "aborted", "time_limit"
    histogram: LatencyHistogram
    started_at: float = 0.0  # epoch seconds
    shards: int = 1
    service_histogram: LatencyHistogram | None = None  # open model: from the actual send

    @property
    def load(self) -> float:
        return self.rate if self.rate is not None else self.users

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @cached_property
    def _summary(self) -> dict:
        # Results are not changed once made, so the histogram is summarised once.
        out = {k: None if v is None else round(v, 3)
               for k, v in self.histogram.summary_ms((50, 95, 99)).items()}
        if self.service_histogram is not None:
            out.update({f"service_{k}_ms": None if v is None else round(v, 3)
                        for k, v in self.service_histogram.summary_ms((50, 95, 99)).items()
                        if k.startswith("p")})
        return out

    avg_ms = property(lambda self: self._summary["avg"])
    p50_ms = property(lambda self: self._summary["p50"])
    p95_ms = property(lambda self: self._summary["p95"])
    p99_ms = property(lambda self: self._summary["p99"])
    max_ms = property(lambda self: self._summary["max"])

    def to_dict(self, histogram: bool = True) -> dict:
        d = {
            "model": self.model, "users": self.users, "rate": self.rate,
            "requests": self.requests, "errors": self.errors,
            "error_rate": round(self.error_rate, 6), "rps": round(self.rps, 2),
            "duration_s": round(self.duration_s, 3), "avg_ms": self.avg_ms, "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms,
            "status_counts": dict(self.status_counts), "error_counts": dict(self.error_counts),
            "aborted": self.aborted, "stopped_by": self.stopped_by,
            "started_at": self.started_at, "shards": self.shards,
        }
        if self.service_histogram is not None:
            d.update({k: v for k, v in self._summary.items() if k.startswith("service_")})
        if histogram:
            d["histogram"] = self.histogram.encode()
            if self.service_histogram is not None:
                d["service_histogram"] = self.service_histogram.encode()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> LoadResult:
        return cls(
            model=d["model"], users=int(d["users"]), rate=d.get("rate"),
            requests=int(d["requests"]), errors=int(d["errors"]),
            duration_s=float(d["duration_s"]), rps=float(d["rps"]),
            status_counts=dict(d.get("status_counts", {})),
            error_counts=dict(d.get("error_counts", {})), aborted=d.get("aborted"),
            stopped_by=d.get("stopped_by", "duration"),
            histogram=LatencyHistogram.decode(d["histogram"]),
            started_at=float(d.get("started_at", 0.0)), shards=int(d.get("shards", 1)),
            service_histogram=(LatencyHistogram.decode(d["service_histogram"])
                               if d.get("service_histogram") else None),
        )


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """One result from shards of one stage that ran side by side (in separate processes).

    Counts and histograms add exactly. Throughput is the sum of the shards' throughputs and the
    duration the longest shard's, since the shards ran at the same time.
    """
    results = list(results)
    if not results:
        raise ValueError("nothing to merge")
    if len({r.model for r in results}) != 1:
        raise ValueError("cannot merge closed-model and open-model results")
    status, kinds = Counter(), Counter()
    for r in results:
        status.update(r.status_counts)
        kinds.update(r.error_counts)
    reasons = [r.aborted for r in results if r.aborted]
    stops = [r.stopped_by for r in results]
    rates = [r.rate for r in results]
    return LoadResult(
        model=results[0].model, users=sum(r.users for r in results),
        rate=None if None in rates else sum(rates),
        requests=sum(r.requests for r in results), errors=sum(r.errors for r in results),
        duration_s=max(r.duration_s for r in results), rps=sum(r.rps for r in results),
        status_counts=dict(status), error_counts=dict(kinds),
        aborted="; ".join(dict.fromkeys(reasons)) or None,
        stopped_by=next((s for s in ("aborted", "time_limit", "max_requests") if s in stops),
                        "duration"),
        histogram=LatencyHistogram.merged(r.histogram for r in results),
        started_at=min(r.started_at for r in results), shards=sum(r.shards for r in results),
        service_histogram=None if any(r.service_histogram is None for r in results)
        else LatencyHistogram.merged(r.service_histogram for r in results),
    )
