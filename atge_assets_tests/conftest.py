"""Real parts for tests: the sandbox on a loopback port, a SQLite history file, a Dagster instance."""

import contextlib
import json
import math
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.sandbox.server import SandboxServer
from atge_assets.sandbox.state import SandboxState

TOKEN = "tok_test_5ecret_never_logged"


def pytest_configure(config):
    # Started in the background by a shell (`&`, nohup), this process ignores SIGINT, and each
    # in-process Dagster run maps SIGTERM to SIGINT's handler (dagster/_utils/interrupts.py): from
    # the first one on SIGTERM would be ignored here and in every process a test starts after it,
    # which then outlives its SIGTERM (a code server, a pool's workers: a suite that hangs).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def fault(status: int, headers: dict | None = None, body=None, after: bool = False) -> dict:
    """One injected answer of the sandbox's Vercel API (see SandboxState.api_faults)."""
    return {"status": status, "headers": headers or {}, "body": body, "after": after}


@pytest.fixture
def sandbox(tmp_path):
    """The sandbox server on an ephemeral loopback port, scaled so a benchmark takes a few seconds."""
    state = SandboxState(tmp_path / "sandbox.json", scale=0.005, noise=0.08, seed=7)
    server = SandboxServer(("127.0.0.1", 0), state, token=TOKEN)
    server.start_background()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def history_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'history.sqlite'}"


@pytest.fixture
def store(history_url) -> DeploymentHistory:
    """The deployments' history; a feature's folder overrides it with its own history class."""
    s = DeploymentHistory(history_url)
    yield s
    s.dispose()


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def resources(sandbox, history_url):
    from atge_assets.deployments.resources import (
        BenchmarkResource,
        ReleasePolicyResource,
    )
    from atge_assets.lib.resources import HistoryResource, VercelResource
    from atge_assets.notify.resources import NotifierResource

    return {
        "vercel": VercelResource(token=TOKEN, project_id=sandbox.state.world.project_id,
                                 base_url=sandbox.base_url),
        "history": HistoryResource(url=history_url),
        "benchmark": BenchmarkResource(samples=12, warmup=1, baseline_scale=0.005),
        "policy": ReleasePolicyResource(dry_run=False),
        "notifier": NotifierResource(),
    }


PROJECT_ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("ATGE_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def fresh_pg_database():
    """A new Postgres database, dropped afterwards.

    Without a server the test skips with the reason, except under CI (CI=true), where a missing
    server is a failure: CI must never pass by skipping what it was asked to run.
    """
    import uuid

    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"atge_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        reason = f"no Postgres server at {PG_ADMIN_URL.split('@')[-1]}: {exc.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs the Postgres server: {reason}")
        pytest.skip(reason)
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_server_url():
    """One fresh database for the whole test session."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request, tmp_path):
    """The history store on each backend it supports; Postgres tables are emptied per test."""
    if request.param == "sqlite":
        s = DeploymentHistory(f"sqlite:///{tmp_path / 'h.sqlite'}")
    else:
        import sqlalchemy as sa

        s = DeploymentHistory(request.getfixturevalue("pg_server_url"))
        from atge_assets.lib.history.schema import md

        with s.engine.begin() as conn:
            for table in reversed(md.sorted_tables):
                conn.execute(sa.text(f"DELETE FROM {table.name}"))
    yield s
    s.dispose()
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


WORKSPACE = ("{ workspaceOrError { ... on Workspace { locationEntries { name "
             "locationOrLoadError { __typename ... on PythonError { message } } } } } }")


def loaded_locations(answer: dict) -> list[tuple[str, dict]] | None:
    """(name, state) of each code location in a WORKSPACE answer once all have loaded or
    failed to load, else None (the webserver still starting)."""
    try:
        entries = answer["data"]["workspaceOrError"]["locationEntries"]
        states = [(e["name"], e["locationOrLoadError"]) for e in entries]
    except (KeyError, TypeError):
        return None
    return states if states and all(s for _, s in states) else None


def plain_json(value) -> bool:
    """Only the types json.dumps writes natively, and no NaN or infinity."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_json(v) for v in value)
    if type(value) is float:
        return math.isfinite(value)
    return value is None or type(value) in (str, int, bool)


@contextlib.contextmanager
def json_receiver():
    """A loopback webhook receiver (Slack, PagerDuty alike) that keeps each POST as
    {"path", "json"} in `.got`; `.url` is its base address. PagerDuty paths (with "pd") get 202."""
    got: list[dict] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            got.append({"path": self.path, "json": json.loads(body or b"null")})
            self.send_response(202 if "pd" in self.path else 200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    srv.got, srv.url = got, f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
