"""Seconds from `atge sandbox deploy --slowdown 1.3` to the rollback, with `atge up` defaults.

Starts the whole system in a temporary home, waits until the first production deployment has
been judged (so a known-good baseline exists), then deploys a 30%-slower production deployment
TRIALS times and times each until the sandbox records its rollback.

    .venv/bin/python benchmarks/deploy_to_rollback.py [--trials 3]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.harness import stack

# creationTime is when the sensor's run request became a run; startTime when the run worker began.
RUNS = """query Runs($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
  ... on Runs { results { creationTime startTime
    stepStats { stepKey startTime endTime } } } } }"""


def phases(s, deployment_id: str, t0: float, t_done: float) -> dict:
    """Where a trial's seconds went: until the run existed (sensor interval and tick), until it
    started (queue and run-worker start-up), and the run itself up to the rollback."""
    runs = s.graphql(RUNS, {"tags": [{"key": "dagster/partition", "value": deployment_id}]})
    first = min(runs["runsOrError"]["results"], key=lambda r: r["creationTime"])
    created, started = first["creationTime"], first["startTime"] or t_done
    steps = {st["stepKey"]: round(st["endTime"] - st["startTime"], 1)
             for st in first["stepStats"] if st["startTime"] and st["endTime"]}
    return {"to_run_s": round(created - t0, 1), "queue_and_start_s": round(started - created, 1),
            "in_run_s": round(t_done - started, 1), "steps_s": steps}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--slowdown", type=float, default=1.3)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="atge-bench-"))
    t_start = time.time()
    s = stack.start(home)
    seconds, breakdown = [], []
    try:
        s.wait_for(s.ui_ready, 300)
        startup = time.time() - t_start
        first = s.status()["production"]
        store = DeploymentHistory(f"sqlite:///{home / 'history.sqlite'}")
        s.wait_for(lambda: store.decisions_for(first), 300)
        for i in range(args.trials):
            before = len(s.status()["rollbacks"])
            t0 = time.time()
            dep = s.deploy(slowdown=args.slowdown)
            s.wait_for(lambda: len(s.status()["rollbacks"]) > before, 300, poll_s=0.2)
            t_done = time.time()
            seconds.append(round(t_done - t0, 1))
            breakdown.append(phases(s, dep, t0, t_done))
            print(f"trial {i + 1}: {dep} rolled back after {seconds[-1]} s {breakdown[-1]}",
                  file=sys.stderr)
    finally:
        s.stop()
    out = {
        "trials": len(seconds), "seconds": seconds, "median_s": round(statistics.median(seconds), 1),
        "max_s": max(seconds), "goal_s": 20, "phases": breakdown, "startup_s": round(startup, 1),
        "slowdown": args.slowdown,
    }
    print(json.dumps(out))
    print(f"deploy -> rollback: median {out['median_s']} s, max {out['max_s']} s over "
          f"{len(seconds)} trials (goal <= 20 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
