"""The whole system as a user starts it: `atge up` (sandbox, webserver, daemon), nothing mocked.

The sensor fires by itself, the run is queued and launched by the daemon, and the sandbox's
rollback endpoint is called by the rollback asset.
"""

import pytest

from atge_assets import stack


@pytest.mark.slow
def test_atge_up_rolls_back_a_slow_deployment_by_itself(tmp_path):
    s = stack.start(tmp_path / "home")
    try:
        s.wait_for(s.ui_ready, 180)
        first = s.status()["production"]
        slow = s.deploy(slowdown=1.3)
        healthy_preview = s.deploy(target="preview")
        event = s.wait_for(lambda: s.status()["rollbacks"], 240)
        assert event == [dict(event[0], **{"from": slow, "to": first})]
        assert s.status()["production"] == first
        # The healthy preview is benchmarked too, and nothing else is rolled back.
        db = tmp_path / "home" / "history.sqlite"
        from atge_assets.core.store import HistoryStore

        store = HistoryStore(f"sqlite:///{db}")
        s.wait_for(lambda: store.decisions_for(healthy_preview), 240)
        assert [d["decision"] for d in store.decisions_for(healthy_preview)] == ["kept"]
        assert [d["decision"] for d in store.decisions_for(slow)] == ["rolled_back"]
        assert len(s.status()["rollbacks"]) == 1
    finally:
        code = s.stop()
    assert code == 0, s.log_path.read_text()[-3000:]
    log = s.log_path.read_text()
    assert "dagster stopped" in log and "sandbox stopped" in log
