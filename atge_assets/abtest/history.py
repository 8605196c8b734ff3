"""The A/B tests' history: the plan's results table and the promotions (one row per winner)."""

from __future__ import annotations

import json
import time
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from atge_assets.lib.history.engine import History
from atge_assets.lib.history.schema import ab_promotions, ab_test_results


class AbtestHistory(History):
    def record_ab_results(self, rows: Iterable[dict]) -> int:
        """Append rows of einstein_ab_test_results (keys: its columns) in one transaction."""
        cols = [c.name for c in ab_test_results.columns if c.name != "id"]
        rows = [{c: r.get(c) for c in cols} for r in rows]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(ab_test_results.insert(), rows)
        return len(rows)

    def ab_results(self, experiment: str | None = None, since: float | None = None) -> list[dict]:
        """Result rows in time order: one experiment's or all, from `since` (epoch s) on."""
        t = ab_test_results
        q = sa.select(t).order_by(t.c.timestamp, t.c.id)
        if experiment is not None:
            q = q.where(t.c.experiment == experiment)
        if since is not None:
            q = q.where(t.c.timestamp >= since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def ab_latest_timestamp(self, experiment: str) -> float | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(ab_test_results.c.timestamp)).where(
                ab_test_results.c.experiment == experiment)).scalar()

    def ab_signal_keys(self, experiment: str, since: float | None = None) -> set[tuple[str, str]]:
        """(signal_id, outcome) of the experiment's stored rows: what an intake must not repeat."""
        t = ab_test_results
        q = sa.select(t.c.signal_id, t.c.outcome).where(t.c.experiment == experiment)
        if since is not None:
            q = q.where(t.c.timestamp >= since)
        with self.engine.connect() as conn:
            return {(s, o) for s, o in conn.execute(q)}

    def ab_promotion(self, experiment: str, variant_id: str) -> dict | None:
        t = ab_promotions
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.experiment == experiment)
                               .where(t.c.variant_id == variant_id)).first()
        return dict(row._mapping) if row else None

    def ab_promotions_of(self, experiment: str) -> list[dict]:
        t = ab_promotions
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(t).where(t.c.experiment == experiment).order_by(t.c.created_at))]

    def await_ab_promotion(self, experiment: str, variant_id: str, split: dict, reason: str,
                           run_id: str) -> dict:
        """Record a winner waiting for someone to promote it (a no-op when already recorded)."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(ab_promotions.insert().values(
                    experiment=experiment, variant_id=variant_id, status="awaiting",
                    split=json.dumps(split), reason=reason, run_id=run_id, created_at=now,
                    updated_at=now))
        except IntegrityError:
            pass
        return self.ab_promotion(experiment, variant_id)

    def claim_ab_promotion(self, experiment: str, variant_id: str, split: dict, reason: str,
                           run_id: str, stale_after_s: float = 600.0) -> bool:
        """Take the right to call the promotion hook; False when another run holds it or it is
        done. A failed attempt, an awaiting winner and a claim left pending by a crashed run
        (after `stale_after_s`) can be taken again: setting a split twice is harmless."""
        now = time.time()
        t = ab_promotions
        values = dict(status="pending", split=json.dumps(split), reason=reason, run_id=run_id,
                      updated_at=now)
        try:
            with self.engine.begin() as conn:
                conn.execute(t.insert().values(experiment=experiment, variant_id=variant_id,
                                               created_at=now, **values))
            return True
        except IntegrityError:
            pass
        takeable = sa.or_(t.c.status.in_(("awaiting", "failed")),
                          sa.and_(t.c.status == "pending", t.c.updated_at < now - stale_after_s))
        with self.engine.begin() as conn:
            return conn.execute(t.update().where(t.c.experiment == experiment)
                                .where(t.c.variant_id == variant_id).where(takeable)
                                .values(**values)).rowcount == 1

    def finish_ab_promotion(self, experiment: str, variant_id: str, status: str,
                            detail: str = "") -> None:
        t = ab_promotions
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.experiment == experiment)
                         .where(t.c.variant_id == variant_id)
                         .values(status=status, detail=detail, updated_at=time.time()))
