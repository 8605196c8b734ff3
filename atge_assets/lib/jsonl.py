"""The one JSONL batch loop behind `atge judge`, `atge changepoints` and `atge forecast`.

One JSON object per line in, one per line out, in order. A line that cannot be handled gets an
`error` (with its line number) instead of stopping the batch: scripts feeding thousands of lines
need every good answer, and the count of bad ones.
"""

from __future__ import annotations

import json
import math
from typing import BinaryIO, Callable, Iterable, Iterator, TextIO

# Far above any real batch line (a judge line of 10,000 samples is ~200 kB), low enough that one
# runaway line cannot take the memory of a small CI runner.
MAX_LINE_BYTES = 8 * 1024 * 1024


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


class Overlong:
    """A line longer than the cap, left unread: what `read_lines` yields in its place."""

    def __init__(self, size: int):
        self.size = size


def read_lines(stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes | Overlong]:
    """The lines of a binary stream, each at most `max_bytes`; a longer one is skipped in
    chunks and becomes an `Overlong`, so one runaway line costs neither the memory nor the rest.

    Bytes, not text: decoding per line lets one bad byte spoil only its own line.
    """
    while True:
        line = stream.readline(max_bytes + 2)  # room for the content and its \r\n
        if not line:
            return
        if len(line) < max_bytes + 2 or line.endswith(b"\n"):
            yield line  # `run_jsonl` measures what is left once the line ending is off
            continue
        size = len(line)
        while not line.endswith(b"\n"):
            line = stream.readline(1 << 20)
            if not line:
                break
            size += len(line)
        yield Overlong(size)


class _BadLine(ValueError):
    """A line that is no text to parse; its message stands alone, without a type name."""


def _text(line: str | bytes | Overlong, number: int, max_bytes: int) -> str:
    if isinstance(line, Overlong):
        size = line.size
    else:
        body = line.rstrip(b"\r\n" if isinstance(line, bytes) else "\r\n")
        # Counting the bytes of text costs an encode: only text that might be too long pays it.
        size = len(body.encode()) if isinstance(body, str) and len(body) > max_bytes // 4 \
            else len(body)
    if isinstance(line, Overlong) or size > max_bytes:
        raise _BadLine(f"line is {size:,} bytes, over the {max_bytes:,}-byte limit; split it")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _BadLine(f"not UTF-8: byte 0x{exc.object[exc.start]:02x} at byte "
                           f"{exc.start + 1} of the line") from None
    return line[1:] if number == 1 and line.startswith("\ufeff") else line  # an editor's BOM


def run_jsonl(lines: Iterable[str | bytes | Overlong], out: TextIO, handle: Callable[[dict], dict],
              failed: dict, max_line_bytes: int = MAX_LINE_BYTES) -> int:
    """Write `{"id": ..., **handle(row)}` per line, or `{"id": ..., "line": N, "error": ...,
    **failed}`.

    Lines are text, or bytes decoded here (from `read_lines`): a line that is not UTF-8 or is
    longer than `max_line_bytes` is an error of its own. Blank lines are skipped. Output is
    strict JSON (a NaN is an error, not a token). Returns the number of error lines.
    """
    errors = 0
    for number, line in enumerate(lines, 1):
        row_id = None
        try:
            line = _text(line, number, max_line_bytes)
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("expected a JSON object")
            row_id = row.get("id")
            text = json.dumps({"id": row_id, **handle(row)}, allow_nan=False)
        except Exception as exc:  # one bad line must not cost the rest of the batch
            errors += 1
            why = str(exc) if isinstance(exc, _BadLine) else f"{type(exc).__name__}: {exc}"
            bad = {"id": row_id, "line": number, "error": f"line {number}: {why}", **failed}
            try:
                text = json.dumps(bad, allow_nan=False)
            except ValueError:  # the id itself holds a NaN: keep the line strict JSON
                text = json.dumps({**bad, "id": str(row_id)})
        out.write(text + "\n")
    return errors


def check_length(name: str, items: list, limit: int) -> None:
    """Refuse a series longer than `limit`, naming it: the batch tools promise an answer per
    line in seconds, and their cost grows faster than the length."""
    if len(items) > limit:
        raise ValueError(f"{name} has {len(items):,} points, over the limit of {limit:,}; "
                         "downsample or split it")
