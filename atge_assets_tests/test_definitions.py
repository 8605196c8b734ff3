import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from atge_assets_tests.conftest import PROJECT_ROOT, WORKSPACE, loaded_locations

BIN = PROJECT_ROOT / ".venv/bin" if (PROJECT_ROOT / ".venv/bin/dagster").exists() \
    else Path(sys.executable).parent


@pytest.fixture
def fresh_clone(tmp_path):
    """The project's files as a clone has them (tracked, plus new ones not yet ignored), and an
    environment with nothing of ours in it: no DAGSTER_HOME, no ATGE_*, no VERCEL_*."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    root = tmp_path / "clone"
    for rel in files.split():
        src = PROJECT_ROOT / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    return root, env


def test_definitions_validate_on_a_fresh_clone_with_no_environment(fresh_clone):
    root, env = fresh_clone
    out = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def _graphql(port: int, query: str) -> dict:
    r = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10)
    r.raise_for_status()
    return r.json()


def _dagster_dev(root, env, port):
    log = open(root / "dev.log", "w")
    proc = subprocess.Popen([str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-p", str(port)],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log


def _stop(proc, log):
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


RESOURCES = ('{ allTopLevelResourceDetailsOrError(repositorySelector: {repositoryLocationName: '
             '"%s", repositoryName: "__repository__"}) { __typename ... on ResourceDetailsList '
             '{ results { name configuredValues { key value type } } } } }')

TICKS = ('{ sensorOrError(sensorSelector: {repositoryLocationName: "%s", repositoryName: '
         '"__repository__", sensorName: "deployment_sensor"}) { ... on Sensor { sensorState { '
         'ticks(limit: 5) { status skipReason error { message } } } } } }')


def test_dagster_dev_serves_the_ui_on_a_fresh_clone_with_no_environment(fresh_clone):
    """Also: a history URL with a password and the Vercel token, when they are set, show in the
    UI's API as the names of their variables, never as values."""
    from atge_assets.harness.stack import free_port, wait_until

    root, env = fresh_clone
    port = free_port()
    secret_url = "postgresql://atge:pw-never-shown-42@127.0.0.1:9/atge"
    proc, log = _dagster_dev(root, {**env, "ATGE_HISTORY_URL": secret_url,
                                    "VERCEL_TOKEN": "tok-never-shown-42"}, port)
    try:
        def loaded():
            if proc.poll() is not None:
                pytest.fail((root / "dev.log").read_text()[-3000:])
            try:
                return loaded_locations(_graphql(port, WORKSPACE))
            except (httpx.HTTPError, ValueError):
                return None

        states = wait_until(loaded, 180, 1.0, what="the UI to serve the code location")
        assert [s["__typename"] for _, s in states] == ["RepositoryLocation"], states
        page = httpx.get(f"http://127.0.0.1:{port}/assets", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        answer = _graphql(port, RESOURCES % states[0][0])
        text = json.dumps(answer)
        assert "never-shown" not in text and "pw-never" not in text
        values = {(r["name"], v["key"]): (v["type"], v["value"])
                  for r in answer["data"]["allTopLevelResourceDetailsOrError"]["results"]
                  for v in r["configuredValues"]}
        assert values[("history", "url")] == ("ENV_VAR", "ATGE_HISTORY_URL")
        assert values[("vercel", "token")] == ("ENV_VAR", "VERCEL_TOKEN")

        # With no project set, the deployment sensor (running by default) says what is missing
        # instead of failing every tick on an unset variable.
        def first_tick():
            sensor = _graphql(port, TICKS % states[0][0])["data"]["sensorOrError"]
            ticks = sensor["sensorState"]["ticks"]
            return ticks[-1] if ticks else None

        tick = wait_until(first_tick, 120, 1.0, what="the deployment sensor's first tick")
        assert tick["status"] == "SKIPPED", tick
        assert "VERCEL_PROJECT_ID not set" in tick["skipReason"], tick
        assert "VERCEL_TOKEN" not in tick["skipReason"], tick
    finally:
        _stop(proc, log)


@pytest.mark.parametrize("env, variable", [
    ({"ATGE_SUITE_JSON": "[{"}, "ATGE_SUITE_JSON"),
    ({"ATGE_SUITE_JSON": '[{"name": "x", "path": "nope"}]'}, "ATGE_SUITE_JSON"),
    ({"ATGE_SMOKE_JSON": '[{"name": "health"}]'}, "ATGE_SMOKE_JSON"),
    ({"ATGE_TRENDS_CRON": "hourly"}, "ATGE_TRENDS_CRON"),
    ({"ATGE_METRICS_CRON": "* * *"}, "ATGE_METRICS_CRON"),
    ({"ATGE_MAX_SAMPLES": "5", "ATGE_SAMPLES": "10"}, "ATGE_MAX_SAMPLES"),
    ({"ATGE_NOTIFY_WEBHOOK_SECRET": "s3cret"}, "ATGE_NOTIFY_WEBHOOK_URL"),
    ({"ATGE_AB_AUTO_PROMOTE": "sometimes"}, "ATGE_AB_AUTO_PROMOTE"),
    ({"ATGE_EXPERIMENTS_FILE": "/nonexistent/experiments.json"}, "ATGE_EXPERIMENTS_FILE"),
])
def test_every_bad_setting_is_refused_at_load_naming_its_variable(env, variable):
    from atge_assets.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({"ATGE_HOME": "/x", **env})


def test_a_bad_setting_stops_the_code_location_with_one_clear_line(fresh_clone):
    root, env = fresh_clone
    out = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=root, env={**env, "ATGE_SUITE_JSON": "[{"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "SettingsError: ATGE_SUITE_JSON: suite JSON is not valid JSON" in out.stdout + out.stderr


def test_secrets_are_bound_from_the_environment_never_copied():
    from atge_assets.definitions import build_definitions
    from atge_assets.settings import Settings

    env = {"ATGE_HOME": "/x", "ATGE_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/zz",
           "ATGE_PROMETHEUS_TOKEN": "prom-token-zz", "ATGE_METRICS_URL": "http://127.0.0.1:9",
           "ATGE_ALLOWED_HOSTS": "127.0.0.1"}
    settings = Settings.from_env(env)
    assert "zz" not in repr(settings)
    res = build_definitions(settings).resources
    assert "zz" not in repr(res["notifier"]) and "zz" not in repr(res["monitoring"])
    assert res["notifier"].slack_webhook_url is not None and res["notifier"].webhook_url is None


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
    assert s.shared.allowed_hosts == ("a.example", "*.vercel.app")
    assert s.shared.history_url == "sqlite:////x/history.sqlite"


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
