"""The load engine: closed and open load models, latencies in a fixed-memory histogram.

Closed model (Locust, k6 ramping-vus): `users` virtual users each send a request, wait for the
answer, think, and go again; they start one by one over `ramp_up_s`. When the server stalls the
users wait instead of sending, so a stall shows as one slow request (coordinated omission): the
model for "how many users does it hold".

Open model (k6 constant-arrival-rate, wrk2): requests fall due at a fixed rate whatever the server
does, and each latency runs from the time the request fell due, so a stall shows in every request
that queued behind it: the model for "what latency does an arrival see at R req/s". There `users`
is the number of connections, so it caps the requests in flight; a due request that found no free
connection for longer than `timeout_s` counts as a timeout without being sent.

Each virtual user (or open-model sender) keeps one keep-alive connection, as Locust, k6 and wrk do.

An error is a transport failure or an HTTP status >= 400 (redirects are not followed). Every
answered request goes into the latency histogram, failed ones included, as in wrk and k6;
transport failures have no latency and are counted by kind. The open model also keeps the service
time, from the actual send, as wrk2's --u_latency does: the difference between the two is time
spent waiting for a connection or for the generator itself.

httpx stays the client for API calls and benchmark timings. A load generator's own CPU per request
caps the load it can offer and adds noise to what it measures, so here a small HTTP/1.1 client
sits on asyncio (uvloop when present) and llhttp (httptools); see `_Conn`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import re
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

import httptools

from atge_assets.deployments.timing import HostNotAllowed, check_url
from atge_assets.load.histogram import LatencyHistogram

# Hard caps, whatever the caller asks: a typo must not turn a benchmark into a denial of service.
MAX_USERS = 10_000
MAX_RATE = 100_000.0
MAX_DURATION_S = 3_600.0
MAX_REQUESTS = 50_000_000
DEFAULT_STAGES = (100, 500, 1000)

# asyncio and libuv timers round to whole milliseconds, so a sleep ends up to ~1 ms off its
# mark. Waking that much early and measuring from the earlier of due and sent keeps the rounding
# out of open-model latencies; a send that is late (queueing) is still measured from its due time.
_TIMER_SLACK_S = 0.001

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


# -- the client ----------------------------------------------------------------------------------
class _Conn(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection carrying one request at a time.

    A load generator needs each answer's status and end, nothing more, so this is the whole
    client: llhttp (via httptools) finds where answers end and bodies are dropped. Here it costs
    about a quarter of aiohttp's CPU per request, and a generator's CPU per request is both its
    ceiling and the noise it adds to the latencies it measures.
    """

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.status: int | None = None
        self.reusable = True

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._settle(exc=exc)
            self.transport.close()

    def connection_lost(self, exc):
        self.transport = None
        if self.status is not None:  # a body that ends with the connection is complete
            self._settle(self.status)
        else:
            self._settle(exc=exc or ConnectionResetError("connection closed before an answer"))

    def on_headers_complete(self):
        self.status = self.parser.get_status_code()

    def on_message_complete(self):
        if self.status is not None and 100 <= self.status < 200:
            self.status = None  # 103 Early Hints and the like: the real answer follows
            return
        self.reusable = self.parser.should_keep_alive()
        self._settle(self.status)

    def _settle(self, status=None, exc=None):
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc) if exc else w.set_result(status)

    async def roundtrip(self, request: bytes) -> int:
        self.status = None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


@dataclass
class _Target:
    host: str  # for TLS's server name
    addrs: list[str]  # resolved once; the one that last answered first
    port: int
    tls: ssl.SSLContext | None
    request: bytes  # built once: every request of a stage is the same bytes
    idempotent: bool

    @classmethod
    async def resolve(cls, spec: LoadSpec) -> _Target:
        """Resolve the host once, refusing it if any address is link-local or metadata.

        check_url sees only the name; this closes the way round it through DNS, and pins the
        addresses, as wrk does, so a thousand users do not make a thousand lookups.
        """
        parts = urlsplit(spec.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.to_thread(socket.getaddrinfo, parts.hostname, port, 0,
                                            socket.SOCK_STREAM)
        except OSError as exc:
            raise ValueError(f"cannot resolve {parts.hostname!r}: {exc}") from None
        addrs = [info[4][0] for info in infos]
        for a in addrs:
            check_url(f"http://[{a}]/" if ":" in a else f"http://{a}/", ["*"])
        return cls.of(spec, list(dict.fromkeys(addrs)))

    @classmethod
    def of(cls, spec: LoadSpec, addrs: list[str]) -> _Target:
        parts = urlsplit(spec.url)
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        method = spec.method.upper()
        body = b"" if spec.body is None else json.dumps(spec.body).encode()
        headers = {"host": parts.netloc, "user-agent": "atge-loadtest/0.1", "accept": "*/*"}
        if spec.body is not None:
            headers["content-type"] = "application/json"
        if body or method in ("POST", "PUT", "PATCH"):
            headers["content-length"] = str(len(body))
        headers.update({k.lower(): v for k, v in spec.headers.items()})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items())
        return cls(host=parts.hostname, addrs=addrs, port=parts.port or (443 if tls else 80),
                   tls=tls, request=head.encode("latin-1") + b"\r\n" + body,
                   idempotent=method in ("GET", "PUT", "DELETE", "OPTIONS"))

    async def connect(self) -> _Conn:
        """A new connection to the first address that takes it ("localhost" may be ::1 first
        while the server listens on 127.0.0.1 only); that address is tried first next time."""
        loop = asyncio.get_running_loop()
        for i, addr in enumerate(self.addrs):
            try:
                _, conn = await loop.create_connection(
                    _Conn, addr, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None)
            except ssl.SSLError:
                raise  # the address answered; its certificate is the problem
            except OSError:
                if i == len(self.addrs) - 1:
                    raise
                continue
            if i:
                self.addrs.insert(0, self.addrs.pop(i))
            return conn
        raise ConnectionError("no address to connect to")


class _Client:
    """A virtual user's connection: opened on first use, reopened after the server closes it."""

    def __init__(self, target: _Target):
        self.target = target
        self.conn: _Conn | None = None

    async def request(self) -> int:
        conn, t = self.conn, self.target
        if conn is not None and conn.transport is not None and conn.reusable:
            try:
                return await conn.roundtrip(t.request)
            except ConnectionError:
                # A server may close an idle keep-alive connection as the request leaves: a race
                # every client meets. Browsers retry idempotent requests once; so does this.
                if conn.status is not None or not t.idempotent:
                    raise
        self.conn = await t.connect()
        return await self.conn.roundtrip(t.request)

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None


# -- the engine ----------------------------------------------------------------------------------
class _Run:
    """One stage in one event loop: the counters, the abort window, the request itself."""

    def __init__(self, spec: LoadSpec, target: _Target):
        self.spec = spec
        self.target = target
        self.cap = min(spec.max_requests or MAX_REQUESTS, MAX_REQUESTS)
        self.hist = LatencyHistogram()
        self.service = LatencyHistogram() if spec.rate is not None else None
        self.requests = self.errors = self.started = 0
        self.status: Counter = Counter()
        self.kinds: Counter = Counter()
        # A ring of the last outcomes (1 = error): fixed memory, and a spike late in a long run
        # is not diluted by the good requests before it, as a cumulative rate would be.
        self.window = bytearray(spec.abort_window)
        self.window_errors = 0
        self.aborted: str | None = None
        self.tasks: list[asyncio.Task] = []
        self.t0 = perf_counter()
        self.deadline = self.t0 + spec.duration_s

    async def send(self, client: _Client, due: float, timeout_s: float) -> None:
        sent = perf_counter()
        start = due if due < sent else sent
        try:
            async with asyncio.timeout(timeout_s):
                status = await client.request()
        except TimeoutError:  # before OSError: TimeoutError is one
            client.close()  # its answer may still come, and would be taken for the next one's
            return self._count(None, "timeout")
        except (OSError, httptools.HttpParserError) as exc:
            client.close()
            return self._count(None, type(exc).__name__)
        except asyncio.CancelledError:
            client.close()
            raise
        done = perf_counter()
        self.hist.record_s(done - start)
        if self.service is not None:
            self.service.record_s(done - sent)
        self._count(status, None)

    def _count(self, status: int | None, kind: str | None) -> None:
        failed = status is None or status >= 400
        if status is not None:
            self.status[status] += 1
        else:
            self.kinds[kind] += 1
        i = self.requests % len(self.window)
        self.window_errors += failed - self.window[i]
        self.window[i] = failed
        self.requests += 1
        self.errors += failed
        limit = self.spec.abort_error_rate
        if (limit is not None and self.aborted is None and self.requests >= len(self.window)
                and self.window_errors > limit * len(self.window)):
            self.aborted = (f"error rate {self.window_errors / len(self.window):.1%} over the "
                            f"last {len(self.window)} requests exceeded {limit:.1%}")
            for t in self.tasks:
                t.cancel()

    # -- closed model ----------------------------------------------------------------------------
    def _may_send(self) -> bool:
        if self.aborted or self.started >= self.cap or perf_counter() >= self.deadline:
            return False
        self.started += 1
        return True

    async def user(self, delay: float) -> None:
        lo, hi = self.spec.think_time_s
        client = _Client(self.target)
        try:
            if delay:
                await asyncio.sleep(delay)
            while self._may_send():
                await self.send(client, perf_counter(), self.spec.timeout_s)
                if hi > 0:
                    pause = random.uniform(lo, hi)
                    if perf_counter() + pause >= self.deadline:
                        return
                    await asyncio.sleep(pause)
        finally:
            client.close()

    # -- open model ------------------------------------------------------------------------------
    async def arrivals(self, due_count: int) -> None:
        """One connection's sender: take the next due request, wait for its time, send it."""
        interval = 1.0 / self.spec.rate
        timeout_s = self.spec.timeout_s
        client = _Client(self.target)
        try:
            while self.aborted is None and self.started < due_count:
                due = self.t0 + self.started * interval
                self.started += 1
                wait = due - perf_counter()
                if wait > _TIMER_SLACK_S:
                    await asyncio.sleep(wait - _TIMER_SLACK_S)
                elif -wait > timeout_s:
                    self._count(None, "timeout")  # waited its whole timeout for a connection
                    continue
                # A late send gets what is left of its timeout, so no latency exceeds timeout_s.
                late = max(perf_counter() - due, 0.0)
                await self.send(client, due, max(timeout_s - late, 0.001))
        finally:
            client.close()

    def stop_reason(self, planned: int | None) -> str:
        """`planned`: the open model's due requests before the cap; None for the closed model."""
        if self.aborted:
            return "aborted"
        capped = self.started >= self.cap if planned is None else planned > self.cap
        return "max_requests" if capped else "duration"


def _new_loop_runner() -> asyncio.Runner:
    try:
        import uvloop  # comes with dagster-webserver's uvicorn[standard]; less CPU per request
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def run_stage_async(spec: LoadSpec, *, allowed_hosts: Iterable[str]) -> LoadResult:
    """One stage in the running event loop. Raises HostNotAllowed/ValueError before sending."""
    spec.validate()
    check_url(spec.url, allowed_hosts)
    target = await _Target.resolve(spec)
    started_at = time.time()
    run = _Run(spec, target)
    if spec.rate is None:
        planned = None
        step = spec.ramp_up_s / spec.users
        coros = [run.user(i * step) for i in range(spec.users)]
    else:
        planned = math.ceil(spec.duration_s * spec.rate)
        due_count = min(planned, run.cap)
        coros = [run.arrivals(due_count) for _ in range(min(spec.users, due_count))]
    run.tasks = [asyncio.ensure_future(c) for c in coros]
    stop = None
    try:
        # A backstop: every request has its timeout, so this fires only on an engine bug.
        async with asyncio.timeout(spec.duration_s + 2 * spec.timeout_s + 5):
            outcomes = await asyncio.gather(*run.tasks, return_exceptions=True)
    except TimeoutError:
        stop = "time_limit"
        run.aborted = run.aborted or "hard time limit reached"
        for t in run.tasks:
            t.cancel()
        outcomes = await asyncio.gather(*run.tasks, return_exceptions=True)
    duration = perf_counter() - run.t0
    bugs = [o for o in outcomes if isinstance(o, Exception)]  # an abort's cancellations are not
    if bugs:
        raise bugs[0]
    return LoadResult(
        model=spec.model, users=spec.users, rate=spec.rate, requests=run.requests,
        errors=run.errors, duration_s=duration, rps=run.requests / duration if duration else 0.0,
        status_counts={str(k): v for k, v in sorted(run.status.items())},
        error_counts=dict(run.kinds), aborted=run.aborted,
        stopped_by=stop or run.stop_reason(planned), histogram=run.hist, started_at=started_at,
        service_histogram=run.service,
    )


def _run_here(spec: LoadSpec, allowed_hosts: list[str]) -> LoadResult:
    with _new_loop_runner() as runner:
        return runner.run(run_stage_async(spec, allowed_hosts=allowed_hosts))


def _run_shard(spec: LoadSpec, allowed_hosts: list[str]) -> dict:
    return _run_here(spec, allowed_hosts).to_dict()  # the encoded histogram crosses processes


def run_stage(spec: LoadSpec, *, allowed_hosts: Iterable[str], processes: int = 1) -> LoadResult:
    """One stage, in this process or split over `processes` spawned processes and merged.

    The host check and the spec check happen here, before any process starts or request leaves.
    Call `run_stage_async` instead from inside a running event loop.
    """
    spec.validate()
    allowed = list(allowed_hosts)
    check_url(spec.url, allowed)
    if processes <= 1:
        return _run_here(spec, allowed)
    shards = spec.shard(processes)
    # spawn, not fork: forking a process that has threads (Dagster's, a test server's) can deadlock
    with ProcessPoolExecutor(len(shards), mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_run_shard, shards, [allowed] * len(shards)))
    return merge([LoadResult.from_dict(p) for p in parts])


def run_stages(spec: LoadSpec, stages: Sequence[float] = DEFAULT_STAGES, *,
               allowed_hosts: Iterable[str], processes: int = 1, pause_s: float = 0.0,
               stop_after_abort: bool = True) -> list[LoadResult]:
    """One stage per load in `stages`: users for a closed spec, requests/s for an open one.

    Every stage is validated before the first starts. After a stage aborts on errors, the
    heavier ones are skipped unless `stop_after_abort` is False.
    """
    allowed = list(allowed_hosts)
    specs = [replace(spec, users=int(s)) if spec.rate is None else replace(spec, rate=float(s))
             for s in stages]
    for s in specs:
        s.validate()
        check_url(s.url, allowed)
    out = []
    for i, s in enumerate(specs):
        if i and pause_s:
            time.sleep(pause_s)
        out.append(run_stage(s, allowed_hosts=allowed, processes=processes))
        if stop_after_abort and out[-1].aborted:
            break
    return out


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


# -- command line --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atge loadtest",
        description="Load-test one URL: closed model (users) by default, open model with --rate.")
    p.add_argument("--url", required=True, help="base URL; its host is allowed by naming it")
    p.add_argument("--path", default="", help="appended to the URL, e.g. /api/health")
    p.add_argument("--users", type=int, required=True,
                   help="virtual users (closed model) or connections (open model)")
    p.add_argument("--duration", type=float, required=True, help="seconds")
    p.add_argument("--rate", type=float, help="requests/s: the open model, latency from due time")
    p.add_argument("--method", help="HTTP method (default GET, or POST with --body)")
    p.add_argument("--body", help="a JSON body, e.g. '{\"symbol\": \"BTC\"}'")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    p.add_argument("--think", type=float, default=0.0,
                   help="closed model: seconds between a user's requests")
    p.add_argument("--ramp-up", type=float, default=0.0,
                   help="closed model: seconds over which the users start")
    p.add_argument("--max-requests", type=int)
    p.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    p.add_argument("--abort-error-rate", type=float, default=0.5,
                   help="abort when the error share of the last --abort-window requests exceeds "
                   "this (default 0.5; 1 never aborts)")
    p.add_argument("--abort-window", type=int, default=100)
    p.add_argument("--processes", type=int, default=1, help="shards in separate processes, merged")
    p.add_argument("--allow-host", action="append", default=[], metavar="PATTERN",
                   help="more allowed host patterns (shell-style); the URL's own host always is")
    p.add_argument("--json", action="store_true",
                   help="print only the JSON line, with the encoded histogram")
    return p


def _spec_from_args(a) -> LoadSpec:
    body = None
    if a.body is not None:
        try:
            body = json.loads(a.body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--body is not JSON: {exc}") from None
    headers = {}
    for h in a.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header {h!r} is not 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    if a.path and not a.path.startswith("/"):
        raise ValueError("--path must start with /")
    if not 1 <= a.processes <= 64:
        raise ValueError("--processes must be in [1, 64]")
    method = a.method or ("POST" if body is not None else "GET")
    return LoadSpec(
        url=a.url.rstrip("/") + a.path if a.path else a.url, users=a.users,
        duration_s=a.duration, rate=a.rate, method=method, body=body, headers=headers,
        think_time_s=(a.think, a.think), ramp_up_s=a.ramp_up, max_requests=a.max_requests,
        timeout_s=a.timeout,
        abort_error_rate=a.abort_error_rate if a.abort_error_rate < 1 else None,
        abort_window=a.abort_window,
    ).validate()


def cli_main(argv: list[str]) -> int:
    """`atge loadtest ...`: the last stdout line is the result as JSON. Exit 0 done, 1 aborted,
    2 bad arguments or a refused host."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message
        return int(exc.code or 0)
    try:
        spec = _spec_from_args(args)
        allowed = [(urlsplit(spec.url).hostname or "").lower(), *args.allow_host]
        result = run_stage(spec, allowed_hosts=allowed, processes=args.processes)
    except (ValueError, HostNotAllowed) as exc:  # HostNotAllowed is a ValueError; named for readers
        print(f"atge loadtest: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        r = result
        print(f"{spec.model} model, {r.users} users"
              + (f", {r.rate:g} req/s offered" if r.rate else "")
              + f": {r.requests} requests in {r.duration_s:.2f} s = {r.rps:.1f} req/s, "
              f"errors {r.errors} ({r.error_rate:.2%})")
        if r.p50_ms is not None:
            print(f"latency ms: avg {r.avg_ms:.2f}  p50 {r.p50_ms:.2f}  p95 {r.p95_ms:.2f}  "
                  f"p99 {r.p99_ms:.2f}  max {r.max_ms:.2f}")
        if r.aborted:
            print(f"aborted: {r.aborted}")
    print(json.dumps(result.to_dict(histogram=args.json)), flush=True)
    return 1 if result.aborted else 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
