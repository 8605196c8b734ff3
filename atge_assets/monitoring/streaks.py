"""When a forecast alert is acted on: only once it persists. A metric must alert on `consecutive`
forecast evaluations in a row, as a Prometheus rule with `for:`, before its actions go to the
policy. The sensor keeps the streaks in its cursor (small JSON): `after` = the last forecast
materialization evaluated, `streaks` = per "target/metric", how many evaluations in a row have
alerted (zeros dropped)."""

from __future__ import annotations

import json
from typing import Any, Mapping


def parse_cursor(raw: str | None) -> tuple[int | None, dict[str, int]]:
    if not raw:
        return None, {}
    try:
        c = json.loads(raw)
        after = c.get("after")
        streaks = {str(k): int(v) for k, v in (c.get("streaks") or {}).items()}
        return (int(after) if after is not None else None), streaks
    except (ValueError, TypeError, AttributeError):
        # An unreadable cursor must not wedge the sensor: start over from the newest forecasts.
        return None, {}


def cursor(after: int, streaks: Mapping[str, int]) -> str:
    return json.dumps({"after": after, "streaks": {k: v for k, v in streaks.items() if v}})


def count(streaks: dict[str, int], payload: Mapping[str, Any]) -> None:
    """Add one evaluation (a forecasts payload: target and per-metric forecasts) to the streaks."""
    for metric, f in payload["metrics"].items():
        key = f"{payload.get('target')}/{metric}"
        streaks[key] = min(streaks.get(key, 0) + 1, 1000) if f.get("alert") else 0


def due(payload: Mapping[str, Any], streaks: Mapping[str, int], consecutive: int
        ) -> tuple[dict[str, dict], str]:
    """The alerting metrics whose streak is long enough, and, when none is, why nothing is due."""
    target = str(payload.get("target"))
    alerting = {m: f for m, f in payload["metrics"].items() if f.get("alert")}
    ready = {m: f for m, f in alerting.items() if streaks.get(f"{target}/{m}", 0) >= consecutive}
    if ready:
        return ready, ""
    waiting = ", ".join(f"{m} {streaks.get(f'{target}/{m}', 0)}/{consecutive}" for m in alerting)
    return {}, (f"alerting, not yet on {consecutive} forecasts in a row: {waiting}" if waiting
                else "no metric is forecast to cross its threshold")
