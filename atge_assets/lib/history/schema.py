"""Every history table, declared once: the migrations create them, each feature's `history.py`
reads and writes its own (deployments, abtest, load, monitoring; the notify sent log and the
webhook queue live with their modules).

To change the schema: edit the tables here AND append a step to migrations.py that brings an
existing database to the same shape.
"""

from __future__ import annotations

import sqlalchemy as sa

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
# abtest/intake.py validates rows when it reads them and reports the bad ones by row id.
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

# Vercel webhook deliveries waiting for the deployment sensor (deployments/webhook_intake.py).
# Here, not beside the intake, because the intake and the Dagster daemon are separate processes that meet
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

# Keys of notifications already delivered (notify/sent_log.py): a rollback announced by a
# run that is then retried is not announced twice, whichever process sends it.
notifications_sent = sa.Table(
    "notifications_sent", md,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("sent_at", sa.Float, nullable=False),
)

# Episodes of production drift (deployments/drift.py): the provider's live deployment differs from
# what this tool's history expects, and the live one was rolled back, regressed, held, rejected or
# never judged. One row per episode: it is announced once, re-judged once, and closed (ended_at)
# when production returns to what is expected, whichever process or tick sees it.
production_drift = sa.Table(
    "production_drift", md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("live_id", sa.String(128), nullable=False),
    sa.Column("expected_id", sa.String(128)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("announced_at", sa.Float),
    sa.Column("ended_at", sa.Float, index=True),
)
