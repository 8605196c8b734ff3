"""Whether a deployment's run is under way, on a real instance with real runs: what the release
decisions wait for."""

from types import SimpleNamespace

import dagster as dg
import pytest

from atge_assets.deployments.partitions import run_in_flight, verdict_may_come


@dg.op
def boom():
    raise RuntimeError("the benchmark failed")


@dg.op
def fine():
    return 1


failing = dg.GraphDefinition(name="bench", node_defs=[boom]).to_job()
passing = dg.GraphDefinition(name="bench", node_defs=[fine]).to_job()


def _run(instance, job, dep_id: str, retry_number: int = 0):
    job.execute_in_process(instance=instance, raise_on_error=False, tags={
        "dagster/partition": dep_id, "dagster/retry_number": str(retry_number)})


@pytest.fixture
def retrying(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path),
                              overrides={"run_retries": {"enabled": True, "max_retries": 2}}) as i:
        yield i


def test_a_failed_run_the_instance_will_retry_is_still_in_flight(retrying):
    assert not run_in_flight(retrying, "bench", "dpl_1")
    _run(retrying, failing, "dpl_1")
    assert run_in_flight(retrying, "bench", "dpl_1")  # its retry is on its way
    assert not run_in_flight(retrying, "bench", "dpl_2")  # another partition
    assert not run_in_flight(retrying, "other_job", "dpl_1")
    _run(retrying, failing, "dpl_1", retry_number=2)  # the last try failed too: nothing comes
    assert not run_in_flight(retrying, "bench", "dpl_1")
    _run(retrying, passing, "dpl_3")
    assert not run_in_flight(retrying, "bench", "dpl_3")


def test_a_failed_run_without_retries_is_over_and_a_queued_one_is_in_flight(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        _run(instance, failing, "dpl_1")
        assert not run_in_flight(instance, "bench", "dpl_1")
        instance.create_run_for_job(passing, tags={"dagster/partition": "dpl_1"})  # not started
        assert run_in_flight(instance, "bench", "dpl_1")


def test_a_verdict_is_waited_for_only_while_this_run_has_retries_left(retrying):
    _run(retrying, failing, "dpl_1")
    patient = verdict_may_come(SimpleNamespace(instance=retrying, retry_number=3), "bench", 30)
    assert patient("dpl_1") and not patient("dpl_2")
    spent = verdict_may_come(SimpleNamespace(instance=retrying, retry_number=30), "bench", 30)
    assert not spent("dpl_1")
