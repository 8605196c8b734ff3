"""The `releases` table: one row per deployment, what was measured and what was decided, so an
operator reads every deployment's fate at one glance instead of opening partitions one by one."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from atge_assets.deployments.compare import change_text

COLUMNS = ("deployment", "created", "target", "verdict", "changes", "decision", "reason",
           "rollback_to", "run", "url")


def _is_promotion(decision: str) -> bool:
    return decision.startswith("promot")


def decision_of(target: str, decisions: list[dict]) -> dict | None:
    """The decision that tells this deployment's fate: the rollback asset's for production, the
    promotion gate's for a preview (the rollback only ever skips a preview)."""
    own = [d for d in decisions if _is_promotion(d["decision"]) != (target == "production")]
    return (own or decisions)[-1] if decisions else None


def changes_text(metrics: list[dict]) -> str:
    """`end_to_end +31.2% regressed, ai_analysis +0.4% pass`: the regressed ones first."""
    ordered = sorted(metrics, key=lambda m: m["verdict"] != "regressed")
    return ", ".join(f"{m['metric']} {change_text(m['change'])} {m['verdict']}" for m in ordered)


def release_rows(deployments: list[dict], run_url) -> list[dict]:
    """Rows for the table from `DeploymentHistory.recent_deployments`; `run_url(run_id)` links a
    decision to its run in the UI."""
    rows = []
    for d in deployments:
        chosen = decision_of(d["target"], d["decisions"])
        rows.append({
            "deployment": d["id"],
            "created": datetime.fromtimestamp(d["created_ms"] / 1000, timezone.utc)
            .strftime("%Y-%m-%d %H:%M:%S"),
            "target": d["target"],
            "verdict": d["verdict"] or "not judged",
            "changes": changes_text(d["metrics"]),
            "decision": chosen["decision"] if chosen else "pending",
            "reason": chosen["reason"] if chosen else "",
            "rollback_to": (chosen or {}).get("rollback_to") or "",
            "run": run_url(chosen["run_id"]) if chosen else "",
            "url": d["url"],
        })
    return rows


def summary(rows: list[dict]) -> tuple[str, dict[str, int]]:
    """A first line in words and the counts by decision (numeric metadata Dagster plots)."""
    counts = Counter(r["decision"] for r in rows)
    if not rows:
        return "No deployment seen yet.", {}
    newest = rows[0]
    head = (f"{len(rows)} deployments: " + ", ".join(f"{n} {k.replace('_', ' ')}"
                                                   for k, n in counts.most_common())
            + f". Newest: {newest['deployment']} ({newest['target']}) {newest['decision']}"
            + (f" to {newest['rollback_to']}" if newest["rollback_to"] else "")
            + (f": {newest['reason']}" if newest["reason"] else "") + ".")
    return head, dict(counts)
