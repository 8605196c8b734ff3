"""The failed-run notifier on a real instance with run retries on: one message per failing
deployment, however many tries."""

import dagster as dg
import pytest

from atge_assets.lib.resources import HistoryResource
from atge_assets.notify.resources import NotifierResource
from atge_assets.notify.sensors import run_failure_notifier, will_be_retried
from atge_assets_tests.notify.test_channels import receiver  # noqa: F401 (a fixture)


@dg.asset
def always_fails():
    raise RuntimeError("boom")


def _fail(instance, retry_number: int):
    result = dg.materialize([always_fails], instance=instance, raise_on_error=False,
                            tags={"dagster/retry_number": str(retry_number)})
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = [e for e in instance.all_logs(run.run_id)
               if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"][0]
    return run, failure.dagster_event


@pytest.fixture
def retrying_instance(tmp_path):
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home"),
                              overrides={"run_retries": {"enabled": True, "max_retries": 2}}) as i:
        yield i


def test_a_failing_run_is_announced_once_after_its_last_retry(retrying_instance, receiver,
                                                              tmp_path):
    resources = {"notifier": NotifierResource(webhook_url=receiver.url("/hook")),
                 "history": HistoryResource(url=f"sqlite:///{tmp_path / 'h.sqlite'}")}
    for attempt in (0, 1, 2):
        run, event = _fail(retrying_instance, attempt)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_failure_notifier", dagster_event=event,
            dagster_instance=retrying_instance, dagster_run=run, resources=resources,
        ).for_run_failure()
        run_failure_notifier(ctx)
    bodies = receiver.bodies()
    assert len(bodies) == 1  # the third try, the last one
    assert bodies[0]["kind"] == "run_failed"


def test_will_be_retried_follows_the_instance_and_the_runs_own_limit(retrying_instance):
    assert will_be_retried(retrying_instance, {"dagster/retry_number": "1"})
    assert not will_be_retried(retrying_instance, {"dagster/retry_number": "2"})
    assert not will_be_retried(retrying_instance, {"dagster/retry_number": "0",
                                                   "dagster/max_retries": "0"})
    # Dagster's own "no" (a step failure with retry_on_asset_or_op_failure off, a retry that
    # failed to launch) settles it.
    assert not will_be_retried(retrying_instance, {"dagster/retry_number": "0",
                                                   "dagster/will_retry": "false"})
    with dg.instance_for_test() as plain:
        assert not will_be_retried(plain, {})
