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

# The plan's phase durations in ms (collect 10 s, AI 15 s, DB 2 s) plus routing/serialisation,
# so an analyze call totals the plan's 30 s end-to-end before scaling.
PHASES_MS = {"collect": 10_000.0, "ai": 15_000.0, "db": 2_000.0}
OVERHEAD_MS = 3_000.0
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
            if target == "production":
                self.world.production = dep.id  # a production deployment goes live when created
            self._save()
            return dep

    def rollback(self, to_id: str) -> dict:
        with self._lock:
            dep = self.get(to_id)
            if dep is None:
                raise KeyError(to_id)
            if dep.target != "production" or dep.state() != "READY":
                raise ValueError(f"{to_id} is not a READY production deployment")
            event = {"from": self.world.production, "to": to_id, "at": time.time()}
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
