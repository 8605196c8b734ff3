"""Fixtures for this folder: one sandbox per module, its metrics reset for each test; the
monitoring history."""

import pytest

from atge_assets.monitoring.history import MonitoringHistory
from atge_assets_tests.monitoring.helpers import sandbox, shared_sandbox  # noqa: F401


@pytest.fixture
def store(history_url) -> MonitoringHistory:
    s = MonitoringHistory(history_url)
    yield s
    s.dispose()
