import pytest

from atge_assets.settings import Settings, SettingsError


def test_the_rollouts_section_reads_its_variables(tmp_path):
    s = Settings.from_env({"ATGE_HOME": str(tmp_path),
                           "ATGE_ROLLOUT_PRODUCTION_URL": "https://atge.example.com/",
                           "ATGE_ROLLOUT_CANARY_HEADER": "X-Canary",
                           "ATGE_ROLLOUT_TRAFFIC_SAMPLES": "100"}).rollouts
    assert (s.enabled, s.production_url, s.canary_header, s.traffic_samples) == (
        True, "https://atge.example.com", "x-canary", 100)
    off = Settings.from_env({"ATGE_HOME": str(tmp_path), "ATGE_ROLLOUTS": "off"}).rollouts
    assert not off.enabled and off.production_url is None and off.canary_header is None
    with pytest.raises(SettingsError, match="ATGE_ROLLOUT_TRAFFIC_SAMPLES"):
        Settings.from_env({"ATGE_HOME": str(tmp_path), "ATGE_ROLLOUT_TRAFFIC_SAMPLES": "-1"})
