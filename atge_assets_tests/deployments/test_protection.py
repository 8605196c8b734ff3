"""Vercel Deployment Protection against the sandbox protecting its deployments: every request to
a deployment carries the bypass secret, and the secret shows nowhere."""

import httpx
import pytest

from atge_assets.deployments.resources import BenchmarkResource
from atge_assets.lib.protection import BYPASS_HEADER
from atge_assets.load.engine import run_stage
from atge_assets.load.resources import LoadTestResource
from atge_assets.sandbox.server import SandboxServer
from atge_assets.sandbox.state import SandboxState
from atge_assets_tests.conftest import TOKEN
from atge_assets_tests.deployments.helpers import metadata, run_deployment

SECRET = "bypass-secret-never-shown-7f3a"


@pytest.fixture
def protected(tmp_path):
    state = SandboxState(tmp_path / "sandbox.json", scale=0.005, noise=0.08, seed=7)
    server = SandboxServer(("127.0.0.1", 0), state, token=TOKEN, protection_bypass=SECRET)
    server.start_background()
    yield server
    server.shutdown()
    server.server_close()


def _resources(resources, sandbox, secret):
    from atge_assets.lib.resources import VercelResource

    return {**resources,
            "vercel": VercelResource(token=TOKEN, project_id=sandbox.state.world.project_id,
                                     base_url=sandbox.base_url),
            "benchmark": BenchmarkResource(samples=6, warmup=1, baseline_scale=0.005,
                                           protection_bypass=secret)}


def test_a_protected_deployment_answers_401_without_the_secret(protected):
    url = f"{protected.base_url}/d/{protected.state.world.production}/api/health"
    denied = httpx.get(url, timeout=5)
    assert denied.status_code == 401 and "Authentication Required" in denied.text
    assert httpx.get(url, headers={BYPASS_HEADER: "wrong"}, timeout=5).status_code == 401
    assert httpx.get(url, headers={BYPASS_HEADER: SECRET}, timeout=5).status_code == 200


def test_the_graph_measures_a_protected_deployment_and_never_shows_the_secret(
        protected, instance, resources):
    first = protected.state.world.production
    r = run_deployment(instance, _resources(resources, protected, SECRET), first)
    assert r.success
    timings = metadata(r, "benchmark_timings")
    assert timings["samples"] > 0 and timings["failed_samples"] == 0
    assert metadata(r, "smoke_tests")["passed"] is True
    logs = "\n".join(str(e) for e in instance.all_logs(r.run_id))
    assert "benchmark_timings" in logs and SECRET not in logs


def test_without_the_secret_every_request_is_refused_and_nothing_is_kept_as_healthy(
        protected, instance, resources):
    first = protected.state.world.production
    r = run_deployment(instance, _resources(resources, protected, None), first)
    timings = metadata(r, "benchmark_timings")
    assert timings["failed_samples"] == timings["samples"] > 0
    assert "401" in timings["errors_seen"]
    assert metadata(r, "smoke_tests")["passed"] is False


def test_the_load_test_sends_the_secret_to_the_deployment(protected):
    url = f"{protected.base_url}/d/{protected.state.world.production}/api/health"
    resource = LoadTestResource(protection_bypass=SECRET, stages=[3], stage_duration_s=0.5,
                                ramp_up_s=0.0, method="GET", body_json=None, path="/api/health")
    spec = resource.stage_specs(url.rsplit("/api/health", 1)[0] + "/api/health")[0]
    assert spec.headers[BYPASS_HEADER] == SECRET
    result = run_stage(spec, allowed_hosts=["127.0.0.1"])
    assert result.requests > 0 and result.error_rate == 0.0
    unprotected = run_stage(LoadTestResource(stages=[3], stage_duration_s=0.5, ramp_up_s=0.0,
                                             method="GET", body_json=None)
                            .stage_specs(url)[0], allowed_hosts=["127.0.0.1"])
    assert unprotected.error_rate == 1.0
