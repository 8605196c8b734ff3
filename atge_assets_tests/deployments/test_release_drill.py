"""Release order under concurrency: hundreds of random interleavings of production and preview
deployments, their verdicts, waits and retried provider calls, through the release decisions the
assets make (release.decide_* / act_*) on the real history (SQLite). Vercel is a model here: a
live pointer that a new production deployment, a promotion or a rollback moves, and calls that
fail now and then (the run step is retried, as Dagster's retry policy does)."""

from __future__ import annotations

import random
import time

import pytest

from atge_assets.deployments import release
from atge_assets.deployments.history import DeploymentHistory
from atge_assets.lib.providers.base import Deployment


class Vercel:
    def __init__(self, rng: random.Random):
        self.live: str | None = None
        self.rng = rng

    def production_deployment_id(self) -> str | None:
        return self.live

    def _flaky(self) -> None:
        if self.rng.random() < 0.2:
            raise ConnectionError("the provider timed out")

    def rollback(self, to: str) -> None:
        self._flaky()
        self.live = to

    def promote(self, dep_id: str) -> None:
        self._flaky()
        self.live = dep_id


def drill(store: DeploymentHistory, seed: int, count: int = 8) -> tuple[str | None, str, list]:
    """Returns (live at the end, the newest accepted deployment, the log)."""
    rng = random.Random(seed)
    vercel = Vercel(rng)
    plan = [("production", "pass")] + [
        (rng.choice(["production", "production", "preview"]), rng.choice(["pass", "regressed"]))
        for _ in range(count - 1)]
    ids = [f"dpl_s{seed}_{i}" for i in range(count)]
    created: dict[str, int] = {}
    judged: set[str] = set()
    log: list[str] = []
    # Deployments are created in order; each one's run (judge, then decide) interleaves freely.
    tasks = [("create", 0)]
    while tasks:
        kind, i = tasks.pop(rng.randrange(len(tasks)))
        dep_id, (target, truth) = ids[i], plan[i]
        time.sleep(0.002)  # distinct milliseconds: creation and promotion times are compared
        if kind == "create":
            created[dep_id] = int(time.time() * 1000)
            store.upsert_deployment(Deployment(dep_id, f"https://{dep_id}.vercel.app", "READY",
                                               target, created[dep_id]))
            store.record_smoke(dep_id, "run", [{"name": "health", "passed": True}])
            if target == "production":
                vercel.live = dep_id  # Vercel puts a production deployment live at once
            tasks.append(("judge", i))
            if i + 1 < count:
                tasks.append(("create", i + 1))
        elif kind == "judge":
            store.set_verdict(dep_id, truth)
            judged.add(dep_id)
            tasks.append(("decide", i))
        else:
            dep = store.deployment(dep_id)
            try:
                if target == "production":
                    p = release.decide_rollback(store, dep, vercel.live, dry_run=False)
                    action, p = release.act_rollback(store, vercel, dep_id, p, f"run_{dep_id}")
                    store.record_decision(dep_id, f"run_{dep_id}", action, p.reason, p.rollback_to)
                    log.append(f"{dep_id} {truth}: {action} {p.rollback_to or ''} ({p.reason})")
                else:
                    d, why = release.decide_promotion(store, dep, vercel.live, auto_promote=True,
                                                      manual=False)
                    d, why = release.act_promotion(store, vercel, dep_id, d, why, f"run_{dep_id}")
                    log.append(f"{dep_id} preview {truth}: {d} ({why})")
            except (release.Wait, ConnectionError) as exc:
                log.append(f"{dep_id}: again later: {exc}")
                tasks.append(("decide", i))
    accepted = [d for d, (_, truth) in zip(ids, plan) if truth == "pass"]
    return vercel.live, max(accepted, key=created.__getitem__), log


@pytest.mark.parametrize("block", range(4))
def test_production_always_ends_at_the_newest_accepted_deployment(tmp_path, block):
    store = DeploymentHistory(f"sqlite:///{tmp_path / 'h.sqlite'}")
    try:
        for seed in range(block * 60, block * 60 + 60):
            live, newest, log = drill(store, seed)
            assert live == newest, f"seed {seed}: live {live}, expected {newest}\n" + "\n".join(log)
    finally:
        store.dispose()


def test_the_drill_exercises_the_hard_orders(tmp_path):
    """The interleavings above include the cases that went wrong before: a rollback that had to
    wait for an earlier verdict, an older preview skipped, one promoted over a newer regressed
    deployment, provider calls retried."""
    store = DeploymentHistory(f"sqlite:///{tmp_path / 'h.sqlite'}")
    try:
        logs = "\n".join(line for seed in range(60) for line in drill(store, seed)[2])
    finally:
        store.dispose()
    assert "again later: waiting for the verdict of" in logs
    assert "older than the live production deployment" in logs
    assert "again later: the provider timed out" in logs
    assert ": rolled_back " in logs and ": promoted (" in logs
