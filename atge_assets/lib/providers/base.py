"""What every deployment provider gives the graph: deployments, the production one, rollback, promote."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Protocol

READY = "READY"
# States after which a deployment never becomes READY: the sensor stops watching them.
TERMINAL_NOT_READY = {"ERROR", "CANCELED", "DELETED"}

# A deployment id becomes a Dagster partition key, a run key and a URL segment of the provider's
# API, from whichever door it came in (the poll, the webhook intake, a cursor): one rule for all.
DEPLOYMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_deployment_id(value: object) -> bool:
    return isinstance(value, str) and DEPLOYMENT_ID.fullmatch(value) is not None


class ProviderError(RuntimeError):
    """The provider could not be reached or refused the call (after retries)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class DeadlineExceeded(ProviderError):
    """The caller's time budget ran out before the provider answered; nothing was decided."""


class MalformedPayload(ValueError):
    """The provider answered, but not with what its API promises."""


@dataclass(frozen=True)
class Deployment:
    id: str
    url: str  # a base URL with scheme, ready for the benchmark
    state: str
    target: str  # "production" or "preview"
    created_ms: int
    meta: dict = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.target == "production"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DeploymentPage:
    deployments: list[Deployment]
    malformed: list[str]  # one message per entry that could not be parsed (kept, not dropped)


class DeploymentProvider(Protocol):
    def list_deployments(self, since_ms: int | None = None) -> DeploymentPage: ...
    def get_deployment(self, deployment_id: str) -> Deployment: ...
    def production_deployment_id(self) -> str | None: ...
    def rollback(self, deployment_id: str) -> None: ...
    def promote(self, deployment_id: str) -> None: ...
    def allowed_hosts(self) -> list[str]: ...


# A rolling release's states, as Vercel names them.
ACTIVE, COMPLETE, ABORTED = "ACTIVE", "COMPLETE", "ABORTED"
MANUAL_APPROVAL = "manual-approval"


@dataclass(frozen=True)
class ReleaseStage:
    index: int
    target_percentage: float  # of the traffic the canary gets in this stage, 0-100
    require_approval: bool
    is_final: bool


@dataclass(frozen=True)
class RollingRelease:
    """A production deployment rolled out in stages: `canary_id` gets the active stage's share
    of the traffic, `current_id` the rest."""

    state: str  # ACTIVE, COMPLETE or ABORTED
    advancement: str  # "automatic" or "manual-approval"
    current_id: str | None
    canary_id: str | None
    stages: tuple[ReleaseStage, ...]
    active: ReleaseStage | None
    next: ReleaseStage | None
    updated_ms: int = 0
