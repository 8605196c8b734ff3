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
sits on asyncio (uvloop when present) and llhttp (httptools); see client.py.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from time import perf_counter

import httptools

from atge_assets.lib.http import check_url
from atge_assets.load.client import Client, Target
from atge_assets.load.histogram import LatencyHistogram
from atge_assets.load.spec import (
    DEFAULT_STAGES,
    MAX_REQUESTS,
    LoadResult,
    LoadSpec,
    merge,
)

# asyncio and libuv timers round to whole milliseconds, so a sleep ends up to ~1 ms off its
# mark. Waking that much early and measuring from the earlier of due and sent keeps the rounding
# out of open-model latencies; a send that is late (queueing) is still measured from its due time.
_TIMER_SLACK_S = 0.001


# -- the engine ----------------------------------------------------------------------------------
class _Run:
    """One stage in one event loop: the counters, the abort window, the request itself."""

    def __init__(self, spec: LoadSpec, target: Target):
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

    async def send(self, client: Client, due: float, timeout_s: float) -> None:
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
        client = Client(self.target)
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
        client = Client(self.target)
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
    target = await Target.resolve(spec)
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
