"""Smoke tests: does each ATGE endpoint answer, with the right JSON shape, in time?

Pure Python over httpx. A smoke test is a yes/no on one request, unlike the benchmark's
statistics: a deployment whose /api/health fails is broken whatever its latency.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping

import httpx


class SmokeConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SmokeSpec:
    name: str
    path: str
    method: str = "GET"
    body: dict | None = None
    expect_status: int = 200
    expect_keys: tuple[str, ...] = ()  # top-level JSON keys that must be present
    max_ms: float = 10_000.0  # before scaling to the sandbox


DEFAULT_SMOKE = (
    SmokeSpec("health", "/api/health", expect_keys=("status",), max_ms=2_000),
    SmokeSpec("analyze", "/api/einstein/analyze", "POST", {"symbol": "BTC"},
              expect_keys=("symbol", "signal", "confidence"), max_ms=45_000),
    SmokeSpec("trade_history", "/api/einstein/trade-history", expect_keys=("trades",),
              max_ms=5_000),
)


MIN_LIMIT_MS = 250.0


@dataclass
class SmokeResult:
    name: str
    passed: bool
    status: int | None
    ms: float | None
    limit_ms: float
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def specs_from_json(text: str) -> tuple[SmokeSpec, ...]:
    try:
        raw = json.loads(text)
        specs = tuple(SmokeSpec(**dict(item, expect_keys=tuple(item.get("expect_keys", ()))))
                      for item in raw)
    except (ValueError, TypeError, AttributeError) as exc:
        raise SmokeConfigError(f"smoke tests JSON: {exc}") from None
    names = [s.name for s in specs]
    if not specs or len(set(names)) != len(names):
        raise SmokeConfigError("smoke tests need at least one spec and unique names")
    for s in specs:
        if not s.path.startswith("/") or not s.name.replace("_", "").isalnum():
            raise SmokeConfigError(f"smoke test {s.name!r}: bad name or path {s.path!r}")
    return specs


def run_smoke(base_url: str, spec: SmokeSpec, *, scale: float = 1.0,
              client: httpx.Client | None = None,
              headers: Mapping[str, str] | None = None) -> SmokeResult:
    # The floor covers network and machine overhead, which does not shrink with a scaled sandbox.
    limit = max(spec.max_ms * scale, MIN_LIMIT_MS)
    own = client is None
    client = client or httpx.Client(headers=dict(headers or {}))
    try:
        # One slow answer on a busy machine is noise, as one slow benchmark sample is: a request
        # that is right but over its limit is asked once more, and fails only if slow twice.
        for attempt in (1, 2):
            t0 = time.perf_counter()
            try:
                resp = client.request(spec.method, base_url.rstrip("/") + spec.path,
                                      json=spec.body, timeout=max(1.0, 3 * limit / 1000))
            except httpx.HTTPError as exc:
                return SmokeResult(spec.name, False, None, None, limit,
                                   [f"request failed: {type(exc).__name__}"])
            ms = (time.perf_counter() - t0) * 1000
            reasons = _content_reasons(resp, spec)
            if reasons or ms <= limit:
                break
    finally:
        if own:
            client.close()
    if ms > limit:
        reasons.append(f"took {ms:.0f} ms, limit {limit:.0f} ms"
                       + (", twice" if attempt == 2 else ""))
    return SmokeResult(spec.name, not reasons, resp.status_code, ms, limit,
                       reasons or ["ok"])


def _content_reasons(resp: httpx.Response, spec: SmokeSpec) -> list[str]:
    """What is wrong with the answer itself (status, JSON keys), its time aside."""
    reasons = []
    if resp.status_code != spec.expect_status:
        reasons.append(f"status {resp.status_code}, expected {spec.expect_status}")
    if spec.expect_keys:
        try:
            body = resp.json()
            missing = [k for k in spec.expect_keys if not isinstance(body, dict) or k not in body]
            if missing:
                reasons.append(f"JSON lacks {missing}")
        except ValueError:
            reasons.append("answer is not JSON")
    return reasons


# -- how the results read in Dagster: one check per endpoint, recorded on the deployment's
# partition ---------------------------------------------------------------------------------------

ERROR, WARN = "ERROR", "WARN"  # dg.AssetCheckSeverity's names


def severity(passed: bool, live: bool) -> str:
    """ERROR only for a failure of the deployment users are served now (live production): that
    is what a red node should mean. Everything else is WARN, passes included: Dagster colors a
    partitioned check by its newest result's severity whenever any partition has failed, so a
    pass on a healthy production deployment keeps an older deployment's failure in sight
    (yellow, its partition listed) without calling the present broken (red)."""
    return ERROR if live and not passed else WARN


DEFAULT_NAMES = tuple(s.name for s in DEFAULT_SMOKE)  # the declared checks


def check_results(results: list[SmokeResult], live: bool,
                  names: tuple[str, ...] = DEFAULT_NAMES) -> list[dict]:
    """Keyword arguments of one AssetCheckResult per declared check name. Checks are declared
    for the default suite; a name a custom suite lacks passes, saying so."""
    by_name = {r.name: r for r in results}
    out = []
    for name in names:
        r = by_name.get(name)
        passed = r.passed if r else True
        out.append({
            "check_name": f"smoke_{name}", "passed": passed, "severity": severity(passed, live),
            "description": "; ".join(r.reasons) if r else "not in the configured suite",
            "metadata": {"status": r.status if r and r.status is not None else -1,
                         "ms": round(r.ms, 1) if r and r.ms is not None else -1.0,
                         "limit_ms": round(r.limit_ms, 1) if r else -1.0,
                         "live_production": live}})
    return out


TABLE_COLUMNS = (("name", "string"), ("passed", "bool"), ("status", "int"), ("ms", "float"),
                 ("limit_ms", "float"), ("reasons", "string"))


def table_rows(results: list[SmokeResult]) -> list[dict]:
    return [{"name": r.name, "passed": r.passed, "status": r.status,
             "ms": None if r.ms is None else round(r.ms, 1), "limit_ms": round(r.limit_ms, 1),
             "reasons": "; ".join(r.reasons)} for r in results]
