"""The history database: migrations, the engine's driver, concurrent migrators (SQLite and
the real Postgres server)."""


import pytest
import sqlalchemy as sa

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.deployments.webhook_intake import IntakeQueue, VercelEvent
from atge_assets.lib.history import migrations
from atge_assets.lib.history.schema import md
from atge_assets.notify.sent_log import SqlSentLog
from atge_assets_tests.conftest import fresh_pg_database


def test_migrations_are_idempotent_and_upgrade_old_databases(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    first = DeploymentHistory(url)
    head = migrations.head()
    assert first.schema_version == head >= 2
    # Pretend this database predates the A/B results table (schema version 1).
    with first.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE einstein_ab_test_results"))
        conn.execute(sa.text("DELETE FROM atge_schema_version"))
        conn.execute(sa.text("INSERT INTO atge_schema_version VALUES (1, 'v1', 0)"))
    first.dispose()
    # A later release adds a table: an existing database gets exactly the missing steps, once.
    extra = sa.Table("extra_notes", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + [
        (head + 1, "extra notes table", lambda conn: extra.create(conn))])
    again = DeploymentHistory(url)
    assert again.schema_version == head + 1
    assert sa.inspect(again.engine).has_table("einstein_ab_test_results")
    again.dispose()
    third = DeploymentHistory(url)  # nothing left to do, nothing fails
    assert third.schema_version == head + 1
    with third.engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM atge_schema_version")).scalars().all()
    assert sorted(versions) == [1] + sorted(v for v, _, _ in migrations.MIGRATIONS)
    assert sa.inspect(third.engine).has_table("extra_notes")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request, tmp_path):
    """An empty database of each backend, all to itself (the test rewinds its schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    else:
        with fresh_pg_database() as url:
            yield url


def _rewind_to_v6(store: DeploymentHistory, drop: tuple[str, ...]) -> None:
    """Make the database look as release 6 left it (`drop`: tables their own modules had not made
    yet)."""
    with store.engine.begin() as conn:
        for table in drop:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        conn.execute(sa.text("DELETE FROM atge_schema_version WHERE version > 6"))
    store.dispose()


def test_an_old_database_gains_the_queue_and_sent_log_through_their_migrations(fresh_url):
    _rewind_to_v6(DeploymentHistory(fresh_url), drop=("vercel_webhook_queue", "notifications_sent"))
    s = DeploymentHistory(fresh_url)
    try:
        assert s.schema_version == migrations.head() >= 8
        assert sa.inspect(s.engine).has_table("vercel_webhook_queue")
        assert sa.inspect(s.engine).has_table("notifications_sent")
        q = IntakeQueue(s.engine)
        assert q.put(_vercel_event("evt_1"))[1] and [e.event_id for e in q.pending()] == ["evt_1"]
        sent = SqlSentLog(s.engine)
        sent.mark_sent("rollback:dpl_1")
        assert sent.already_sent("rollback:dpl_1") and not sent.already_sent("rollback:dpl_2")
    finally:
        s.dispose()


def test_the_queue_an_old_intake_made_itself_is_kept_by_the_migration(fresh_url):
    # Before step 7 the intake created the table on its own, outside the versions.
    s = DeploymentHistory(fresh_url)
    IntakeQueue(s.engine).put(_vercel_event("evt_old"))
    _rewind_to_v6(s, drop=())
    q = IntakeQueue(fresh_url)  # the intake may be the first process after the upgrade
    try:
        with q.engine.connect() as conn:
            assert migrations.current_version(conn) == migrations.head()
        assert [e.event_id for e in q.pending()] == ["evt_old"]
        assert q.put(_vercel_event("evt_old")) == (q.pending()[0].id, False)
    finally:
        q.dispose()


def _vercel_event(event_id: str) -> VercelEvent:
    return VercelEvent(event_id, "deployment.succeeded", "dpl_1", "prj_1", "production",
                       "d1.vercel.app", 1000, {})


@pytest.mark.postgres
def test_many_processes_migrate_a_fresh_postgres_database_at_once(pg_server_url):
    import multiprocessing as mp

    import sqlalchemy as sa

    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # start from nothing
        for t in list(reversed(md.sorted_tables)) + [sa.Table(migrations.VERSION_TABLE,
                                                              sa.MetaData())]:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {t.name} CASCADE"))
    admin.dispose()
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        versions = pool.map(_open_store, [pg_server_url] * 4)
    assert versions == [migrations.head()] * 4


def _open_store(url):
    s = DeploymentHistory(url)
    try:
        return s.schema_version
    finally:
        s.dispose()


@pytest.mark.postgres
def test_bare_postgresql_scheme_uses_psycopg2(pg_server_url):
    bare = "postgresql://" + pg_server_url.split("://", 1)[1]
    s = DeploymentHistory(bare)
    try:
        assert s.engine.dialect.driver == "psycopg2"
        assert s.schema_version == migrations.head()
    finally:
        s.dispose()
