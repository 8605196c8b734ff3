"""A/B tests of AI model variants: which model and reasoning effort make better trading signals.

Pure core, no Dagster: configuration, assignment, results intake, a simulator, the analysis and the
`atge abtest` CLI. The statistics live in `abtest_stats`.

Assignment is GrowthBook's, bit for bit (hash version 2, the experiment key as the seed, its bucket
ranges), so a user lands in the same variant here, in any GrowthBook SDK and in every release, and
the experiment can move to GrowthBook later without reshuffling anyone. Disabled variants keep
their place with weight 0, as GrowthBook does with a zero weight.

Analysis, decided by the primary metric, the win rate (wins / resolved signals):
- Group-sequential, not fixed-horizon, and not mSPRT. The asset re-runs the analysis on a schedule,
  so it must be safe to look often. Looks are fixed in data, at K equal steps of the planned number
  of resolved signals, and each is evaluated on the time-ordered prefix it covers (see
  abtest_stats). A fixed horizon would have nothing to say until the end. This design has about the
  same power and stops early on big lifts: in benchmarks/abtest_accuracy.py a +10 point lift is
  called at 55% of the horizon on average. mSPRT is safe under peeking too, but with the same
  signals it found a +6 point lift 72% of the time, against 88% here. Results after the horizon
  are ignored, so a finished experiment keeps its answer.
- Two or more challengers: Holm's procedure run on the sequential boundaries (the graphical
  approach of Maurer & Bretz, 2013). Each hypothesis is tested at alpha / (hypotheses left),
  and whenever one is rejected the others are re-tested at the larger level, at every look so far.
- A decision needs at least `min_signals_per_variant` resolved signals in both arms of a look,
  a clean sample-ratio check (chi-square against the configured traffic, alarm at p < 0.001), and
  no guardrail breach: p95 analysis time or error rate worse than control beyond a margin, or
  profit/loss significantly worse. Guardrails look at all the data, as they only ever veto.
- Profit/loss and analysis time are reported with Welch intervals. They do not pick a winner, and
  those p-values are for the data as it stands, not corrected for looks.
Caveats. The unit of assignment is the user but the unit of analysis is the signal. A user with
many signals makes the counts more variable than the tests assume. The strict SRM alarm level
allows for that, but one very heavy user can still trip it. Also, looks take the first n results
in `timestamp` order. If that timestamp is when the outcome became known, the rows only ever
append and a past look never changes. If it is when the signal was made, a late outcome can move
an early look a little.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import numbers
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

import numpy as np

from atge_assets.abtest import stats as st
from atge_assets.lib.jsonl import plain as _plain

DEFAULT_EXPERIMENT = "einstein-reasoning-effort"
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
WIN, LOSS, PENDING, ERROR = "win", "loss", "pending", "error"
OUTCOMES = (WIN, LOSS, PENDING, ERROR)
_CODE = {WIN: 1, LOSS: 0, PENDING: 2, ERROR: 3}
RESULT_COLUMNS = ("variant_id", "signal_id", "analysis_time", "confidence", "outcome",
                  "profit_loss", "timestamp")
CSV_COLUMNS = ("experiment",) + RESULT_COLUMNS
# Above this a timestamp is milliseconds (year 5138 in seconds), a common mix-up.
_MAX_EPOCH_S = 1e11
_MAX_BAD_LISTED = 200

COLLECTING, WINNER, NO_WINNER, VETOED, SRM, NO_DATA, NO_COMPARISON = (
    "collecting", "winner", "no_winner", "vetoed", "srm", "no_data", "no_comparison")


class ConfigError(ValueError):
    """A variants configuration that cannot run; the message names every problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ResultsError(ValueError):
    """Results that cannot be read at all (missing file, missing columns, no usable row)."""


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
    """How much evidence a decision needs. `alpha` is one-sided: the false-winner rate."""
    alpha: float = 0.025
    # The bar is 80% at a 6-point lift; planning for 85% keeps it when control's win rate or the
    # split is a little off the plan's guesses.
    power: float = 0.85
    min_detectable_lift: float = 0.06  # win-rate points the plan is powered for (0.06 = 6 points)
    baseline_win_rate: float = 0.50  # planning guess for control; 0.5 is the worst case
    looks: int = 5
    min_signals_per_variant: int = 100
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


# -- results intake --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BadRow:
    line: int  # CSV line number (header is line 1), or the database row id
    reason: str
    raw: dict

    def as_dict(self) -> dict:
        return {"line": self.line, "reason": self.reason,
                "raw": {str(k): _plain(v) for k, v in self.raw.items()}}


@dataclass
class Intake:
    """Validated results of one experiment, the rows that were kept out and why."""
    rows: list[dict]
    bad: list[BadRow] = field(default_factory=list)
    other_experiments: dict[str, int] = field(default_factory=dict)
    superseded: int = 0  # pending rows replaced by their signal's outcome
    source: str = "records"


def _number(value, name: str, problems: list[str], required: bool) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.append(f"{name} is missing")
        return None
    if isinstance(value, bool):
        problems.append(f"{name} {value!r} is not a number")
        return None
    try:
        x = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        problems.append(f"{name} {value!r} is not a number")
        return None
    if not math.isfinite(x):
        problems.append(f"{name} {value!r} is not a finite number")
        return None
    return x


def _timestamp(value, problems: list[str]) -> float | None:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value.strip() and not _looks_numeric(value):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            problems.append(f"timestamp {value!r} is neither seconds since the epoch nor ISO 8601")
            return None
    else:
        x = _number(value, "timestamp", problems, required=True)
        if x is None:
            return None
        if x > _MAX_EPOCH_S:
            problems.append(f"timestamp {value!r} looks like milliseconds; expected seconds "
                            f"since the epoch")
            return None
        if x <= 0:
            problems.append(f"timestamp {value!r} is not after 1970")
            return None
        return x
    if dt.tzinfo is None:  # naive times are taken as UTC, what the app's database writes
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _text(value, name: str, problems: list[str]) -> str | None:
    if value is None or not str(value).strip():
        problems.append(f"{name} is missing")
        return None
    text = str(value).strip()
    if len(text) > 128:
        problems.append(f"{name} is longer than 128 characters")
        return None
    return text


def _validate(raw: Mapping, config: ExperimentConfig) -> tuple[dict | None, list[str]]:
    problems: list[str] = []
    variant = _text(raw.get("variant_id"), "variant_id", problems)
    if variant is not None and variant not in config.ids:
        problems.append(f"unknown variant_id {variant!r} (experiment {config.experiment} has "
                        f"{', '.join(config.ids)})")
    signal = _text(raw.get("signal_id"), "signal_id", problems)
    outcome = raw.get("outcome")
    outcome = outcome.strip().lower() if isinstance(outcome, str) else outcome
    if outcome not in OUTCOMES:
        problems.append(f"outcome {raw.get('outcome')!r} is not one of {', '.join(OUTCOMES)}")
        outcome = None
    # A failed analysis has no signal to time, rate or trade; everything else must have them.
    produced = outcome in (WIN, LOSS, PENDING)
    analysis_time = _number(raw.get("analysis_time"), "analysis_time", problems, produced)
    if analysis_time is not None and analysis_time < 0:
        problems.append(f"analysis_time {raw.get('analysis_time')!r} is negative")
    confidence = _number(raw.get("confidence"), "confidence", problems, produced)
    if confidence is not None and not 0 <= confidence <= 1:
        problems.append(f"confidence {raw.get('confidence')!r} is outside 0-1"
                        + (" (a percentage? write 0.85 for 85%)" if 1 < confidence <= 100 else ""))
    resolved = outcome in (WIN, LOSS)
    profit_loss = _number(raw.get("profit_loss"), "profit_loss", problems, resolved)
    timestamp = _timestamp(raw.get("timestamp"), problems)
    if problems:
        return None, problems
    return {"experiment": config.experiment, "variant_id": variant, "signal_id": signal,
            "analysis_time": analysis_time, "confidence": confidence, "outcome": outcome,
            "profit_loss": profit_loss if resolved else None, "timestamp": timestamp}, []


def intake_records(records: Iterable[Mapping], config: ExperimentConfig, *,
                   source: str = "records", lines: Iterable[int] | None = None) -> Intake:
    """Validate result rows (dicts with the table's columns; strings or typed values).

    Rows of other experiments are counted, not judged. A row that fails validation is a BadRow
    with its line and every problem found. A signal recorded twice keeps its outcome: a pending
    row gives way to the resolved one, and a second resolved row is bad.
    """
    intake = Intake(rows=[], source=source)
    kept: dict[str, tuple[int, int]] = {}  # signal_id -> (index in intake.rows, its line)
    dropped: set[int] = set()
    line_iter = iter(lines) if lines is not None else None
    for position, raw in enumerate(records, 1):
        row_id = raw.get("id")
        line = (next(line_iter) if line_iter is not None
                else row_id if isinstance(row_id, int) and not isinstance(row_id, bool)
                else position)
        exp = raw.get("experiment")
        exp = exp.strip() if isinstance(exp, str) else exp
        if exp not in (None, "") and exp != config.experiment:
            key = str(exp)
            intake.other_experiments[key] = intake.other_experiments.get(key, 0) + 1
            continue
        row, problems = _validate(raw, config)
        if row is None:
            intake.bad.append(BadRow(line, "; ".join(problems), dict(raw)))
            continue
        sid = row["signal_id"]
        if sid in kept:
            i, kept_line = kept[sid]
            if intake.rows[i]["outcome"] == PENDING:
                dropped.add(i)
                intake.superseded += 1
            elif row["outcome"] == PENDING:
                intake.superseded += 1
                continue
            else:
                intake.bad.append(BadRow(line, f"duplicate signal_id {sid!r} (already recorded "
                                               f"at line {kept_line})", dict(raw)))
                continue
        kept[sid] = (len(intake.rows), line)
        intake.rows.append(row)
    if dropped:
        intake.rows = [r for i, r in enumerate(intake.rows) if i not in dropped]
    return intake


def read_results_csv(source: str | Path | TextIO, config: ExperimentConfig) -> Intake:
    """Read a results CSV (header: the table's columns, `experiment` optional, extra ignored)."""
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "results")
    try:
        handle = (open(source, newline="", encoding="utf-8-sig")
                  if isinstance(source, (str, Path)) else source)
    except OSError as exc:
        raise ResultsError(f"cannot read results file {name}: {exc.strerror or exc}") from None
    try:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ResultsError(f"{name} is empty; expected a header with "
                               f"{', '.join(RESULT_COLUMNS)}") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ResultsError(f"{name}: not a readable CSV: {exc}") from None
        columns = [h.strip().lower() for h in header]
        missing = [c for c in RESULT_COLUMNS if c not in columns]
        if missing:
            raise ResultsError(f"{name}: missing column(s) {', '.join(missing)} (header: "
                               f"{', '.join(columns) or 'empty'})")
        dupes = sorted({c for c in columns if c and columns.count(c) > 1})
        if dupes:
            raise ResultsError(f"{name}: column(s) {', '.join(dupes)} appear more than once")
        records, lines, short = [], [], []
        try:
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                line = reader.line_num
                if len(values) != len(columns):
                    short.append(BadRow(line, f"expected {len(columns)} fields, got "
                                              f"{len(values)}", {"fields": values}))
                    continue
                records.append(dict(zip(columns, values)))
                lines.append(line)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ResultsError(f"{name}: unreadable at line {reader.line_num}: {exc}") from None
    finally:
        if isinstance(source, (str, Path)):
            handle.close()
    intake = intake_records(records, config, source=name, lines=lines)
    intake.bad = sorted(short + intake.bad, key=lambda b: b.line)
    return intake


def results_from_store(store, config: ExperimentConfig, since: float | None = None) -> Intake:
    """The experiment's rows of `einstein_ab_test_results`, validated (BadRow.line = row id)."""
    return intake_records(store.ab_results(config.experiment, since), config,
                          source="einstein_ab_test_results")


def write_results_csv(rows: Iterable[Mapping], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})


class Results:
    """Validated rows as arrays in time order (ties by signal id), for fast repeated analysis."""

    def __init__(self, rows: Sequence[Mapping]):
        n = len(rows)
        ts = np.fromiter((r["timestamp"] for r in rows), float, n)
        sid = np.array([str(r["signal_id"]) for r in rows], dtype=str) if n else np.array([], str)
        order = np.lexsort((sid, ts))

        def col(name):
            return np.array([np.nan if r[name] is None else r[name] for r in rows],
                            dtype=float).reshape(n)[order]

        self.timestamp = ts[order]
        self.signal_id = sid[order]
        # Integer codes: comparing them is ~20x cheaper than comparing id strings.
        codes: dict[str, int] = {}
        self.variant = np.fromiter((codes.setdefault(r["variant_id"], len(codes)) for r in rows),
                                   np.int16, n)[order]
        self.variant_ids = codes
        self.outcome = np.fromiter((_CODE[r["outcome"]] for r in rows), np.int8, n)[order]
        self.analysis_time = col("analysis_time")
        self.confidence = col("confidence")
        self.profit_loss = col("profit_loss")

    def __len__(self) -> int:
        return len(self.timestamp)

    def _take(self, index) -> "Results":
        out = object.__new__(Results)
        for k, v in vars(self).items():
            setattr(out, k, v[index] if isinstance(v, np.ndarray) else v)
        return out

    def mask(self, variant_id: str) -> np.ndarray:
        return self.variant == self.variant_ids.get(variant_id, -1)

    def head(self, n: int) -> "Results":
        """The first n rows in time order: the data as it stood then."""
        return self._take(slice(0, n))

    def until(self, timestamp: float) -> "Results":
        return self.head(int(np.searchsorted(self.timestamp, timestamp, side="right")))


# -- simulation ------------------------------------------------------------------------------------
def _per_variant(value, ids: Sequence[str], name: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        missing = [i for i in ids if i not in value]
        if missing:
            raise ValueError(f"{name}: no value for variant(s) {', '.join(missing)}")
        return {i: float(value[i]) for i in ids}
    return {i: float(value) for i in ids}


def simulate_results(
    variants: ExperimentConfig | Sequence[Variant | Mapping],
    n_signals: int,
    true_win_rates: Mapping[str, float] | float,
    *,
    seed: int = 0,
    experiment: str | None = None,
    analysis_time: Mapping[str, float] | float = 20.0,
    analysis_time_sigma: float = 0.35,
    error_rate: Mapping[str, float] | float = 0.01,
    pending_rate: float = 0.0,
    avg_win: Mapping[str, float] | float = 100.0,
    avg_loss: Mapping[str, float] | float = 100.0,
    traffic: Mapping[str, float] | None = None,
    start: float = 1_767_225_600.0,
    signals_per_hour: float = 60.0,
) -> list[dict]:
    """Result rows with known truth: rows of `einstein_ab_test_results` for n_signals signals.

    Each signal goes to an enabled variant with the configured traffic (or `traffic`, percent per
    variant, to simulate a broken split). Drawing the variant at random is what hashing fresh user
    ids does, at a fraction of the cost. Per variant: win rate among resolved signals, median
    analysis time in seconds (log-normal with `analysis_time_sigma`), error rate, mean win and
    loss sizes (profit_loss is +win or -loss, exponential). Confidence is Beta(7, 3), mean 0.7.
    `pending_rate` of the signals have no outcome yet. Timestamps are a Poisson stream from `start`.
    """
    config = _config(variants)
    key = experiment or config.experiment
    ids = [v.id for v in config.enabled]
    if isinstance(n_signals, bool) or not isinstance(n_signals, int) or n_signals < 0:
        raise ValueError(f"n_signals must be a whole number >= 0, got {n_signals!r}")
    win = _per_variant(true_win_rates, ids, "true_win_rates")
    med = _per_variant(analysis_time, ids, "analysis_time")
    err = _per_variant(error_rate, ids, "error_rate")
    gain = _per_variant(avg_win, ids, "avg_win")
    loss = _per_variant(avg_loss, ids, "avg_loss")
    for name, values, lo, hi in (("true_win_rates", win, 0, 1), ("error_rate", err, 0, 1)):
        if any(not lo <= x <= hi for x in values.values()):
            raise ValueError(f"{name} must be in [{lo}, {hi}]")
    shares = np.array(list(_per_variant(traffic, ids, "traffic").values()) if traffic else
                      [v.traffic_percent for v in config.enabled], dtype=float)
    rng = np.random.default_rng(seed)
    arm = rng.choice(len(ids), size=n_signals, p=shares / shares.sum())
    p_win = np.array([win[i] for i in ids])[arm]
    p_err = np.array([err[i] for i in ids])[arm]
    u = rng.random(n_signals)
    is_err = u < p_err
    is_pending = ~is_err & (rng.random(n_signals) < pending_rate)
    is_win = rng.random(n_signals) < p_win
    times = np.array([med[i] for i in ids])[arm] * np.exp(
        analysis_time_sigma * rng.standard_normal(n_signals))
    conf = rng.beta(7, 3, n_signals)
    size = rng.exponential(1.0, n_signals)
    pl = np.where(is_win, np.array([gain[i] for i in ids])[arm] * size,
                  -np.array([loss[i] for i in ids])[arm] * size)
    stamps = start + np.cumsum(rng.exponential(3600.0 / signals_per_hour, n_signals))
    outcome = np.where(is_err, ERROR, np.where(is_pending, PENDING, np.where(is_win, WIN, LOSS)))
    resolved = ~is_err & ~is_pending
    # Whole columns to Python values at once: per-value float() and round() cost more than the
    # random draws.
    columns = zip(np.array(ids, dtype=object)[arm].tolist(), outcome.tolist(),
                  np.where(is_err, None, np.round(times, 3).astype(object)).tolist(),
                  np.where(is_err, None, np.round(conf, 4).astype(object)).tolist(),
                  np.where(resolved, np.round(pl, 2).astype(object), None).tolist(),
                  np.round(stamps, 3).tolist())
    return [{"experiment": key, "variant_id": vid, "signal_id": f"sim{seed}-{k:07d}",
             "analysis_time": t, "confidence": c, "outcome": o, "profit_loss": p, "timestamp": ts}
            for k, (vid, o, t, c, p, ts) in enumerate(columns)]


# -- analysis --------------------------------------------------------------------------------------
def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _p95(x: np.ndarray) -> float | None:
    """np.percentile(x, 95) (linear interpolation) without its per-call overhead."""
    if not len(x):
        return None
    x = np.sort(x)
    pos = 0.95 * (len(x) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(x) - 1)
    return float(x[lo] + (x[hi] - x[lo]) * (pos - lo))


def _arm(res: Results, variant_id: str) -> dict:
    """One variant's rows, split the ways the figures and tests need them."""
    m = res.mask(variant_id)
    out = res.outcome[m]
    ok = out != _CODE[ERROR]
    resolved = out <= _CODE[WIN]  # codes: loss 0, win 1
    times = res.analysis_time[m][ok]
    return {"outcome": out, "ok": ok, "resolved": resolved, "time": times[np.isfinite(times)],
            "pl": res.profit_loss[m][resolved], "confidence": res.confidence[m][ok]}


def _figures(arm: dict, v: Variant, control: str, total_enabled: int) -> dict:
    out = arm["outcome"]
    signals, wins = len(out), int(np.count_nonzero(out == _CODE[WIN]))
    n_res = int(np.count_nonzero(arm["resolved"]))
    errors = signals - int(np.count_nonzero(arm["ok"]))
    times, pl = arm["time"], arm["pl"]
    return {
        "name": v.name, "model": v.model, "reasoning_effort": v.reasoning_effort,
        "control": v.id == control, "enabled": v.enabled,
        "traffic_percent": v.traffic_percent if v.enabled else 0.0,
        "observed_percent": (100.0 * signals / total_enabled
                             if v.enabled and total_enabled else None),
        "signals": signals, "resolved": n_res, "wins": wins, "losses": n_res - wins,
        "pending": int(np.count_nonzero(out == _CODE[PENDING])), "errors": errors,
        "win_rate": wins / n_res if n_res else None,
        "win_rate_ci": list(st.wilson(wins, n_res)) if n_res else None,
        "avg_analysis_time": _mean(times),
        "p95_analysis_time": _p95(times),
        "avg_confidence": _mean(arm["confidence"]),
        "avg_profit_loss": _mean(pl),
        "total_profit_loss": float(pl.sum()) if len(pl) else 0.0,
        "error_rate": errors / signals if signals else None,
    }


def planned_horizon(config: ExperimentConfig) -> int:
    """Resolved signals (all enabled variants) at which the last look falls."""
    plan = config.plan
    if plan.planned_signals is not None:
        return int(plan.planned_signals)
    enabled = config.enabled
    challengers = [v for v in enabled if v.id != config.control]
    if not challengers:
        return 0
    total = sum(v.traffic_percent for v in enabled)
    share_c = config.variant(config.control).traffic_percent / total
    # Planned at Holm's first, strictest level: enough for every comparison in the worst case.
    alpha = plan.alpha / len(challengers)
    return max(st.planned_signals(plan.baseline_win_rate, plan.min_detectable_lift, share_c,
                                  v.traffic_percent / total, alpha, plan.power, int(plan.looks))
               for v in challengers)


def _look_stats(res: Results, control: str, variant: str, look_sizes: list[int],
                min_n: int) -> list[dict]:
    """z of the win-rate difference at each look, on the first n resolved signals of the test."""
    win_seq = res.outcome == _CODE[WIN]
    is_c, is_v = res.mask(control), res.mask(variant)
    # Running counts, so every look is one lookup into them.
    cum = np.cumsum(np.stack([is_c, is_v, is_c & win_seq, is_v & win_seq]), axis=1)
    out = []
    for k, n in enumerate(look_sizes, 1):
        n_c, n_v, w_c, w_v = (int(x) for x in cum[:, n - 1])
        enough = n_c >= min_n and n_v >= min_n
        z = st.pooled_z(w_c, n_c, w_v, n_v) if n_c and n_v else None
        diff = w_v / n_v - w_c / n_c if n_c and n_v else None
        se = (math.sqrt((w_c / n_c) * (1 - w_c / n_c) / n_c + (w_v / n_v) * (1 - w_v / n_v) / n_v)
              if n_c and n_v else None)
        out.append({"look": k, "signals": n, "n_control": n_c, "n_variant": n_v, "diff": diff,
                    "se": se, "z": z, "enough": enough})
    return out


def _sequential(config: ExperimentConfig, res: Results, horizon: int) -> tuple[dict, dict]:
    """Holm on group-sequential boundaries, over every look the data has reached."""
    plan = config.plan
    looks = int(plan.looks)
    enabled = np.zeros(len(res), bool)
    for v in config.enabled:
        enabled |= res.mask(v.id)
    # Looks count resolved signals of enabled variants only: "the first n" are n signals that
    # carry information about the win rate.
    test = res._take(enabled & (res.outcome <= _CODE[WIN]))
    n_resolved = len(test)
    sizes = [math.ceil((k + 1) * horizon / looks) for k in range(looks)]
    reached = [n for n in sizes if n <= n_resolved]
    challengers = [v.id for v in config.enabled if v.id != config.control]
    stats = {v: _look_stats(test, config.control, v, reached, int(plan.min_signals_per_variant))
             for v in challengers}

    def first_cross(v: str, level: float, sign: int) -> int | None:
        bounds = st.obf_bounds(level, looks)
        for s in stats[v]:
            if s["enough"] and s["z"] is not None and sign * s["z"] >= bounds[s["look"] - 1]:
                return s["look"]
        return None

    result: dict[str, dict] = {v: {"result": None, "at_look": None, "alpha_level": None}
                               for v in challengers}
    open_ = list(challengers)
    while open_:
        level = plan.alpha / len(open_)
        crossed = {v: first_cross(v, level, +1) for v in open_}
        crossed = {v: k for v, k in crossed.items() if k is not None}
        if not crossed:
            break
        for v, k in crossed.items():
            result[v] = {"result": "better", "at_look": k, "alpha_level": level}
            open_.remove(v)
    # Harm is reported at the strictest (Bonferroni) level; it stops a variant, never picks one.
    strict = plan.alpha / max(len(challengers), 1)
    for v in open_:
        k = first_cross(v, strict, -1)
        result[v] = {"result": "worse" if k else None, "at_look": k,
                     "alpha_level": strict if k else plan.alpha / len(open_)}
    for v in challengers:
        bounds = st.obf_bounds(result[v]["alpha_level"], looks)
        last = stats[v][-1] if stats[v] else None
        rci = None
        if last and last["se"] is not None:
            b = bounds[last["look"] - 1]
            rci = [last["diff"] - b * last["se"], last["diff"] + b * last["se"]]
        result[v].update({
            "boundaries": list(bounds),
            "looks": [{"look": s["look"], "signals": s["signals"], "n_control": s["n_control"],
                       "n_variant": s["n_variant"], "diff": s["diff"], "z": s["z"],
                       "boundary": bounds[s["look"] - 1], "enough_signals": s["enough"]}
                      for s in stats[v]],
            "repeated_ci": rci,
        })
    meta = {"resolved_signals": n_resolved, "planned_signals": horizon, "looks": looks,
            "looks_reached": len(reached), "look_sizes": sizes,
            "next_look_at": sizes[len(reached)] if len(reached) < looks else None,
            "horizon_reached": len(reached) == looks}
    return result, meta


def _guardrails(g: Guardrails, fc: dict, fv: dict, pl_test: dict | None) -> dict:
    checks = {}
    p95_c, p95_v = fc["p95_analysis_time"], fv["p95_analysis_time"]
    change = p95_v / p95_c - 1 if p95_c and p95_v is not None else None
    breach = change is not None and change > g.max_p95_increase
    if g.max_p95_seconds is not None and p95_v is not None and p95_v > g.max_p95_seconds:
        breach = True
    checks["analysis_time_p95"] = {"control": p95_c, "variant": p95_v, "change": change,
                                   "max_increase": g.max_p95_increase,
                                   "max_seconds": g.max_p95_seconds, "breached": breach}
    e_c, e_v = fc["error_rate"], fv["error_rate"]
    rise = e_v - e_c if e_c is not None and e_v is not None else None
    breach = rise is not None and rise > g.max_error_rate_increase
    if g.max_error_rate is not None and e_v is not None and e_v > g.max_error_rate:
        breach = True
    checks["error_rate"] = {"control": e_c, "variant": e_v, "increase": rise,
                            "max_increase": g.max_error_rate_increase,
                            "max_rate": g.max_error_rate, "breached": breach}
    p_lower = pl_test["p_lower"] if pl_test else None
    breach = (g.profit_loss_alpha is not None and p_lower is not None
              and p_lower < g.profit_loss_alpha)
    checks["profit_loss"] = {"diff": pl_test["diff"] if pl_test else None,
                             "p_value_lower": p_lower, "alpha": g.profit_loss_alpha,
                             "breached": breach}
    breached = [k for k, c in checks.items() if c["breached"]]
    return {**checks, "breached": breached, "veto": bool(breached)}


def analyze(results: "Results | Intake | Sequence[Mapping]",
            config: ExperimentConfig | None = None) -> dict:
    """The experiment's state: per-variant figures, SRM, tests, and `winner` (id or None).

    `results`: validated `Results`, an `Intake`, or raw rows (validated here; bad ones are
    reported under `bad_rows`). Returns a JSON-serialisable dict; see `status` and
    `decision_reason` for the decision and `final` for whether the experiment is over.
    """
    config = config or default_config()
    intake = None
    if isinstance(results, Intake):
        intake = results
    elif not isinstance(results, Results):
        intake = intake_records(results, config)
    res = Results(intake.rows) if intake is not None else results
    enabled = config.enabled
    enabled_ids = [v.id for v in enabled]
    control = config.control
    arms = {v.id: _arm(res, v.id) for v in config.variants}
    counts = {v: len(arms[v]["outcome"]) for v in enabled_ids}
    total_enabled = sum(counts.values())
    figures = {v.id: _figures(arms[v.id], v, control, total_enabled) for v in config.variants}

    shares = [v.traffic_percent / 100 for v in enabled]
    srm = st.srm_chi2([counts[v] for v in enabled_ids], shares)
    srm_alarm = srm["p_value"] is not None and srm["p_value"] < config.plan.srm_alpha
    srm = {**srm, "alarm": srm_alarm, "alpha": config.plan.srm_alpha,
           "observed": counts,
           "expected": {v: total_enabled * s for v, s in zip(enabled_ids, shares)}}

    horizon = planned_horizon(config)
    seq, meta = _sequential(config, res, horizon) if horizon else ({}, {})
    tests = []
    for v in enabled_ids:
        if v == control:
            continue
        fc, fv = figures[control], figures[v]
        diff = (fv["win_rate"] - fc["win_rate"]
                if fc["win_rate"] is not None and fv["win_rate"] is not None else None)
        ci = st.newcombe_diff(fc["wins"], fc["resolved"], fv["wins"], fv["resolved"])
        z = st.pooled_z(fc["wins"], fc["resolved"], fv["wins"], fv["resolved"])
        pl_test = st.welch(arms[control]["pl"], arms[v]["pl"])
        tests.append({
            "variant": v, "control": control,
            "win_rate": {"control": fc["win_rate"], "variant": fv["win_rate"], "diff": diff,
                         "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
                         "ci": "Newcombe hybrid score, 95%, all data, not adjusted for looks",
                         "z": z, "p_value_nominal": 2 * st.norm_sf(abs(z)) if z is not None
                         else None},
            "sequential": seq.get(v),
            "profit_loss": pl_test,
            "analysis_time": st.welch(arms[control]["time"], arms[v]["time"]),
            "guardrails": _guardrails(config.guardrails, fc, fv, pl_test),
        })

    status, winner, reason, final = _decide(config, tests, meta, srm, total_enabled)
    out = {
        "experiment": config.experiment, "control": control, "winner": winner, "status": status,
        "decision_reason": reason, "final": final,
        "method": {
            "design": "group-sequential, looks at fixed fractions of the planned resolved signals",
            "spending": "Lan-DeMets O'Brien-Fleming", "alpha_one_sided": config.plan.alpha,
            "power": config.plan.power, "min_detectable_lift": config.plan.min_detectable_lift,
            "multiple_comparisons": "Holm on the sequential boundaries (Maurer-Bretz)",
            "min_signals_per_variant": config.plan.min_signals_per_variant, **meta,
        },
        "variants": figures, "srm": srm, "tests": tests,
    }
    if intake is not None:
        out.update(rows_used=len(intake.rows), bad_row_count=len(intake.bad),
                   bad_rows=[b.as_dict() for b in intake.bad[:_MAX_BAD_LISTED]],
                   other_experiments=intake.other_experiments, superseded=intake.superseded)
    return _plain(out)


def _decide(config: ExperimentConfig, tests: list[dict], meta: dict, srm: dict,
            total: int) -> tuple[str, str | None, str, bool]:
    """(status, winner, reason, final)."""
    if not tests:
        return NO_COMPARISON, None, "only one enabled variant: nothing to compare", False
    if total == 0:
        return NO_DATA, None, "no results for the enabled variants yet", False
    if srm["alarm"]:
        obs = ", ".join(f"{v} {n}" for v, n in srm["observed"].items())
        exp = ", ".join(f"{v} {e:.0f}" for v, e in srm["expected"].items())
        return SRM, None, (f"sample ratio mismatch: signals {obs} against expected {exp} "
                           f"(chi-square p={srm['p_value']:.2g} < {srm['alpha']:g}); the split "
                           f"is broken, so no result can be trusted until it is fixed"), False
    better = [t for t in tests if t["sequential"]["result"] == "better"]
    worse = [t for t in tests if t["sequential"]["result"] == "worse"]
    ok = [t for t in better if not t["guardrails"]["veto"]]
    vetoed = [t for t in better if t["guardrails"]["veto"]]
    veto_text = "; ".join(f"{t['variant']} beat control but breached "
                          f"{', '.join(t['guardrails']['breached'])}" for t in vetoed)
    if ok:
        best = max(ok, key=lambda t: t["win_rate"]["diff"] or 0.0)
        s = best["sequential"]
        look = s["looks"][s["at_look"] - 1]
        reason = (f"{best['variant']} wins: win rate {look['diff'] * 100:+.1f} points over "
                  f"{config.control} at look {s['at_look']} of {meta['looks']} "
                  f"({look['signals']} resolved signals), z={look['z']:.2f} >= boundary "
                  f"{look['boundary']:.2f} (one-sided alpha {s['alpha_level']:.3g}); "
                  f"guardrails passed")
        return WINNER, best["variant"], reason + (f"; {veto_text}" if veto_text else ""), True
    done = meta["horizon_reached"] or len(better) + len(worse) == len(tests)
    progress = (f"{meta['resolved_signals']} of {meta['planned_signals']} planned resolved "
                f"signals, look {meta['looks_reached']} of {meta['looks']}")
    if vetoed:
        return VETOED, None, f"no winner: {veto_text}; keep {config.control}", done
    if done:
        why = ("every variant is significantly worse than control" if len(worse) == len(tests)
               else "no variant beat control by the planned horizon")
        extra = f" ({', '.join(t['variant'] for t in worse)} significantly worse)" if worse and \
            len(worse) < len(tests) else ""
        return NO_WINNER, None, f"no winner: {why}{extra} ({progress}); keep {config.control}", True
    if meta["looks_reached"] == 0:
        return COLLECTING, None, (f"collecting: {progress}; the first look is at "
                                  f"{meta['next_look_at']}"), False
    short = [t["variant"] for t in tests
             if t["sequential"]["looks"] and not t["sequential"]["looks"][-1]["enough_signals"]]
    note = (f"; below {config.plan.min_signals_per_variant} resolved signals in an arm for "
            f"{', '.join(short)}" if short else "")
    return COLLECTING, None, (f"collecting: {progress}, no boundary crossed yet{note}; next look "
                              f"at {meta['next_look_at']} resolved signals"), False


# -- CLI -------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atge abtest",
                                description="A/B tests of AI model variants")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="analyse results; the last stdout line is JSON with --json")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", metavar="FILE.csv", help="results CSV")
    src.add_argument("--db", metavar="URL", help="history database URL (einstein_ab_test_results)")
    a.add_argument("--variants", metavar="FILE.json", help="variants config (default: the "
                   "GPT-5.1 high 80%% / medium 20%% example)")
    a.add_argument("--experiment", metavar="KEY", help="experiment key (default: the config's)")
    a.add_argument("--json", action="store_true", help="print the analysis as one JSON line")
    s = sub.add_parser("assign", help="which variant a user gets")
    _assign_args(s)
    m = sub.add_parser("simulate", help="write simulated results as CSV (known true win rates)")
    m.add_argument("--variants", metavar="FILE.json")
    m.add_argument("--experiment", metavar="KEY")
    m.add_argument("--signals", type=int, default=4000)
    m.add_argument("--win-rates", required=True, metavar="ID=RATE,...",
                   help="true win rate per enabled variant, e.g. gpt51-high=0.55,gpt51-medium=0.6")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", metavar="FILE.csv", help="default: stdout")
    return p


def _assign_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="KEY")
    p.add_argument("--user", required=True, metavar="ID")
    p.add_argument("--variants", metavar="FILE.json")
    p.add_argument("--json", action="store_true")


def _load(args) -> ExperimentConfig:
    if args.variants:
        return load_config(args.variants, args.experiment)
    return default_config(args.experiment or DEFAULT_EXPERIMENT)


def _run_assign(args, out: TextIO) -> int:
    config = _load(args)
    variant = config.variant(assign(args.user, config.experiment, config))
    if args.json:
        print(json.dumps({"experiment": config.experiment, "user": args.user,
                          "variant_id": variant.id, "bucket": bucket(args.user, config.experiment),
                          "variant": asdict(variant)}), file=out)
    else:
        print(variant.id, file=out)
    return 0


def _run_analyze(args, out: TextIO, err: TextIO) -> int:
    config = _load(args)
    if args.results:
        intake = read_results_csv(args.results, config)
    else:
        from atge_assets.abtest.history import AbtestHistory

        store = AbtestHistory(args.db)
        try:
            intake = results_from_store(store, config)
        finally:
            store.dispose()
    where = "line" if args.results else "row id"
    for b in intake.bad[:_MAX_BAD_LISTED]:
        print(f"atge abtest: {intake.source}: {where} {b.line}: {b.reason} (row left out)",
              file=err)
    if len(intake.bad) > _MAX_BAD_LISTED:
        print(f"atge abtest: ... and {len(intake.bad) - _MAX_BAD_LISTED} more bad rows", file=err)
    if not intake.rows and intake.bad:
        raise ResultsError(f"{intake.source}: none of the {len(intake.bad)} rows is usable")
    if not intake.rows and intake.other_experiments:
        found = ", ".join(f"{k} ({n} rows)" for k, n in intake.other_experiments.items())
        raise ResultsError(f"{intake.source}: no rows of experiment {config.experiment!r}; "
                           f"found {found}; pass --experiment or --variants")
    result = analyze(intake, config)
    if args.json:
        print(json.dumps(result, allow_nan=False), file=out)
    else:
        print(format_summary(result), file=out)
    return 0


def _run_simulate(args, out: TextIO) -> int:
    config = _load(args)
    rates = {}
    for part in args.win_rates.split(","):
        vid, _, rate = part.partition("=")
        try:
            rates[vid.strip()] = float(rate)
        except ValueError:
            raise ConfigError([f"--win-rates: {part!r} is not ID=RATE"]) from None
    try:
        rows = simulate_results(config, args.signals, rates, seed=args.seed)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            write_results_csv(rows, f)
    else:
        write_results_csv(rows, out)
    return 0


def format_summary(result: dict) -> str:
    """A human-readable summary of an analysis."""
    lines = [f"experiment {result['experiment']}: {result['status'].upper()}"
             + (f" {result['winner']}" if result["winner"] else ""),
             f"  {result['decision_reason']}", "",
             f"  {'variant':<22}{'signals':>8}{'win rate':>10}{'95% CI':>16}{'avg s':>8}"
             f"{'p95 s':>8}{'conf':>6}{'avg P/L':>10}{'errors':>8}"]

    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    def num(x, f="{:.1f}"):
        return "-" if x is None else f.format(x)

    for vid, f in result["variants"].items():
        ci = f["win_rate_ci"]
        label = vid + (" (control)" if f["control"] else "" if f["enabled"] else " (off)")
        lines.append(f"  {label:<22}{f['signals']:>8}{pct(f['win_rate']):>10}"
                     f"{(pct(ci[0]) + '-' + pct(ci[1])) if ci else '-':>16}"
                     f"{num(f['avg_analysis_time']):>8}{num(f['p95_analysis_time']):>8}"
                     f"{num(f['avg_confidence'], '{:.2f}'):>6}{num(f['avg_profit_loss']):>10}"
                     f"{pct(f['error_rate']):>8}")
    srm = result["srm"]
    lines.append("")
    lines.append("  SRM: " + ("too few signals to check" if srm["p_value"] is None else
                               f"chi-square p={srm['p_value']:.3g}"
                               + (" ALARM" if srm["alarm"] else " ok")))
    for t in result["tests"]:
        w = t["win_rate"]
        if w["diff"] is not None and w["ci_low"] is not None:
            lines.append(f"  {t['variant']} vs {t['control']}: win rate {w['diff'] * 100:+.1f} "
                         f"points (95% CI {w['ci_low'] * 100:+.1f} to {w['ci_high'] * 100:+.1f})"
                         + (f", sequential: {t['sequential']['result']}"
                            if t["sequential"] and t["sequential"]["result"] else ""))
        if t["guardrails"]["breached"]:
            lines.append(f"    guardrails breached: {', '.join(t['guardrails']['breached'])}")
    if result.get("bad_row_count"):
        lines.append(f"  {result['bad_row_count']} bad rows left out (see stderr)")
    return "\n".join(lines)


def cli_assign(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`atge abtest assign --experiment KEY --user ID [--variants FILE.json] [--json]`."""
    return cli_main(["assign", *argv], out=out, err=err)


def cli_main(argv: Sequence[str] | None = None, out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    """`atge abtest analyze|assign|simulate ...` (argv without the leading `abtest`).

    Returns 0 on success, 2 on bad input (arguments, variants file, results) with the reason on
    stderr.
    """
    out, err = out or sys.stdout, err or sys.stderr
    parser = _parser()
    try:
        with _redirect_stderr(err):
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if args.command == "assign":
            return _run_assign(args, out)
        if args.command == "simulate":
            return _run_simulate(args, out)
        return _run_analyze(args, out, err)
    except (ConfigError, ResultsError, ValueError) as exc:
        print(f"atge abtest: {exc}", file=err)
        return 2


class _redirect_stderr:
    """argparse writes usage errors to sys.stderr; send them where the caller asked."""

    def __init__(self, target: TextIO):
        self.target = target

    def __enter__(self):
        self.saved, sys.stderr = sys.stderr, self.target

    def __exit__(self, *exc):
        sys.stderr = self.saved
        return False


if __name__ == "__main__":
    raise SystemExit(cli_main())
