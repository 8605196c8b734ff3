"""Assignment of users to variants, GrowthBook's bit for bit (hash version 2, the experiment key as
the seed, its bucket ranges), so a user lands in the same variant here, in any GrowthBook SDK and
in every release, and the experiment can move to GrowthBook later without reshuffling anyone.
Disabled variants keep their place with weight 0, as GrowthBook does with a zero weight.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

from atge_assets.abtest.config import ExperimentConfig, Variant, _config


# -- assignment (GrowthBook-compatible) ------------------------------------------------------------
def fnv1a32(s: str) -> int:
    """32-bit FNV-1a over UTF-16 code units: JavaScript's charCodeAt loop, GrowthBook's reference.

    For ASCII the code units are the bytes; beyond it, UTF-8 bytes would hash differently from
    the JS SDK, so non-ASCII ids go through UTF-16 as there.
    """
    h = 0x811C9DC5
    if s.isascii():
        for b in s.encode():
            h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    else:
        data = s.encode("utf-16-le", "surrogatepass")
        for i in range(0, len(data), 2):
            h = ((h ^ (data[i] | data[i + 1] << 8)) * 0x01000193) & 0xFFFFFFFF
    return h


def gb_hash(seed: str, value: str, version: int = 2) -> float | None:
    """GrowthBook's hash to [0, 1): v2 double-hashes `seed + value`, 4 decimals; v1 is legacy."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def bucket_ranges(num_variations: int, coverage: float = 1.0,
                  weights: Sequence[float] | None = None) -> list[tuple[float, float]]:
    """GrowthBook's getBucketRanges, including its fallback to equal weights for bad weights."""
    coverage = min(max(coverage, 0.0), 1.0)
    if (weights is None or len(weights) != num_variations
            or not 0.99 <= sum(weights) <= 1.01 or any(w < 0 for w in weights)):
        weights = [1 / num_variations] * num_variations
    ranges, cumulative = [], 0.0
    for w in weights:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def choose_variation(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    for i, (lo, hi) in enumerate(ranges):
        if lo <= n < hi:
            return i
    return -1


@lru_cache(maxsize=64)
def _ranges(variants: tuple[Variant, ...]) -> list[tuple[float, float]]:
    return bucket_ranges(len(variants), 1.0, [v.weight for v in variants])


def bucket(user_id: str | int, experiment_key: str) -> float:
    """The user's position in [0, 1) for this experiment; it never changes."""
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
        raise ValueError(f"user id must be a string, got {type(user_id).__name__}")
    user = str(user_id)  # an int is hashed as JS String(n) would write it
    if not user:
        raise ValueError("user id is empty (GrowthBook leaves such users out of experiments)")
    if not isinstance(experiment_key, str) or not experiment_key:
        raise ValueError("experiment key must be a non-empty string")
    return gb_hash(experiment_key, user, 2)


def assign(user_id: str | int, experiment_key: str,
           variants: ExperimentConfig | Sequence[Variant | Mapping]) -> str:
    """The variant id for this user: the one GrowthBook would pick for the same experiment.

    Equivalent to a GrowthBook experiment with key (and seed) `experiment_key`, hashVersion 2,
    hashAttribute the user id, full coverage, the variants in config order and weights
    traffic_percent / 100 (0 for disabled ones).
    """
    config = _config(variants)
    i = choose_variation(bucket(user_id, experiment_key), _ranges(config.variants))
    if i < 0:  # weights sum to 1, so [0, 1) is covered; only a broken invariant lands here
        raise RuntimeError(f"no bucket for user {user_id!r} in {experiment_key!r}")
    return config.variants[i].id
