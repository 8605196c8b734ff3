"""`atge forecast --batch`: the JSONL protocol around `forecast`, stricter than the function.

`forecast` itself sorts what it is given and averages repeated timestamps, as a scrape retried
mid-write needs. A batch line is a file someone exported: timestamps out of order or repeated
there are far more likely a join or a timezone gone wrong than data, so they are refused with
the index where the order breaks instead of being quietly repaired.
"""

from __future__ import annotations

import numbers
from typing import Iterable, TextIO

import numpy as np

from atge_assets.lib.jsonl import check_length, run_jsonl
from atge_assets.monitoring.forecast import ABOVE, forecast

# Far past an hour's window at one point a second; parsing and checking such a line is linear,
# and the forecast keeps a few hundred points whatever it is given.
MAX_BATCH_POINTS = 100_000


def check_increasing(timestamps: list) -> None:
    """Refuse timestamps that are not strictly increasing, naming the first that breaks it.

    Items that are not finite numbers are left to `forecast`, which names them.
    """
    if not set(map(type, timestamps)) <= {int, float}:
        return
    try:
        ts = np.asarray(timestamps, dtype=float)
    except OverflowError:
        return
    if not np.isfinite(ts).all():
        return
    bad = np.flatnonzero(np.diff(ts) <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        how = "repeats" if ts[i] == ts[i - 1] else "is before"
        raise ValueError(f"timestamps must be strictly increasing: timestamps[{i}] = "
                         f"{timestamps[i]!r} {how} timestamps[{i - 1}] = {timestamps[i - 1]!r}")


def run_batch(lines: Iterable[str | bytes], out: TextIO, horizon_minutes: float = 30.0) -> int:
    """`atge forecast --batch`: one JSON series per line in, one JSON forecast per line out.

    In:  {"id": ..., "threshold": 250, "timestamps": [unix s, strictly increasing, ...],
          "values": [number or null, ...], optional "direction": "above"|"below", "now": unix s,
          "horizon_minutes": M}; at most MAX_BATCH_POINTS points.
    Out: {"id": ..., "breach_expected": ..., "minutes_to_threshold": ..., "status": ...,
    <other Forecast fields>, "error": null}, or for a line that cannot be forecast {"id": ...,
    "line": N, "error": "...", "status": null, "breach_expected": false, "breached_now": false,
    "alert": false, "minutes_to_threshold": null}. Blank lines are skipped; returns the number
    of error lines.
    """
    def handle(row: dict) -> dict:
        missing = [k for k in ("timestamps", "values") if not isinstance(row.get(k), list)]
        if missing:
            raise ValueError(f"{' and '.join(missing)} must be a list of numbers")
        check_length("timestamps", row["timestamps"], MAX_BATCH_POINTS)
        check_length("values", row["values"], MAX_BATCH_POINTS)
        if "threshold" not in row:
            raise ValueError("threshold is missing")
        horizon = row.get("horizon_minutes", horizon_minutes)
        if isinstance(horizon, bool) or not isinstance(horizon, numbers.Real):
            raise ValueError(f"horizon_minutes must be a number, got {horizon!r}")
        check_increasing(row["timestamps"])
        f = forecast(row["timestamps"], row["values"], row["threshold"], horizon * 60.0,
                     direction=row.get("direction", ABOVE), now=row.get("now")).as_dict()
        return {"breach_expected": f.pop("breach_expected"),
                "minutes_to_threshold": f.pop("minutes_to_threshold"), **f, "error": None}

    return run_jsonl(lines, out, handle, {
        "status": None, "breach_expected": False, "breached_now": False, "alert": False,
        "minutes_to_threshold": None})
