"""Experiment configs: every problem named at once."""

from __future__ import annotations

import pytest

from atge_assets.abtest.config import (
    ConfigError,
    ExperimentConfig,
    default_config,
)
from atge_assets_tests.abtest.helpers import HIGH, variant


# --- configuration --------------------------------------------------------------------------------
def test_default_config_is_the_issue_example():
    config = default_config()
    assert config.control == HIGH
    assert [(v.name, v.reasoning_effort, v.traffic_percent) for v in config.variants] == [
        ("GPT-5.1 high reasoning", "high", 80.0), ("GPT-5.1 medium reasoning", "medium", 20.0)]


def test_config_errors_name_every_problem():
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict({"variants": [
            variant("a", 70), variant("a", 20), {**variant("c", 5), "reasoning_effort": "hihg"},
            {**variant("d", 5), "traffic": 5}]})
    text = str(err.value)
    assert "duplicate id 'a' (also variants[0])" in text
    assert "reasoning_effort 'hihg' is not one of" in text
    assert "unknown field 'traffic'" in text
    assert len(err.value.problems) == 3


def test_config_percentages_must_sum_to_100():
    with pytest.raises(ConfigError, match=r"sums to 90 \(a 70 \+ b 20\), must be 100"):
        ExperimentConfig.from_dict({"variants": [variant("a", 70), variant("b", 20)]})
    # Disabled variants do not count, and decimal shares add up exactly.
    config = ExperimentConfig.from_dict({"variants": [
        variant("a", 33.3), variant("b", 33.3), variant("c", 33.4), variant("d", 50, False)]})
    assert [v.weight for v in config.variants] == [0.333, 0.333, 0.334, 0.0]


@pytest.mark.parametrize("data,message", [
    ({"variants": []}, "variants must be a non-empty list"),
    ({"variants": [variant("a", 100), variant("b", 0)]}, "enabled with traffic_percent 0"),
    ({"variants": [variant("a", "80%"), variant("b", 20)]}, "traffic_percent must be a number"),
    ({"variants": [variant("a", 100), variant("b", 0, False)], "control": "b"},
     "control 'b' is disabled"),
    ({"variants": [variant("a", 100)], "control": "z"}, "control 'z' is not one of"),
    ({"variants": [variant("a", 100)], "plan": {"looks": 2.5}}, "plan.looks must be a whole"),
    ({"variants": [variant("a", 100)], "plan": {"alpha": 0.7}}, "plan.alpha must be in"),
    ({"variants": [variant("a", 100)], "guardrails": {"max_p95": 1}}, "unknown field 'max_p95'"),
    ({"variants": [variant("a", 100)], "colour": 1}, "unknown field 'colour'"),
    ({"variants": [{**variant("a", 100), "enabled": "yes"}]}, "enabled must be true or false"),
])
def test_config_rejects(data, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_dict(data)
