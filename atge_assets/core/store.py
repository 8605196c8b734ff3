"""The history store: the one place that speaks SQL (SQLite by default, Postgres by URL).

Tables: deployments, measurements and their samples, comparisons (plus the plan's
`einstein_performance_benchmarks`), rollbacks (one row per rolled-back deployment, the guard that
makes a rollback happen at most once) and decisions (every rolled back / kept / skipped, with why).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from atge_assets.core.migrations import migrate
from atge_assets.core.providers.base import Deployment

md = sa.MetaData()

deployments = sa.Table(
    "deployments", md,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("target", sa.String(32), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("meta", sa.Text, nullable=False, default="{}"),
    sa.Column("verdict", sa.String(32)),  # overall verdict of the latest comparison
    sa.Column("verdict_at", sa.Float),
)

measurements = sa.Table(
    "measurements", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    # The production deployment measured in alternation with this one, if any.
    sa.Column("reference_id", sa.String(128)),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
)

samples = sa.Table(
    "samples", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("measurement_id", sa.Integer, sa.ForeignKey("measurements.id"), nullable=False,
              index=True),
    sa.Column("deployment_id", sa.String(128), nullable=False, index=True),
    sa.Column("target", sa.String(32), nullable=False),  # whose samples: candidate or reference
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("value_ms", sa.Float),
    sa.Column("wall_ms", sa.Float),
    sa.Column("status", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("phases", sa.Text, nullable=False, default="{}"),
    sa.Column("started_at", sa.Float, nullable=False),
)

comparisons = sa.Table(
    "comparisons", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("current_ms", sa.Float),
    sa.Column("baseline_ms", sa.Float),
    sa.Column("change", sa.Float),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("p_value", sa.Float),
    sa.Column("baseline_source", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # the judge's full verdict as JSON
    sa.Column("created_at", sa.Float, nullable=False),
)

baselines = sa.Table(
    "baselines", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # which deployments, or "static"
    sa.Column("samples", sa.Text, nullable=False),  # JSON list of ms (null = failed request)
    sa.Column("created_at", sa.Float, nullable=False),
)

# The plan's own table, kept with its column names so its dashboards keep working.
benchmarks = sa.Table(
    "einstein_performance_benchmarks", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(128), index=True),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("baseline", sa.Float),
    sa.Column("change_percent", sa.Float),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
)

rollbacks = sa.Table(
    "rollbacks", md,
    # The primary key is the at-most-once guard: a second rollback of one deployment cannot insert.
    sa.Column("deployment_id", sa.String(128), primary_key=True),
    sa.Column("rollback_to", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending -> done
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("done_at", sa.Float),
)

decisions = sa.Table(
    "decisions", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),
    sa.Column("rollback_to", sa.String(128)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Input we could not use (a malformed provider entry, say): kept so nothing is silently dropped.
rejected = sa.Table(
    "rejected_inputs", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# The plan's A/B test results, one row per signal, with its column names plus `experiment`.
# core/abtest.py validates rows when it reads them and reports the bad ones by row id.
ab_test_results = sa.Table(
    "einstein_ab_test_results", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(128), nullable=False, index=True),
    sa.Column("variant_id", sa.String(128), nullable=False),
    sa.Column("signal_id", sa.String(128), nullable=False),
    sa.Column("analysis_time", sa.Float),  # seconds
    sa.Column("confidence", sa.Float),  # 0-1
    sa.Column("outcome", sa.String(16), nullable=False),  # win, loss, pending, error
    sa.Column("profit_loss", sa.Float),
    sa.Column("timestamp", sa.Float, nullable=False),  # epoch seconds
)

ACCEPTED = ("pass", "improved")


@dataclass(frozen=True)
class DeploymentRow:
    id: str
    url: str
    target: str
    state: str
    created_ms: int
    verdict: str | None


def default_url(home: Path) -> str:
    return f"sqlite:///{home / 'history.sqlite'}"


class HistoryStore:
    def __init__(self, url: str):
        if url.startswith("postgresql://"):
            # SQLAlchemy 2.1 reads bare postgresql:// as psycopg 3; say which driver we ship.
            url = "postgresql+psycopg2://" + url[len("postgresql://"):]
        self.url = url
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.schema_version = migrate(self.engine, md)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- deployments ---------------------------------------------------------------------------
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

    def known_good_production(self, before_created_ms: int, limit: int = 3) -> list[DeploymentRow]:
        """Earlier production deployments that passed their comparison and were not rolled back."""
        rolled = sa.select(rollbacks.c.deployment_id)
        q = (
            sa.select(*_dep_cols())
            .where(deployments.c.target == "production")
            .where(deployments.c.verdict.in_(ACCEPTED))
            .where(deployments.c.created_ms < before_created_ms)
            .where(deployments.c.id.not_in(rolled))
            .order_by(deployments.c.created_ms.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [DeploymentRow(*r) for r in conn.execute(q)]

    def set_verdict(self, deployment_id: str, verdict: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(deployments.update().where(deployments.c.id == deployment_id)
                         .values(verdict=verdict, verdict_at=time.time()))

    # -- measurements ----------------------------------------------------------------------------
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

    # -- baselines -------------------------------------------------------------------------------
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

    # -- comparisons -----------------------------------------------------------------------------
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

    # -- rollbacks -------------------------------------------------------------------------------
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

    def decisions_for(self, deployment_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(decisions).where(
                decisions.c.deployment_id == deployment_id).order_by(decisions.c.id))
            return [dict(r._mapping) for r in rows]

    def record_rejected(self, source: str, details: Iterable[str]) -> None:
        rows = [dict(source=source, detail=d[:4000], created_at=time.time()) for d in details]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(rejected.insert(), rows)

    def table_rows(self, table: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(md.tables[table]))]

    # -- A/B tests -------------------------------------------------------------------------------
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


def _dep_cols():
    c = deployments.c
    return (c.id, c.url, c.target, c.state, c.created_ms, c.verdict)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the webserver read while a run writes; the busy timeout rides out short locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
