import subprocess
import sys

from atge_assets_tests.conftest import PROJECT_ROOT


def test_definitions_validate_with_the_workspace(tmp_path):
    env = {"PATH": f"{PROJECT_ROOT / '.venv/bin'}:/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path),
           "ATGE_HOME": str(tmp_path)}
    dagster = str(PROJECT_ROOT / ".venv/bin/dagster") if (PROJECT_ROOT / ".venv/bin/dagster").exists() \
        else f"{sys.executable} -m dagster"
    out = subprocess.run(dagster.split() + ["definitions", "validate", "-w", "workspace.yaml"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_sensor_and_schedule_start_running():
    import dagster as dg

    from atge_assets.definitions import defs

    sensor = defs.get_sensor_def("deployment_sensor")
    schedule = defs.get_schedule_def("performance_trends_schedule")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "0 * * * *"
    graph = defs.resolve_asset_graph()
    deps = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
            for k in graph.get_all_asset_keys()}
    assert deps["rollback"] == {"baseline_comparison", "smoke_tests"}
    assert deps["promotion"] == {"baseline_comparison", "smoke_tests"}
    assert deps["baseline_comparison"] == {"benchmark_timings", "baseline"}
    assert deps["performance_trends"] == {"benchmark_timings"}


def test_bad_settings_give_a_clear_error():
    import pytest

    from atge_assets.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="ATGE_SAMPLES"):
        Settings.from_env({"ATGE_SAMPLES": "many"})
    with pytest.raises(SettingsError, match="ATGE_DRY_RUN"):
        Settings.from_env({"ATGE_DRY_RUN": "perhaps"})
    s = Settings.from_env({"ATGE_ALLOWED_HOSTS": "a.example, *.vercel.app", "ATGE_HOME": "/x"})
    assert s.allowed_hosts == ["a.example", "*.vercel.app"]
    assert s.history_url == "sqlite:////x/history.sqlite"


def test_instance_yaml_switch():
    import yaml

    from atge_assets.harness.instance import instance_yaml

    template = (PROJECT_ROOT / "dagster.yaml").read_text()
    sqlite = yaml.safe_load(instance_yaml(template, {}))
    pg = yaml.safe_load(instance_yaml(template, {"ATGE_DATABASE_URL": "postgresql://x@h/db"}))
    assert "storage" not in sqlite
    assert pg["storage"]["postgres"]["postgres_url"] == {"env": "ATGE_DATABASE_URL"}
    limits = sqlite["concurrency"]["runs"]
    assert limits["max_concurrent_runs"] >= 4
    assert limits["tag_concurrency_limits"][0]["key"] == "atge/deployment"
    assert limits["tag_concurrency_limits"][0]["limit"] == 1
