"""Small PNG charts for Markdown metadata, where Dagster's own metadata plots cannot show it
(bands, thresholds, marks). matplotlib is imported on first use, headless."""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager


@contextmanager
def figure(figsize=(6, 2.4), dpi: int = 80):
    """(fig, ax) on the Agg backend, closed on the way out whatever happens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


def to_png(fig, colors: int | None = None) -> bytes:
    """The figure as PNG; with `colors`, quantized to that many (a chart a minute goes into the
    event log: 32 colours make it a quarter of the size and look the same)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    if colors is None:
        return buf.getvalue()
    from PIL import Image  # comes with matplotlib

    out = io.BytesIO()
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=colors).save(
        out, format="PNG", optimize=True)
    return out.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
