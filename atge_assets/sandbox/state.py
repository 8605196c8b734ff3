"""The sandbox's world: deployments of a simulated ATGE, which one is production, what happened.

Kept in one JSON file, rewritten atomically on every change, so the sandbox survives its own
restarts with the same deployments and the same production pointer.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# A healthy app at 80% of the plan's budgets (collect 10 s, AI 15 s, DB 2 s, routing and
# serialisation 3 s; 30 s end-to-end), before scaling: an analyze call takes 24 s. At the budgets
# themselves a healthy deployment would sit on the plan's limits (the load test's 30 s average:
# noise and stalls alone put the mean above it); on a cold start, judged against the plan's
# static values, a healthy deployment is "improved" (an accepted verdict, as "pass").
HEALTHY_SHARE = 0.8
PHASES_MS = {k: v * HEALTHY_SHARE for k, v in {"collect": 10_000.0, "ai": 15_000.0,
                                               "db": 2_000.0}.items()}
OVERHEAD_MS = 3_000.0 * HEALTHY_SHARE
MODES = ("ok", "hang", "refuse")
HANG_S = 120.0  # longer than any sane benchmark timeout
REFUSING_PORT = 9  # discard: nothing listens there on loopback


@dataclass
class SandboxDeployment:
    id: str
    created_ms: int
    target: str = "production"
    slowdown: float = 1.0
    errors: float = 0.0
    build_s: float = 0.0
    # "ok"; "hang": requests never answer in time; "refuse": its URL refuses connections.
    mode: str = "ok"

    def state(self, now_ms: int | None = None) -> str:
        if self.build_s <= 0:
            # Creation times are bumped to stay strictly increasing, so one made in a burst can
            # lie a few ms ahead of the clock: without a build it is READY all the same.
            return "READY"
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        return "READY" if now_ms >= self.created_ms + self.build_s * 1000 else "BUILDING"


@dataclass
class World:
    project_id: str = "prj_atge_sandbox"
    deployments: list[SandboxDeployment] = field(default_factory=list)
    production: str | None = None
    rollbacks: list[dict] = field(default_factory=list)
    promotions: list[dict] = field(default_factory=list)
    # Rolling releases: the project's config ({"advancementType", "stages": [{"targetPercentage",
    # "requireApproval"}], "canaryResponseHeader"}), and the latest release ({"state", "current",
    # "canary", "stage", "stages", "advancementType", "startedAt", "updatedAt"}).
    rolling_config: dict | None = None
    rolling_release: dict | None = None
    # PATCH /v9/projects/{id}: the settings changed from the defaults; DELETE: the project is gone.
    project_settings: dict = field(default_factory=dict)
    project_deleted: bool = False


# What PATCH /v9/projects/{id} may change in the sandbox (Vercel accepts many more), with the
# type each must have; null is allowed where Vercel's request schema allows it.
PROJECT_SETTINGS = {"framework": (str, type(None)), "nodeVersion": (str,),
                    "directoryListing": (bool,), "buildCommand": (str, type(None)),
                    "devCommand": (str, type(None)), "installCommand": (str, type(None)),
                    "outputDirectory": (str, type(None))}


class SandboxState:
    """Thread-safe state with a JSON file behind it."""

    def __init__(self, path: Path | None, *, scale: float = 0.005, noise: float = 0.10,
                 tail_p: float = 0.03, seed: int | None = None):
        if not (scale > 0) or not (0 <= noise < 2) or not (0 <= tail_p <= 1):
            raise ValueError("scale must be > 0, noise in [0, 2), tail_p in [0, 1]")
        self.path = path
        self.scale = scale
        self.noise = noise
        self.tail_p = tail_p
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        # API answers to inject, for tests of retries and bad payloads, each consumed by the next
        # Vercel API call: {"status", "headers", "body" (None: an error object), "after" (carry
        # the call out, then answer with the fault, as when a response is lost)}.
        self.api_faults: list[dict] = []
        self.world = self._load()
        if not self.world.deployments:
            self.create(target="production")

    def _load(self) -> World:
        if self.path and self.path.exists():
            raw = json.loads(self.path.read_text())
            deps = [SandboxDeployment(**d) for d in raw.pop("deployments", [])]
            return World(deployments=deps, **raw)
        return World()

    def _save(self) -> None:
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.world), indent=1))
        os.replace(tmp, self.path)

    # -- changes -------------------------------------------------------------------------------
    def create(self, *, target: str = "production", slowdown: float = 1.0, errors: float = 0.0,
               build_s: float = 0.0, mode: str = "ok") -> SandboxDeployment:
        if target not in ("production", "preview"):
            raise ValueError("target must be production or preview")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if not (0.05 <= slowdown <= 100) or not (0 <= errors <= 1) or not (0 <= build_s <= 3600):
            raise ValueError("slowdown must be in [0.05, 100], errors in [0, 1], build_s in [0, 3600]")
        with self._lock:
            now = int(time.time() * 1000)
            # Strictly increasing creation times keep `since`/`until` paging unambiguous.
            if self.world.deployments:
                now = max(now, self.world.deployments[-1].created_ms + 1)
            dep = SandboxDeployment("dpl_" + secrets.token_hex(8), now, target, slowdown, errors,
                                    build_s, mode)
            self.world.deployments.append(dep)
            cfg = self.world.rolling_config
            if target == "production" and cfg and self.world.production:
                # Rolled out in stages: the live deployment keeps the rest of the traffic. A
                # release still active is replaced by this one (Vercel queues it instead).
                self.world.rolling_release = {
                    "state": "ACTIVE", "current": self.world.production, "canary": dep.id,
                    "stage": 0, "stages": [dict(s) for s in cfg["stages"]],
                    "advancementType": cfg["advancementType"], "startedAt": now, "updatedAt": now}
            elif target == "production":
                self.world.production = dep.id  # a production deployment goes live when created
            self._save()
            return dep

    def configure_rolling(self, stages: list | None, advancement: str = "manual-approval",
                          canary_header: bool = False) -> dict | None:
        """Rolling releases for the next production deployments (None turns them off). As on
        Vercel, stages are {"targetPercentage", "requireApproval"}, the last one at 100."""
        if stages is not None:
            if advancement not in ("automatic", "manual-approval"):
                raise ValueError("advancementType must be automatic or manual-approval")
            if not isinstance(stages, list) or len(stages) < 2:
                raise ValueError("stages must be a list of at least two stages")
            pcts = [s.get("targetPercentage") if isinstance(s, dict) else None for s in stages]
            if not all(isinstance(p, (int, float)) and 0 < p <= 100 for p in pcts) \
                    or pcts != sorted(set(pcts)) or pcts[-1] != 100:
                raise ValueError("targetPercentage must rise from stage to stage, ending at 100")
            stages = [{"targetPercentage": float(p), "requireApproval": bool(
                s.get("requireApproval", advancement == "manual-approval")),
                "duration": s.get("duration")} for p, s in zip(pcts, stages)]
        with self._lock:
            self.world.rolling_config = None if stages is None else {
                "advancementType": advancement, "stages": stages,
                "canaryResponseHeader": bool(canary_header)}
            self._save()
            return self.world.rolling_config

    def update_project(self, changes: dict) -> dict:
        unknown = sorted(set(changes) - set(PROJECT_SETTINGS))
        if unknown:
            raise ValueError(f"the sandbox cannot change {', '.join(unknown)}; it changes "
                             f"{', '.join(PROJECT_SETTINGS)}")
        for key, value in changes.items():
            if not isinstance(value, PROJECT_SETTINGS[key]):
                raise TypeError(f"{key} is a {type(value).__name__}, not what Vercel takes")
        with self._lock:
            self.world.project_settings.update(changes)
            self._save()
            return dict(self.world.project_settings)

    def delete_project(self) -> None:
        with self._lock:
            self.world.project_deleted = True
            self._save()

    def _active_release(self, canary_id: str) -> dict:
        rr = self.world.rolling_release
        if not rr or rr["state"] != "ACTIVE" or rr["canary"] != canary_id:
            raise ValueError(f"no active rolling release for {canary_id}")
        return rr

    def approve_stage(self, canary_id: str, next_index: int) -> dict:
        with self._lock:
            rr = self._active_release(canary_id)
            if next_index != rr["stage"] + 1 or next_index >= len(rr["stages"]):
                raise ValueError(f"stage {rr['stage']} is active: the next one is "
                                 f"{rr['stage'] + 1}, not {next_index}")
            if next_index == len(rr["stages"]) - 1:
                return self.complete_rolling(canary_id)
            rr.update(stage=next_index, updatedAt=int(time.time() * 1000))
            self._save()
            return rr

    def complete_rolling(self, canary_id: str) -> dict:
        with self._lock:
            rr = self._active_release(canary_id)
            rr.update(state="COMPLETE", stage=len(rr["stages"]) - 1,
                      updatedAt=int(time.time() * 1000))
            self.world.production = canary_id
            self._save()
            return rr

    def serving(self) -> tuple[SandboxDeployment | None, bool]:
        """Which deployment answers this request to the production URL, and whether it is the
        canary: each request is a new visitor, drawn at the active stage's share."""
        with self._lock:
            rr = self.world.rolling_release
            if rr and rr["state"] == "ACTIVE":
                share = rr["stages"][rr["stage"]]["targetPercentage"] / 100
                if self._rng.random() < share:
                    return self.get(rr["canary"]), True
            return (self.get(self.world.production) if self.world.production else None), False

    def rollback(self, to_id: str) -> dict:
        with self._lock:
            dep = self.get(to_id)
            if dep is None:
                raise KeyError(to_id)
            if dep.target != "production" or dep.state() != "READY":
                raise ValueError(f"{to_id} is not a READY production deployment")
            event = {"from": self.world.production, "to": to_id, "at": time.time()}
            rr = self.world.rolling_release
            if rr and rr["state"] == "ACTIVE":
                # Vercel's Instant Rollback is how a release is aborted: the canary loses its share.
                rr.update(state="ABORTED", updatedAt=int(time.time() * 1000))
                event["from"] = rr["canary"]
            self.world.production = to_id
            self.world.rollbacks.append(event)
            self._save()
            return event

    def promote(self, dep_id: str) -> dict:
        with self._lock:
            dep = self.get(dep_id)
            if dep is None:
                raise KeyError(dep_id)
            if dep.state() != "READY":
                raise ValueError(f"{dep_id} is not READY")
            event = {"from": self.world.production, "to": dep_id, "at": time.time()}
            dep.target = "production"
            self.world.production = dep_id
            self.world.promotions.append(event)
            self._save()
            return event

    # -- reads ---------------------------------------------------------------------------------
    def get(self, dep_id: str) -> SandboxDeployment | None:
        with self._lock:
            return next((d for d in self.world.deployments if d.id == dep_id), None)

    def status(self) -> dict:
        with self._lock:
            return {
                "project_id": self.world.project_id,
                "production": self.world.production,
                "deployments": [dict(asdict(d), state=d.state()) for d in self.world.deployments],
                "rollbacks": list(self.world.rollbacks),
                "promotions": list(self.world.promotions),
                "rolling_config": self.world.rolling_config,
                "rolling_release": self.world.rolling_release,
                "scale": self.scale,
            }

    # -- the simulated app's latency -----------------------------------------------------------
    def phase_ms(self, dep: SandboxDeployment, phase: str) -> float:
        """One phase's latency: log-normal noise, and now and then a long-tail stall."""
        base = (PHASES_MS[phase] if phase in PHASES_MS else OVERHEAD_MS) * self.scale
        with self._lock:
            x = base * dep.slowdown * math.exp(self._rng.gauss(0.0, self.noise))
            if self._rng.random() < self.tail_p:
                x *= self._rng.uniform(1.5, 3.0)
            return x

    def fails(self, dep: SandboxDeployment) -> bool:
        with self._lock:
            return dep.errors > 0 and self._rng.random() < dep.errors
