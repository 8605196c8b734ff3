"""Latency histogram: fixed memory whatever the count, exact merges, a portable text form.

A thin layer over HdrHistogram (PyPI `hdrhistogram`). Values are kept in microseconds with three
significant digits (0.1% resolution) from 1 us to one hour, in one preallocated array (~180 KB),
so a ten-minute load test costs no more memory than a ten-second one. `encode()` is HdrHistogram's
standard compressed base64 form, which the Java, Go, C and JS implementations decode too.
Histograms with this one layout merge by adding counts, so the percentiles of merged shards are
exactly those of one histogram fed all the values.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: no HTTP request a load test waits for lasts longer
DIGITS = 3


@lru_cache(maxsize=1)
def _layout(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each bucket index: the lowest value it holds and its width, as HdrHistogram lays them."""
    h = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
    half_mag, half = h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count
    idx = np.arange(n, dtype=np.int64)
    bucket = (idx >> half_mag) - 1
    sub = (idx & (half - 1)) + half
    sub = np.where(bucket < 0, sub - half, sub)
    shift = np.maximum(bucket, 0) + h.unit_magnitude
    return sub << shift, np.int64(1) << shift


class LatencyHistogram:
    __slots__ = ("_h",)

    def __init__(self, _hdr: HdrHistogram | None = None):
        self._h = _hdr if _hdr is not None else HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)

    def record_s(self, seconds: float) -> None:
        # HdrHistogram drops out-of-range values silently; clamping keeps every request counted.
        us = int(seconds * 1e6 + 0.5)
        self._h.record_value(LOWEST_US if us < LOWEST_US else HIGHEST_US if us > HIGHEST_US else us)

    def record_ms(self, ms: float) -> None:
        self.record_s(ms / 1000.0)

    @property
    def count(self) -> int:
        return self._h.get_total_count()

    def counts(self) -> np.ndarray:
        """The bucket counts, a view of the histogram's own array (no copy)."""
        return np.ctypeslib.as_array(self._h.counts)[: self._h.counts_len]

    def summary_ms(self, percentiles=(50, 95, 99)) -> dict:
        """avg, min, max and the percentiles (keys "p50", ...) in ms; None for an empty histogram.

        HdrHistogram's conventions, checked against the library: a percentile is the top of the
        bucket where the running count reaches p% of the total, the mean weighs each bucket's
        midpoint. Vectorised, since the library walks its 23k buckets in Python per percentile.
        """
        counts = self.counts()
        total = int(counts.sum())
        keys = ["avg", "min", "max"] + [f"p{p:g}" for p in percentiles]
        if not total:
            return dict.fromkeys(keys)
        low, size = _layout(len(counts))
        nz = np.flatnonzero(counts)
        out = {
            "avg": float(np.dot(counts[nz], low[nz] + (size[nz] >> 1))) / total,
            "min": float(low[nz[0]]), "max": float(low[nz[-1]] + size[nz[-1]] - 1),
        }
        cum = np.cumsum(counts)
        for p in percentiles:
            target = max(int(min(p, 100) * total / 100 + 0.5), 1)
            i = int(np.searchsorted(cum, target))
            out[f"p{p:g}"] = float(low[i] + size[i] - 1)
        return {k: v / 1000.0 for k, v in out.items()}

    def percentile_ms(self, p: float) -> float | None:
        return self.summary_ms((p,))[f"p{p:g}"]

    def mean_ms(self) -> float | None:
        return self.summary_ms(())["avg"]

    def max_ms(self) -> float | None:
        return self.summary_ms(())["max"]

    def count_above_ms(self, ms: float) -> int:
        """How many values lie in buckets wholly above `ms` (so to within 0.1%)."""
        counts = self.counts()
        low, _ = _layout(len(counts))
        return int(counts[low > ms * 1000].sum())

    def add(self, other: LatencyHistogram) -> None:
        self._h.add(other._h)

    def encode(self) -> str:
        return self._h.encode().decode("ascii")

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        h = HdrHistogram.decode(text.encode("ascii"))
        if (h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures) != (
            LOWEST_US, HIGHEST_US, DIGITS
        ):
            # Another layout would merge by re-bucketing, which is no longer exact.
            raise ValueError("histogram layout differs from this module's (1 us .. 1 h, 3 digits)")
        return cls(h)

    @classmethod
    def merged(cls, parts) -> LatencyHistogram:
        out = cls()
        for p in parts:
            out.add(p)
        return out

    def __eq__(self, other) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return bool(np.array_equal(self.counts(), other.counts()))

    __hash__ = None
