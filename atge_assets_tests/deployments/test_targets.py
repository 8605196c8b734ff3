"""Which deployment a candidate is measured against, on a real history store."""

import pytest

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.deployments.release import Wait
from atge_assets.deployments.targets import reference_id
from atge_assets.lib.providers.base import Deployment


class Provider:
    """Only what reference_id asks the provider: which deployment is live."""

    def __init__(self, live: str | None):
        self.live = live

    def production_deployment_id(self) -> str | None:
        return self.live


def dep(i: int, target: str = "production") -> Deployment:
    return Deployment(f"dpl_{i}", f"https://d{i}.vercel.app", "READY", target, 1000 + i)


@pytest.fixture()
def store(tmp_path):
    return DeploymentHistory(f"sqlite:///{tmp_path / 'h.sqlite'}")


def test_a_cold_start_waits_for_the_earlier_production_deployment_then_measures_beside_it(store):
    # Both seen in one tick: dpl_1 is being judged while dpl_2 (live) is about to be measured.
    for d in (dep(1), dep(2)):
        store.upsert_deployment(d)
    with pytest.raises(Wait, match="dpl_1"):
        reference_id(Provider("dpl_2"), store, dep(2), in_flight=lambda _id: True)
    store.set_verdict("dpl_1", "pass")
    assert reference_id(Provider("dpl_2"), store, dep(2), in_flight=lambda _id: True) == "dpl_1"


def test_no_wait_for_a_deployment_whose_run_is_over_or_that_an_accepted_one_outdates(store):
    for d in (dep(1), dep(2), dep(3)):
        store.upsert_deployment(d)
    # dpl_1's run ended without a verdict: nothing to wait for, and nothing known-good.
    assert reference_id(Provider("dpl_3"), store, dep(3)) is None
    # dpl_2 was accepted and is newer than the pending dpl_1: no wait for dpl_1.
    store.set_verdict("dpl_2", "pass")
    assert reference_id(Provider("dpl_3"), store, dep(3), in_flight=lambda _id: True) == "dpl_2"


def test_a_preview_waits_for_a_live_production_deployment_still_being_judged(store):
    for d in (dep(1), dep(2), dep(3, "preview")):
        store.upsert_deployment(d)
    store.set_verdict("dpl_1", "pass")
    # Live dpl_2 is unjudged: the preview is not measured beside it, nor beside dpl_1 yet.
    with pytest.raises(Wait, match="dpl_2"):
        reference_id(Provider("dpl_2"), store, dep(3, "preview"), in_flight=lambda _id: True)
    store.set_verdict("dpl_2", "regressed")
    assert reference_id(Provider("dpl_2"), store, dep(3, "preview"),
                        in_flight=lambda _id: True) == "dpl_1"


def test_a_superseded_production_deployment_is_measured_against_older_ones_not_the_live_one(store):
    for d in (dep(1), dep(2), dep(3)):
        store.upsert_deployment(d)
    store.set_verdict("dpl_1", "pass")
    store.set_verdict("dpl_3", "pass")
    # dpl_3 replaced dpl_2 before dpl_2 was judged: dpl_2's reference is dpl_1, not live dpl_3.
    assert reference_id(Provider("dpl_3"), store, dep(2)) == "dpl_1"
    # A preview is measured against what is live.
    store.upsert_deployment(dep(4, "preview"))
    assert reference_id(Provider("dpl_3"), store, dep(4, "preview")) == "dpl_3"
