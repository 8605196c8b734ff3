"""The one JSONL batch loop behind `atge judge`, `atge changepoints` and `atge forecast`.

One JSON object per line in, one per line out, in order. A line that cannot be handled gets an
`error` (with its line number) instead of stopping the batch: scripts feeding thousands of lines
need every good answer, and the count of bad ones.
"""

from __future__ import annotations

import json
import math
from typing import Callable, Iterable, TextIO


def plain(value):
    """JSON-safe: numpy scalars to Python, NaN and infinity to None, containers recursively."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # numpy scalar, no import
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_jsonl(lines: Iterable[str], out: TextIO, handle: Callable[[dict], dict],
              failed: dict) -> int:
    """Write `{"id": ..., **handle(row)}` per line, or `{"id": ..., "error": ..., **failed}`.

    Blank lines are skipped. Output is strict JSON (a NaN is an error, not a token). Returns the
    number of error lines.
    """
    errors = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row_id = None
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("expected a JSON object")
            row_id = row.get("id")
            text = json.dumps({"id": row_id, **handle(row)}, allow_nan=False)
        except Exception as exc:  # one bad line must not cost the rest of the batch
            errors += 1
            bad = {"id": row_id, "error": f"line {number}: {type(exc).__name__}: {exc}", **failed}
            try:
                text = json.dumps(bad, allow_nan=False)
            except ValueError:  # the id itself holds a NaN: keep the line strict JSON
                text = json.dumps({**bad, "id": str(row_id)})
        out.write(text + "\n")
    return errors
