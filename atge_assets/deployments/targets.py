"""Which deployments a run measures: the candidate, READY and on an allowed host, and the
reference to measure beside it. Plain Python: the assets turn `NotBenchmarkable` into a Dagster
failure."""

from __future__ import annotations

from atge_assets.deployments.history import ACCEPTED, DeploymentHistory, DeploymentRow
from atge_assets.lib.http import HostNotAllowed, check_url
from atge_assets.lib.providers.base import (
    READY,
    Deployment,
    MalformedPayload,
    ProviderError,
)


class NotBenchmarkable(Exception):
    """The deployment cannot be measured; the message says why."""


class UnknownDeployment(NotBenchmarkable):
    """The history has never seen the deployment."""


def resolve(client, allowed: list[str], store: DeploymentHistory, dep_id: str,
            run_id: str) -> Deployment:
    """The deployment, READY and on an allowed host. A host outside the allow-list is recorded
    as a `refused` decision: nothing is ever sent there."""
    try:
        dep = client.get_deployment(dep_id)
    except (ProviderError, MalformedPayload, ValueError) as exc:  # ValueError: not an id at all
        raise NotBenchmarkable(f"could not read deployment {dep_id} from the provider: {exc}") \
            from exc
    store.upsert_deployment(dep)
    if dep.state != READY:
        raise NotBenchmarkable(f"deployment {dep_id} is {dep.state}, not READY: nothing to "
                               "benchmark")
    try:
        check_url(dep.url, allowed)
    except HostNotAllowed as exc:
        store.record_decision(dep_id, run_id, "refused", f"not benchmarked: {exc}")
        raise NotBenchmarkable(f"deployment {dep_id} not benchmarked: {exc}") from exc
    return dep


def recorded(store: DeploymentHistory, dep_id: str) -> DeploymentRow:
    """The deployment as the history knows it."""
    dep = store.deployment(dep_id)
    if dep is None:
        raise UnknownDeployment(f"deployment {dep_id} is unknown: materialize benchmark_timings "
                                "first")
    return dep


def reference_id(client, store: DeploymentHistory, dep: Deployment) -> str | None:
    """What the candidate is measured against: the live production deployment when it is known
    good; else the newest known-good production deployment (created before the candidate, when
    the candidate is itself production). Never a live deployment that failed its own judgement."""
    live = client.production_deployment_id()
    if live and live != dep.id:
        row = store.deployment(live)
        if row is None or row.verdict in ACCEPTED:  # unknown to us: a fresh install's baseline
            return live
    row = store.deployment(dep.id)
    before = row.created_ms if dep.target == "production" else 2**62
    good = [g for g in store.known_good_production(before, 2) if g.id != dep.id]
    return good[0].id if good else None
