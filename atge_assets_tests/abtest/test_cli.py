"""`atge abtest`: analyze, assign, bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from atge_assets.abtest.cli import cli_assign, cli_main
from atge_assets.abtest.config import (
    DEFAULT_EXPERIMENT,
    default_config,
)
from atge_assets.abtest.intake import (
    write_results_csv,
)
from atge_assets.abtest.simulate import simulate_results
from atge_assets_tests.abtest.helpers import HIGH, MEDIUM, variant


def atge(*argv: str) -> subprocess.CompletedProcess:
    """`atge ...` as a user runs it: the real entry point in its own process."""
    out = subprocess.run([sys.executable, "-m", "atge_assets.cli", *argv],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out


# --- CLI and store --------------------------------------------------------------------------------
def test_cli_analyze_json_last_line(tmp_path):
    config = default_config()
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        write_results_csv(simulate_results(config, 4000, {HIGH: 0.55, MEDIUM: 0.65},
                                                 seed=11), f)
        f.write(",gpt51-high,bad1,x,0.5,win,1,1767225600\n")
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["analyze", "--results", str(path), "--json"], out=out, err=err) == 0
    result = json.loads(out.getvalue().splitlines()[-1])
    assert result["winner"] == MEDIUM and result["variants"][MEDIUM]["win_rate"] > 0.6
    assert "line 4002: analysis_time 'x' is not a number" in err.getvalue()
    out = io.StringIO()
    assert cli_main(["analyze", "--results", str(path)], out=out, err=io.StringIO()) == 0
    assert "WINNER gpt51-medium" in out.getvalue()


def test_cli_bad_input_exits_2(tmp_path):
    bad_variants = tmp_path / "v.json"
    bad_variants.write_text(json.dumps({"variants": [variant("a", 70), variant("b", 20)]}))
    results = tmp_path / "r.csv"
    results.write_text("variant_id,signal_id\n")
    for argv, message in (
        (["analyze", "--results", str(tmp_path / "nope.csv")], "cannot read results file"),
        (["analyze", "--results", str(results)], "missing column"),
        (["analyze", "--results", str(results), "--variants", str(bad_variants)], "sums to 90"),
        (["assign", "--experiment", "e", "--user", "u", "--variants", str(bad_variants)],
         "sums to 90"),
        (["assign", "--user", "u"], "--experiment"),
        (["frobnicate"], "invalid choice"),
    ):
        err = io.StringIO()
        assert cli_main(argv, out=io.StringIO(), err=err) == 2, argv
        assert message in err.getvalue(), (argv, err.getvalue())


def test_cli_assign(tmp_path):
    out = io.StringIO()
    assert cli_assign(["--experiment", DEFAULT_EXPERIMENT, "--user", "user-2"], out=out) == 0
    assert out.getvalue().strip() == MEDIUM
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"experiment": "foo", "variants": [variant("a", 50),
                                                                  variant("b", 50)]}))
    out = io.StringIO()
    assert cli_main(["assign", "--experiment", "foo", "--user", "1", "--variants", str(path),
                        "--json"], out=out) == 0
    assert json.loads(out.getvalue())["variant_id"] == "b"
    err = io.StringIO()
    assert cli_main(["assign", "--experiment", "bar", "--user", "1", "--variants", str(path)],
                       out=io.StringIO(), err=err) == 2
    assert "differs" in err.getvalue()


def test_cli_keeps_absurd_money_out_and_reports_each_row(tmp_path):
    from atge_assets.abtest.intake import MAX_ABS_PROFIT_LOSS

    config = default_config()
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        write_results_csv(simulate_results(config, 400, {HIGH: 0.55, MEDIUM: 0.65}, seed=3), f)
        f.write(",gpt51-high,huge,10,0.5,win,1e308,1767225600\n"
                ",gpt51-medium,neg,10,0.5,loss,-2e9,1767225601\n"
                ",gpt51-high,inf,10,0.5,win,inf,1767225602\n"
                f",gpt51-high,edge,10,0.5,win,{MAX_ABS_PROFIT_LOSS:.0f},1767225603\n")
    out = atge("abtest", "analyze", "--results", str(path), "--json")
    assert ("line 402: profit_loss '1e308' is beyond ±1,000,000,000 (row left out)"
            in out.stderr)
    assert "line 403: profit_loss '-2e9' is beyond ±1,000,000,000 (row left out)" in out.stderr
    assert "line 404: profit_loss 'inf' is not a finite number (row left out)" in out.stderr
    assert "line 405" not in out.stderr  # the limit itself is a (large) trade
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["bad_row_count"] == 3 and result["rows_used"] == 401
    for v in result["variants"].values():
        assert abs(v["avg_profit_loss"]) < MAX_ABS_PROFIT_LOSS


def _plan_export(path, rng_seed=5, n=3000, lift=0.10):
    """The plan's table as the app exports it: its own ids, confidence in percent, an id column,
    no experiment column, a typo'd confidence and one absurd profit/loss."""
    import csv

    import numpy as np

    rng = np.random.default_rng(rng_seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "variant_id", "signal_id", "analysis_time", "confidence", "outcome",
                    "profit_loss", "timestamp"])
        for i in range(n):
            v = "control" if rng.random() < 0.5 else "variant-a"
            win = rng.random() < 0.5 + (lift if v == "variant-a" else 0.0)
            w.writerow([i + 1, v, f"sig-{i}", round(float(rng.lognormal(3, 0.3)), 2),
                        round(float(rng.uniform(40, 95)), 1), "win" if win else "loss",
                        round(float(rng.exponential(100)) * (1 if win else -1), 2),
                        1767225600 + 60 * i])
        w.writerow([n + 1, "control", "sig-huge", 10, 52.9, "win", "1e308", 1767225600 + 60 * n])
        w.writerow([n + 2, "variant-a", "sig-typo", 10, "5o", "loss", -3, 1767225660 + 60 * n])


def test_the_plans_export_is_analysed_without_a_config(tmp_path):
    path = tmp_path / "results.csv"
    _plan_export(path)
    out = atge("abtest", "analyze", "--results", str(path), "--json")
    assert ("line 3002: profit_loss '1e308' is beyond ±1,000,000,000 (row left out)"
            in out.stderr)
    assert ("line 3003: confidence '5o' is not a number (value ignored, row kept)"
            in out.stderr)
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["variants_from"] == "results" and result["control"] == "control"
    assert list(result["variants"]) == ["control", "variant-a"]
    assert result["confidence_scale"] == "0-100"
    assert 0.4 < result["variants"]["control"]["avg_confidence"] < 0.95
    assert result["rows_used"] == 3001 and result["bad_row_count"] == 1
    assert [b["line"] for b in result["bad_rows"]] == [3002]
    assert result["srm"]["checked"] is False and not result["srm"]["alarm"]
    assert result["winner"] == "variant-a"
    shares = [v["traffic_percent"] for v in result["variants"].values()]
    assert sum(shares) == pytest.approx(100) and 45 < shares[0] < 55
    text = atge("abtest", "analyze", "--results", str(path)).stdout
    assert "WINNER variant-a" in text and "confidence read as 0-100" in text
    assert "variants read off the results" in text


def test_control_is_named_or_the_largest_arm(tmp_path):
    config = default_config()  # 80% high / 20% medium, but the file is analysed without it
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        write_results_csv(simulate_results(config, 1000, 0.55, seed=7), f)

    def run(*extra):
        out, err = io.StringIO(), io.StringIO()
        code = cli_main(["analyze", "--results", str(path), "--json", *extra], out=out, err=err)
        return code, (json.loads(out.getvalue().splitlines()[-1]) if code == 0
                      else err.getvalue())

    code, result = run()
    assert code == 0 and result["control"] == HIGH and result["variants_from"] == "results"
    code, result = run("--control", MEDIUM)
    assert code == 0 and result["control"] == MEDIUM
    assert [t["variant"] for t in result["tests"]] == [HIGH]
    code, message = run("--control", "nobody")
    assert code == 2 and "control 'nobody' is not a variant in the results" in message
    # With the declared split the sample ratio is checked against it.
    variants = tmp_path / "v.json"
    variants.write_text(json.dumps({**config.to_dict(), "experiment": config.experiment}))
    code, result = run("--variants", str(variants))
    assert code == 0 and result["variants_from"] == "config" and result["srm"]["checked"]
