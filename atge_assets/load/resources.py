"""Settings of the load test: what triggers it, its stages and request, the plan's thresholds."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Literal

import dagster as dg

from atge_assets.lib.protection import bypass_headers
from atge_assets.load.capacity import Thresholds, plan_thresholds
from atge_assets.load.spec import DEFAULT_STAGES, MAX_SHARDS, LoadSpec


class LoadTestResource(dg.ConfigurableResource):
    """How a deployment is load-tested (the `load_test` asset) and when.

    `trigger`: "manual" (materialize `load_test` from the UI), "after_benchmark" (the sensor
    `load_test_after_benchmark` requests one run per benchmark run whose verdict passed) or
    "schedule" (`load_test_schedule` tests the live production deployment at `schedule_cron`).

    Closed model: each stage runs `users` virtual users for `stage_duration_s`, started evenly
    over `ramp_up_s`, each sending `method path` with `body_json`, waiting for the answer and
    thinking `think_time_s` (uniform up to `think_time_max_s` when set). Stages run from light
    to heavy with `pause_s` between them; the heavier ones are skipped once a stage aborts on
    errors (`abort_error_rate` of the last 100 requests). `max_requests_per_stage` caps a stage.

    `shards` splits every stage's users over that many executor steps (processes, or pods under
    the K8s executor) that load the deployment together; their histograms merge exactly.

    Thresholds are the plan's, in the real app's units, and are scaled like the benchmark's static
    baselines (`BenchmarkResource.baseline_scale`): average over `max_avg_ms`, p95 over
    `max_p95_ms`, error rate over `max_error_rate`, throughput under `min_throughput_ratio` of
    what the users should send (see `thresholds`).

    Only hosts the provider vouches for, or `allowed_hosts` names, are ever loaded.
    """

    trigger: Literal["manual", "after_benchmark", "schedule"] = "manual"
    schedule_cron: str = "0 3 * * *"
    stages: list[int] = list(DEFAULT_STAGES)
    stage_duration_s: float = 10.0
    ramp_up_s: float = 2.0
    think_time_s: float = 0.0
    think_time_max_s: float | None = None
    pause_s: float = 2.0
    path: str = "/api/einstein/analyze"
    method: str = "POST"
    body_json: str | None = '{"symbol": "BTC"}'
    timeout_s: float = 60.0
    max_requests_per_stage: int | None = None
    abort_error_rate: float | None = 0.5
    shards: int = 1
    # How long a shard waits for the others to start before giving up (see assets.py).
    shard_start_timeout_s: float = 120.0
    allowed_hosts: list[str] = []
    # Sent to the deployment only, as the benchmark does (lib/protection.py); from a dg.EnvVar.
    protection_bypass: str | None = None
    max_avg_ms: float = 30_000.0
    max_p95_ms: float = 45_000.0
    max_error_rate: float = 0.01
    min_throughput_ratio: float = 0.8
    current_replicas: int = 1
    # The demand to plan replicas for, and the heaviest stage the checks judge; default: the
    # heaviest stage.
    target_users: int | None = None

    @property
    def mean_think_s(self) -> float:
        hi = self.think_time_s if self.think_time_max_s is None else self.think_time_max_s
        return (self.think_time_s + hi) / 2

    def stage_specs(self, url: str) -> list[LoadSpec]:
        """One validated spec per stage, lightest first. Raises ValueError on bad settings."""
        if not self.stages:
            raise ValueError("no load stages configured")
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be in [1, {MAX_SHARDS}]")
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with /: {self.path!r}")
        if self.current_replicas < 1:
            raise ValueError("current_replicas must be >= 1")
        try:
            body = None if self.body_json is None else json.loads(self.body_json)
        except json.JSONDecodeError as exc:
            raise ValueError(f"body_json is not JSON: {exc}") from None
        hi = self.think_time_s if self.think_time_max_s is None else self.think_time_max_s
        base = LoadSpec(
            url=url, duration_s=self.stage_duration_s, method=self.method.upper(), body=body,
            headers=bypass_headers(self.protection_bypass),
            think_time_s=(self.think_time_s, hi), ramp_up_s=self.ramp_up_s,
            max_requests=self.max_requests_per_stage, timeout_s=self.timeout_s,
            abort_error_rate=self.abort_error_rate,
        )
        return [replace(base, users=int(u)).validate() for u in sorted(self.stages)]

    def thresholds(self, latency_scale: float) -> Thresholds:
        """The plan's limits for these stages (see `capacity.plan_thresholds`)."""
        return plan_thresholds(
            Thresholds(max_avg_ms=self.max_avg_ms, max_p95_ms=self.max_p95_ms,
                       max_error_rate=self.max_error_rate,
                       min_rate_ratio=self.min_throughput_ratio),
            latency_scale, think_s=self.mean_think_s, ramp_up_s=self.ramp_up_s,
            stage_s=self.stage_duration_s)
