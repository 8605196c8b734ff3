import pytest

from atge_assets_tests.defs.monitoring.helpers import reset_metrics, serve_sandbox


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory):
    yield from serve_sandbox(tmp_path_factory.mktemp("sandbox"))


@pytest.fixture
def sandbox(shared_sandbox):
    """Overrides the suite's sandbox: one per module, its metrics reset for each test."""
    return reset_metrics(shared_sandbox)
