"""Fault drills on the production topology: figures for deployments seen / benchmarked / rolled
back, with no loss and no duplicates. Needs the Postgres server (restarts it once).

    .venv/bin/python benchmarks/fault_scenarios.py [--rounds 2]
"""

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.harness import drills
from atge_assets.harness.stack import Topology, wait_until

ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--admin-url", default=ADMIN)
    args = ap.parse_args()
    name = f"atge_drill_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"{args.admin_url.rsplit('/', 1)[0]}/{name}"
    topo = Topology(Path(tempfile.mkdtemp(prefix="atge-drill-")), url)
    out = {}
    try:
        topo.start_all()
        wait_until(topo.ready, 300, what="webserver and sandbox")
        store = DeploymentHistory(url)
        first = topo.sandbox("GET", "/_sandbox/status")["production"]
        wait_until(lambda: store.decisions_for(first), 300, what="the first deployment judged")
        t0 = time.time()
        out["daemon_kill"] = drills.daemon_kill_drill(topo, store, rounds=args.rounds)
        out["daemon_kill"]["seconds"] = round(time.time() - t0, 1)
        t0 = time.time()
        out["postgres_restart"] = drills.postgres_restart_drill(topo, store)
        out["postgres_restart"]["seconds"] = round(time.time() - t0, 1)
        store.dispose()
    finally:
        topo.stop_all()
        with admin.connect() as c:
            c.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n"), {"n": name})
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
    print(json.dumps(out))
    k, p = out["daemon_kill"], out["postgres_restart"]
    print(f"daemon kill -9: {k['deployments_created']} created / {k['deployments_seen']} seen / "
          f"{k['deployments_benchmarked']} benchmarked / {k['rollbacks_issued']} rolled back, "
          f"max runs per deployment {k['runs_per_deployment_max']}, lost={bool(k['lost'])}, "
          f"duplicated={k['duplicated']}; postgres restart: {p['statuses']}, "
          f"lost={bool(p['lost'])}, duplicated={p['duplicated']}")
    return 0 if not (k["lost"] or k["duplicated"] or p["lost"] or p["duplicated"]) else 1


if __name__ == "__main__":
    sys.exit(main())
