"""The deployments' history: deployments, measurements and their samples, baselines,
comparisons (plus the plan's `einstein_performance_benchmarks`), smoke results, rollbacks and
promotions (one row each per deployment: the guard that makes them happen at most once),
decisions (every rolled back / kept / promoted / skipped, with why), rejected input and episodes
of production drift.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from atge_assets.lib.history.engine import History
from atge_assets.lib.history.schema import (
    baselines,
    benchmarks,
    comparisons,
    decisions,
    deployments,
    measurements,
    production_drift,
    promotions,
    rejected,
    rollbacks,
    samples,
    smoke_results,
)
from atge_assets.lib.providers.base import Deployment

# Verdicts that make a deployment known-good: judged no slower, or held and let through by a
# person ("accepted").
ACCEPTED = ("pass", "improved", "accepted")


@dataclass(frozen=True)
class DeploymentRow:
    id: str
    url: str
    target: str
    state: str
    created_ms: int
    verdict: str | None


class DeploymentHistory(History):
    def upsert_deployment(self, dep: Deployment) -> None:
        values = dict(url=dep.url, target=dep.target, state=dep.state, created_ms=dep.created_ms,
                      meta=json.dumps(dep.meta, sort_keys=True))
        with self.engine.begin() as conn:
            updated = conn.execute(
                deployments.update().where(deployments.c.id == dep.id).values(**values)
            ).rowcount
            if not updated:
                try:
                    with conn.begin_nested():
                        conn.execute(deployments.insert().values(id=dep.id, **values))
                except IntegrityError:  # a concurrent writer inserted it first: same data
                    pass

    def deployment(self, deployment_id: str) -> DeploymentRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(*_dep_cols()).where(deployments.c.id == deployment_id)
            ).first()
        return DeploymentRow(*row) if row else None

    def known_good_production(self, before_ms: int, limit: int = 3) -> list[DeploymentRow]:
        """Deployments that went live before `before_ms`, accepted and not rolled back, the one
        live most recently first: Vercel's instant-rollback target. A production deployment went
        live when it was created; a preview when this tool promoted it (a promoted preview keeps
        `target` preview in the history, yet it served production and may be the one to return
        to)."""
        rolled = sa.select(rollbacks.c.deployment_id)
        live_ms = sa.case((deployments.c.target == "production", deployments.c.created_ms),
                          else_=sa.cast(promotions.c.done_at * 1000, sa.BigInteger))
        q = (
            sa.select(*_dep_cols())
            .select_from(deployments.outerjoin(promotions, sa.and_(
                promotions.c.deployment_id == deployments.c.id, promotions.c.status == "done")))
            .where(sa.or_(deployments.c.target == "production",
                          promotions.c.deployment_id.is_not(None)))
            .where(deployments.c.verdict.in_(ACCEPTED))
            .where(live_ms < before_ms)
            .where(deployments.c.id.not_in(rolled))
            .order_by(live_ms.desc(), deployments.c.created_ms.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [DeploymentRow(*r) for r in conn.execute(q)]

    def unjudged_production_before(self, before_created_ms: int) -> list[DeploymentRow]:
        """Earlier READY production deployments a run has seen that have no verdict yet (their
        run in flight, or ended without one), oldest first."""
        q = (sa.select(*_dep_cols()).where(deployments.c.target == "production")
             .where(deployments.c.verdict.is_(None)).where(deployments.c.state == "READY")
             .where(deployments.c.created_ms < before_created_ms)
             .order_by(deployments.c.created_ms))
        with self.engine.connect() as conn:
            return [DeploymentRow(*r) for r in conn.execute(q)]

    def set_verdict(self, deployment_id: str, verdict: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(deployments.update().where(deployments.c.id == deployment_id)
                         .values(verdict=verdict, verdict_at=time.time()))

    def record_measurement(self, deployment_id: str, run_id: str, rows: Sequence[dict],
                           started_at: float, reference_id: str | None = None) -> int:
        """Write one measurement and all its samples in one transaction: all or nothing."""
        with self.engine.begin() as conn:
            mid = conn.execute(measurements.insert().values(
                deployment_id=deployment_id, run_id=run_id, started_at=started_at,
                finished_at=time.time(), reference_id=reference_id,
            )).inserted_primary_key[0]
            self._insert_samples(conn, mid, deployment_id, rows)
        return mid

    def add_samples(self, deployment_id: str, rows: Sequence[dict]) -> int:
        """Append a re-measurement round to the deployment's latest measurement."""
        with self.engine.begin() as conn:
            mid = conn.execute(sa.select(sa.func.max(measurements.c.id)).where(
                measurements.c.deployment_id == deployment_id)).scalar()
            if mid is None:
                raise LookupError(f"deployment {deployment_id} has no measurement to extend")
            self._insert_samples(conn, mid, deployment_id, rows)
            conn.execute(measurements.update().where(measurements.c.id == mid)
                         .values(finished_at=time.time()))
        return mid

    @staticmethod
    def _insert_samples(conn, mid: int, deployment_id: str, rows: Sequence[dict]) -> None:
        if rows:
            conn.execute(samples.insert(), [
                dict(measurement_id=mid, deployment_id=deployment_id,
                     target=r.get("target", "candidate"), metric=r["metric"], seq=r["seq"],
                     ok=bool(r["ok"]), value_ms=r.get("value_ms"), wall_ms=r.get("wall_ms"),
                     status=r.get("status"), error=r.get("error"),
                     phases=json.dumps(r.get("phases") or {}), started_at=r["started_at"])
                for r in rows
            ])

    def latest_reference(self, deployment_id: str) -> str | None:
        """The reference deployment of the latest measurement (None: measured alone)."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(measurements.c.reference_id)
                .where(measurements.c.deployment_id == deployment_id)
                .order_by(measurements.c.id.desc()).limit(1)).scalar()

    def latest_samples(self, deployment_id: str, target: str = "candidate"
                       ) -> dict[str, list[float | None]]:
        """Per metric, the values of the deployment's latest measurement (None = failed)."""
        latest = (sa.select(sa.func.max(measurements.c.id))
                  .where(measurements.c.deployment_id == deployment_id).scalar_subquery())
        q = (sa.select(samples.c.metric, samples.c.ok, samples.c.value_ms)
             .where(samples.c.measurement_id == latest).where(samples.c.target == target)
             .order_by(samples.c.metric, samples.c.seq))
        out: dict[str, list[float | None]] = {}
        with self.engine.connect() as conn:
            for metric, ok, value in conn.execute(q):
                out.setdefault(metric, []).append(value if ok else None)
        return out

    def sample_rows(self, since: float | None = None) -> list[dict]:
        """Successful candidate samples of every deployment's latest measurement, for trends."""
        latest = (sa.select(sa.func.max(measurements.c.id).label("mid"))
                  .group_by(measurements.c.deployment_id).subquery())
        q = (sa.select(samples.c.deployment_id, samples.c.metric, samples.c.value_ms,
                       samples.c.started_at, deployments.c.created_ms, deployments.c.target,
                       deployments.c.verdict)
             .join(latest, samples.c.measurement_id == latest.c.mid)
             .join(deployments, deployments.c.id == samples.c.deployment_id)
             .where(samples.c.ok.is_(True)).where(samples.c.target == "candidate"))
        if since is not None:
            q = q.where(samples.c.started_at >= since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def record_baseline(self, deployment_id: str, run_id: str, per_metric: dict[str, dict]) -> None:
        """per_metric: {metric: {"source": str, "samples": [ms or None, ...]}}"""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(baselines.insert(), [
                dict(deployment_id=deployment_id, run_id=run_id, metric=m, source=b["source"],
                     samples=json.dumps(b["samples"]), created_at=now)
                for m, b in per_metric.items()
            ])

    def latest_baseline(self, deployment_id: str) -> dict[str, dict]:
        latest = (sa.select(sa.func.max(baselines.c.created_at))
                  .where(baselines.c.deployment_id == deployment_id).scalar_subquery())
        q = (sa.select(baselines.c.metric, baselines.c.source, baselines.c.samples)
             .where(baselines.c.deployment_id == deployment_id)
             .where(baselines.c.created_at == latest))
        with self.engine.connect() as conn:
            return {m: {"source": src, "samples": json.loads(s)} for m, src, s in conn.execute(q)}

    def record_comparison(self, deployment_id: str, run_id: str, rows: Iterable[dict],
                          overall: str) -> None:
        now = time.time()
        rows = list(rows)
        with self.engine.begin() as conn:
            conn.execute(comparisons.insert(), [
                dict(deployment_id=deployment_id, run_id=run_id, metric=r["metric"],
                     verdict=r["verdict"], current_ms=r.get("current_ms"),
                     baseline_ms=r.get("baseline_ms"), change=r.get("change"),
                     threshold=r["threshold"], p_value=r.get("p_value"),
                     baseline_source=r["baseline_source"],
                     details=json.dumps(r.get("details") or {}), created_at=now)
                for r in rows
            ])
            conn.execute(benchmarks.insert(), [
                dict(deployment_id=deployment_id, metric=r["metric"], value=r.get("current_ms"),
                     baseline=r.get("baseline_ms"),
                     change_percent=None if r.get("change") is None else r["change"] * 100,
                     passed=r["verdict"] in ACCEPTED, timestamp=now)
                for r in rows
            ])
            conn.execute(deployments.update().where(deployments.c.id == deployment_id)
                         .values(verdict=overall, verdict_at=now))

    def latest_comparison_rows(self, deployment_id: str) -> list[dict]:
        """The per-metric rows of the deployment's latest comparison run."""
        latest = (sa.select(sa.func.max(comparisons.c.id))
                  .where(comparisons.c.deployment_id == deployment_id).scalar_subquery())
        run = sa.select(comparisons.c.run_id).where(comparisons.c.id == latest).scalar_subquery()
        q = (sa.select(comparisons.c.metric, comparisons.c.current_ms, comparisons.c.baseline_ms,
                       comparisons.c.change, comparisons.c.verdict)
             .where(comparisons.c.deployment_id == deployment_id)
             .where(comparisons.c.run_id == run).order_by(comparisons.c.id))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def claim_rollback(self, deployment_id: str, rollback_to: str, run_id: str) -> dict | None:
        """Insert the pending rollback row; return the existing row instead if there is one."""
        try:
            with self.engine.begin() as conn:
                conn.execute(rollbacks.insert().values(
                    deployment_id=deployment_id, rollback_to=rollback_to, run_id=run_id,
                    status="pending", created_at=time.time()))
            return None
        except IntegrityError:
            return self.rollback_for(deployment_id)

    def rollback_for(self, deployment_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rollbacks).where(
                rollbacks.c.deployment_id == deployment_id)).first()
        return dict(row._mapping) if row else None

    def finish_rollback(self, deployment_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(rollbacks.update().where(rollbacks.c.deployment_id == deployment_id)
                         .values(status="done", done_at=time.time()))

    def record_decision(self, deployment_id: str, run_id: str, decision: str, reason: str,
                        rollback_to: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(decisions.insert().values(
                deployment_id=deployment_id, run_id=run_id, decision=decision,
                rollback_to=rollback_to, reason=reason, created_at=time.time()))

    def recent_deployments(self, limit: int = 200) -> list[dict]:
        """The newest deployments, newest first, each with its decisions (oldest first) and the
        per-metric rows of its latest comparison: what the `releases` table shows."""
        with self.engine.connect() as conn:
            deps = [dict(r._mapping) for r in conn.execute(
                sa.select(*_dep_cols()).order_by(deployments.c.created_ms.desc()).limit(limit))]
            ids = [d["id"] for d in deps]
            decided = conn.execute(sa.select(decisions).where(decisions.c.deployment_id.in_(ids))
                                   .order_by(decisions.c.id)).mappings().all()
            latest = (sa.select(comparisons.c.deployment_id,
                                sa.func.max(comparisons.c.id).label("last"))
                      .where(comparisons.c.deployment_id.in_(ids))
                      .group_by(comparisons.c.deployment_id).subquery())
            last_run = (sa.select(comparisons.c.run_id, comparisons.c.deployment_id)
                        .join(latest, comparisons.c.id == latest.c.last).subquery())
            compared = conn.execute(
                sa.select(comparisons.c.deployment_id, comparisons.c.metric,
                          comparisons.c.change, comparisons.c.verdict)
                .join(last_run, sa.and_(comparisons.c.run_id == last_run.c.run_id,
                                        comparisons.c.deployment_id == last_run.c.deployment_id))
                .order_by(comparisons.c.id)).mappings().all()
        by_dep: dict[str, dict[str, list]] = {d["id"]: {"decisions": [], "metrics": []}
                                               for d in deps}
        for key, rows in (("decisions", decided), ("metrics", compared)):
            for x in rows:
                by_dep[x["deployment_id"]][key].append(dict(x))
        return [{**d, **by_dep[d["id"]]} for d in deps]

    def decisions_for(self, deployment_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(decisions).where(
                decisions.c.deployment_id == deployment_id).order_by(decisions.c.id))
            return [dict(r._mapping) for r in rows]

    def record_smoke(self, deployment_id: str, run_id: str, results: Iterable[dict]) -> None:
        now = time.time()
        rows = [dict(deployment_id=deployment_id, run_id=run_id, name=r["name"],
                     passed=bool(r["passed"]), status=r.get("status"), ms=r.get("ms"),
                     reasons=json.dumps(r.get("reasons") or []), created_at=now) for r in results]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(smoke_results.insert(), rows)

    def latest_smoke(self, deployment_id: str) -> dict[str, dict]:
        """The latest result of each smoke test of the deployment, by name."""
        q = (sa.select(smoke_results).where(smoke_results.c.deployment_id == deployment_id)
             .order_by(smoke_results.c.id))
        with self.engine.connect() as conn:
            return {r.name: dict(r._mapping) for r in conn.execute(q)}

    def claim_promotion(self, deployment_id: str, run_id: str) -> dict | None:
        """Insert the pending promotion row; return the existing row instead if there is one."""
        try:
            with self.engine.begin() as conn:
                conn.execute(promotions.insert().values(
                    deployment_id=deployment_id, run_id=run_id, status="pending",
                    created_at=time.time()))
            return None
        except IntegrityError:
            return self.promotion_for(deployment_id)

    def promotion_for(self, deployment_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(promotions).where(
                promotions.c.deployment_id == deployment_id)).first()
        return dict(row._mapping) if row else None

    def finish_promotion(self, deployment_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(promotions.update().where(promotions.c.deployment_id == deployment_id)
                         .values(status="done", done_at=time.time()))

    def last_decision(self, decision: str, target: str = "production") -> dict | None:
        """The newest decision of a kind among deployments of a target (e.g. the last rollback)."""
        q = (sa.select(decisions).join(deployments, deployments.c.id == decisions.c.deployment_id)
             .where(decisions.c.decision == decision).where(deployments.c.target == target)
             .order_by(decisions.c.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return dict(row._mapping) if row else None

    def record_rejected(self, source: str, details: Iterable[str]) -> None:
        rows = [dict(source=source, detail=d[:4000], created_at=time.time()) for d in details]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(rejected.insert(), rows)

    # -- production drift (deployments/drift.py) ----------------------------------------------
    def went_live(self) -> list[tuple[str, int, str]]:
        """(deployment id, when in ms, how) for the newest deployment that went live each way
        this tool knows of: a production deployment it judged (live from its creation, as Vercel
        does it), its own promotions and its own rollbacks (the target)."""
        judged = sa.select(decisions.c.deployment_id)
        created = (sa.select(deployments.c.id, deployments.c.created_ms)
                   .where(deployments.c.target == "production")
                   .where(deployments.c.id.in_(judged))
                   .order_by(deployments.c.created_ms.desc(), deployments.c.id.desc()).limit(1))
        promoted = (sa.select(promotions.c.deployment_id, promotions.c.done_at)
                    .where(promotions.c.status == "done")
                    .order_by(promotions.c.done_at.desc()).limit(1))
        rolled = (sa.select(rollbacks.c.rollback_to, rollbacks.c.done_at)
                  .where(rollbacks.c.status == "done")
                  .order_by(rollbacks.c.done_at.desc()).limit(1))
        out = []
        with self.engine.connect() as conn:
            for how, q, scale in (("created", created, 1), ("promoted", promoted, 1000),
                                  ("rollback", rolled, 1000)):
                row = conn.execute(q).first()
                if row and row[1] is not None:
                    out.append((row[0], int(row[1] * scale), how))
        return out

    def live_facts(self, deployment_id: str) -> dict | None:
        """What the history knows of one deployment for the drift check: target, created_ms,
        verdict and when (ms), when a rollback of it was done (ms) and its decisions, oldest
        first; None if it was never seen."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(
                deployments.c.target, deployments.c.created_ms, deployments.c.verdict,
                deployments.c.verdict_at).where(deployments.c.id == deployment_id)).first()
            if row is None:
                return None
            rolled = conn.execute(sa.select(rollbacks.c.done_at).where(
                rollbacks.c.deployment_id == deployment_id).where(
                rollbacks.c.status == "done")).scalar()
            decided = conn.execute(sa.select(decisions.c.decision).where(
                decisions.c.deployment_id == deployment_id).order_by(decisions.c.id)).scalars()
            return {"target": row.target, "created_ms": row.created_ms, "verdict": row.verdict,
                    "verdict_at_ms": None if row.verdict_at is None else int(row.verdict_at * 1000),
                    "rolled_back_at_ms": None if rolled is None else int(rolled * 1000),
                    "decisions": tuple(decided)}

    def open_drift(self) -> dict | None:
        """The drift episode still open, if any (at most one: a new one closes the old)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(production_drift)
                               .where(production_drift.c.ended_at.is_(None))
                               .order_by(production_drift.c.id.desc()).limit(1)).first()
        return dict(row._mapping) if row else None

    def start_drift(self, live_id: str, expected_id: str | None, kind: str, reason: str) -> dict:
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(production_drift.update().where(production_drift.c.ended_at.is_(None))
                         .values(ended_at=now))
            new_id = conn.execute(production_drift.insert().values(
                live_id=live_id, expected_id=expected_id, kind=kind, reason=reason[:4000],
                started_at=now)).inserted_primary_key[0]
            row = conn.execute(sa.select(production_drift)
                               .where(production_drift.c.id == new_id)).first()
        return dict(row._mapping)

    def mark_drift_announced(self, episode_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(production_drift.update().where(production_drift.c.id == episode_id)
                         .values(announced_at=time.time()))

    def end_drift(self, episode_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(production_drift.update().where(production_drift.c.id == episode_id)
                         .where(production_drift.c.ended_at.is_(None))
                         .values(ended_at=time.time()))


def _dep_cols():
    c = deployments.c
    return (c.id, c.url, c.target, c.state, c.created_ms, c.verdict)
