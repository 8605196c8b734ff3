"""The deployment sensor's decisions, in plain Python: what its cursor holds, which provider
entries to trust, which deployments to request this tick, and how far `since` may move.

Cursor (small JSON, read back compatibly from every earlier version):
- `since`: the creation time the next poll starts from. It only moves past entries that were
  requested, already known, handed to `pending`, or refused for a reason other than their time,
  and never past our own clock: one entry dated 2100 must not hide every later deployment.
- `pending`: ids seen while still building (or READY beyond this tick's run bound and not
  covered by `since`), re-checked by id.
- `ack`: webhook intake rows to acknowledge on the next tick, once this cursor is stored.
- `tries`: for pending ids the provider keeps refusing (4xx other than 404), how many ticks in a
  row; at `max_tries` the id is dropped and recorded, so one such id cannot blind the sensor.
- `rejected`: fingerprints of entries already recorded as rejected, so an entry the provider
  lists on every poll is recorded once, not once a tick.
- `drift`: what the `production_drift` check last reported (drift.Observation.key), so the check
  is reported when it changes, not every tick; stored with the tick, so a lost report is redone.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from atge_assets.lib.providers.base import (
    READY,
    TERMINAL_NOT_READY,
    Deployment,
    is_deployment_id,
)

MAX_PENDING = 200
FUTURE_SLACK_MS = 5 * 60 * 1000  # clock skew we tolerate between the provider and us
MAX_REMEMBERED_REJECTIONS = 200
MAX_REJECTIONS_PER_TICK = 100  # a listing full of junk must not flood the history table

LIST, GET, CURSOR, INTAKE = ("provider.list_deployments", "provider.get_deployment",
                             "deployment_sensor.cursor", "webhook_intake")


@dataclass
class SensorCursor:
    since: int
    pending: list[str] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    tries: dict[str, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    drift: str = ""
    # Ids found unusable while reading the cursor (written by an older sensor); not stored.
    dropped: list[str] = field(default_factory=list)

    def dumps(self) -> str:
        out: dict = {"since": self.since, "pending": self.pending, "ack": self.acks}
        if self.tries:
            out["tries"] = self.tries
        if self.rejected:
            out["rejected"] = self.rejected
        if self.drift:
            out["drift"] = self.drift
        return json.dumps(out, separators=(",", ":"))


def parse(raw: str | None, default_since: int, now_ms: int) -> SensorCursor:
    """The stored cursor; an unreadable one falls back to the lookback window."""
    if not raw:
        return SensorCursor(default_since)
    try:
        c = json.loads(raw)
        since = int(c.get("since", default_since))
        pending_raw = [str(p) for p in c.get("pending", [])]
        acks = [int(i) for i in c.get("ack", [])][:MAX_PENDING]
        tries = {str(k): int(v) for k, v in (c.get("tries") or {}).items()}
        rejected = [str(r) for r in c.get("rejected", [])][-MAX_REMEMBERED_REJECTIONS:]
        drift = str(c.get("drift") or "")[:400]
    except (ValueError, TypeError, AttributeError, OverflowError):
        # A cursor we cannot read must not wedge the sensor.
        return SensorCursor(default_since)
    if since > now_ms + FUTURE_SLACK_MS:
        # Left in the future by an implausible entry before we refused them: from there the
        # sensor would see nothing until that date.
        since = default_since
    pending = [p for p in pending_raw if is_deployment_id(p)][:MAX_PENDING]
    dropped = [p for p in pending_raw if not is_deployment_id(p)][:MAX_PENDING]
    tries = {k: v for k, v in list(tries.items())[:2 * MAX_PENDING] if is_deployment_id(k)}
    return SensorCursor(since, pending, acks, tries, rejected, drift, dropped)


def implausible(dep: Deployment, now_ms: int) -> str | None:
    """Why an entry cannot be a real deployment of ours, or None."""
    if not is_deployment_id(dep.id):
        return "id is not a deployment id (letters, digits, '_' and '-', at most 128)"
    created = dep.created_ms
    if isinstance(created, bool) or not isinstance(created, (int, float)) or (
            isinstance(created, float) and not math.isfinite(created)):
        return f"createdAt {created!r} is not a time"
    if created < 0:
        return f"createdAt {created} is before 1970"
    if created > now_ms + FUTURE_SLACK_MS:
        return f"createdAt {_iso(created)} is {_ahead(created - now_ms)} in the future"
    return None


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]


@dataclass
class TickPlan:
    requests: list[Deployment]  # oldest first, at most the bound
    cursor: SensorCursor
    rejections: list[tuple[str, str]]  # (source, detail) to record and log, not seen before
    deferred: int  # READY deployments left for the next ticks by the bound
    building: int
    gone: list[str]  # pending ids the provider no longer knows
    not_recorded: int = 0  # rejections over the per-tick cap (recorded on later ticks)


def plan_tick(cur: SensorCursor, *, listed: list[Deployment], malformed: list[str],
              fetched: dict[str, Deployment], refused: dict[str, str], gone: set[str],
              unchecked: set[str], intake: list[tuple[int, str]], known: set[str],
              now_ms: int, max_runs: int = 50, max_tries: int = 5) -> TickPlan:
    """Decide one tick from what the provider answered.

    listed/malformed: the poll since `cur.since`; fetched: ids re-checked by GET (pending, or
    announced by the intake as `(row id, deployment id)`); refused: ids whose GET was refused
    (4xx but 404, or an unusable answer), with why; gone: 404; unchecked: ids not asked this
    tick (deadline, rate limit, a transient error); known: deployments already partitions.
    """
    remembered = list(cur.rejected)
    seen_fps = set(remembered)
    rejections: list[tuple[str, str]] = []
    over_cap = 0

    def reject(source: str, key: str, detail: str) -> None:
        nonlocal over_cap
        fp = fingerprint(f"{source}|{key}")
        if fp in seen_fps:
            return
        if len(rejections) >= MAX_REJECTIONS_PER_TICK:
            over_cap += 1  # not remembered: recorded on a later tick
            return
        seen_fps.add(fp)
        remembered.append(fp)
        rejections.append((source, detail[:4000]))

    for msg in malformed:
        reject(LIST, msg, f"malformed deployment entry: {msg}")
    for dep_id in cur.dropped:
        reject(CURSOR, dep_id, f"pending id {dep_id!r:.140} in the cursor is not a deployment "
               "id; forgotten")

    candidates: dict[str, Deployment] = {}
    listed_ids: set[str] = set()
    for dep in listed:
        why = implausible(dep, now_ms)
        if why:
            reject(LIST, f"{dep.id}|{dep.created_ms}", f"deployment {dep.id!r:.140}: {why}")
            continue
        candidates.setdefault(dep.id, dep)
        listed_ids.add(dep.id)

    done_ids: set[str] = set(gone)  # settled this tick without a run: acked, not pending
    for dep_id, dep in fetched.items():
        why = implausible(dep, now_ms) or (
            None if dep.id == dep_id else f"GET answered another deployment ({dep.id!r:.140})")
        if why:
            reject(GET, f"{dep_id}|{dep.created_ms}", f"deployment {dep_id!r:.140}: {why}")
            done_ids.add(dep_id)
            continue
        candidates.setdefault(dep.id, dep)

    tries: dict[str, int] = {}
    waiting: list[str] = []  # stay pending as they are
    for dep_id, why in refused.items():
        n = cur.tries.get(dep_id, 0) + 1
        if n >= max_tries:
            reject(GET, f"{dep_id}|refused", f"deployment {dep_id}: {why}; dropped after {n} "
                   "tries")
            done_ids.add(dep_id)
        else:
            tries[dep_id] = n
            waiting.append(dep_id)
    for dep_id in unchecked:
        if dep_id in cur.tries:
            tries[dep_id] = cur.tries[dep_id]
    waiting += [p for p in cur.pending if p in unchecked]

    intake_valid = []
    for row_id, dep_id in intake:
        if is_deployment_id(dep_id):
            intake_valid.append((row_id, dep_id))
        else:
            reject(INTAKE, dep_id, f"queued id {dep_id!r:.140} is not a deployment id")

    requests: list[Deployment] = []
    deferred: list[Deployment] = []
    building: list[str] = []
    for dep in sorted(candidates.values(), key=lambda d: (d.created_ms, d.id)):
        if dep.state == READY:
            if dep.id in known:
                continue
            (requests if len(requests) < max_runs else deferred).append(dep)
        elif dep.state not in TERMINAL_NOT_READY:
            building.append(dep.id)
    deferred_ids = {d.id for d in deferred}

    # The poll re-lists a deferred entry as long as `since` stays before it; entries that only
    # came by id wait in `pending`.
    listed_deferred = [d for d in deferred if d.id in listed_ids]
    if listed_deferred:
        since = max(cur.since, listed_deferred[0].created_ms - 1)
    else:
        since = max([cur.since] + [min(d.created_ms, now_ms)
                                   for d in candidates.values() if d.id in listed_ids])
    pending = _unique(waiting + building + [d.id for d in deferred if d.id not in listed_ids])
    pending = pending[-MAX_PENDING:]

    # An intake row is settled once its deployment was requested, known, handed to `pending`,
    # or refused for good; one waiting on the provider or the bound is read again next tick.
    unsettled = (unchecked | set(waiting) | deferred_ids) - done_ids
    acks = [row_id for row_id, dep_id in intake_valid if dep_id not in unsettled]
    acks += [row_id for row_id, dep_id in intake if not is_deployment_id(dep_id)]
    keep = set(pending) | {dep_id for _, dep_id in intake_valid}
    new = SensorCursor(since, pending, acks,
                       {k: v for k, v in tries.items() if k in keep},
                       remembered[-MAX_REMEMBERED_REJECTIONS:], cur.drift)
    return TickPlan(requests, new, rejections, len(deferred), len(building),
                    sorted(gone), over_cap)


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


def _ahead(ms: int) -> str:
    days = ms / 86_400_000
    if days >= 365:
        return f"{days / 365.25:.0f} years"
    if days >= 1:
        return f"{days:.0f} days"
    return f"{ms / 60_000:.0f} min"
