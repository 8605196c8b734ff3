"""Fault drills against the production topology (code server, daemon, webserver on Postgres).

- daemon kill: deployments keep arriving while `dagster-daemon` is killed with SIGKILL and
  started again; every deployment must be benchmarked by exactly one original run, and no
  rollback issued twice.
- postgres restart: the Postgres server restarts while a benchmark run is in flight; the run is
  retried (run retries) and nothing recorded is lost.
- poison (issue 15): the sandbox's deployment list carries one hostile answer at a time
  (sandbox/poison.py: an entry from 2100, NaN or Infinity times, bad ids, 20,000 foreign entries,
  a pending id answering 403, a 429 an hour long, a trickled answer); a real deployment made
  meanwhile must still be benchmarked, its run requested within two sensor intervals. Runs on
  `atge up` (SQLite) or the Topology alike.
Figures are read back through the history store, the sandbox, and Dagster's GraphQL API (the
UI's own client path).
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.harness.stack import Topology, wait_until
from atge_assets.sandbox.poison import KINDS as POISONS

RUNS_QUERY = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    ... on Runs { results { runId status parentRunId tags { key value } } }
  }
}"""


def runs_for(topo: Topology, deployment_id: str) -> list[dict]:
    data = topo.graphql(RUNS_QUERY, {"tags": [{"key": "dagster/partition",
                                                "value": deployment_id}]})
    return data["runsOrError"]["results"]


def restart_postgres() -> None:
    cluster = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
                   check=True, timeout=120)


def summarize(topo: Topology, store: DeploymentHistory, created: list[str]) -> dict:
    status = topo.sandbox("GET", "/_sandbox/status")
    rollbacks = Counter(e["from"] for e in status["rollbacks"] if e["from"] in created)
    original_runs, retries, benchmarked, decided = {}, 0, 0, 0
    for dep in created:
        runs = runs_for(topo, dep)
        original_runs[dep] = sum(1 for r in runs if not r["parentRunId"])
        retries += sum(1 for r in runs if r["parentRunId"])
        benchmarked += bool(store.latest_samples(dep))
        decided += bool([d for d in store.decisions_for(dep) if d["decision"] != "refused"])
    decisions = Counter(d["decision"] for dep in created for d in store.decisions_for(dep))
    rolled = [d for dep in created for d in store.decisions_for(dep)
              if d["decision"] == "rolled_back"]
    return {
        "deployments_created": len(created),
        "deployments_seen": sum(1 for n in original_runs.values() if n),
        "deployments_benchmarked": benchmarked,
        "deployments_decided": decided,
        "runs_per_deployment_max": max(original_runs.values(), default=0),
        "deployments_without_run": [d for d, n in original_runs.items() if n == 0],
        "run_retries": retries,
        "rollbacks_issued": sum(rollbacks.values()),
        "rollbacks_per_deployment_max": max(rollbacks.values(), default=0),
        "rolled_back_decisions": len(rolled),
        "decisions": dict(decisions),
        "per_deployment": {dep: [d["decision"] for d in store.decisions_for(dep)]
                           for dep in created},
        "lost": created and benchmarked < len(created),
        "duplicated": max(original_runs.values(), default=0) > 1
        or max(rollbacks.values(), default=0) > 1,
    }


def daemon_kill_drill(topo: Topology, store: DeploymentHistory, *, rounds: int = 2,
                      timeout_s: float = 600) -> dict:
    """Deployments arrive before, during and after a SIGKILL of the daemon."""
    plan = [dict(target="preview"), dict(slowdown=1.3), dict(target="preview", slowdown=1.3),
            dict(), dict(slowdown=1.4)]
    created: list[str] = []
    for r in range(rounds):
        for i, body in enumerate(plan):
            created.append(topo.sandbox("POST", "/_sandbox/deployments", body)["id"])
            if i == 1:
                time.sleep(3)
                topo.kill("daemon")  # SIGKILL: no chance to tidy up
            if i == 3:
                time.sleep(2)
                topo.start_daemon()
            time.sleep(1.5)
    wait_until(lambda: all(store.decisions_for(d) for d in created), timeout_s,
               poll_s=2, what="a decision for every deployment")
    return summarize(topo, store, created)


def postgres_restart_drill(topo: Topology, store: DeploymentHistory, *, timeout_s: float = 600) -> dict:
    """A slow production deployment whose benchmark run meets a Postgres restart."""
    dep = topo.sandbox("POST", "/_sandbox/deployments", {"slowdown": 1.3})["id"]
    wait_until(lambda: any(r["status"] == "STARTED" for r in runs_for(topo, dep)), 120,
               poll_s=0.3, what="the benchmark run to start")
    time.sleep(1.0)  # into the measurement
    restart_postgres()
    wait_until(lambda: store.decisions_for(dep), timeout_s, poll_s=2,
               what="a decision after the restart")
    out = summarize(topo, store, [dep])
    out["statuses"] = [r["status"] for r in runs_for(topo, dep)]
    return out


# The list is unusable while these last: set for a while, the deployment made meanwhile; its
# clock starts when they lift (a real 429 or trickle ends too, or nothing could be seen).
# The trickle outlasts the sensor's tick deadline (40 s), so a tick meets it and must give up.
LIFTING_S = {"rate_limit": 15.0, "slow": 50.0}
# Poisons whose entries must land in `rejected_inputs` (the 403 one after the sensor's tries).
REJECTS = {"future", "nan", "infinity", "bad_ids", "big_page", "forbidden"}

SENSOR_TICKS = """
query Ticks($after: Float) { repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { name sensorState { ticks(afterTimestamp: $after, limit: 1000) {
    status timestamp endTimestamp skipReason error { message } } } } } } } }"""
RUNS_SINCE = """
query Runs($after: Float) { runsOrError(filter: {createdAfter: $after}) {
  ... on Runs { results { runId jobName status creationTime startTime endTime parentRunId
                          tags { key value } } } } }"""


def _ticks(system, after: float) -> list[dict]:
    nodes = system.graphql(SENSOR_TICKS, {"after": after})["repositoriesOrError"]["nodes"]
    return [t for n in nodes for s in n["sensors"] if s["name"] == "deployment_sensor"
            for t in s["sensorState"]["ticks"]]


def _benchmark_runs(system, after: float) -> list[dict]:
    runs = system.graphql(RUNS_SINCE, {"after": after})["runsOrError"]["results"]
    return [r for r in runs if r["jobName"] == "benchmark_deployment" and not r["parentRunId"]]


def poison_drill(system, store: DeploymentHistory, kind: str, *, interval_s: float,
                 timeout_s: float = 300) -> dict:
    """One poison, then one real production deployment (as fast as its baseline: kept).

    `system` is a harness Stack (`atge up`) or Topology: anything with `sandbox()`, `graphql()`.
    Figures: seconds from the deployment's creation (or the poison's lift, if later) to its run
    being requested and to its decision; benchmark runs requested and rows added to
    `rejected_inputs` meanwhile; the sensor's ticks by status, with any error.
    """
    if kind not in POISONS:
        raise ValueError(f"unknown poison {kind!r}; one of {', '.join(POISONS)}")
    t0 = time.time()
    lift_s = LIFTING_S.get(kind)
    system.sandbox("POST", "/_sandbox/poison",
                   {"kind": kind, **({"seconds": lift_s} if lift_s else {})})
    try:
        time.sleep(2 * interval_s)  # the sensor meets the poison first
        dep = system.sandbox("POST", "/_sandbox/deployments", {})["id"]
        created = next(d["created_ms"] for d in system.sandbox("GET", "/_sandbox/status")
                       ["deployments"] if d["id"] == dep) / 1000
        start = max(created, t0 + lift_s) if lift_s else created
        decision = wait_until(lambda: store.decisions_for(dep), timeout_s, poll_s=1,
                              what=f"a decision on {dep} under the {kind} poison")[0]
        benchmarked = bool(store.latest_samples(dep))
        if kind in REJECTS:  # recorded by the tick that met it (the 403 one after its tries)
            try:
                wait_until(lambda: any(r["created_at"] >= t0
                                       for r in store.table_rows("rejected_inputs")),
                           8 * interval_s, poll_s=1)
            except TimeoutError:
                pass  # reported as 0 below
        poisoned = system.sandbox("GET", "/_sandbox/poison")["poison"]
    finally:
        system.sandbox("POST", "/_sandbox/poison", {"kind": None})
    runs = _benchmark_runs(system, t0)
    mine = [r for r in runs if {"key": "dagster/partition", "value": dep} in r["tags"]]
    ticks = _ticks(system, t0)
    rejected = [r for r in store.table_rows("rejected_inputs") if r["created_at"] >= t0]
    requested_s = round(mine[0]["creationTime"] - start, 1) if mine else None
    return {
        "poison": kind,
        "deployment": dep,
        "benchmarked": benchmarked,
        "decisions": [d["decision"] for d in store.decisions_for(dep)],
        "requested_s": requested_s,
        "decided_s": round(decision["created_at"] - start, 1),
        "run_s": round(mine[0]["endTime"] - mine[0]["creationTime"], 1)
        if mine and mine[0]["endTime"] else None,
        "within_two_intervals": requested_s is not None and requested_s <= 2 * interval_s,
        "measured_from": "lift" if lift_s else "creation",
        "runs_requested": len(runs),
        "runs_for_deployment": len(mine),
        "rejected_inputs": len(rejected),
        "rejected_sample": sorted({r["detail"][:160] for r in rejected})[:3],
        "poisoned_answers": poisoned["answers"] if poisoned else None,
        "ticks": dict(Counter(t["status"] for t in ticks)),
        "longest_tick_s": round(max((t["endTimestamp"] - t["timestamp"] for t in ticks
                                     if t["endTimestamp"]), default=0), 1),
        "stopped_ticks": sorted({(t["skipReason"] or "")[:160] for t in ticks
                                 if "cursor kept" in (t["skipReason"] or "")
                                 or "stopped" in (t["skipReason"] or "")}),
        "tick_errors": sorted({(t["error"] or {}).get("message", "")[:200] for t in ticks
                               if t["status"] == "FAILURE"}),
    }
