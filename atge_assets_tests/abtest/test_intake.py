"""Results intake: bad rows reported with their line and kept out; CSV and history round trips."""

from __future__ import annotations

import io

import pytest

from atge_assets.abtest.analysis import analyze
from atge_assets.abtest.config import (
    ConfigError,
    default_config,
)
from atge_assets.abtest.intake import (
    ResultsError,
    intake_records,
    read_results_csv,
    results_from_store,
    write_results_csv,
)
from atge_assets.abtest.simulate import simulate_results
from atge_assets_tests.abtest.helpers import HIGH, MEDIUM
from atge_assets_tests.conftest import plain_json

# --- results intake -------------------------------------------------------------------------------
CSV_HEADER = ("experiment,variant_id,signal_id,analysis_time,confidence,outcome,profit_loss,"
              "timestamp\n")


def test_csv_bad_rows_are_reported_with_line_numbers_and_kept_out():
    text = CSV_HEADER + (
        ",gpt51-high,s1,12.5,0.8,win,120.5,1767225600\n"                    # 2 ok
        ",gpt51-medium,s2,9.0,0.7,loss,-80,2026-01-01T00:05:00Z\n"          # 3 ok (ISO)
        ",gpt51-low,s3,9.0,0.7,loss,-80,1767225700\n"                       # 4 unknown variant
        ",gpt51-high,s4,abc,0.7,win,10,1767225800\n"                        # 5 bad time
        ",gpt51-high,s5,10,85,win,10,1767225900\n"                          # 6 confidence %
        ",gpt51-high,s6,10,0.5,maybe,10,1767226000\n"                       # 7 bad outcome
        ",gpt51-high,s7,10,0.5,win,,1767226100\n"                           # 8 no P/L
        ",gpt51-high,s8,10,0.5,win,5,1767226100000\n"                       # 9 milliseconds
        ",gpt51-high,s9,10,0.5\n"                                           # 10 short row
        "\n"                                                                # 11 blank: skipped
        ",gpt51-high,s1,11,0.6,loss,-5,1767226200\n"                        # 12 duplicate
        ",gpt51-medium,s10,,,error,,1767226300\n"                           # 13 ok (error)
        ",gpt51-medium,s11,8,0.6,pending,,1767226400\n"                     # 14 superseded
        ",gpt51-medium,s11,8,0.6,win,50,1767226500\n"                       # 15 ok
        "other-exp,whatever,s12,1,1,win,1,1767226600\n"                     # 16 other experiment
        ",gpt51-high,s13,-1,0.5,win,1,nan\n"                                # 17 two problems
    )
    intake = read_results_csv(io.StringIO(text), default_config())
    assert sorted(r["signal_id"] for r in intake.rows) == ["s1", "s10", "s11", "s2", "s5"]
    assert [r["outcome"] for r in intake.rows if r["signal_id"] == "s11"] == ["win"]
    assert intake.superseded == 1 and intake.other_experiments == {"other-exp": 1}
    bad = {b.line: b.reason for b in intake.bad}
    assert sorted(bad) == [4, 5, 7, 8, 9, 10, 12, 17]
    assert "unknown variant_id 'gpt51-low'" in bad[4]
    assert "analysis_time 'abc' is not a number" in bad[5]
    # A percentage among fractions: confidence decides nothing, so the row stays, value blanked.
    assert [(n.line, n.reason) for n in intake.notes] == [
        (6, "confidence '85' is outside 0-1, this file's scale")]
    assert [r["confidence"] for r in intake.rows if r["signal_id"] == "s5"] == [None]
    assert "outcome 'maybe' is not one of win, loss, pending, error" in bad[7]
    assert "profit_loss is missing" in bad[8]
    assert "looks like milliseconds" in bad[9]
    assert "expected 8 fields, got 5" in bad[10]
    assert "duplicate signal_id 's1' (already recorded at line 2)" in bad[12]
    assert "negative" in bad[17] and "timestamp 'nan'" in bad[17]
    # ... and the analysis reports them instead of dropping them silently.
    result = analyze(intake, default_config())
    assert result["bad_row_count"] == 8 and result["bad_rows"][0]["line"] == 4
    assert result["rows_used"] == 5 and result["note_count"] == 1 and plain_json(result)


def test_csv_missing_columns_is_an_error():
    with pytest.raises(ResultsError, match=r"missing column\(s\) outcome \(header"):
        read_results_csv(io.StringIO("variant_id,signal_id,analysis_time,profit_loss,"
                                        "timestamp\n"), default_config())
    with pytest.raises(ResultsError, match="empty"):
        read_results_csv(io.StringIO(""), default_config())
    # Only confidence may be absent: it plays no part in the decision.
    intake = read_results_csv(io.StringIO("variant_id,signal_id,analysis_time,outcome,profit_loss,"
                                          "timestamp\ncontrol,s1,10,win,5,1767225600\n"))
    assert [r["confidence"] for r in intake.rows] == [None] and not intake.bad


def test_csv_round_trip_of_simulated_rows(tmp_path):
    config = default_config()
    rows = simulate_results(config, 300, {HIGH: 0.5, MEDIUM: 0.6}, seed=3, pending_rate=0.1)
    path = tmp_path / "r.csv"
    with open(path, "w", newline="") as f:
        write_results_csv(rows, f)
    intake = read_results_csv(path, config)
    assert not intake.bad and len(intake.rows) == 300
    assert intake.rows[0] == {**rows[0], "experiment": config.experiment}


def test_store_round_trip_reports_bad_rows_by_id(store):
    config = default_config()
    rows = simulate_results(config, 200, 0.5, seed=4)
    rows.append({**rows[0], "signal_id": "broken", "outcome": "maybe"})
    assert store.record_ab_results(rows) == 201
    store.record_ab_results([{**rows[1], "experiment": "other", "signal_id": "x"}])
    intake = results_from_store(store, config)
    assert len(intake.rows) == 200
    assert [b.line for b in intake.bad] == [201]
    assert "outcome 'maybe' is not one of" in intake.bad[0].reason
    assert len(store.ab_results()) == 202
    assert len(store.ab_results(config.experiment, since=rows[100]["timestamp"])) == 100


def test_confidence_scale_is_decided_per_file_by_the_majority():
    def read(values):
        text = CSV_HEADER + "".join(f",gpt51-high,s{i},10,{c},win,1,{1767225600 + i}\n"
                                    for i, c in enumerate(values))
        return read_results_csv(io.StringIO(text), default_config())

    percent = read(["52.9", "71", "0.5", "99.9", "150", "n/a"])
    assert percent.confidence_scale == "0-100" and not percent.bad
    assert [r["confidence"] for r in percent.rows] == pytest.approx(
        [0.529, 0.71, 0.005, 0.999, None, None], nan_ok=True)
    assert [n.line for n in percent.notes] == [6, 7]
    assert "'150' is outside 0-100" in percent.notes[0].reason
    assert "'n/a' is not a number" in percent.notes[1].reason
    fraction = read(["0.529", "0.71", "85", ""])
    assert fraction.confidence_scale == "0-1"
    assert [r["confidence"] for r in fraction.rows] == [0.529, 0.71, None, None]
    assert [n.line for n in fraction.notes] == [4]


def test_every_numeric_column_is_range_checked():
    text = CSV_HEADER + (
        ",gpt51-high,a,10,0.5,win,1e308,1767225600\n"       # 2: beyond the money limit
        ",gpt51-high,b,90000,0.5,win,1,1767225601\n"        # 3: analysis over a day
        ",gpt51-high,c,inf,0.5,win,1,1767225602\n"          # 4: not finite
        ",gpt51-high,d,10,0.5,win,1,1e300\n"                # 5: timestamp absurd
        ",gpt51-high,e,10,1e308,win,1,1767225603\n"         # 6: confidence absurd: kept
        ",gpt51-high,f,10,0.5,win,-5,1767225604\n"          # 7: ok
    )
    intake = read_results_csv(io.StringIO(text), default_config())
    bad = {b.line: b.reason for b in intake.bad}
    assert sorted(bad) == [2, 3, 4, 5]
    assert "profit_loss '1e308' is beyond ±1,000,000,000" in bad[2]
    assert "analysis_time '90000' is over a day" in bad[3]
    assert "analysis_time 'inf' is not a finite number" in bad[4]
    assert "timestamp '1e300' looks like milliseconds" in bad[5]
    assert [r["signal_id"] for r in intake.rows] == ["e", "f"]
    assert [n.line for n in intake.notes] == [6]


def test_variants_are_read_off_the_results_without_a_config():
    def rows(ids, experiment=""):
        return [{"experiment": experiment, "variant_id": v, "signal_id": f"{experiment}{i}",
                 "analysis_time": 10, "confidence": 0.5, "outcome": "win", "profit_loss": 1,
                 "timestamp": 1767225600 + i} for i, v in enumerate(ids)]

    intake = intake_records(rows(["b"] * 2 + ["a"] * 5 + ["c"]))
    config = intake.config
    assert config.control == "a" and config.ids == ("a", "b", "c")  # the largest arm
    assert not config.split_declared
    assert config.variant("a").traffic_percent == pytest.approx(62.5)
    assert intake_records(rows(["x", "control", "x"])).config.control == "control"
    assert intake_records(rows(["b", "a", "a"]), control="b").config.control == "b"
    with pytest.raises(ConfigError, match="control 'z' is not a variant in the results"):
        intake_records(rows(["b", "a"]), control="z")
    mixed = rows(["a", "b"], "e1") + rows(["a", "b", "b"], "e2")
    with pytest.raises(ResultsError, match=r"several experiments \(e1 \(2 rows\), e2 \(3 rows"):
        intake_records(mixed)
    picked = intake_records(mixed, experiment="e2")
    assert picked.config.experiment == "e2" and len(picked.rows) == 3
    assert picked.other_experiments == {"e1": 2} and picked.config.control == "b"


def test_store_without_a_config_takes_the_only_experiment_or_the_one_named(store):
    config = default_config()
    store.record_ab_results(simulate_results(config, 100, 0.5, seed=5))
    intake = results_from_store(store, None)
    assert intake.config.experiment == config.experiment and len(intake.rows) == 100
    assert intake.config.control == HIGH and not intake.config.split_declared
    store.record_ab_results(simulate_results(default_config("other"), 50, 0.5, seed=6))
    with pytest.raises(ResultsError, match="several experiments.*pass --experiment"):
        results_from_store(store, None)
    picked = results_from_store(store, None, experiment="other")
    assert len(picked.rows) == 50 and picked.config.experiment == "other"
