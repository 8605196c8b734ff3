"""Fault drills against the production topology (code server, daemon, webserver on Postgres).

- daemon kill: deployments keep arriving while `dagster-daemon` is killed with SIGKILL and
  started again; every deployment must be benchmarked by exactly one original run, and no
  rollback issued twice.
- postgres restart: the Postgres server restarts while a benchmark run is in flight; the run is
  retried (run retries) and nothing recorded is lost.
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
