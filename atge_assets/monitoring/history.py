"""The monitoring history: system metric samples and every self-healing decision."""

from __future__ import annotations

import time
from typing import Sequence

import sqlalchemy as sa

from atge_assets.lib.history.engine import History
from atge_assets.lib.history.schema import healing_actions, system_metrics


class MonitoringHistory(History):
    def record_metric_samples(self, rows: Sequence[dict]) -> int:
        """Insert samples ({target, metric, value, timestamp, source}); those already stored are
        skipped. Returns how many were new."""
        if not rows:
            return 0
        t = system_metrics
        now = time.time()
        keys = {(r["target"], r["metric"], r["source"]) for r in rows}
        lo, hi = min(r["timestamp"] for r in rows), max(r["timestamp"] for r in rows)
        with self.engine.begin() as conn:
            have = set(conn.execute(
                sa.select(t.c.target, t.c.metric, t.c.source, t.c.timestamp)
                .where(t.c.timestamp >= lo).where(t.c.timestamp <= hi)
                .where(t.c.metric.in_({k[1] for k in keys}))).all())
            new = [dict(target=r["target"], metric=r["metric"], value=float(r["value"]),
                        timestamp=float(r["timestamp"]), source=r["source"], created_at=now)
                   for r in rows
                   if (r["target"], r["metric"], r["source"], float(r["timestamp"])) not in have]
            new = list({(r["target"], r["metric"], r["source"], r["timestamp"]): r
                        for r in new}.values())
            if new:
                # A concurrent intake may have stored some since we looked: skip, do not fail.
                if conn.dialect.name == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert
                else:
                    from sqlalchemy.dialects.sqlite import insert
                conn.execute(insert(t).on_conflict_do_nothing(), new)
        return len(new)

    def replace_metric_values(self, rows: Sequence[dict]) -> int:
        """Samples already stored take the value given where it differs: the source's history
        changed after it was read (a scrape that came late, a backfill, the sandbox's
        fast-forward). Returns how many changed; samples not stored are left alone."""
        if not rows:
            return 0
        t = system_metrics
        lo, hi = min(r["timestamp"] for r in rows), max(r["timestamp"] for r in rows)
        with self.engine.begin() as conn:
            have = {tuple(r[:4]): (r[4], r[5]) for r in conn.execute(
                sa.select(t.c.target, t.c.metric, t.c.source, t.c.timestamp, t.c.id, t.c.value)
                .where(t.c.timestamp >= lo).where(t.c.timestamp <= hi)
                .where(t.c.metric.in_({r["metric"] for r in rows}))).all()}
            changed = {}
            for r in rows:
                old = have.get((r["target"], r["metric"], r["source"], float(r["timestamp"])))
                if old is not None and old[1] != float(r["value"]):
                    changed[old[0]] = float(r["value"])
            for row_id, value in changed.items():
                conn.execute(t.update().where(t.c.id == row_id).values(value=value))
        return len(changed)

    def last_metric_timestamps(self, target: str, source: str) -> dict[str, float]:
        t = system_metrics
        q = (sa.select(t.c.metric, sa.func.max(t.c.timestamp)).where(t.c.target == target)
             .where(t.c.source == source).group_by(t.c.metric))
        with self.engine.connect() as conn:
            return {m: ts for m, ts in conn.execute(q)}

    def metric_series(self, target: str, metric: str, since: float, until: float
                      ) -> tuple[list[float], list[float]]:
        """(timestamps, values) of one metric in (since, until], oldest first, all sources."""
        t = system_metrics
        q = (sa.select(t.c.timestamp, t.c.value).where(t.c.target == target)
             .where(t.c.metric == metric).where(t.c.timestamp > since)
             .where(t.c.timestamp <= until).order_by(t.c.timestamp))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [r[0] for r in rows], [r[1] for r in rows]

    def prune_metric_samples(self, before: float) -> int:
        with self.engine.begin() as conn:
            return conn.execute(system_metrics.delete()
                                .where(system_metrics.c.timestamp < before)).rowcount

    def record_healing_action(self, **fields) -> int:
        cols = {c.name for c in healing_actions.columns} - {"id"}
        with self.engine.begin() as conn:
            return conn.execute(healing_actions.insert().values(
                **{k: v for k, v in fields.items() if k in cols})).inserted_primary_key[0]

    def finish_healing_action(self, action_id: int, outcome: str, detail: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(healing_actions.update().where(healing_actions.c.id == action_id)
                         .values(outcome=outcome, detail=detail, finished_at=time.time()))

    def healing_actions(self, *, target: str | None = None, since: float | None = None,
                        limit: int | None = None) -> list[dict]:
        """Records, newest first."""
        t = healing_actions
        q = sa.select(t).order_by(t.c.created_at.desc(), t.c.id.desc())
        if target is not None:
            q = q.where(t.c.target == target)
        if since is not None:
            q = q.where(t.c.created_at >= since)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
