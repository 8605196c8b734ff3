"""Settings of the load test: what triggers it, its stages and request, the plan's thresholds."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Literal

import dagster as dg

from atge_assets.load.capacity import Thresholds
from atge_assets.load.spec import DEFAULT_STAGES, MAX_USERS, LoadSpec
from atge_assets.settings import Settings, SettingsError, _num

TRIGGERS = ("manual", "after_benchmark", "schedule")
MAX_SHARDS = 32


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
            think_time_s=(self.think_time_s, hi), ramp_up_s=self.ramp_up_s,
            max_requests=self.max_requests_per_stage, timeout_s=self.timeout_s,
            abort_error_rate=self.abort_error_rate,
        )
        return [replace(base, users=int(u)).validate() for u in sorted(self.stages)]

    def thresholds(self, latency_scale: float) -> Thresholds:
        """The plan's limits, time limits scaled like the benchmark's static baselines.

        The plan also asks for throughput of at least 0.8 req/s per user. A closed user sends one
        request per answer and think time (Little's law: X = N / (R + Z)), so at the plan's own
        30 s average a user cannot exceed 1/30 req/s and the rule as written fails every healthy
        stage. Here the floor is `min_throughput_ratio` of what the users send when every answer
        takes the allowed average: ratio x N / (max_avg + mean think time), discounted for users
        still ramping up. That is the plan's rule exactly when the allowed average plus think
        time is 1 s, and it scales with the sandbox's latencies like the time limits do.
        """
        t = Thresholds(max_avg_ms=self.max_avg_ms, max_p95_ms=self.max_p95_ms,
                       max_error_rate=self.max_error_rate,
                       min_rate_ratio=self.min_throughput_ratio).scaled(latency_scale)
        cycle_s = t.max_avg_ms / 1000.0 + self.mean_think_s
        # Users start evenly over the ramp-up, so on average they are busy this share of a stage.
        active = 1.0 - min(self.ramp_up_s, self.stage_duration_s) / (2 * self.stage_duration_s)
        return replace(t, min_rps_per_user=self.min_throughput_ratio * active / cycle_s)

    @classmethod
    def from_env(cls, settings: Settings, env: dict | None = None) -> LoadTestResource:
        """ATGE_LOAD_* variables, validated with errors that name the variable; the allowed
        hosts are the benchmark's (ATGE_ALLOWED_HOSTS)."""
        env = os.environ if env is None else env
        trigger = (env.get("ATGE_LOAD_TRIGGER") or "manual").strip().lower()
        if trigger not in TRIGGERS:
            raise SettingsError(f"ATGE_LOAD_TRIGGER={trigger!r} must be one of {TRIGGERS}")
        raw = env.get("ATGE_LOAD_STAGES") or ",".join(map(str, DEFAULT_STAGES))
        try:
            stages = [int(x) for x in raw.split(",") if x.strip()]
        except ValueError:
            raise SettingsError(f"ATGE_LOAD_STAGES={raw!r} is not a comma-separated list of "
                                "user counts") from None
        if not stages or not all(1 <= u <= MAX_USERS for u in stages):
            raise SettingsError(f"ATGE_LOAD_STAGES={raw!r}: each stage must be 1..{MAX_USERS}")
        duration = _num(env, "ATGE_LOAD_STAGE_S", 10.0, float, 0.1, 3600.0)
        body = env.get("ATGE_LOAD_BODY", '{"symbol": "BTC"}') or None
        if body is not None:
            try:
                json.loads(body)
            except json.JSONDecodeError:
                raise SettingsError(f"ATGE_LOAD_BODY={body!r} is not JSON") from None
        path = env.get("ATGE_LOAD_PATH") or "/api/einstein/analyze"
        if not path.startswith("/"):
            raise SettingsError(f"ATGE_LOAD_PATH={path!r} must start with /")
        method = (env.get("ATGE_LOAD_METHOD") or "POST").upper()
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            raise SettingsError(f"ATGE_LOAD_METHOD={method!r} is not a supported HTTP method")
        target = _num(env, "ATGE_LOAD_TARGET_USERS", None, int, 1, MAX_USERS)
        return cls(
            trigger=trigger,
            schedule_cron=env.get("ATGE_LOAD_CRON") or "0 3 * * *",
            stages=stages,
            stage_duration_s=duration,
            ramp_up_s=_num(env, "ATGE_LOAD_RAMP_UP_S", min(2.0, duration), float, 0.0, duration),
            think_time_s=_num(env, "ATGE_LOAD_THINK_S", 0.0, float, 0.0, 3600.0),
            path=path, method=method, body_json=body,
            timeout_s=_num(env, "ATGE_LOAD_TIMEOUT_S", 60.0, float, 0.1, 600.0),
            shards=_num(env, "ATGE_LOAD_SHARDS", 1, int, 1, MAX_SHARDS),
            allowed_hosts=list(settings.allowed_hosts),
            max_avg_ms=_num(env, "ATGE_LOAD_MAX_AVG_MS", 30_000.0, float, 1.0, 3_600_000.0),
            max_p95_ms=_num(env, "ATGE_LOAD_MAX_P95_MS", 45_000.0, float, 1.0, 3_600_000.0),
            max_error_rate=_num(env, "ATGE_LOAD_MAX_ERROR_RATE", 0.01, float, 0.0, 1.0),
            current_replicas=_num(env, "ATGE_LOAD_REPLICAS", 1, int, 1, 10_000),
            target_users=target,
        )
