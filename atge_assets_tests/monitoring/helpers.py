import dagster as dg
import httpx
import pytest

from atge_assets.lib.resources import HistoryResource
from atge_assets.monitoring.assets import metric_forecasts, system_metrics
from atge_assets.monitoring.resources import MonitoringResource
from atge_assets.monitoring.sensors import build_self_healing_sensor
from atge_assets.notify.resources import NotifierResource
from atge_assets.sandbox.server import SandboxServer
from atge_assets.sandbox.state import SandboxState

# An explicit clock, a multiple of the step: every intake and forecast is pinned to it, and the
# sandbox's values at a given second never change, so nothing here waits or flakes.
T = 1_789_999_980.0


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory):
    """A sandbox for a whole test module: stopping one per test adds up, and these tests need
    many. Import this and `sandbox` into a test module (or conftest) to use them."""
    state = SandboxState(tmp_path_factory.mktemp("sandbox") / "sandbox.json", seed=7)
    server = SandboxServer(("127.0.0.1", 0), state)
    server.start_background()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sandbox(shared_sandbox):
    """Overrides the suite's sandbox: one per module, its metrics reset for each test (no
    scenarios, no actions: each test starts from a healthy app)."""
    httpx.post(shared_sandbox.base_url + "/_sandbox/metrics/reset", timeout=10).raise_for_status()
    return shared_sandbox


def resources(sandbox, history_url, notifier=None, **monitoring) -> dict:
    settings = dict(url=sandbox.base_url, actions_url=sandbox.base_url,
                    allowed_hosts=["127.0.0.1"], charts=False,
                    # Forecasts pinned to T are "old" to the wall clock; staleness has its own test.
                    max_forecast_age_s=1e10)
    settings.update(monitoring)
    return {"monitoring": MonitoringResource(**settings),
            "history": HistoryResource(url=history_url),
            "notifier": notifier or NotifierResource()}


def scenario(sandbox, **body) -> dict:
    r = httpx.post(sandbox.base_url + "/_sandbox/metrics/scenario", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def sandbox_actions(sandbox) -> list[dict]:
    return httpx.get(sandbox.base_url + "/_sandbox/metrics/actions", timeout=10).json()["actions"]


def evaluate(instance, res, now: float, forecasts: bool = True):
    """One minute's run of the monitoring job: intake, then forecasts, both at `now`."""
    assets = [system_metrics, metric_forecasts] if forecasts else [system_metrics]
    config = {"ops": {a.key.to_user_string(): {"config": {"now": now}} for a in assets}}
    return dg.materialize(assets, instance=instance, run_config=config,
                          resources={k: res[k] for k in ("monitoring", "history")})


def tick(instance, res, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=res)
    return build_self_healing_sensor(interval_s=1)(ctx)


def metadata(result, asset_name):
    mats = result.asset_materializations_for_node(asset_name)
    assert mats, f"{asset_name} was not materialized"
    return {k: v.value for k, v in mats[-1].metadata.items()}


def skip_message(result) -> str:
    reason = getattr(result, "skip_reason", result)
    return getattr(reason, "skip_message", "") or ""
