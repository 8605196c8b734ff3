"""Where system metrics come from: a Prometheus server's HTTP API, or the target's own JSON
endpoint.

Pure (httpx, no Dagster). Both sources only call hosts on the allow-list (`check_url`), with a
timeout on every request and a cap on the answer's size, and turn anything unexpected into a
`MetricsSourceError` that says which source, which query and what was wrong, never a KeyError
from deep inside a parser.

- Prometheus: `GET {url}/api/v1/query_range?query=&start=&end=&step=`, one query per metric; each
  must return at most one series (aggregate per-pod series in the query, e.g. `max(...)`: which
  pod to watch is a decision for whoever writes the query, not for a parser). Prometheus keeps
  history, so an intake that missed some minutes asks for them again and the gap closes itself.
- JSON: `GET {url}` answers `{"timestamp": unix s, "metrics": {"cpu": 51.2, ...}}`, the values now.
  There is no history to ask for: a missed minute stays missed.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import urlsplit

import httpx

from atge_assets.lib.http import check_url

# The watched metrics, their units, and the names the sandbox exports them under.
METRICS = ("cpu", "memory", "response_time_p95", "error_rate", "active_users", "queue_depth")
UNITS = {"cpu": "%", "memory": "%", "response_time_p95": "ms", "error_rate": "%",
         "active_users": "users", "queue_depth": "jobs"}
PROM_NAMES = {"cpu": "atge_cpu_percent", "memory": "atge_memory_percent",
              "response_time_p95": "atge_response_time_p95_ms",
              "error_rate": "atge_error_rate_percent", "active_users": "atge_active_users",
              "queue_depth": "atge_queue_depth"}
DEFAULT_THRESHOLDS = {"cpu": 80.0, "memory": 85.0, "response_time_p95": 2000.0,
                      "error_rate": 5.0, "active_users": 5000.0, "queue_depth": 100.0}

PROMETHEUS, JSON = "prometheus", "json"
MAX_RESPONSE_BYTES = 8 << 20
MAX_POINTS = 11_000  # Prometheus refuses more points per series than this; so do we


class MetricsSourceError(RuntimeError):
    """The source could not be read: unreachable, refused the query, or answered nonsense."""


class MalformedAnswer(MetricsSourceError):
    """The source answered, but not in the shape its API promises."""


@dataclass(frozen=True)
class Point:
    metric: str
    timestamp: float
    value: float


@dataclass
class Collected:
    """One intake: the points read, and per metric what went wrong (the others still count)."""

    points: list[Point] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)  # asked, answered, but no samples


def default_queries(target: str = "production", metrics: Iterable[str] = METRICS) -> dict[str, str]:
    return {m: f'{PROM_NAMES[m]}{{target="{target}"}}' for m in metrics if m in PROM_NAMES}


def _number(x, where: str) -> float | None:
    """A sample value: a number or a Prometheus number string; NaN and infinities are no value."""
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, str)):
        raise MalformedAnswer(f"{where}: {x!r} is not a number")
    try:
        v = float(x)
    except ValueError:
        raise MalformedAnswer(f"{where}: {x!r} is not a number") from None
    return v if math.isfinite(v) else None


def _timestamp(x, where: str) -> float:
    v = _number(x, where)
    if v is None or v < 0:
        raise MalformedAnswer(f"{where}: {x!r} is not a unix timestamp")
    return v


Series = tuple[dict, list[tuple[float, float | None]]]  # labels, [(timestamp, value or None)]


def parse_query_range(payload, query: str = "") -> list[Series]:
    """`data.result[]` of a query_range answer: (labels, [(timestamp, value or None)]) per series.

    A Prometheus error answer (`status: error`) raises with its errorType and message.
    """
    q = f"query {query!r}: " if query else ""
    if not isinstance(payload, dict):
        raise MalformedAnswer(f"{q}the answer is a {type(payload).__name__}, not a JSON object")
    status = payload.get("status")
    if status == "error":
        raise MetricsSourceError(f"{q}prometheus refused it: {payload.get('errorType', '?')}: "
                                 f"{str(payload.get('error', ''))[:300]}")
    if status != "success":
        raise MalformedAnswer(f"{q}'status' is {status!r}, not 'success'")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise MalformedAnswer(f"{q}no 'data' object")
    if data.get("resultType") != "matrix":
        raise MalformedAnswer(f"{q}'data.resultType' is {data.get('resultType')!r}, not "
                              "'matrix' (is this a query_range answer?)")
    result = data.get("result")
    if not isinstance(result, list):
        raise MalformedAnswer(f"{q}'data.result' is not a list")
    out = []
    for i, series in enumerate(result):
        where = f"{q}data.result[{i}]"
        if not isinstance(series, dict):
            raise MalformedAnswer(f"{where} is not an object")
        labels, values = series.get("metric", {}), series.get("values")
        if not isinstance(labels, dict) or not isinstance(values, list):
            raise MalformedAnswer(f"{where} needs a 'metric' object and a 'values' list")
        pairs = []
        for j, pair in enumerate(values):
            if not isinstance(pair, list) or len(pair) != 2:
                raise MalformedAnswer(f"{where}.values[{j}] is not a [timestamp, value] pair")
            pairs.append((_timestamp(pair[0], f"{where}.values[{j}][0]"),
                          _number(pair[1], f"{where}.values[{j}][1]")))
        out.append(({str(k): str(v) for k, v in labels.items()}, pairs))
    return out


def parse_json_metrics(payload, metrics: Iterable[str], now: float) -> Collected:
    """The target's own metrics answer: one point per metric at its `timestamp` (else `now`)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), dict):
        raise MalformedAnswer("expected a JSON object with a 'metrics' object of numbers")
    ts = payload.get("timestamp")
    ts = now if ts is None else _timestamp(ts, "'timestamp'")
    out = Collected()
    for m in metrics:
        if m not in payload["metrics"]:
            out.empty.append(m)
            continue
        try:
            v = _number(payload["metrics"][m], f"'metrics.{m}'")
        except MalformedAnswer as exc:  # one bad value does not spoil the others
            out.errors[m] = str(exc)
            continue
        if v is None:
            out.empty.append(m)
        else:
            out.points.append(Point(m, ts, v))
    return out


class _HttpSource:
    kind = ""

    def __init__(self, url: str, *, allowed_hosts: Iterable[str], timeout_s: float = 10.0,
                 token: str | None = None, transport: httpx.BaseTransport | None = None):
        self.url = check_url(url.rstrip("/"), allowed_hosts)
        self.host = urlsplit(self.url).netloc
        headers = {"user-agent": "atge-monitor/0.1", "accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), headers=headers,
                                    follow_redirects=False, transport=transport)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _get(self, url: str, params: dict | None, what: str):
        where = f"{self.kind} at {self.host}: {what}"
        try:
            with self._client.stream("GET", url, params=params) as resp:
                body = b""
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise MetricsSourceError(f"{where}: answer larger than "
                                                 f"{MAX_RESPONSE_BYTES >> 20} MiB")
        except httpx.TimeoutException:
            raise MetricsSourceError(f"{where}: timed out") from None
        except httpx.HTTPError as exc:
            raise MetricsSourceError(f"{where}: {type(exc).__name__}: {exc}") from None
        try:
            payload = json.loads(body)
        except ValueError:
            snippet = body[:80].decode("utf-8", "replace")
            raise MalformedAnswer(f"{where}: HTTP {resp.status_code}, not JSON: {snippet!r}") \
                from None
        # Prometheus answers errors as JSON with 4xx/5xx; let the parser word them.
        if resp.status_code >= 400 and not (isinstance(payload, dict)
                                            and payload.get("status") == "error"):
            raise MetricsSourceError(f"{where}: HTTP {resp.status_code}")
        return payload


class PrometheusSource(_HttpSource):
    kind = PROMETHEUS

    def __init__(self, url: str, queries: Mapping[str, str], **kw):
        super().__init__(url, **kw)
        self.queries = dict(queries)

    def query_range(self, query: str, start: float, end: float, step: float):
        if not (step > 0) or end < start:
            raise ValueError(f"bad range: start {start}, end {end}, step {step}")
        if (end - start) / step + 1 > MAX_POINTS:
            raise ValueError(f"{(end - start) / step + 1:.0f} points per series: more than "
                             f"Prometheus's {MAX_POINTS}; raise the step")
        payload = self._get(self.url + "/api/v1/query_range",
                            {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                             "step": f"{step:g}"}, f"query {query!r}")
        try:
            return parse_query_range(payload, query)
        except MetricsSourceError as exc:
            raise type(exc)(f"{self.kind} at {self.host}: {exc}") from None

    def collect(self, metrics: Iterable[str], now: float, since: Mapping[str, float | None],
                step: float, backfill_s: float, revisit_s: float = 0.0) -> Collected:
        """Per metric, the samples after the last one stored (at most `backfill_s` back), and
        again those of the last `revisit_s`, on timestamps that are multiples of `step`, so two
        intakes never store one sample twice. Revisited, a sample the source has changed since
        (a scrape that came late, a backfill) is read as it is now."""
        out = Collected()
        for m in metrics:
            query = self.queries.get(m)
            if not query:
                out.errors[m] = f"no query configured for {m!r}"
                continue
            last = since.get(m)
            after = now - backfill_s if last is None else max(now - backfill_s,
                                                              min(last, now - revisit_s))
            start = (math.floor(after / step) + 1) * step  # the first step strictly after
            end = math.floor(now / step) * step
            if start > end:
                continue  # nothing new since the last intake
            try:
                series = self.query_range(query, start, end, step)
            except MetricsSourceError as exc:
                out.errors[m] = str(exc)
                continue
            if len(series) > 1:
                shown = ", ".join(str(s[0]) for s in series[:3])
                out.errors[m] = (f"query {query!r} returned {len(series)} series ({shown}...); "
                                 "aggregate it to one, e.g. max(...) or sum(...)")
                continue
            pairs = [(t, v) for t, v in (series[0][1] if series else []) if v is not None]
            if not pairs:
                out.empty.append(m)
            out.points += [Point(m, t, v) for t, v in pairs]
        return out


class JsonEndpointSource(_HttpSource):
    kind = JSON

    def collect(self, metrics: Iterable[str], now: float,
                since: Mapping[str, float | None] | None = None, step: float = 60.0,
                backfill_s: float = 0.0, revisit_s: float = 0.0) -> Collected:
        payload = self._get(self.url, None, "metrics endpoint")
        try:
            return parse_json_metrics(payload, list(metrics), now)
        except MetricsSourceError as exc:
            raise type(exc)(f"{self.kind} at {self.host}: {exc}") from None
