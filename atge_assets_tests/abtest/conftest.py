import pytest

from atge_assets.abtest.history import AbtestHistory


@pytest.fixture
def store(history_url) -> AbtestHistory:
    s = AbtestHistory(history_url)
    yield s
    s.dispose()
