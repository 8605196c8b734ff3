"""Which deployments a run measures: the candidate, READY and on an allowed host, and the
reference to measure beside it. Plain Python: the assets turn `NotBenchmarkable` into a Dagster
failure."""

from __future__ import annotations

from collections.abc import Callable

from atge_assets.deployments.history import ACCEPTED, DeploymentHistory, DeploymentRow
from atge_assets.deployments.release import Wait, pending_verdicts
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


def reference_id(client, store: DeploymentHistory, dep: Deployment,
                 in_flight: Callable[[str], bool] = lambda _id: False) -> str | None:
    """What the candidate is measured against: the live production deployment when it is known
    good; else the newest known-good production deployment (created before the candidate, when
    the candidate is itself production). Never a live deployment that failed its own judgement.

    Raises Wait while a newer production deployment than that one is still being judged by a
    run in flight (`in_flight`): it is the right reference once accepted. Two deployments seen in
    one tick from a cold start would otherwise leave the newer one judged against the plan's
    static values."""
    row = store.deployment(dep.id)
    before = row.created_ms if dep.target == "production" else 2**62
    live = client.production_deployment_id()
    if live and live != dep.id:
        live_row = store.deployment(live)
        # Unknown to us: a fresh install's baseline. A production candidate is never measured
        # against a newer production deployment that has replaced it.
        if live_row is None or (live_row.verdict in ACCEPTED and live_row.created_ms < before):
            return live
    good = [g for g in store.known_good_production(before, 2) if g.id != dep.id]
    pending = pending_verdicts(store, before, good[0] if good else None, dep.id, in_flight)
    if pending:
        raise Wait(f"waiting for the verdict of {', '.join(pending)}: the production deployment "
                   f"before {dep.id}, its reference once accepted")
    return good[0].id if good else None
