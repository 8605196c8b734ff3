"""The load tests' history: one row per stage with its encoded histogram."""

from __future__ import annotations

import json
import time
from typing import Sequence

import sqlalchemy as sa

from atge_assets.lib.history.engine import History
from atge_assets.lib.history.schema import load_tests


class LoadHistory(History):
    def record_load_test(self, deployment_id: str, run_id: str, stages: Sequence[dict],
                         desired_replicas: int | None = None,
                         recommendation: str | None = None) -> None:
        """One row per stage (keys: the columns of load_tests; `failures` a list), in one
        transaction, so a run's stages are all there or none is."""
        now = time.time()
        cols = {c.name for c in load_tests.columns} - {"id", "created_at"}
        rows = [{**{c: st.get(c) for c in cols}, "deployment_id": deployment_id,
                 "run_id": run_id, "stage": i, "failures": json.dumps(st.get("failures") or []),
                 "passed": bool(st.get("passed")), "shards": int(st.get("shards") or 1),
                 "desired_replicas": desired_replicas, "recommendation": recommendation,
                 "created_at": now} for i, st in enumerate(stages)]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(load_tests.insert(), rows)

    def load_tests_for(self, deployment_id: str) -> list[dict]:
        """Every stage row of the deployment, oldest run first, stages in order."""
        q = (sa.select(load_tests).where(load_tests.c.deployment_id == deployment_id)
             .order_by(load_tests.c.id))
        with self.engine.connect() as conn:
            out = [dict(r._mapping) for r in conn.execute(q)]
        for r in out:
            r["failures"] = json.loads(r["failures"])
        return out
