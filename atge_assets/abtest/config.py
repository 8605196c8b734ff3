"""Configuration of an A/B experiment of Einstein's model variants: variants with their traffic
weights, the sequential plan, the guardrails; every problem named at once (`ConfigError`).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping, Sequence

DEFAULT_EXPERIMENT = "einstein-reasoning-effort"
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


class ConfigError(ValueError):
    """A variants configuration that cannot run; the message names every problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


# -- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    id: str
    name: str
    model: str
    reasoning_effort: str
    traffic_percent: float
    enabled: bool = True

    @property
    def weight(self) -> float:
        """GrowthBook weight: the percent over 100 computed in decimal, so 14.3% gives 0.143.

        Binary float division gives 14.3 / 100 = 0.14300000000000002, one ulp off the 0.143 a
        GrowthBook payload carries, and the users hashed exactly onto that boundary would
        land in different variants here and in the SDK.
        """
        if not self.enabled:
            return 0.0
        return float(Decimal(repr(float(self.traffic_percent))) / 100)


@dataclass(frozen=True)
class Plan:
    """How much evidence a decision needs. `alpha` is one-sided: the false-winner rate, under
    continuous monitoring for the sequential test, at the single look for `--final`."""
    alpha: float = 0.025
    # The bar is 80% at a 6-point lift; planning for 85% keeps it when control's win rate or the
    # split is a little off the plan's guesses.
    power: float = 0.85
    # Win-rate points worth finding (0.06 = 6 points): the planned signals aim at it, and the
    # sequential test's mixture is centred on lifts of this size.
    min_detectable_lift: float = 0.06
    baseline_win_rate: float = 0.50  # planning guess for control; 0.5 is the worst case
    looks: int = 5  # unused since the test is continuous; still accepted in old variants files
    # The normal approximation's usual floor; fewer and a 100% win streak says little.
    min_signals_per_variant: int = 30
    planned_signals: int | None = None  # resolved signals, all variants; None: from the above
    srm_alpha: float = 0.001


@dataclass(frozen=True)
class Guardrails:
    """Limits a winner must respect against control; any breach vetoes it."""
    max_p95_increase: float = 0.20  # analysis-time p95 at most 20% above control's
    max_p95_seconds: float | None = None
    max_error_rate_increase: float = 0.02  # error rate at most 2 points above control's
    max_error_rate: float | None = None
    profit_loss_alpha: float | None = 0.05  # veto a significantly lower average P/L; None: off


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: str
    variants: tuple[Variant, ...]
    control: str
    plan: Plan = field(default_factory=Plan)
    guardrails: Guardrails = field(default_factory=Guardrails)
    # False when the variants were read off the results themselves: their shares are what was
    # observed, so a sample-ratio check against them would test the data against itself.
    split_declared: bool = True

    @property
    def enabled(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.enabled)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.variants)

    def variant(self, variant_id: str) -> Variant:
        for v in self.variants:
            if v.id == variant_id:
                return v
        raise KeyError(variant_id)

    def to_dict(self) -> dict:
        return {"experiment": self.experiment, "control": self.control,
                "variants": [asdict(v) for v in self.variants],
                "plan": asdict(self.plan), "guardrails": asdict(self.guardrails)}

    @classmethod
    def from_dict(cls, data: Any, experiment: str | None = None) -> "ExperimentConfig":
        """Validate a parsed variants file: an object with `variants`, or just the list of them."""
        if isinstance(data, list):
            data = {"variants": data}
        if not isinstance(data, Mapping):
            raise ConfigError([f"expected a JSON object or a list of variants, got "
                               f"{type(data).__name__}"])
        problems = [f"unknown field {k!r} (fields: experiment, control, variants, plan, "
                    f"guardrails)" for k in data
                    if k not in ("experiment", "control", "variants", "plan", "guardrails")]
        key = data.get("experiment", experiment or DEFAULT_EXPERIMENT)
        if experiment is not None and "experiment" in data and data["experiment"] != experiment:
            problems.append(f"experiment {data['experiment']!r} differs from the requested "
                            f"{experiment!r}")
        if not isinstance(key, str) or not key.strip():
            problems.append(f"experiment must be a non-empty string, got {key!r}")
        variants = _variants(data.get("variants"), problems)
        control = data.get("control")
        if control is None and variants:
            control = variants[0].id
        if variants and control is not None:
            by_id = {v.id: v for v in variants}
            if control not in by_id:
                problems.append(f"control {control!r} is not one of the variants "
                                f"({', '.join(by_id)})")
            elif not by_id[control].enabled:
                problems.append(f"control {control!r} is disabled; enable it or name another")
        plan = _section(Plan, data.get("plan"), "plan", problems)
        guards = _section(Guardrails, data.get("guardrails"), "guardrails", problems)
        if plan is not None:
            _check_plan(plan, problems)
        if guards is not None:
            _check_guardrails(guards, problems)
        if problems:
            raise ConfigError(problems)
        return cls(key.strip(), tuple(variants), control, plan, guards)


_VARIANT_FIELDS = tuple(f.name for f in fields(Variant))


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _variants(raw, problems: list[str]) -> list[Variant]:
    if not isinstance(raw, list) or not raw:
        problems.append("variants must be a non-empty list")
        return []
    out: list[Variant] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"variants[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: expected an object, got {type(item).__name__}")
            continue
        if isinstance(item.get("id"), str) and item["id"].strip():
            where += f" ({item['id'].strip()!r})"
        bad = [f"{where}: unknown field {k!r} (fields: {', '.join(_VARIANT_FIELDS)})"
               for k in item if k not in _VARIANT_FIELDS]
        values = {}
        for name in ("id", "name", "model", "reasoning_effort"):
            value = item.get(name)
            if not isinstance(value, str) or not value.strip():
                bad.append(f"{where}: {name} must be a non-empty string, got {value!r}")
            else:
                values[name] = value.strip()
        effort = values.get("reasoning_effort")
        if effort is not None and effort.lower() not in REASONING_EFFORTS:
            bad.append(f"{where}: reasoning_effort {effort!r} is not one of "
                       f"{', '.join(REASONING_EFFORTS)}")
        elif effort is not None:
            values["reasoning_effort"] = effort.lower()
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            bad.append(f"{where}: enabled must be true or false, got {enabled!r}")
        pct = item.get("traffic_percent")
        if not _is_number(pct) or not 0 <= pct <= 100:
            bad.append(f"{where}: traffic_percent must be a number from 0 to 100, got {pct!r}")
        elif enabled is True and pct == 0:
            bad.append(f"{where}: enabled with traffic_percent 0; disable it instead")
        vid = values.get("id")
        if vid is not None:
            if vid in seen:
                bad.append(f"{where}: duplicate id {vid!r} (also variants[{seen[vid]}])")
            else:
                seen[vid] = i
        problems.extend(bad)
        if not bad:
            out.append(Variant(traffic_percent=float(pct), enabled=enabled, **values))
    if len(out) == len(raw):
        enabled = [v for v in out if v.enabled]
        total = sum(Decimal(repr(v.traffic_percent)) for v in enabled)
        if not enabled:
            problems.append("variants: none is enabled")
        elif abs(total - 100) > Decimal("1e-9"):
            parts = " + ".join(f"{v.id} {v.traffic_percent:g}" for v in enabled)
            problems.append(f"variants: enabled traffic_percent sums to {float(total):g} "
                            f"({parts}), must be 100")
    return out


def _section(cls, raw, name: str, problems: list[str]):
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        problems.append(f"{name} must be an object, got {type(raw).__name__}")
        return None
    known = {f.name: f for f in fields(cls)}
    unknown = [k for k in raw if k not in known]
    for k in unknown:
        problems.append(f"{name}: unknown field {k!r} (fields: {', '.join(known)})")
    values = {}
    for k, v in raw.items():
        if k in unknown:
            continue
        kind = str(known[k].type)
        if v is None and "None" in kind:
            values[k] = None
        elif not _is_number(v):
            problems.append(f"{name}.{k} must be a number, got {v!r}")
        elif kind.startswith("int") and float(v) != int(v):
            problems.append(f"{name}.{k} must be a whole number, got {v!r}")
        else:
            values[k] = int(v) if kind.startswith("int") else float(v)
    return cls(**values) if not unknown and len(values) == len(raw) else None


def _check_plan(p: Plan, problems: list[str]) -> None:
    if not 0 < p.alpha < 0.5:
        problems.append(f"plan.alpha must be in (0, 0.5), got {p.alpha!r}")
    if not 0.5 <= p.power < 1:
        problems.append(f"plan.power must be in [0.5, 1), got {p.power!r}")
    if not 0 < p.baseline_win_rate < 1:
        problems.append(f"plan.baseline_win_rate must be in (0, 1), got {p.baseline_win_rate!r}")
    if not 0 < p.min_detectable_lift < 1 - p.baseline_win_rate:
        problems.append(f"plan.min_detectable_lift must be in (0, {1 - p.baseline_win_rate:g}) "
                        f"given baseline_win_rate, got {p.min_detectable_lift!r}")
    if not 1 <= p.looks <= 20:
        problems.append(f"plan.looks must be from 1 to 20, got {p.looks!r}")
    if p.min_signals_per_variant < 1:
        problems.append(f"plan.min_signals_per_variant must be >= 1, "
                        f"got {p.min_signals_per_variant!r}")
    if p.planned_signals is not None and p.planned_signals < 2 * p.looks:
        problems.append(f"plan.planned_signals must be >= 2 * looks, got {p.planned_signals!r}")
    if not 0 < p.srm_alpha < 0.5:
        problems.append(f"plan.srm_alpha must be in (0, 0.5), got {p.srm_alpha!r}")


def _check_guardrails(g: Guardrails, problems: list[str]) -> None:
    for name in ("max_p95_increase", "max_error_rate_increase"):
        if getattr(g, name) < 0:
            problems.append(f"guardrails.{name} must be >= 0, got {getattr(g, name)!r}")
    if g.max_p95_seconds is not None and g.max_p95_seconds <= 0:
        problems.append(f"guardrails.max_p95_seconds must be > 0, got {g.max_p95_seconds!r}")
    if g.max_error_rate is not None and not 0 <= g.max_error_rate <= 1:
        problems.append(f"guardrails.max_error_rate must be in [0, 1], got {g.max_error_rate!r}")
    if g.profit_loss_alpha is not None and not 0 < g.profit_loss_alpha < 1:
        problems.append(f"guardrails.profit_loss_alpha must be in (0, 1) or null, "
                        f"got {g.profit_loss_alpha!r}")


def default_config(experiment: str = DEFAULT_EXPERIMENT) -> ExperimentConfig:
    """The issue's example: GPT-5.1 with high reasoning as control (80%) against medium (20%)."""
    return ExperimentConfig.from_dict({
        "experiment": experiment,
        "control": "gpt51-high",
        "variants": [
            {"id": "gpt51-high", "name": "GPT-5.1 high reasoning", "model": "gpt-5.1",
             "reasoning_effort": "high", "traffic_percent": 80, "enabled": True},
            {"id": "gpt51-medium", "name": "GPT-5.1 medium reasoning", "model": "gpt-5.1",
             "reasoning_effort": "medium", "traffic_percent": 20, "enabled": True},
        ],
    })


def observed_config(experiment: str, counts: Mapping[str, int],
                    control: str | None = None) -> ExperimentConfig:
    """A config read off the results: one variant per id seen (in order of first appearance),
    traffic as observed. The control is `control`, else the variant named "control" (what the
    plan's code calls it), else the largest arm, since a rollout keeps most traffic on the
    incumbent."""
    if control is not None and control not in counts:
        raise ConfigError([f"control {control!r} is not a variant in the results (found: "
                           f"{', '.join(counts) or 'none'})"])
    if control is None and counts:
        control = "control" if "control" in counts else max(counts, key=lambda k: counts[k])
    total = sum(counts.values()) or 1
    order = [control] + [k for k in counts if k != control] if counts else []
    variants = tuple(Variant(id=k, name=k, model="", reasoning_effort="",
                             traffic_percent=100.0 * counts[k] / total) for k in order)
    return ExperimentConfig(experiment, variants, control or "", split_declared=False)


def load_config(path: str | Path, experiment: str | None = None) -> ExperimentConfig:
    """Read and validate a variants file; `experiment` fills in (or must match) its key."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError([f"cannot read variants file {path}: {exc.strerror or exc}"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}: not valid JSON: {exc}"]) from None
    try:
        return ExperimentConfig.from_dict(data, experiment)
    except ConfigError as exc:
        raise ConfigError([f"{path}: {p}" for p in exc.problems]) from None


def _config(variants) -> ExperimentConfig:
    if isinstance(variants, ExperimentConfig):
        return variants
    items = [asdict(v) if isinstance(v, Variant) else v for v in variants]
    return ExperimentConfig.from_dict({"variants": items})
