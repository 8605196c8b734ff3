"""Fault drills on the whole system: figures for deployments seen / benchmarked / rolled back, with
no loss and no duplicates.

- poison (issue 15): `atge up` on its SQLite defaults; for each poisoned provider answer
  (sandbox/poison.py) a real deployment must still be benchmarked, its run requested within two
  sensor intervals of its creation (or of the poison's lift, for the 429 and the trickle).
- daemon, postgres: the production topology on Postgres (restarts the local server once).

    .venv/bin/python benchmarks/fault_scenarios.py --only poison [--poisons future,nan]
    .venv/bin/python benchmarks/fault_scenarios.py [--rounds 2]      # all three
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
from atge_assets.harness import drills, stack
from atge_assets.harness.stack import Topology, wait_until

ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DRILLS = ("poison", "daemon", "postgres")
INTERVAL_S = 5


def poison_drills(kinds: list[str]) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix="atge-poison-")) / "home"
    s = stack.start(home, extra_env={"ATGE_SENSOR_INTERVAL_S": str(INTERVAL_S),
                                     "VERCEL_AUTOMATION_BYPASS_SECRET": uuid.uuid4().hex})
    out, store = [], None
    try:
        s.wait_for(s.ui_ready, 300)
        store = DeploymentHistory(f"sqlite:///{home / 'history.sqlite'}")
        first = s.status()["production"]
        s.wait_for(lambda: store.decisions_for(first), 300)
        for kind in kinds:
            out.append(drills.poison_drill(s, store, kind, interval_s=INTERVAL_S))
            print(f"poison {kind}: {json.dumps(out[-1])}", file=sys.stderr)
    finally:
        if store:
            store.dispose()
        s.stop()
    return out


def topology_drills(which: set[str], rounds: int, admin_url: str) -> dict:
    name = f"atge_drill_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    topo = Topology(Path(tempfile.mkdtemp(prefix="atge-drill-")), url)
    out = {}
    try:
        topo.start_all()
        wait_until(topo.ready, 300, what="webserver and sandbox")
        store = DeploymentHistory(url)
        first = topo.sandbox("GET", "/_sandbox/status")["production"]
        wait_until(lambda: store.decisions_for(first), 300, what="the first deployment judged")
        if "daemon" in which:
            t0 = time.time()
            out["daemon_kill"] = drills.daemon_kill_drill(topo, store, rounds=rounds)
            out["daemon_kill"]["seconds"] = round(time.time() - t0, 1)
        if "postgres" in which:
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
    return out


def summary(out: dict) -> tuple[str, bool]:
    parts, ok = [], True
    for p in out.get("poison", []):
        good = p["benchmarked"] and p["within_two_intervals"] and p["runs_for_deployment"] == 1 \
            and not p["ticks"].get("FAILURE")
        ok &= good
        parts.append(f"{p['poison']} {p['requested_s']}s/{p['decided_s']}s "
                     f"rej={p['rejected_inputs']}{'' if good else ' FAIL'}")
    if parts:
        parts = ["poison (requested/decided s after creation or lift): " + ", ".join(parts)]
    if "daemon_kill" in out:
        k = out["daemon_kill"]
        ok &= not (k["lost"] or k["duplicated"])
        parts.append(f"daemon kill -9: {k['deployments_created']} created / "
                     f"{k['deployments_seen']} seen / {k['deployments_benchmarked']} benchmarked / "
                     f"{k['rollbacks_issued']} rolled back, max runs per deployment "
                     f"{k['runs_per_deployment_max']}, lost={bool(k['lost'])}, "
                     f"duplicated={k['duplicated']}")
    if "postgres_restart" in out:
        p = out["postgres_restart"]
        ok &= not (p["lost"] or p["duplicated"])
        parts.append(f"postgres restart: {p['statuses']}, lost={bool(p['lost'])}, "
                     f"duplicated={p['duplicated']}")
    return "; ".join(parts), ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append", choices=DRILLS,
                    help="run only this drill (repeatable); default all")
    ap.add_argument("--poisons", default=",".join(drills.POISONS),
                    help=f"comma-separated, of {','.join(drills.POISONS)}")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--admin-url", default=ADMIN)
    args = ap.parse_args()
    which = set(args.only or DRILLS)
    kinds = [k.strip() for k in args.poisons.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in drills.POISONS]
    if unknown:
        ap.error(f"unknown poison {unknown[0]!r}; one of {', '.join(drills.POISONS)}")
    out: dict = {}
    if "poison" in which:
        out["poison"] = poison_drills(kinds)
    if which & {"daemon", "postgres"}:
        out.update(topology_drills(which, args.rounds, args.admin_url))
    print(json.dumps(out))
    line, ok = summary(out)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
