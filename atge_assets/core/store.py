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

# One row per (experiment, winning variant): the primary key makes a promotion happen at most once.
# status: awaiting (auto-promotion off) -> pending (claimed, hook being called) -> done; failed.
ab_promotions = sa.Table(
    "ab_promotions", md,
    sa.Column("experiment", sa.String(128), primary_key=True),
    sa.Column("variant_id", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("split", sa.Text, nullable=False),  # JSON {variant_id: percent}
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text),  # the hook's answer or error
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

smoke_results = sa.Table(
    "smoke_results", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("ms", sa.Float),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# One row per promoted deployment: as `rollbacks`, the primary key makes promotion at most once.
promotions = sa.Table(
    "promotions", md,
    sa.Column("deployment_id", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending -> done
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("done_at", sa.Float),
)

# One row per load-test stage: its load, counts, latency summary, verdict and encoded histogram
# (HdrHistogram's base64 form, so stages can be re-merged or re-summarised later). The run's
# capacity recommendation is repeated on each of its rows: a few rows per run, one query to read.
load_tests = sa.Table(
    "load_tests", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("stage", sa.Integer, nullable=False),  # 0, 1, ... in order of load
    sa.Column("model", sa.String(16), nullable=False),  # closed (users) or open (rate)
    sa.Column("users", sa.Integer, nullable=False),
    sa.Column("rate", sa.Float),  # open model: offered requests/s
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("error_rate", sa.Float, nullable=False),
    sa.Column("rps", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("avg_ms", sa.Float),
    sa.Column("p50_ms", sa.Float),
    sa.Column("p95_ms", sa.Float),
    sa.Column("p99_ms", sa.Float),
    sa.Column("max_ms", sa.Float),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("failures", sa.Text, nullable=False),  # JSON list of the thresholds missed
    sa.Column("shards", sa.Integer, nullable=False),
    sa.Column("histogram", sa.Text),
    sa.Column("desired_replicas", sa.Integer),
    sa.Column("recommendation", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

# System metrics as read by the monitoring intake, one row per sample. The unique key lets an
# intake that overlaps the previous one (or runs twice) insert each sample once.
system_metrics = sa.Table(
    "system_metrics", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),  # epoch seconds of the sample
    sa.Column("source", sa.String(32), nullable=False),  # prometheus or json
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("target", "metric", "source", "timestamp", name="uq_system_metrics_sample"),
    sa.Index("ix_system_metrics_series", "target", "metric", "timestamp"),
)

# Every self-healing decision that did or would do something, or was held back, with why.
# outcome: pending -> done | failed; dry_run; cooldown, capped, unsupported (held back).
healing_actions = sa.Table(
    "healing_actions", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("forecast", sa.Text, nullable=False),  # JSON: the forecast acted on
    sa.Column("params", sa.Text, nullable=False),  # JSON: what the provider was asked
    sa.Column("detail", sa.Text, nullable=False),  # the provider's answer, the error, or why not
    sa.Column("evaluation", sa.String(128), nullable=False),  # which forecast run prompted it
    sa.Column("finished_at", sa.Float),
    sa.Index("ix_healing_actions_target_time", "target", "created_at"),
)

# Vercel webhook deliveries waiting for the deployment sensor (core/webhook_intake.py). Here, not
# beside the intake, because the intake and the Dagster daemon are separate processes that meet
# in this database. The unique event_id is what makes a re-delivery a duplicate; acked rows stay
# until pruned for the same reason.
webhook_queue = sa.Table(
    "vercel_webhook_queue", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(255), nullable=False, unique=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("deployment_id", sa.String(128), nullable=False),
    sa.Column("project_id", sa.String(128)),
    sa.Column("target", sa.String(32), nullable=False),
    sa.Column("url", sa.Text),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("acked_at", sa.Float, index=True),
)

# Keys of notifications already delivered (core/notify.py's SqlSentLog): a rollback announced by a
# run that is then retried is not announced twice, whichever process sends it.
notifications_sent = sa.Table(
    "notifications_sent", md,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("sent_at", sa.Float, nullable=False),
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


def make_engine(url: str) -> sa.Engine:
    """An engine on the history database. Every process that opens it (runs, the daemon's
    sensors, the webhook intake) goes through here, so they agree on the driver and on how a
    shared SQLite file is locked and synced."""
    url = _with_driver(url)
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _with_driver(url: str) -> str:
    # SQLAlchemy 2.1 reads bare postgresql:// as psycopg 3; say which driver we ship.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


class HistoryStore:
    def __init__(self, url: str):
        self.url = _with_driver(url)
        self.engine = make_engine(self.url)
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

    def unjudged_production_before(self, before_created_ms: int) -> list[str]:
        """Earlier production deployments still waiting for their verdict (runs in flight)."""
        q = (sa.select(deployments.c.id).where(deployments.c.target == "production")
             .where(deployments.c.verdict.is_(None))
             .where(deployments.c.created_ms < before_created_ms))
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

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

    # -- release gate ----------------------------------------------------------------------------
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

    # -- load tests ------------------------------------------------------------------------------
    def record_load_test(self, deployment_id: str, run_id: str, stages: Sequence[dict],
                         desired_replicas: int | None = None,
                         recommendation: str | None = None) -> None:
        """One row per stage (keys: the columns of load_tests; `failures` a list), in one
        transaction, so a run's stages are all there or none is."""
        now = time.time()
        cols = {c.name for c in load_tests.columns} - {"id", "created_at"}
        rows = [{**{c: st.get(c) for c in cols}, "deployment_id": deployment_id,
                 "run_id": run_id, "stage": i, "failures": json.dumps(st.get("failures") or []),
                 "passed": bool(st.get("passed")), "shards": int(st.get("shards") or 1),
                 "desired_replicas": desired_replicas, "recommendation": recommendation,
                 "created_at": now} for i, st in enumerate(stages)]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(load_tests.insert(), rows)

    def load_tests_for(self, deployment_id: str) -> list[dict]:
        """Every stage row of the deployment, oldest run first, stages in order."""
        q = (sa.select(load_tests).where(load_tests.c.deployment_id == deployment_id)
             .order_by(load_tests.c.id))
        with self.engine.connect() as conn:
            out = [dict(r._mapping) for r in conn.execute(q)]
        for r in out:
            r["failures"] = json.loads(r["failures"])
        return out

    # -- system metrics and self-healing ---------------------------------------------------------
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


def _dep_cols():
    c = deployments.c
    return (c.id, c.url, c.target, c.state, c.created_ms, c.verdict)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the webserver read while a run writes; the busy timeout rides out short locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # FULL fsyncs the WAL on every commit: an acknowledged write (a webhook answered 202, say)
    # survives a power cut.
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
