"""Assignment is GrowthBook's, bit for bit: its SDK's shared test vectors, the official SDK itself,
and golden values that must never change.
"""

from __future__ import annotations

import pytest

from atge_assets.abtest.assignment import (
    assign,
    bucket,
    bucket_ranges,
    choose_variation,
    gb_hash,
)
from atge_assets.abtest.config import (
    ExperimentConfig,
    default_config,
)
from atge_assets_tests.abtest.helpers import HIGH, MEDIUM, three_way, variant

# --- GrowthBook compatibility ---------------------------------------------------------------------
# From GrowthBook's shared SDK test cases (growthbook/growthbook-python tests/cases.json, spec
# 0.7.1; the same file drives the JS SDK): [seed, value, version, expected].
GB_HASH_CASES = [
    ["", "a", 1, 0.22], ["", "b", 1, 0.077], ["b", "a", 1, 0.946], ["ef", "d", 1, 0.652],
    ["asdf", "8952klfjas09ujk", 1, 0.549], ["", "123", 1, 0.011], ["", '___)((*":&', 1, 0.563],
    ["seed", "a", 2, 0.0505], ["seed", "b", 2, 0.2696], ["foo", "ab", 2, 0.2575],
    ["foo", "def", 2, 0.2019], ["89123klj", "8952klfjas09ujkasdf", 2, 0.124],
    ["90850943850283058242805", "123", 2, 0.7516], ["()**(%$##$%#$#", '___)((*":&', 2, 0.0128],
    ["abc", "def", 99, None],
]
GB_RANGE_CASES = [  # [numVariations, coverage, weights], expected ranges
    ([2, 1, None], [[0, 0.5], [0.5, 1]]),
    ([2, 0.5, None], [[0, 0.25], [0.5, 0.75]]),
    ([2, 0, None], [[0, 0], [0.5, 0.5]]),
    ([4, 1, None], [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]),
    ([2, 1, [0.4, 0.6]], [[0, 0.4], [0.4, 1]]),
    ([3, 1, [0.2, 0.3, 0.5]], [[0, 0.2], [0.2, 0.5], [0.5, 1]]),
    ([3, 0.2, [0.2, 0.3, 0.5]], [[0, 0.04], [0.2, 0.26], [0.5, 0.6]]),
    ([2, -0.2, None], [[0, 0], [0.5, 0.5]]),
    ([2, 1.5, None], [[0, 0.5], [0.5, 1]]),
    ([2, 1, [0.4, 0.1]], [[0, 0.5], [0.5, 1]]),
    ([2, 1, [0.7, 0.6]], [[0, 0.5], [0.5, 1]]),
    ([4, 1, [0.4, 0.4, 0.2]], [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]),
    ([2, 1, [0.4, 0.5999]], [[0, 0.4], [0.4, 0.9999]]),
]
GB_CHOOSE_CASES = [  # n, ranges, expected
    (0.2, [[0, 0.5], [0.5, 1]], 0), (0.6, [[0, 0.5], [0.5, 1]], 1),
    (0, [[0, 0.5], [0.5, 1]], 0), (0.5, [[0, 0.5], [0.5, 1]], 1),
    (0.4, [[0, 0.25], [0.5, 0.75]], -1), (0.25, [[0, 0.25], [0.5, 0.75]], -1),
    (0.5, [[0, 0.25], [0.5, 0.75]], 1), (0.5, [[0, 0.5], [0.5, 0.5], [0.5, 1]], 2),
]


@pytest.mark.parametrize("seed,value,version,expected", GB_HASH_CASES)
def test_hash_matches_growthbook_vectors(seed, value, version, expected):
    assert gb_hash(seed, value, version) == expected


@pytest.mark.parametrize("args,expected", GB_RANGE_CASES)
def test_bucket_ranges_match_growthbook_vectors(args, expected):
    got = bucket_ranges(*args)
    assert len(got) == len(expected)
    for (lo, hi), (elo, ehi) in zip(got, expected):
        assert lo == pytest.approx(elo, abs=1e-12) and hi == pytest.approx(ehi, abs=1e-12)


@pytest.mark.parametrize("n,ranges,expected", GB_CHOOSE_CASES)
def test_choose_variation_matches_growthbook_vectors(n, ranges, expected):
    assert choose_variation(n, [tuple(r) for r in ranges]) == expected


def test_assign_matches_growthbook_run_case():
    # cases.json run "Uses seed with default weights/coverage": seed "foo", hashVersion 2, id "1"
    # gets variation 1 of two equal ones.
    config = [variant("a", 50), variant("b", 50)]
    assert assign("1", "foo", config) == "b"


def test_assignments_are_stable_across_releases():
    # Golden values: if these change, every running experiment reshuffles its users.
    config = default_config()
    golden = {"user-1": (0.5029, HIGH), "user-2": (0.9559, MEDIUM), "user-3": (0.6682, HIGH),
              "alice@example.com": (0.8792, MEDIUM), "42": (0.3048, HIGH), "Zoë": (0.1342, HIGH),
              "🚀-trader": (0.1953, HIGH)}
    for user, (expected, vid) in golden.items():
        assert bucket(user, config.experiment) == expected
        assert assign(user, config.experiment, config) == vid
    assert assign(42, config.experiment, config) == assign("42", config.experiment, config)


def test_assignments_equal_the_growthbook_sdk():
    gb = pytest.importorskip("growthbook")  # test-only dependency
    config = ExperimentConfig.from_dict({"experiment": "exp-3way", "variants": [
        variant("a", 14.3), variant("off", 30, enabled=False), variant("b", 28.6),
        variant("c", 57.1)]})
    # Ids hashed exactly onto a range boundary are where a one-ulp weight difference would show.
    edges = {0.143, 0.429}
    users = [f"u{i}" for i in range(4000)] + ["Zoë", "🚀-trader", "ユーザー", "o'brien@x.io"]
    users += [u for u in (f"edge{i}" for i in range(60000))
              if bucket(u, config.experiment) in edges][:6]
    assert sum(bucket(u, config.experiment) in edges for u in users) >= 2
    experiment = gb.Experiment(key=config.experiment, variations=list(config.ids),
                               weights=[v.weight for v in config.variants], hashVersion=2)
    for user in users:
        sdk = gb.GrowthBook(attributes={"id": user}).run(experiment)
        assert sdk.inExperiment and sdk.value == assign(user, config.experiment, config), user


def test_traffic_split_over_100k_users():
    config = default_config()
    picks = [assign(f"user-{i}", config.experiment, config) for i in range(100_000)]
    share = picks.count(MEDIUM) / len(picks)
    assert abs(share - 0.20) < 0.005  # 4 standard errors
    three = three_way()
    picks = [assign(f"user-{i}", three.experiment, three) for i in range(30_000)]
    for vid, pct in (("a", 0.6), ("b", 0.2), ("c", 0.2)):
        assert abs(picks.count(vid) / len(picks) - pct) < 0.01


def test_assign_rejects_empty_ids():
    with pytest.raises(ValueError, match="empty"):
        assign("", "exp", default_config())
    with pytest.raises(ValueError, match="experiment key"):
        assign("u1", "", default_config())
