"""`atge up --rolling-release`, as the README's demo runs it: the sandbox rolls production
deployments out in stages, the daemon's sensors judge each stage, a healthy deployment goes
through every stage and a 1.3x one is aborted at its first, and the UI's `rolling_releases`
table (read through the webserver's GraphQL API) and the Slack channel tell it."""

import json

import httpx
import pytest

from atge_assets.harness import stack
from atge_assets_tests.conftest import json_receiver

TABLE = """{ assetOrError(assetKey: {path: ["rolling_releases"]}) { ... on Asset {
  assetMaterializations(limit: 1) { metadataEntries { label
    ... on TableMetadataEntry { table { records } } } } } } }"""


def stages_in_ui(ui_url: str) -> list[tuple[str, str, str]]:
    """(canary, stage, decision) of the newest `rolling_releases` table, oldest first."""
    try:
        data = httpx.post(ui_url + "/graphql", json={"query": TABLE}, timeout=10).json()
        mats = data["data"]["assetOrError"].get("assetMaterializations") or []
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return []
    for entry in (mats[0]["metadataEntries"] if mats else []):
        if entry["label"] == "stages":
            rows = [json.loads(r) for r in entry["table"]["records"]]
            return [(r["canary"], r["stage"], r["decision"]) for r in reversed(rows)]
    return []


def release(s: stack.Stack) -> dict:
    return s.status()["rolling_release"] or {}


@pytest.mark.slow
def test_atge_up_runs_rolling_releases(tmp_path):
    with json_receiver() as slack:
        s = stack.start(tmp_path / "home", up_args=("--rolling-release",),
                        extra_env={"ATGE_SLACK_WEBHOOK_URL": f"{slack.url}/services/T0/B0/x"})
        try:
            s.wait_for(s.ui_ready, 180)
            assert s.status()["rolling_config"]["stages"][0]["targetPercentage"] == 5
            first = s.status()["production"]
            healthy = s.deploy()
            s.wait_for(lambda: release(s).get("canary") == healthy
                       and release(s)["state"] == "COMPLETE", 300)
            assert s.status()["production"] == healthy
            slow = s.deploy(slowdown=1.3)
            s.wait_for(lambda: release(s).get("canary") == slow
                       and release(s)["state"] != "ACTIVE", 300)
            assert release(s)["state"] == "ABORTED" and s.status()["production"] == healthy
            assert [(e["from"], e["to"]) for e in s.status()["rollbacks"]] == [(slow, healthy)]
            want = [(healthy, "0", "approved"), (healthy, "1", "completed"),
                    (slow, "0", "aborted")]
            s.wait_for(lambda: stages_in_ui(s.ui_url) == want, 120)
            aborted = s.wait_for(lambda: [g["json"]["text"] for g in slack.got
                                          if slow in g["json"].get("text", "")
                                          and "aborted" in g["json"]["text"]], 60)
            assert len(aborted) == 1 and f"traffic back to {healthy}" in aborted[0]
            assert first != healthy
        finally:
            code = s.stop()
        assert code == 0, s.log_path.read_text()[-3000:]


def test_the_flag_sets_the_sandbox_rolling_releases_on_and_off(sandbox):
    from atge_assets.cli import _sandbox_rolling
    from atge_assets.sandbox.server import CANARY_HEADER

    env = {}
    assert _sandbox_rolling(sandbox.base_url, env, True)
    cfg = sandbox.state.world.rolling_config
    assert [s["targetPercentage"] for s in cfg["stages"]] == [5, 25, 100]
    assert cfg["advancementType"] == "manual-approval" and cfg["canaryResponseHeader"]
    assert env == {"ATGE_ROLLOUT_PRODUCTION_URL": sandbox.base_url + "/p",
                   "ATGE_ROLLOUT_CANARY_HEADER": CANARY_HEADER}
    assert _sandbox_rolling(sandbox.base_url, {}, False)
    assert sandbox.state.world.rolling_config is None
    assert not _sandbox_rolling("http://127.0.0.1:9", {}, True)  # nothing listens there


def test_the_flag_without_the_sandbox_is_refused(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, ATGE_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dagster"),
               VERCEL_TOKEN="t", VERCEL_PROJECT_ID="prj_x")
    out = subprocess.run([sys.executable, "-m", "atge_assets.cli", "up", "--no-sandbox",
                          "--rolling-release"], capture_output=True, text=True, timeout=120,
                         env=env, check=False)
    assert out.returncode == 2 and "turn Rolling Releases on in the project" in out.stderr
