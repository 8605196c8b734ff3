"""Results intake: bad rows reported with their line and kept out; CSV and history round trips."""

from __future__ import annotations

import io

import pytest

from atge_assets.abtest.analysis import analyze
from atge_assets.abtest.config import (
    default_config,
)
from atge_assets.abtest.intake import (
    ResultsError,
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
    assert sorted(r["signal_id"] for r in intake.rows) == ["s1", "s10", "s11", "s2"]
    assert [r["outcome"] for r in intake.rows if r["signal_id"] == "s11"] == ["win"]
    assert intake.superseded == 1 and intake.other_experiments == {"other-exp": 1}
    bad = {b.line: b.reason for b in intake.bad}
    assert sorted(bad) == [4, 5, 6, 7, 8, 9, 10, 12, 17]
    assert "unknown variant_id 'gpt51-low'" in bad[4]
    assert "analysis_time 'abc' is not a number" in bad[5]
    assert "a percentage?" in bad[6]
    assert "outcome 'maybe' is not one of win, loss, pending, error" in bad[7]
    assert "profit_loss is missing" in bad[8]
    assert "looks like milliseconds" in bad[9]
    assert "expected 8 fields, got 5" in bad[10]
    assert "duplicate signal_id 's1' (already recorded at line 2)" in bad[12]
    assert "negative" in bad[17] and "timestamp 'nan'" in bad[17]
    # ... and the analysis reports them instead of dropping them silently.
    result = analyze(intake, default_config())
    assert result["bad_row_count"] == 9 and result["bad_rows"][0]["line"] == 4
    assert result["rows_used"] == 4 and plain_json(result)


def test_csv_missing_columns_is_an_error():
    with pytest.raises(ResultsError, match="missing column.*confidence, outcome"):
        read_results_csv(io.StringIO("variant_id,signal_id,analysis_time,profit_loss,"
                                        "timestamp\n"), default_config())
    with pytest.raises(ResultsError, match="empty"):
        read_results_csv(io.StringIO(""), default_config())


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
    rows.append({**rows[0], "signal_id": "broken", "confidence": None})
    assert store.record_ab_results(rows) == 201
    store.record_ab_results([{**rows[1], "experiment": "other", "signal_id": "x"}])
    intake = results_from_store(store, config)
    assert len(intake.rows) == 200
    assert [b.line for b in intake.bad] == [201]
    assert "confidence is missing" in intake.bad[0].reason
    assert len(store.ab_results()) == 202
    assert len(store.ab_results(config.experiment, since=rows[100]["timestamp"])) == 100
