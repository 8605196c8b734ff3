"""Real parts for tests: the sandbox on a loopback port, a SQLite history file, a Dagster instance."""

import os
from pathlib import Path

import dagster as dg
import pytest

from atge_assets.core.store import HistoryStore
from atge_assets.sandbox.server import SandboxServer
from atge_assets.sandbox.state import SandboxState

TOKEN = "tok_test_5ecret_never_logged"


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
def store(history_url) -> HistoryStore:
    s = HistoryStore(history_url)
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
    from atge_assets.defs.deployments.resources import BenchmarkResource, ReleasePolicyResource
    from atge_assets.defs.resources import HistoryResource, VercelResource

    return {
        "vercel": VercelResource(token=TOKEN, project_id=sandbox.state.world.project_id,
                                 base_url=sandbox.base_url),
        "history": HistoryResource(url=history_url),
        "benchmark": BenchmarkResource(samples=12, warmup=1, baseline_scale=0.005),
        "policy": ReleasePolicyResource(dry_run=False),
    }


PROJECT_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
