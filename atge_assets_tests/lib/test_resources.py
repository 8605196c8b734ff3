import dagster as dg
import pytest

from atge_assets.deployments.sensors import build_deployment_sensor
from atge_assets.lib.resources import HistoryResource, ProviderNotConfigured, VercelResource


def test_a_provider_with_nothing_set_names_what_is_missing():
    with pytest.raises(ProviderNotConfigured, match="VERCEL_TOKEN and VERCEL_PROJECT_ID not set"):
        VercelResource().client()
    assert VercelResource(token="t").unconfigured().startswith(
        "no deployment provider: VERCEL_PROJECT_ID not set")
    assert VercelResource(token="t", project_id="p").unconfigured() is None


def test_the_deployment_sensor_skips_without_a_provider(tmp_path):
    """Before any history or provider call: nothing to ask, nothing written, the cursor kept."""
    sensor = build_deployment_sensor()
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, cursor="kept", resources={
            "vercel": VercelResource(project_id="p"),
            "history": HistoryResource(url=f"sqlite:///{tmp_path / 'h.sqlite'}"),
            "notifier": dg.ResourceDefinition.none_resource()})
        result = sensor(ctx)
    assert isinstance(result, dg.SkipReason)
    assert "VERCEL_TOKEN not set" in result.skip_message
    assert not (tmp_path / "h.sqlite").exists()
