"""Production drift: is the deployment the provider serves as production the one this tool's
history expects? Plain Python: the deployment sensor observes it every tick and keeps the
episodes (sensors.py), the `production_drift` check on `releases` shows it.

What the history expects live is the newest deployment that went live one of the ways this tool
knows of: a production deployment it judged and left live (live from its creation, as on
Vercel), a promotion it made, or the target of a rollback it made. A difference is drift when the
live deployment is one this tool would not have put there: rolled back, regressed, held or
rejected, or never judged. A difference to a known-good deployment (a person rolled back by hand
to a healthy one) is shown but not flagged, and a production deployment newer than the expected
one, whose own run has not decided yet, is the normal path rather than a difference. Nor is a
rolling release under way: its current deployment stays live (with the traffic the canary does
not get) while the canary, which this tool may already have judged, waits for its stages; once
the release is aborted, the current deployment is live again, as it should be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from atge_assets.deployments.history import ACCEPTED, DeploymentHistory
from atge_assets.deployments.judge import HELD, REGRESSED
from atge_assets.lib.providers.base import ABORTED, ACTIVE, Deployment, MalformedPayload, ProviderError

CHECK_NAME = "production_drift"

# Flagged: the check fails, the episode is announced.
ROLLED_BACK = "rolled_back"
REGRESSED_LIVE = "regressed"
HELD_LIVE = "held"
REJECTED = "rejected"
NEVER_JUDGED = "never_judged"
FLAGGED = (ROLLED_BACK, REGRESSED_LIVE, HELD_LIVE, REJECTED, NEVER_JUDGED)
# Benchmarked again: the verdict we have is about a past that a person has overruled, or none.
REJUDGE = (ROLLED_BACK, NEVER_JUDGED)
# Not flagged.
IN_SYNC = "in_sync"
AWAITING = "awaiting_verdict"
CHANGED = "changed_to_known_good"
NO_EXPECTATION = "no_expectation"
NO_PRODUCTION = "no_production"
ROLLING = "rolling_release"
RELEASE_ABORTED = "release_aborted"


@dataclass(frozen=True)
class WentLive:
    deployment_id: str
    at_ms: int
    how: str  # "created", "promoted" or "rollback" (the deployment is the rollback's target)


@dataclass(frozen=True)
class Live:
    """The provider's live deployment, with what the history knows of it (`known`), else what
    the provider says of its target and creation."""

    id: str
    known: bool = False
    target: str | None = None
    created_ms: int | None = None
    verdict: str | None = None
    verdict_at_ms: int | None = None
    rolled_back_at_ms: int | None = None
    decisions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observation:
    status: str
    live_id: str | None
    expected: WentLive | None
    reason: str

    @property
    def flagged(self) -> bool:
        return self.status in FLAGGED

    @property
    def rejudge(self) -> bool:
        return self.status in REJUDGE

    @property
    def expected_id(self) -> str | None:
        return self.expected.deployment_id if self.expected else None

    def key(self) -> str:
        """Changes exactly when what the check would say changes: the sensor reports then."""
        return f"{self.status}|{self.live_id or ''}|{self.expected_id or ''}"

    def metadata(self) -> dict:
        return {"status": self.status, "live": self.live_id or "",
                "expected": self.expected_id or "",
                "expected_because": _how(self.expected) if self.expected else ""}


def expected(events: Iterable[WentLive]) -> WentLive | None:
    """The newest; on a tie a rollback or promotion (done after the creation it may undo)."""
    order = {"created": 0, "promoted": 1, "rollback": 2}
    return max(events, key=lambda e: (e.at_ms, order.get(e.how, 0)), default=None)


def classify(live: Live | None, expect: WentLive | None,
             release: tuple[str, str, str] | None = None) -> Observation:
    """`release`: (state, current, canary) of the project's latest rolling release, if any."""
    if live is None:
        return Observation(NO_PRODUCTION, None, expect,
                           "the provider reports no production deployment")
    if expect is not None and live.id == expect.deployment_id:
        return Observation(IN_SYNC, live.id, expect,
                           f"{live.id} is live, as expected ({_how(expect)})")
    state, current, canary = release or ("", "", "")
    if state == ACTIVE and expect is not None and {live.id, expect.deployment_id} <= {current,
                                                                                     canary}:
        return Observation(ROLLING, live.id, expect,
                           f"{live.id} is live and {expect.deployment_id} expected: a rolling "
                           f"release from {current} to {canary} is under way, its stages judged "
                           "by the rollouts")
    if state == ABORTED and expect is not None and (live.id, expect.deployment_id) == (
            current, canary):
        # The canary was judged by the deployments graph while never live; the release was
        # aborted (by the rollouts or a person) and the deployment it started from is live.
        return Observation(RELEASE_ABORTED, live.id, expect,
                           f"{live.id} is live: the rolling release of {canary} was aborted "
                           "and production returned to it")
    where = f"{live.id} is live; expected {expect.deployment_id} ({_how(expect)})" if expect \
        else f"{live.id} is live"
    if live.rolled_back_at_ms is not None and not (
            live.verdict in ACCEPTED and (live.verdict_at_ms or 0) > live.rolled_back_at_ms):
        return Observation(ROLLED_BACK, live.id, expect,
                           f"{where}, but this tool rolled it back: production was changed "
                           "outside this tool; re-judging it")
    if expect is None and not live.known:
        return Observation(NO_EXPECTATION, live.id, None,
                           f"{live.id} is live; this tool has not yet judged any deployment")
    if (live.target == "production" and not live.decisions and live.created_ms is not None
            and (expect is None or live.created_ms > expect.at_ms)):
        return Observation(AWAITING, live.id, expect,
                           f"{where}: a newer production deployment, live since its creation, "
                           "waiting for its own run's verdict")
    if live.verdict in ACCEPTED:
        return Observation(CHANGED, live.id, expect,
                           f"{where}: changed outside this tool, to a deployment judged "
                           f"{live.verdict}")
    if live.verdict == REGRESSED:
        return Observation(REGRESSED_LIVE, live.id, expect,
                           f"{where}, but it regressed: production was changed outside this tool")
    if "promotion_rejected" in live.decisions:
        return Observation(REJECTED, live.id, expect,
                           f"{where}, but a person rejected it: production was changed outside "
                           "this tool")
    if live.verdict == HELD:
        return Observation(HELD_LIVE, live.id, expect,
                           f"{where}, but it is held for a person's decision: production was "
                           "changed outside this tool")
    return Observation(NEVER_JUDGED, live.id, expect,
                       f"{where}, but this tool never judged it"
                       + (f" (verdict {live.verdict})" if live.verdict else "")
                       + ": production was changed outside this tool; benchmarking it")


def observe(client, store: DeploymentHistory,
            seen: Mapping[str, Deployment] | None = None) -> Observation:
    """Ask the provider which deployment is live and judge it against the history. `seen`:
    deployments the caller already read this tick (the sensor's poll), to spare a call. Provider
    errors propagate: the caller decides what an unanswered question means."""
    live_id = client.production_deployment_id()
    if live_id is not None and client.redact(live_id) != live_id:
        # A hostile API can echo what we send it; such an id never reaches a log or a run.
        raise MalformedPayload("the live deployment's id carries a secret")
    expect = expected(WentLive(*e) for e in store.went_live())
    if live_id is None:
        return classify(None, expect)
    release = _release(client) if expect and live_id != expect.deployment_id else None
    facts = store.live_facts(live_id)
    if facts is not None:
        return classify(Live(live_id, known=True, **facts), expect, release)
    if expect is None:
        return classify(Live(live_id), None)
    dep = (seen or {}).get(live_id) or client.get_deployment(live_id)
    return classify(Live(live_id, target=dep.target, created_ms=dep.created_ms), expect, release)


def _release(client) -> tuple[str, str, str] | None:
    """(state, current, canary) of the latest rolling release; None without one, and when the
    project has no rolling releases or the question goes unanswered (403/404 on a plan without
    the feature): then the difference is judged as any other."""
    try:
        rr = client.rolling_release()
    except (ProviderError, MalformedPayload):
        return None
    if rr is None or not rr.current_id or not rr.canary_id:
        return None
    return rr.state, rr.current_id, rr.canary_id


def _how(e: WentLive) -> str:
    return {"created": "the newest production deployment this tool judged and kept live",
            "promoted": "promoted by this tool",
            "rollback": "the target of this tool's last rollback"}.get(e.how, e.how)
