"""Shared by the abtest tests: variants and a three-way experiment."""

from __future__ import annotations

from atge_assets.abtest.config import ExperimentConfig

HIGH, MEDIUM = "gpt51-high", "gpt51-medium"


def variant(vid: str, pct: float, enabled: bool = True, effort: str = "high") -> dict:
    return {"id": vid, "name": f"Variant {vid}", "model": "gpt-5.1", "reasoning_effort": effort,
            "traffic_percent": pct, "enabled": enabled}


def three_way() -> ExperimentConfig:
    return ExperimentConfig.from_dict({"experiment": "three-way", "control": "a", "variants": [
        variant("a", 60), variant("b", 20, effort="medium"), variant("c", 20, effort="low")]})
