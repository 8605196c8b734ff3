"""Results intake: the plan's results table (one row per signal) read from CSV, the history table or
any records, each row validated; bad rows are reported with their line and reason and kept out,
never silently dropped. `Results` is the columnar view the analysis reads.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence, TextIO

import numpy as np

from atge_assets.abtest.config import (
    DEFAULT_EXPERIMENT,
    ConfigError,
    ExperimentConfig,
    observed_config,
)
from atge_assets.lib.jsonl import plain as _plain

WIN, LOSS, PENDING, ERROR = "win", "loss", "pending", "error"
OUTCOMES = (WIN, LOSS, PENDING, ERROR)
_CODE = {WIN: 1, LOSS: 0, PENDING: 2, ERROR: 3}
RESULT_COLUMNS = ("variant_id", "signal_id", "analysis_time", "confidence", "outcome",
                  "profit_loss", "timestamp")
CSV_COLUMNS = ("experiment",) + RESULT_COLUMNS
OPTIONAL_COLUMNS = ("confidence",)
# Above this a timestamp is milliseconds (year 5138 in seconds), a common mix-up.
_MAX_EPOCH_S = 1e11
_MAX_BAD_LISTED = 200
# One signal's profit or loss, in the app's currency: a billion is no trade the model places but
# a unit or parsing slip, and a few such rows (1e308 is a finite float) would overflow the sums
# and own every average.
MAX_ABS_PROFIT_LOSS = 1e9
# An analysis runs for seconds to minutes; a day is a unit slip (milliseconds), not a slow model.
MAX_ANALYSIS_TIME_S = 86_400.0
FRACTION, PERCENT = "0-1", "0-100"


class ResultsError(ValueError):
    """Results that cannot be read at all (missing file, missing columns, no usable row)."""


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
    notes: list[BadRow] = field(default_factory=list)  # kept, one unused value blanked
    confidence_scale: str = "0-1"
    config: ExperimentConfig | None = None  # the one given, or the one read off the rows


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


def confidence_scale(records: Sequence[Mapping]) -> str:
    """"0-1" or "0-100", decided once for a whole file: the app may write 0.529 or 52.9.

    By majority of the readable values, so one stray 85 in a file of fractions stays a stray
    (reported) and one 0.5% in a file of percentages stays a small percentage.
    """
    fractions = percents = 0
    for raw in records:
        x = _number(raw.get("confidence"), "confidence", [], required=False)
        if x is None or x < 0:
            continue
        if x <= 1:
            fractions += 1
        elif x <= 100:
            percents += 1
    return PERCENT if percents > fractions else FRACTION


def _validate(raw: Mapping, ids: Sequence[str] | None, experiment: str, scale: str
              ) -> tuple[dict | None, list[str], list[str]]:
    """(row, problems that keep it out, notes on a column the decision does not use)."""
    problems: list[str] = []
    variant = _text(raw.get("variant_id"), "variant_id", problems)
    if variant is not None and ids is not None and variant not in ids:
        problems.append(f"unknown variant_id {variant!r} (experiment {experiment} has "
                        f"{', '.join(ids)})")
    signal = _text(raw.get("signal_id"), "signal_id", problems)
    outcome = raw.get("outcome")
    outcome = outcome.strip().lower() if isinstance(outcome, str) else outcome
    if outcome not in OUTCOMES:
        problems.append(f"outcome {raw.get('outcome')!r} is not one of {', '.join(OUTCOMES)}")
        outcome = None
    # A failed analysis has no signal to time or trade; everything else must have them.
    produced = outcome in (WIN, LOSS, PENDING)
    analysis_time = _number(raw.get("analysis_time"), "analysis_time", problems, produced)
    if analysis_time is not None and not 0 <= analysis_time <= MAX_ANALYSIS_TIME_S:
        problems.append(f"analysis_time {raw.get('analysis_time')!r} is "
                        + ("negative" if analysis_time < 0 else
                           f"over a day ({MAX_ANALYSIS_TIME_S:,.0f} s); milliseconds?"))
    resolved = outcome in (WIN, LOSS)
    profit_loss = _number(raw.get("profit_loss"), "profit_loss", problems, resolved)
    if profit_loss is not None and abs(profit_loss) > MAX_ABS_PROFIT_LOSS:
        problems.append(f"profit_loss {raw.get('profit_loss')!r} is beyond "
                        f"±{MAX_ABS_PROFIT_LOSS:,.0f}")
    timestamp = _timestamp(raw.get("timestamp"), problems)
    # Confidence is only reported, never decides: a bad one is blanked and noted, the row stays.
    notes: list[str] = []
    confidence = _number(raw.get("confidence"), "confidence", notes, required=False)
    top = 100.0 if scale == PERCENT else 1.0
    if confidence is not None and not 0 <= confidence <= top:
        notes.append(f"confidence {raw.get('confidence')!r} is outside {scale}, this file's "
                     f"scale")
    if notes:
        confidence = None
    elif confidence is not None:
        confidence /= top
    if problems:
        return None, problems, notes
    return {"experiment": experiment, "variant_id": variant, "signal_id": signal,
            "analysis_time": analysis_time, "confidence": confidence, "outcome": outcome,
            "profit_loss": profit_loss if resolved else None, "timestamp": timestamp}, [], notes


def _which_experiment(records: Sequence[Mapping], wanted: str | None, source: str) -> str:
    """The experiment to analyse without a config: the one asked for, or the only one there."""
    if wanted:
        return wanted
    seen: dict[str, int] = {}
    for raw in records:
        exp = raw.get("experiment")
        if isinstance(exp, str) and exp.strip():
            seen[exp.strip()] = seen.get(exp.strip(), 0) + 1
    if len(seen) > 1:
        found = ", ".join(f"{k} ({n} rows)" for k, n in seen.items())
        raise ResultsError(f"{source}: rows of several experiments ({found}); pass --experiment")
    if seen:
        return next(iter(seen))
    stem = Path(source).stem if source not in ("records", "") else ""
    return stem or DEFAULT_EXPERIMENT


def intake_records(records: Iterable[Mapping], config: ExperimentConfig | None = None, *,
                   source: str = "records", lines: Iterable[int] | None = None,
                   experiment: str | None = None, control: str | None = None) -> Intake:
    """Validate result rows (dicts with the table's columns; strings or typed values).

    Rows of other experiments are counted, not judged. A row that fails validation is a BadRow
    with its line and every problem found; a row whose only problem is a column the decision
    does not use (confidence) is kept, that value blanked, and noted. A signal recorded twice
    keeps its outcome: a pending row gives way to the resolved one, a second resolved row is bad.
    Without a config the variants are the ids found (`observed_config`; `control` picks the
    control) and the experiment is `experiment` or the only one in the rows.
    """
    records = list(records)
    if config is not None:
        key, ids = config.experiment, config.ids
        if control is not None:
            if control not in ids:
                raise ConfigError([f"control {control!r} is not one of the variants "
                                   f"({', '.join(ids)})"])
            config = replace(config, control=control)
    else:
        key, ids = _which_experiment(records, experiment, source), None
    scale = confidence_scale(records)
    intake = Intake(rows=[], source=source, confidence_scale=scale)
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
        if exp not in (None, "") and exp != key:
            intake.other_experiments[str(exp)] = intake.other_experiments.get(str(exp), 0) + 1
            continue
        row, problems, notes = _validate(raw, ids, key, scale)
        if row is None:
            intake.bad.append(BadRow(line, "; ".join(problems + notes), dict(raw)))
            continue
        if notes:
            intake.notes.append(BadRow(line, "; ".join(notes), dict(raw)))
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
    if config is None and intake.rows:
        counts: dict[str, int] = {}
        for r in intake.rows:
            counts[r["variant_id"]] = counts.get(r["variant_id"], 0) + 1
        config = observed_config(key, counts, control)
    intake.config = config
    return intake


def read_results_csv(source: str | Path | TextIO, config: ExperimentConfig | None = None, *,
                     experiment: str | None = None, control: str | None = None) -> Intake:
    """Read a results CSV (header: the table's columns, `experiment` optional, extra ignored).

    Without a config the variants come from the file (see `intake_records`).
    """
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
        # Confidence is only reported, so a table without it is still a table of results.
        missing = [c for c in RESULT_COLUMNS if c not in columns and c not in OPTIONAL_COLUMNS]
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
    intake = intake_records(records, config, source=name, lines=lines, experiment=experiment,
                            control=control)
    intake.bad = sorted(short + intake.bad, key=lambda b: b.line)
    return intake


def results_from_store(store, config: ExperimentConfig | None, since: float | None = None, *,
                       experiment: str | None = None, control: str | None = None) -> Intake:
    """The experiment's rows of `einstein_ab_test_results`, validated (BadRow.line = row id)."""
    key = config.experiment if config is not None else experiment
    return intake_records(store.ab_results(key, since), config,
                          source="einstein_ab_test_results", experiment=experiment,
                          control=control)


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
